package loadtest

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// payload is the data of every published message.
type payload struct {
	Run  string `json:"run"`
	Seq  int    `json:"seq"`
	Sent int64  `json:"sent"` // Unix nanoseconds, just before the publish request
	Pad  string `json:"pad,omitempty"`
}

// encodePayload returns the data of message seq, padded towards size bytes.
func encodePayload(run string, seq int, sent time.Time, size int) json.RawMessage {
	p := payload{Run: run, Seq: seq, Sent: sent.UnixNano()}
	b, _ := json.Marshal(p)
	if pad := size - len(b) - len(`,"pad":""`); pad > 0 {
		p.Pad = strings.Repeat("x", pad)
		b, _ = json.Marshal(p)
	}
	return b
}

// tally is what one client received. Only the client's receiving
// goroutine touches it until that goroutine has finished.
type tally struct {
	got        []bool // by seq
	received   int    // distinct messages
	duplicates int
	latencies  []time.Duration
	strays     int // messages of this run with a seq out of range
}

func newTally(messages int) *tally {
	return &tally{got: make([]bool, messages), latencies: make([]time.Duration, 0, messages)}
}

// record notes one delivery of message seq sent at sent, received at now.
// It reports whether the message is new to this client.
func (t *tally) record(seq int, sent, now time.Time) bool {
	if seq < 0 || seq >= len(t.got) {
		t.strays++
		return false
	}
	if t.got[seq] {
		t.duplicates++
		return false
	}
	t.got[seq] = true
	t.received++
	t.latencies = append(t.latencies, now.Sub(sent))
	return true
}

// Missing is a published message that some clients did not receive.
type Missing struct {
	Seq     int // the message's sequence number
	Clients int // how many clients lack it
}

// checkComplete returns, for every message the server accepted, the
// clients that lack it. accepted is indexed by seq.
func checkComplete(accepted []bool, clients []*tally) []Missing {
	var out []Missing
	for seq, ok := range accepted {
		if !ok {
			continue
		}
		n := 0
		for _, c := range clients {
			if seq >= len(c.got) || !c.got[seq] {
				n++
			}
		}
		if n > 0 {
			out = append(out, Missing{Seq: seq, Clients: n})
		}
	}
	return out
}

// describeMissing says which messages were lost, naming the first few.
func describeMissing(m []Missing, clients int) string {
	if len(m) == 0 {
		return "every message reached every client"
	}
	lost := 0
	for _, x := range m {
		lost += x.Clients
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d message(s) not delivered to every client (%d deliveries missing of %d clients each); seq", len(m), lost, clients)
	for i, x := range m {
		if i == 5 {
			fmt.Fprintf(&b, " and %d more", len(m)-i)
			break
		}
		sep := ","
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(&b, "%s %d (missed by %d)", sep, x.Seq, x.Clients)
	}
	return b.String()
}
