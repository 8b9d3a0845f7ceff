package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/ws"
)

// BenchmarkFanOut compares the push engine's fan-out with the bare library
// fan-out of the same messages, over loopback sockets:
//
//   - endpoint=broadcast: /broadcast, where the server reads the message,
//     encodes the frame once and writes it to every connection in turn;
//   - endpoint=chat: /chat/{room}, where the message is published to the
//     room channel chat:{room} (into its history when history=on), queued
//     for every member and written by each connection's writer goroutine.
//     Presence and join/leave are off, so only the fan-out is measured.
//
// Each iteration the publisher sends one text message holding a sequence
// number and the send time, padded with 'x' to size, and waits until every
// subscriber has it. The latency metrics (p50, p99, max) are from send to
// receive over every delivery of the timed iterations; deliveries/s is all
// of them over the timed duration. allocs/op counts the whole process, the
// subscribers' reads included.
//
// Each subscriber costs 2 file descriptors in this process (the client end
// and the server end), and the open-files limit here is about 20,000
// (ulimit -n), so 4,000 subscribers is the largest case: 10,000 subscribers
// (20,000 fds) is extrapolated from the 1,000 and 4,000 cases.
//
// Run it with a fixed count:
//
//	go test -run '^$' -bench FanOut -benchtime 100x -timeout 20m ./server/
func BenchmarkFanOut(b *testing.B) {
	endpoints := []struct {
		name string
		path string
		ns   map[string]push.NamespaceOptions
	}{
		{name: "endpoint=broadcast", path: "/broadcast"},
		{
			name: "endpoint=chat/history=on",
			path: "/chat/fanout",
			ns: map[string]push.NamespaceOptions{
				"chat": {HistorySize: 100, HistoryTTL: time.Minute, ClientPublish: true},
			},
		},
		{
			name: "endpoint=chat/history=off",
			path: "/chat/fanout",
			ns: map[string]push.NamespaceOptions{
				"chat": {Presence: false, ClientPublish: true},
			},
		},
	}
	for _, ep := range endpoints {
		b.Run(ep.name, func(b *testing.B) {
			for _, subs := range []int{1000, 4000} {
				b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) {
					for _, size := range []int{64, 1024} {
						b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
							benchFanOut(b, ep.path, ep.ns, subs, size)
						})
					}
				})
			}
		})
	}
}

// fanOutSub is one subscriber: its connection and the latency of each
// delivery it got, written only by its reading goroutine.
type fanOutSub struct {
	c   *ws.Conn
	lat []time.Duration
}

// fanOutWait is what the subscribers count down for the iteration under
// way: remaining reaches zero when the last of them has the message.
type fanOutWait struct {
	seq       atomic.Int64
	remaining atomic.Int64
	done      chan struct{}
}

func benchFanOut(b *testing.B, path string, ns map[string]push.NamespaceOptions, subs, size int) {
	b.StopTimer()
	b.ReportAllocs()

	// Setup: the server, the subscribers and the publisher.
	srv, err := New(Config{
		StatsInterval: -1,
		ReadLimit:     1 << 20,
		QueueMessages: 4096,
		Namespaces:    ns,
	})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler()) // listens on 127.0.0.1
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			b.Log(err)
		}
		ts.Close()
	}()
	target := "ws" + ts.URL[len("http"):] + path

	all := make([]*fanOutSub, subs)
	var readers sync.WaitGroup
	var pub *ws.Conn
	// Teardown: close every client and wait for the readers. Registered
	// before the dials so that a failure half-way still closes them.
	defer func() {
		b.StopTimer()
		if pub != nil {
			pub.CloseNow()
		}
		for _, s := range all {
			if s != nil {
				s.c.CloseNow()
			}
		}
		readers.Wait()
	}()

	if err := fanOutDialAll(target, all, b.N); err != nil {
		b.Fatal(err)
	}
	pub, err = fanOutDial(target)
	if err != nil {
		b.Fatal(err)
	}
	// /broadcast adds a connection to its set just after the handshake:
	// wait until it has all of them.
	if path == "/broadcast" {
		deadline := time.Now().Add(10 * time.Second)
		for srv.broadcast.Len() < subs+1 {
			if time.Now().After(deadline) {
				b.Fatalf("/broadcast has %d of %d connections", srv.broadcast.Len(), subs+1)
			}
			time.Sleep(time.Millisecond)
		}
	}

	w := &fanOutWait{done: make(chan struct{}, 1)}
	for _, s := range all {
		readers.Add(1)
		go func() {
			defer readers.Done()
			fanOutRead(s, w)
		}()
	}
	// The publisher gets its own messages back (the chat room includes
	// the sender, /broadcast every connection): read and drop them.
	readers.Add(1)
	go func() {
		defer readers.Done()
		var buf []byte
		for {
			_, msg, err := pub.ReadMessage(context.Background(), buf[:0])
			if err != nil {
				return
			}
			buf = msg
		}
	}()

	msg := make([]byte, 0, size+32)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	send := func(seq int64) {
		w.seq.Store(seq)
		w.remaining.Store(int64(subs))
		msg = strconv.AppendInt(msg[:0], seq, 10)
		msg = append(msg, ' ')
		msg = strconv.AppendInt(msg, time.Now().UnixNano(), 10)
		msg = append(msg, ' ')
		for len(msg) < size {
			msg = append(msg, 'x')
		}
		if err := pub.WriteMessage(context.Background(), ws.OpText, msg); err != nil {
			b.Fatalf("publish %d: %v", seq, err)
		}
		timer.Reset(10 * time.Second)
		select {
		case <-w.done:
			timer.Stop()
		case <-timer.C:
			b.Fatalf("message %d: %d of %d subscribers got it within 10s",
				seq, int64(subs)-w.remaining.Load(), subs)
		}
	}

	// One untimed message, sequence 0, which is not recorded: it warms
	// the connections, the queues and the room channel.
	send(0)

	b.StartTimer()
	for i := range b.N {
		send(int64(i + 1))
	}
	b.StopTimer()
	elapsed := b.Elapsed()

	// Teardown happens in the deferred calls; the readers must have
	// stopped before their slices are read.
	pub.CloseNow()
	for _, s := range all {
		s.c.CloseNow()
	}
	readers.Wait()

	lat := make([]time.Duration, 0, subs*b.N)
	for _, s := range all {
		lat = append(lat, s.lat...)
	}
	if len(lat) != subs*b.N {
		b.Fatalf("%d deliveries recorded, want %d", len(lat), subs*b.N)
	}
	slices.Sort(lat)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(us(lat[len(lat)/2]), "p50-µs")
	b.ReportMetric(us(lat[min(len(lat)-1, len(lat)*99/100)]), "p99-µs")
	b.ReportMetric(us(lat[len(lat)-1]), "max-µs")
	if elapsed > 0 {
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "deliveries/s")
	}
}

// fanOutRead reads s's messages until its connection closes, recording the
// latency of every timed one and counting down w.
func fanOutRead(s *fanOutSub, w *fanOutWait) {
	var buf []byte
	for {
		_, msg, err := s.c.ReadMessage(context.Background(), buf[:0])
		now := time.Now()
		if err != nil {
			return
		}
		buf = msg
		seq, sent, ok := fanOutParse(msg)
		if !ok || seq != w.seq.Load() {
			continue
		}
		if seq > 0 {
			s.lat = append(s.lat, now.Sub(time.Unix(0, sent)))
		}
		if w.remaining.Add(-1) == 0 {
			w.done <- struct{}{}
		}
	}
}

// fanOutParse reads "seq sendtime xxx…".
func fanOutParse(msg []byte) (seq, sent int64, ok bool) {
	i := bytes.IndexByte(msg, ' ')
	if i < 0 {
		return 0, 0, false
	}
	j := bytes.IndexByte(msg[i+1:], ' ')
	if j < 0 {
		return 0, 0, false
	}
	seq, err1 := strconv.ParseInt(string(msg[:i]), 10, 64)
	sent, err2 := strconv.ParseInt(string(msg[i+1:i+1+j]), 10, 64)
	return seq, sent, err1 == nil && err2 == nil
}

// fanOutDial opens one client connection, speaking chat on /chat (no
// subprotocol), never through a proxy.
func fanOutDial(target string) (*ws.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := ws.Dial(ctx, target, &ws.DialOptions{
		Proxy: func(*http.Request) (*url.URL, error) { return nil, nil },
	})
	return c, err
}

// fanOutDialAll fills all with subscribers, dialed by 32 goroutines, each
// with room for n latencies.
func fanOutDialAll(target string, all []*fanOutSub, n int) error {
	const workers = 32
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(all) {
					return
				}
				c, err := fanOutDial(target)
				if err != nil {
					errs[k] = fmt.Errorf("subscriber %d: %w", i, err)
					return
				}
				all[i] = &fanOutSub{c: c, lat: make([]time.Duration, 0, n)}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
