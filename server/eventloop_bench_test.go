//go:build linux

package server

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/ws"
)

// BenchmarkEventLoopFanOut compares, in one run, the fan-out of a chat
// line to every subscriber of a room in the default mode and the
// event-loop mode, over loopback: each iteration is one line sent by a
// client and received by all subscribers (history off, as in
// BenchmarkFanOut's chat/history=off case). deliveries/s is the figure to
// compare; the modes run back to back in each size so that the machine's
// load is alike for both.
//
//	go test -run '^$' -bench EventLoopFanOut -benchtime 200x ./server/
func BenchmarkEventLoopFanOut(b *testing.B) {
	if testing.Short() {
		b.Skip("starts servers with thousands of connections")
	}
	for _, subs := range []int{1000, 5000} {
		for _, size := range []int{64, 1 << 10} {
			for _, mode := range []string{"default", "eventloop"} {
				b.Run(fmt.Sprintf("subs=%d/size=%d/mode=%s", subs, size, mode), func(b *testing.B) {
					benchModeFanOut(b, mode == "eventloop", subs, size)
				})
			}
		}
	}
}

func benchModeFanOut(b *testing.B, eventLoop bool, subs, size int) {
	ns := DefaultNamespaces()
	chat := push.ChatNamespace
	chat.HistorySize = 0
	ns["chat"] = chat
	srv, err := New(Config{StatsInterval: -1, Namespaces: ns, EventLoop: eventLoop, MaxUserSessions: -1})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
	})
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/chat/bench"

	conns := make([]*ws.Conn, 0, subs+1)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	var dialErr atomic.Value
	for range subs + 1 {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, _, err := ws.Dial(ctx, url, nil)
			if err != nil {
				dialErr.Store(err)
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	if err, _ := dialErr.Load().(error); err != nil {
		b.Fatal(err)
	}
	pub := conns[subs]
	for srv.Engine().Stats().Sessions != int64(subs+1) {
		time.Sleep(time.Millisecond)
	}

	epoch := time.Now()
	var seq, got atomic.Int64
	done := make(chan struct{}, 1)
	lat := make([]int64, subs)
	var closing atomic.Bool
	var readers sync.WaitGroup
	b.Cleanup(func() {
		closing.Store(true)
		for _, c := range conns {
			c.CloseNow()
		}
		readers.Wait()
	})
	for i, c := range conns {
		readers.Go(func() {
			var buf []byte
			for {
				_, msg, err := c.ReadMessage(context.Background(), buf[:0])
				if err != nil {
					return
				}
				buf = msg
				if c == pub {
					continue
				}
				now := time.Since(epoch).Nanoseconds()
				f := strings.SplitN(string(msg), " ", 3)
				s, _ := strconv.ParseInt(f[0], 10, 64)
				sent, _ := strconv.ParseInt(f[1], 10, 64)
				if s != seq.Load() || len(msg) != size {
					if !closing.Load() {
						panic(fmt.Sprintf("subscriber %d: message %d (%d bytes) in round %d", i, s, len(msg), seq.Load()))
					}
					return
				}
				lat[i] = now - sent
				if got.Add(1) == int64(subs) {
					done <- struct{}{}
				}
			}
		})
	}
	pad := strings.Repeat("x", size)
	publish := func() {
		got.Store(0)
		n := seq.Add(1)
		msg := strconv.FormatInt(n, 10) + " " + strconv.FormatInt(time.Since(epoch).Nanoseconds(), 10) + " "
		msg += pad[:size-len(msg)]
		if err := pub.WriteMessage(context.Background(), ws.MessageText, []byte(msg)); err != nil {
			b.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			b.Fatalf("message %d reached %d of %d", n, got.Load(), subs)
		}
	}
	for range 10 {
		publish()
	}
	var all []int64
	b.SetBytes(int64(size) * int64(subs))
	for b.Loop() {
		publish()
		all = append(all, lat...)
	}
	slices.Sort(all)
	b.ReportMetric(float64(all[len(all)/2])/1e3, "p50-µs")
	b.ReportMetric(float64(all[(len(all)-1)*99/100])/1e3, "p99-µs")
	b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "deliveries/s")
}
