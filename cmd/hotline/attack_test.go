package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// heapMiB is the heap in use after a collection, in MiB. The server runs
// in this process: its queues are in this heap.
func heapMiB() int {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int(m.HeapInuse >> 20)
}

// TestServeEndedPollingSessionsFreeMemory is issue 10.1's attack on the
// real binary, scaled down: per round, open -max-conns polling sessions
// and fill each one's queue with its own publications until it ends as a
// slow consumer. The server's heap must not grow round after round (the
// process grew by the whole round's queues, to 2 GB in the issue).
func TestServeEndedPollingSessionsFreeMemory(t *testing.T) {
	const (
		n          = 20
		queueBytes = 512 << 10
		rounds     = 4
	)
	_, addr, logs := startServe(t, "-max-conns", strconv.Itoa(n), "-queue-bytes", strconv.Itoa(queueBytes),
		"-namespace", "feed:publish", "-log-level", "error")
	base := "http://" + addr
	data := strconv.Quote(strings.Repeat("x", 48<<10))
	post := func(path, body string) (int, []byte) {
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.Bytes()
	}
	var after []int
	for round := range rounds {
		for i := range n {
			code, body := post("/poll/open", `{"transport":"longpoll"}`)
			var o struct{ Session string }
			if json.Unmarshal(body, &o); code != 200 || o.Session == "" {
				t.Fatalf("round %d: open: %d %s\n%s", round, code, body, logs.String())
			}
			ch := `"feed:` + strconv.Itoa(i) + `"`
			post("/poll/"+o.Session, `{"id":1,"op":"subscribe","channel":`+ch+`}`)
			for k := 0; ; k++ {
				if k == 4*queueBytes/len(data) {
					t.Fatalf("round %d: session %d not ended by its full queue", round, i)
				}
				code, _ := post("/poll/"+o.Session, `{"id":2,"op":"publish","channel":`+ch+`,"data":`+data+`}`)
				if code != http.StatusAccepted {
					break // 410: ended as a slow consumer
				}
			}
		}
		after = append(after, heapMiB())
	}
	t.Logf("heap in use after each round, MiB: %v", after)
	// One round's queues are n*queueBytes (10 MiB); without the fix the
	// heap grows by about that every round.
	if grew := after[rounds-1] - after[0]; grew > n*queueBytes>>20/2 {
		t.Fatalf("heap grew %d MiB from round 1 to %d (%v MiB): ended sessions keep their queues", grew, rounds, after)
	}
}
