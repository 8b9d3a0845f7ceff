package push

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/broker"
)

// room connects n sessions to "chat:lobby", alternating chat and superchat.
func room(tb testing.TB, e *Engine, n int) []*Session {
	tb.Helper()
	ss := make([]*Session, n)
	for i := range ss {
		p := ProtocolChat
		if i%2 == 1 {
			p = ProtocolSuperchat
		}
		c := connect(tb, e, p, "u"+strconv.Itoa(i))
		if p == ProtocolSuperchat {
			c.send(`{"id":1,"op":"subscribe","channel":"chat:lobby"}`)
		}
		ss[i] = c.s
	}
	for _, s := range ss {
		s.Ack(^uint64(0)) // drop replies and join events
	}
	return ss
}

func ackAll(ss []*Session) {
	for _, s := range ss {
		s.Ack(^uint64(0))
	}
}

// TestFanOutAllocsPerRecipient locks in that fanning a publication out
// allocates nothing per recipient: only the encodings, once per message.
func TestFanOutAllocsPerRecipient(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	allocs := func(n int) float64 {
		e := newEngine(t, Config{Namespaces: map[string]NamespaceOptions{"chat": {}}})
		ss := room(t, e, n)
		pub := &broker.Publication{Channel: "chat:lobby", Data: json.RawMessage(`"hello"`), Info: &broker.ClientInfo{User: "x"}, Time: time.Now()}
		pub.Epoch = "e"
		h := handler{e}
		deliver := func() {
			pub.Offset++
			h.HandlePublication(pub)
			ackAll(ss)
		}
		deliver() // warm the queues up
		return testing.AllocsPerRun(200, deliver)
	}
	small, large := allocs(10), allocs(1000)
	if large != small {
		t.Fatalf("allocs per message: %v with 10 recipients, %v with 1000", small, large)
	}
	if small > 10 {
		t.Fatalf("%v allocs per message", small)
	}
	t.Logf("%v allocs per message, independent of recipients", small)
}

// BenchmarkFanOut publishes through the engine (broker included) to a room
// of chat and superchat sessions, and acks every queue as a transport's
// writer would.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, size := range []int{64, 1 << 10} {
			for _, hist := range []bool{false, true} {
				name := fmt.Sprintf("subs=%d/size=%d/history=%v", n, size, hist)
				b.Run(name, func(b *testing.B) {
					ns := NamespaceOptions{ClientPublish: true}
					if hist {
						ns.HistorySize, ns.HistoryTTL = 100, 10*time.Minute
					}
					e := newEngine(b, Config{Namespaces: map[string]NamespaceOptions{"chat": ns}})
					ss := room(b, e, n)
					data, _ := json.Marshal(strings.Repeat("x", size-2))
					ctx := context.Background()
					b.ReportAllocs()
					b.SetBytes(int64(size))
					for b.Loop() {
						if _, err := e.Publish(ctx, PublishRequest{Channel: "chat:lobby", Data: data}); err != nil {
							b.Fatal(err)
						}
						ackAll(ss)
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/recipient")
				})
			}
		}
	}
}
