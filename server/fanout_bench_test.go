package server

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/ws"
)

// BenchmarkFanOut compares, in one run, a broadcast through the push
// engine (/chat/{room}: publish, history, per-session queues, one writer
// per connection) with the bare library fan-out (/broadcast: one prepared
// frame written to every connection). Each iteration publishes one message
// and waits until every subscriber has it; the metrics are the latencies
// from send to receive over all deliveries.
//
// Every subscriber costs two file descriptors in this process (client and
// server side) and the open-files limit here is about 20,000, so the
// largest case is 4,000 subscribers; 10,000 is extrapolated from 1,000 and
// 4,000.
func BenchmarkFanOut(b *testing.B) {
	for _, subs := range []int{1000, 4000} {
		for _, size := range []int{64, 1024} {
			for _, ep := range []struct {
				name, path string
				history    bool
			}{
				{"broadcast", "/broadcast", false},
				{"chat-history-off", "/chat/bench", false},
				{"chat-history-on", "/chat/bench", true},
			} {
				b.Run(fmt.Sprintf("%s/subs=%d/size=%d", ep.name, subs, size), func(b *testing.B) {
					benchFanOut(b, ep.path, ep.history, subs, size)
				})
			}
		}
	}
}

func benchFanOut(b *testing.B, path string, history bool, subs, size int) {
	chat := push.NamespaceOptions{ClientPublish: true}
	if history {
		chat.HistorySize, chat.HistoryTTL = 100, time.Minute
	}
	srv, err := New(Config{StatsInterval: -1, QueueMessages: 4096, Namespaces: map[string]push.NamespaceOptions{"chat": chat}})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + path

	// Subscribers: each records the latency of every message it gets and
	// counts the deliveries of the current round.
	var round atomic.Int64
	var got atomic.Int64
	done := make(chan struct{}, 1)
	lat := make([][]time.Duration, subs)
	conns := make([]*ws.Conn, subs)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range subs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, _, err := ws.Dial(ctx, url, nil)
			if err != nil {
				b.Error(err)
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	var readers sync.WaitGroup
	for i, c := range conns {
		lat[i] = make([]time.Duration, 0, b.N)
		readers.Add(1)
		go func() {
			defer readers.Done()
			var buf []byte
			for {
				_, msg, err := c.ReadMessage(context.Background(), buf[:0])
				if err != nil {
					return
				}
				buf = msg
				seq, sent, ok := parseStamp(msg)
				if !ok || seq != round.Load() {
					continue // a message from an earlier round, or not ours
				}
				lat[i] = append(lat[i], time.Duration(time.Now().UnixNano()-sent))
				if got.Add(1) == int64(subs) {
					done <- struct{}{}
				}
			}
		}()
	}
	pub, _, err := ws.Dial(context.Background(), url, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer pub.CloseNow()
	go func() { // the publisher receives its own broadcasts: drain them
		var buf []byte
		for {
			_, msg, err := pub.ReadMessage(context.Background(), buf[:0])
			if err != nil {
				return
			}
			buf = msg
		}
	}()
	time.Sleep(200 * time.Millisecond) // let every subscriber settle in the room

	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		seq := int64(i + 1)
		got.Store(0)
		round.Store(seq)
		stamp := fmt.Appendf(nil, "%d %d ", seq, time.Now().UnixNano())
		msg := append(stamp, strings.Repeat("x", max(0, size-len(stamp)))...)
		if err := pub.WriteMessage(context.Background(), ws.OpText, msg); err != nil {
			b.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			b.Fatalf("round %d: %d of %d subscribers got the message", seq, got.Load(), subs)
		}
	}
	b.StopTimer()
	for _, c := range conns {
		c.CloseNow()
	}
	readers.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	q := func(f float64) float64 { return float64(all[int(f*float64(len(all)-1))].Microseconds()) }
	b.ReportMetric(q(0.5), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(float64(all[len(all)-1].Microseconds()), "max-µs")
	b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "deliveries/s")
}

// parseStamp reads "SEQ UNIXNANO " from the start of a message without
// allocating, so that allocs/op counts the server's allocations (and the
// publisher's), not the test clients'.
func parseStamp(msg []byte) (seq, sent int64, ok bool) {
	num := func() (int64, bool) {
		var v int64
		n := 0
		for len(msg) > 0 && msg[0] >= '0' && msg[0] <= '9' {
			v = v*10 + int64(msg[0]-'0')
			msg = msg[1:]
			n++
		}
		if n == 0 || len(msg) == 0 || msg[0] != ' ' {
			return 0, false
		}
		msg = msg[1:]
		return v, true
	}
	seq, ok1 := num()
	sent, ok2 := num()
	return seq, sent, ok1 && ok2
}
