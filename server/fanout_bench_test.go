package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/ws"
)

// BenchmarkFanOut compares, in one run, a broadcast through the push engine
// with the bare library fan-out, over real loopback sockets:
//
//   - endpoint=broadcast: /broadcast, where the reading goroutine of the
//     sender writes one prepared frame to every connection in turn;
//   - endpoint=chat: /chat/bench, where a chat line goes through the
//     engine (publish to the broker, history if on, fan-out into one queue
//     per session) and each connection's writer goroutine sends it.
//
// Each iteration publishes one text message, stamped with a sequence number
// and the send time and padded to size, and waits until every subscriber
// has it. The metrics are over every delivery of the timed iterations:
// p50, p99 and max latency from send to receive, and deliveries per second.
// ns/op is one publication reaching every subscriber; B/s counts the
// payload delivered. allocs/op counts the whole process, the subscribers'
// reads included; TestFanOutAllocsPerRecipient counts the server alone.
//
// Each subscriber costs two file descriptors in this process (client and
// server side) and the open-files limit here is about 20,000, so 5,000
// subscribers (10,000 fds) is the largest case; the 10,000 would
// need 20,000 and is extrapolated from the 1,000 and 5,000 cases.
//
// Run it with a fixed count, for instance
//
//	go test -run '^$' -bench FanOut -benchtime 200x ./server/
func BenchmarkFanOut(b *testing.B) {
	if testing.Short() {
		b.Skip("starts servers with thousands of connections")
	}
	for _, subs := range []int{1000, 5000} {
		for _, size := range []int{64, 1 << 10} {
			for _, v := range []struct {
				endpoint, history string
			}{
				{"broadcast", ""},
				{"chat", "on"},
				{"chat", "off"},
			} {
				name := fmt.Sprintf("endpoint=%s/subs=%d/size=%d", v.endpoint, subs, size)
				if v.history != "" {
					name += "/history=" + v.history
				}
				b.Run(name, func(b *testing.B) {
					benchFanOut(b, v.endpoint, v.history == "on", subs, size, 1)
				})
			}
		}
	}
}

// BenchmarkFanOutBurst is BenchmarkFanOut with bursts: each iteration
// publishes burst messages back to back and waits until every subscriber
// has the last one (each checks that it gets them all, in order). Queued
// messages pile up per connection, as at saturation: the writer sends
// what is queued for a connection in one write. ns/op is one burst; the
// latency metrics are of the burst's last message.
//
//	go test -run '^$' -bench FanOutBurst -benchtime 50x ./server/
func BenchmarkFanOutBurst(b *testing.B) {
	if testing.Short() {
		b.Skip("starts servers with thousands of connections")
	}
	for _, subs := range []int{1000, 5000} {
		for _, burst := range []int{16} {
			for _, endpoint := range []string{"chat"} {
				name := fmt.Sprintf("endpoint=%s/subs=%d/size=64/burst=%d", endpoint, subs, burst)
				b.Run(name, func(b *testing.B) {
					benchFanOut(b, endpoint, false, subs, 64, burst)
				})
			}
		}
	}
}

// fanOutTimeout is the wait for one publication to reach every subscriber
// before the benchmark or test fails.
const fanOutTimeout = 10 * time.Second

func benchFanOut(b *testing.B, endpoint string, history bool, subs, size, burst int) {
	srv, base := startFanOut(b, history)
	path := "/broadcast"
	if endpoint == "chat" {
		path = "/chat/bench"
	}
	url := "ws" + strings.TrimPrefix(base, "http") + path

	conns := dialMany(b, subs, func(ctx context.Context) (*ws.Conn, error) {
		c, _, err := ws.Dial(ctx, url, nil)
		return c, err
	})
	pub, _, err := ws.Dial(context.Background(), url, nil)
	if err != nil {
		b.Fatal(err)
	}
	conns = append(conns, pub)
	waitServed(b, srv, endpoint, subs+1)

	// Times are nanoseconds since epoch, on the monotonic clock.
	epoch := time.Now()
	r := newRounds(subs)
	var readers sync.WaitGroup
	b.Cleanup(func() {
		r.closing.Store(true)
		for _, c := range conns {
			c.CloseNow()
		}
		readers.Wait()
	})
	for i, c := range conns[:subs] {
		readers.Go(func() {
			var buf []byte
			next := int64(1) // the sequence number expected next
			for {
				_, msg, err := c.ReadMessage(context.Background(), buf[:0])
				if err != nil {
					r.lost(fmt.Sprintf("subscriber %d: %v", i, err))
					return
				}
				buf = msg
				now := time.Since(epoch).Nanoseconds()
				seq, sent, ok := parseStamp(msg)
				switch {
				case !ok || len(msg) != size:
					r.lost(fmt.Sprintf("subscriber %d: unexpected %d-byte message %.40q", i, len(msg), msg))
				case seq != next:
					r.lost(fmt.Sprintf("subscriber %d: got message %d, want %d (round %d)", i, seq, next, r.seq.Load()))
				case seq == r.seq.Load():
					next++
					r.lat[i] = now - sent
					r.arrived()
				default:
					next++
				}
			}
		})
	}
	readers.Go(func() { // the sender gets its own messages too: drop them
		var buf []byte
		for {
			_, msg, err := pub.ReadMessage(context.Background(), buf[:0])
			if err != nil {
				return
			}
			buf = msg
		}
	})

	pad := []byte(strings.Repeat("x", size))
	msg := make([]byte, 0, size)
	publish := func() {
		first := r.seq.Load() + 1
		r.got.Store(0)
		for seq := first; seq < first+int64(burst); seq++ {
			msg = strconv.AppendInt(msg[:0], seq, 10)
			msg = append(msg, ' ')
			msg = strconv.AppendInt(msg, time.Since(epoch).Nanoseconds(), 10)
			msg = append(msg, ' ')
			msg = append(msg, pad[:size-len(msg)]...)
			if seq == first+int64(burst)-1 {
				r.seq.Store(seq) // the round's message: the last of the burst
			}
			if err := pub.WriteMessage(context.Background(), ws.MessageText, msg); err != nil {
				b.Fatalf("publish %d: %v", seq, err)
			}
		}
		if err := r.wait(); err != nil {
			b.Fatal(err)
		}
	}
	for range 10 { // grow buffers and queues to their working size
		publish()
	}
	var all []int64
	b.ReportAllocs()
	b.SetBytes(int64(size) * int64(subs))
	for b.Loop() {
		publish()
		if len(all)+subs > cap(all) {
			// Not the server's allocation: keep it out of the counts.
			b.StopTimer()
			all = slices.Grow(all, len(all)+subs)
			b.StartTimer()
		}
		all = append(all, r.lat...)
	}
	slices.Sort(all)
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	b.ReportMetric(us(all[len(all)/2]), "p50-µs")
	b.ReportMetric(us(all[(len(all)-1)*99/100]), "p99-µs")
	b.ReportMetric(us(all[len(all)-1]), "max-µs")
	b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "deliveries/s")
}

// TestFanOutAllocsPerRecipient checks that the whole /chat path, over real
// sockets, allocates nothing on the server per recipient of a message:
// the allocations per publication must be the same with 100 and with 1,000
// subscribers. push's TestFanOutAllocsPerRecipient checks the engine's
// queueing alone; this one adds the broker, the transport's writer loop,
// the latency metrics and the ws library's write path.
//
// The subscribers are raw TCP connections that read each frame into a
// fixed buffer, so they allocate nothing: what runtime.MemStats counts is
// the server's work plus a constant for the publisher, a ws client.
func TestFanOutAllocsPerRecipient(t *testing.T) {
	if raceBuild() {
		t.Skip("the race detector allocates on its own (and sync.Pool drops items at random under it)")
	}
	small, large := chatAllocs(t, 100), chatAllocs(t, 1000)
	perRecipient := (large - small) / 900
	t.Logf("allocs per message: %.2f with 100 subscribers, %.2f with 1000: %.4f per recipient", small, large, perRecipient)
	// Goroutines outside the fan-out (timers, the runtime, the GC
	// emptying sync.Pools that then refill once per P) may allocate
	// during the measurement; they stay far below one allocation per 100
	// deliveries. One per recipient would be 900 more per message.
	if perRecipient > 0.01 {
		t.Errorf("%.4f allocations per recipient per message (%.2f with 100 subscribers, %.2f with 1000)", perRecipient, small, large)
	}
}

// chatAllocs returns the heap allocations of the process per chat message
// published to subs raw subscribers of /chat/bench, with the default "chat"
// namespace (history, presence, join and leave events).
func chatAllocs(t *testing.T, subs int) float64 {
	const size, warm, measured = 64, 5, 30
	srv, base := startFanOut(t, true)
	addr := strings.TrimPrefix(base, "http://")
	conns := dialMany(t, subs, func(ctx context.Context) (net.Conn, error) {
		return dialRaw(ctx, addr, "/chat/bench")
	})
	pub, _, err := ws.Dial(context.Background(), "ws://"+addr+"/chat/bench", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitServed(t, srv, "chat", subs+1)

	r := newRounds(subs)
	var readers sync.WaitGroup
	t.Cleanup(func() {
		r.closing.Store(true)
		pub.CloseNow()
		for _, c := range conns {
			c.Close()
		}
		readers.Wait()
	})
	// A chat message of size < 126 bytes comes as an unmasked final text
	// frame with a two-byte header.
	want := [2]byte{0x81, size}
	for i, c := range conns {
		readers.Go(func() {
			var frame [2 + size]byte
			for {
				if _, err := io.ReadFull(c, frame[:]); err != nil {
					r.lost(fmt.Sprintf("subscriber %d: %v", i, err))
					return
				}
				if [2]byte(frame[:2]) != want {
					r.lost(fmt.Sprintf("subscriber %d: frame header % x, want % x", i, frame[:2], want))
					return
				}
				r.arrived()
			}
		})
	}
	readers.Go(func() {
		var buf []byte
		for {
			_, msg, err := pub.ReadMessage(context.Background(), buf[:0])
			if err != nil {
				return
			}
			buf = msg
		}
	})

	msg := []byte(strings.Repeat("x", size))
	publish := func() {
		r.next()
		if err := pub.WriteMessage(context.Background(), ws.MessageText, msg); err != nil {
			t.Fatal(err)
		}
		if err := r.wait(); err != nil {
			t.Fatal(err)
		}
	}
	for range warm {
		publish()
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range measured {
		publish()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / measured
}

// startFanOut starts a development-mode server on loopback, with history
// on ("chat" is push.ChatNamespace) or off (the same with HistorySize 0),
// and returns its base URL. Cleanup shuts it down.
func startFanOut(tb testing.TB, history bool) (*Server, string) {
	tb.Helper()
	ns := DefaultNamespaces()
	chat := push.ChatNamespace
	if !history {
		chat.HistorySize = 0
	}
	ns["chat"] = chat
	srv, err := New(Config{StatsInterval: -1, Namespaces: ns})
	if err != nil {
		tb.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Error(err)
		}
		hs.Close()
	})
	return srv, hs.URL
}

// dialMany opens n connections, a few at a time so as not to overflow the
// listen backlog.
func dialMany[C any](tb testing.TB, n int, dial func(context.Context) (C, error)) []C {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conns := make([]C, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conns[i], errs[i] = dial(ctx)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			tb.Fatalf("dial subscriber %d of %d: %v", i, n, err)
		}
	}
	return conns
}

// dialRaw opens a WebSocket connection by hand and returns the bare TCP
// connection, to read frames without a library.
func dialRaw(ctx context.Context, addr, path string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	switch {
	case err != nil:
	case resp.StatusCode != http.StatusSwitchingProtocols:
		err = fmt.Errorf("handshake: %s", resp.Status)
	case br.Buffered() > 0:
		err = fmt.Errorf("handshake: %d bytes after the response", br.Buffered())
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// waitServed waits until the endpoint serves n connections: the server
// adds a connection to /broadcast's set, or starts serving a /chat
// session, only after the client's handshake has returned.
func waitServed(tb testing.TB, srv *Server, endpoint string, n int) {
	tb.Helper()
	served := srv.websocket.Len
	if endpoint == "broadcast" {
		served = srv.broadcast.Len
	}
	deadline := time.Now().Add(30 * time.Second)
	for served() != n {
		if time.Now().After(deadline) {
			tb.Fatalf("%s serves %d connections, want %d", endpoint, served(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// rounds synchronizes the publisher with the subscribers: one message is
// in flight at a time, and wait returns when every subscriber has it.
type rounds struct {
	subs    int
	seq     atomic.Int64 // the message in flight
	got     atomic.Int64 // subscribers that have it
	done    chan struct{}
	lat     []int64 // of the message in flight, by subscriber, in ns
	closing atomic.Bool
	timer   *time.Timer

	mu      sync.Mutex
	problem string // the first loss or unexpected message
	failed  chan struct{}
}

func newRounds(subs int) *rounds {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &rounds{
		subs:   subs,
		done:   make(chan struct{}, 1),
		lat:    make([]int64, subs),
		timer:  t,
		failed: make(chan struct{}),
	}
}

// next starts a round and returns its message's sequence number.
func (r *rounds) next() int64 {
	r.got.Store(0)
	return r.seq.Add(1)
}

// arrived records that one more subscriber has the message.
func (r *rounds) arrived() {
	if r.got.Add(1) == int64(r.subs) {
		r.done <- struct{}{}
	}
}

// lost records a problem, unless the test is closing the connections.
func (r *rounds) lost(problem string) {
	if r.closing.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.problem == "" {
		r.problem = problem
		close(r.failed)
	}
}

// wait waits until every subscriber has the message in flight.
func (r *rounds) wait() error {
	r.timer.Reset(fanOutTimeout)
	defer r.timer.Stop()
	select {
	case <-r.done:
		return nil
	case <-r.failed:
	case <-r.timer.C:
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Errorf("message %d reached %d of %d subscribers in %v; first problem: %q",
		r.seq.Load(), r.got.Load(), r.subs, fanOutTimeout, r.problem)
}

// parseStamp reads "SEQ NANOS " from the start of a message, without
// allocating.
func parseStamp(msg []byte) (seq, sent int64, ok bool) {
	num := func() (int64, bool) {
		i := 0
		var v int64
		for i < len(msg) && '0' <= msg[i] && msg[i] <= '9' {
			v = v*10 + int64(msg[i]-'0')
			i++
		}
		if i == 0 || i == len(msg) || msg[i] != ' ' {
			return 0, false
		}
		msg = msg[i+1:]
		return v, true
	}
	seq, ok = num()
	if !ok {
		return 0, 0, false
	}
	sent, ok = num()
	return seq, sent, ok
}

// raceBuild reports whether the test binary runs with the race detector.
func raceBuild() bool {
	info, ok := debug.ReadBuildInfo()
	return ok && slices.ContainsFunc(info.Settings, func(s debug.BuildSetting) bool {
		return s.Key == "-race" && s.Value == "true"
	})
}

// BenchmarkFanOutCPU measures what a delivery costs the server in CPU
// time and write system calls rather than wall time, which a shared
// machine makes noisy: subs raw TCP subscribers of /chat/bench read what
// arrives in 64 KiB reads and count frame bytes (so they cost little), a
// ws client publishes burst chat messages of 64 bytes back to back, and
// each iteration waits until every subscriber has the whole burst.
// cpu-ns/delivery is the process's user+system CPU time (getrusage, the
// cheap readers included) per delivery; writes/delivery is the process's
// write system calls (/proc/self/io syscw, the publisher's few included)
// per delivery.
//
//	go test -run '^$' -bench FanOutCPU -benchtime 20x ./server/
func BenchmarkFanOutCPU(b *testing.B) {
	if testing.Short() {
		b.Skip("starts servers with thousands of connections")
	}
	for _, subs := range []int{1000} {
		for _, burst := range []int{1, 16, 128} {
			b.Run(fmt.Sprintf("subs=%d/size=64/burst=%d", subs, burst), func(b *testing.B) {
				benchFanOutCPU(b, subs, burst)
			})
		}
	}
}

func benchFanOutCPU(b *testing.B, subs, burst int) {
	const size = 64
	const frame = 2 + size // a final text frame with a 7-bit length
	srv, base := startFanOut(b, false)
	addr := strings.TrimPrefix(base, "http://")
	conns := dialMany(b, subs, func(ctx context.Context) (net.Conn, error) {
		return dialRaw(ctx, addr, "/chat/bench")
	})
	pub, _, err := ws.Dial(context.Background(), "ws://"+addr+"/chat/bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	waitServed(b, srv, "chat", subs+1)

	var got atomic.Int64 // subscribers that have the whole burst
	done := make(chan struct{}, 1)
	var want atomic.Int64 // bytes each subscriber must have read by the end of this burst
	var readers sync.WaitGroup
	var closing atomic.Bool
	b.Cleanup(func() {
		closing.Store(true)
		pub.CloseNow()
		for _, c := range conns {
			c.Close()
		}
		readers.Wait()
	})
	for _, c := range conns {
		readers.Go(func() {
			buf := make([]byte, 64<<10)
			var n int64
			for {
				m, err := c.Read(buf)
				if err != nil {
					return
				}
				n += int64(m)
				if n == want.Load() && got.Add(1) == int64(subs) {
					done <- struct{}{}
				}
			}
		})
	}
	readers.Go(func() {
		var buf []byte
		for {
			_, msg, err := pub.ReadMessage(context.Background(), buf[:0])
			if err != nil {
				return
			}
			buf = msg
		}
	})
	msg := []byte(strings.Repeat("x", size))
	timer := time.NewTimer(time.Hour)
	publish := func() {
		got.Store(0)
		want.Add(int64(burst * frame))
		for range burst {
			if err := pub.WriteMessage(context.Background(), ws.MessageText, msg); err != nil {
				b.Fatal(err)
			}
		}
		timer.Reset(fanOutTimeout)
		select {
		case <-done:
		case <-timer.C:
			b.Fatalf("%d of %d subscribers got the burst in %v", got.Load(), subs, fanOutTimeout)
		}
	}
	for range 3 {
		publish()
	}
	cpu0, w0 := processCPU(), processWrites()
	for b.Loop() {
		publish()
	}
	deliveries := float64(b.N * burst * subs)
	b.ReportMetric(float64(processCPU()-cpu0)/deliveries, "cpu-ns/delivery")
	b.ReportMetric(float64(processWrites()-w0)/deliveries, "writes/delivery")
	b.ReportMetric(deliveries/b.Elapsed().Seconds(), "deliveries/s")
}

// processCPU returns the process's user and system CPU time in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// processWrites returns the process's write system calls so far (Linux).
func processWrites() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
