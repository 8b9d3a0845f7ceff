package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/internal/testredis"
)

// continuity checks what a node received of one channel: each publication
// follows the one before it (same epoch, offset + 1; offset 1 first) or
// comes right after a HandleGap. It returns the silent jumps and the
// duplicates, which must both be 0.
func continuity(pubs []*broker.Publication, gaps []gap) (silent, dups int) {
	told := map[int]bool{}
	for _, g := range gaps {
		told[g.before] = true
	}
	var prev broker.Position
	for i, p := range pubs {
		switch {
		case p.Epoch == prev.Epoch && p.Offset <= prev.Offset:
			dups++
			continue
		case p.Epoch == prev.Epoch && p.Offset == prev.Offset+1,
			prev == (broker.Position{}) && p.Offset == 1,
			told[i]:
		default:
			silent++
		}
		prev = p.Position
	}
	return silent, dups
}

// TestRedisGapWhenHistoryCannotFill cuts a node off while another
// publishes more than history keeps: once back, the node hands over what
// history has and reports a gap before the next publication of the
// channels it cannot fill, never a silent jump.
func TestRedisGapWhenHistoryCannotFill(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	px := newProxy(t, addr)
	a, na := newNode(t, px.addr())
	b, _ := newNode(t, addr)
	small := broker.PublishOptions{HistorySize: 3}
	big := broker.PublishOptions{HistorySize: 100}
	for _, ch := range []string{"small", "big"} {
		if err := a.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	pub(t, b, "small", 2, small)
	pub(t, b, "big", 2, big)
	eventually(t, "live publications", func() bool {
		return len(na.received("small")) == 2 && len(na.received("big")) == 2
	})
	px.cut(true)
	pub(t, b, "small", 10, small) // 3..12, history keeps 10..12
	pub(t, b, "big", 10, big)
	px.cut(false)
	eventually(t, "big caught up", func() bool { return len(na.received("big")) == 12 })
	eventually(t, "the gap of small", func() bool { return len(na.gapList("small")) == 1 })
	pub(t, b, "small", 1, small) // 13: live after the gap
	eventually(t, "small 13", func() bool {
		got := na.received("small")
		return len(got) > 0 && got[len(got)-1].Offset == 13
	})
	syncNode(t, a, na)
	if g := na.gapList("small"); len(g) != 1 || g[0].before != 2 || g[0].reason != "history trimmed" {
		t.Fatalf("gaps of small: %+v", g)
	}
	if got := offs(na.received("small")); got != "[1 2 13]" {
		t.Fatalf("small got %s", got)
	}
	if got := offs(na.received("big")); got != "[1 2 3 4 5 6 7 8 9 10 11 12]" || len(na.gapList("big")) != 0 {
		t.Fatalf("big got %s, gaps %+v", got, na.gapList("big"))
	}
}

// TestRedisGapOnNewEpoch loses a stream's keys under a live subscription
// (as when they expire, or the server is flushed): the next publication
// starts a new epoch, and the handler is told before it.
func TestRedisGapOnNewEpoch(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	a, na := newNode(t, addr)
	if err := a.Subscribe(ctx, "e"); err != nil {
		t.Fatal(err)
	}
	old := pub(t, a, "e", 2, broker.PublishOptions{HistorySize: 10})
	eventually(t, "2 publications", func() bool { return len(na.received("e")) == 2 })
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	if err := rc.Del(ctx, "hotline:meta:e", "hotline:history:e").Err(); err != nil {
		t.Fatal(err)
	}
	p := pub(t, a, "e", 1, broker.PublishOptions{HistorySize: 10})
	if p.Epoch == old.Epoch || p.Offset != 1 {
		t.Fatalf("after losing the keys: %+v", p)
	}
	eventually(t, "the new epoch", func() bool { return len(na.received("e")) == 3 })
	if g := na.gapList("e"); len(g) != 1 || g[0].before != 2 || g[0].reason != "epoch changed" {
		t.Fatalf("gaps %+v", g)
	}
}

// TestRedisHalfOpenLink makes the subscribing node's connections drop
// everything without closing (a half-open link): the Pub/Sub health check
// notices, replaces the connection, and the node gets the publications it
// missed or a gap before the next one.
func TestRedisHalfOpenLink(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	px := newProxy(t, addr)
	a, err := broker.NewRedis(broker.RedisConfig{Addr: px.addr(), Timeout: 500 * time.Millisecond, PingInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	na := &node{}
	if err := a.Start(na); err != nil {
		t.Fatal(err)
	}
	b, _ := newNode(t, addr)
	opts := broker.PublishOptions{HistorySize: 100}
	if err := a.Subscribe(ctx, "h"); err != nil {
		t.Fatal(err)
	}
	pub(t, b, "h", 2, opts)
	eventually(t, "live publications", func() bool { return len(na.received("h")) == 2 })
	px.blackhole()
	pub(t, b, "h", 3, opts) // 3..5: lost on the dead link
	var top broker.Position
	eventually(t, "a publication after the link was replaced", func() bool {
		top = pub(t, b, "h", 1, opts)
		time.Sleep(50 * time.Millisecond)
		got := na.received("h")
		return len(got) > 0 && got[len(got)-1].Position == top
	})
	if silent, dups := continuity(na.received("h"), na.gapList("h")); silent != 0 || dups != 0 {
		t.Fatalf("%d silent jumps, %d duplicates: %s gaps %+v", silent, dups, offs(na.received("h")), na.gapList("h"))
	}
	t.Logf("received %s, gaps %+v", offs(na.received("h")), na.gapList("h"))
}

// gatedNode is a node whose handler blocks on its first publication until
// the gate opens: the broker's queue fills behind it.
type gatedNode struct {
	node
	once sync.Once
	in   chan struct{} // closed when the handler is blocked
	gate chan struct{}
}

func (g *gatedNode) HandlePublication(p *broker.Publication) {
	g.once.Do(func() {
		close(g.in)
		<-g.gate
	})
	g.node.HandlePublication(p)
}

// TestRedisQueueOverflow blocks the handler while publications pour in,
// past a tiny queue: the dropped ones are repaired from history, in
// order, and where history has none the handler is told with a gap.
//
// It runs with a bound on the count (4 messages) and on the bytes (about
// 10 messages' worth).
func TestRedisQueueOverflow(t *testing.T) {
	t.Run("count", func(t *testing.T) { testRedisQueueOverflow(t, broker.RedisConfig{QueueSize: 4}) })
	t.Run("bytes", func(t *testing.T) { testRedisQueueOverflow(t, broker.RedisConfig{QueueBytes: 1200}) })
}

func testRedisQueueOverflow(t *testing.T, cfg broker.RedisConfig) {
	ctx := context.Background()
	addr := testredis.Start(t)
	cfg.Addr = addr
	a, err := broker.NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	b, _ := newNode(t, addr)
	g := &gatedNode{in: make(chan struct{}), gate: make(chan struct{})}
	if err := a.Start(g); err != nil {
		t.Fatal(err)
	}
	defer func() {
		select {
		case <-g.gate:
		default:
			close(g.gate)
		}
	}()
	for _, ch := range []string{"o", "n", "first"} {
		if err := a.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	hist := broker.PublishOptions{HistorySize: 100}
	pub(t, b, "first", 1, hist)
	<-g.in
	topO := pub(t, b, "o", 30, hist)
	topN := pub(t, b, "n", 30, broker.PublishOptions{})
	// The queue holds 4: most of these are dropped. Publish the
	// marker until the reader has certainly seen everything before it.
	pub(t, b, "first", 1, hist)
	close(g.gate)
	eventually(t, "o repaired", func() bool {
		got := g.received("o")
		return len(got) > 0 && got[len(got)-1].Position == topO
	})
	topN = pub(t, b, "n", 1, broker.PublishOptions{})
	eventually(t, "n's next publication", func() bool {
		got := g.received("n")
		return len(got) > 0 && got[len(got)-1].Position == topN
	})
	if got := g.received("o"); len(got) != 30 || len(g.gapList("o")) != 0 {
		t.Fatalf("o: got %s, gaps %+v", offs(got), g.gapList("o"))
	}
	for _, ch := range []string{"o", "n", "first"} {
		if silent, dups := continuity(g.received(ch), g.gapList(ch)); silent != 0 || dups != 0 {
			t.Fatalf("%s: %d silent jumps, %d duplicates: %s gaps %+v", ch, silent, dups, offs(g.received(ch)), g.gapList(ch))
		}
	}
	if len(g.gapList("n")) == 0 {
		t.Fatalf("n: no gap, got %s", offs(g.received("n")))
	}
	t.Logf("n got %d of 31 with gaps %+v", len(g.received("n")), g.gapList("n"))
}

// TestRedisPublishOutcome tells "not published" from "outcome unknown":
// a server that stalls (SIGSTOP) while a publish waits for its answer makes
// the outcome unknown, and a retry with the same idempotency key after it
// resumes returns the first position with exactly one publication; a
// server that is gone before the publish makes a plain error.
func TestRedisPublishOutcome(t *testing.T) {
	ctx := context.Background()
	srv := testredis.StartServer(t)
	b, err := broker.NewRedis(broker.RedisConfig{Addr: srv.Addr, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	opts := broker.PublishOptions{HistorySize: 100, IdempotencyKey: "k", IdempotencyTTL: time.Minute}
	warm := pub(t, b, "o", 1, broker.PublishOptions{HistorySize: 100}) // a pooled connection

	pid := srv.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	defer resume()
	_, err = b.Publish(ctx, "o", json.RawMessage(`"once"`), nil, opts)
	if !errors.Is(err, broker.ErrOutcomeUnknown) {
		t.Fatalf("publish to a stalled server: %v, want ErrOutcomeUnknown", err)
	}
	resume()
	var pos broker.Position
	eventually(t, "a retry after the server resumed", func() bool {
		pos, err = b.Publish(ctx, "o", json.RawMessage(`"once"`), nil, opts)
		return err == nil
	})
	again, err := b.Publish(ctx, "o", json.RawMessage(`"once"`), nil, opts)
	if err != nil || again != pos || pos.Offset != warm.Offset+1 {
		t.Fatalf("retries: %+v then %+v %v (warm %+v)", pos, again, err, warm)
	}
	res, err := b.History(ctx, "o", broker.HistoryRequest{Limit: -1})
	if err != nil || len(res.Publications) != 2 || res.Top != pos {
		t.Fatalf("history %s top %+v %v: want exactly one publication after the warm one", offs(res.Publications), res.Top, err)
	}

	// A server that is gone: not published.
	srv.Stop()
	_, err = b.Publish(ctx, "o", json.RawMessage(`"gone"`), nil, opts)
	if err == nil || errors.Is(err, broker.ErrOutcomeUnknown) {
		t.Fatalf("publish to a stopped server: %v, want a plain error", err)
	}
	// And a broker that never reached it: not published either.
	srv.Restart()
	c, err := broker.NewRedis(broker.RedisConfig{Addr: srv.Addr, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	srv.Stop()
	if _, err := c.Publish(ctx, "o", json.RawMessage(`1`), nil, opts); err == nil || errors.Is(err, broker.ErrOutcomeUnknown) {
		t.Fatalf("publish without a connection: %v, want a plain error", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Publish(cctx, "o", json.RawMessage(`1`), nil, opts); err == nil || errors.Is(err, broker.ErrOutcomeUnknown) {
		t.Fatalf("publish with a done ctx: %v, want a plain error", err)
	}
}

// TestRedisFaults is the broker's fault test: one node publishes steadily
// to three channels (long history, short history, none) while the other
// node's Pub/Sub link is killed (CLIENT KILL TYPE pubsub) several times,
// redis-server is stopped for a moment (SIGSTOP) and then killed (SIGKILL)
// and started again without persistence. The
// subscribing node must see every publication in order or a HandleGap
// before each jump: no silent jump, no duplicate.
//
// It runs twice: with the default queue, and with a queue of 8 in front of
// a handler that takes 200 µs per publication, so that the queue also
// overflows under the faults.
func TestRedisFaults(t *testing.T) {
	t.Run("default queue", func(t *testing.T) { testRedisFaults(t, 0, 0) })
	t.Run("small queue slow handler", func(t *testing.T) { testRedisFaults(t, 8, 200*time.Microsecond) })
}

// slowNode is a node that takes its time with each publication.
type slowNode struct {
	node
	delay time.Duration
}

func (s *slowNode) HandlePublication(p *broker.Publication) {
	time.Sleep(s.delay)
	s.node.HandlePublication(p)
}

func testRedisFaults(t *testing.T, queueSize int, delay time.Duration) {
	ctx := context.Background()
	srv := testredis.StartServer(t)
	a, err := broker.NewRedis(broker.RedisConfig{Addr: srv.Addr, QueueSize: queueSize})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	sn := &slowNode{delay: delay}
	if err := a.Start(sn); err != nil {
		t.Fatal(err)
	}
	na := &sn.node
	b, _ := newNode(t, srv.Addr)
	channels := map[string]broker.PublishOptions{
		"long":  {HistorySize: 10000},
		"short": {HistorySize: 5},
		"none":  {},
	}
	for ch := range channels {
		if err := a.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	acked := map[string][]broker.Position{}
	failed := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for ch, opts := range channels {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				pctx, cancel := context.WithTimeout(ctx, time.Second)
				p, err := b.Publish(pctx, ch, json.RawMessage(fmt.Sprint(i)), nil, opts)
				cancel()
				mu.Lock()
				if err == nil {
					acked[ch] = append(acked[ch], p)
				} else {
					failed++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				} else {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}

	rc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: 3})
	defer rc.Close()
	killPubSub := func() {
		if err := rc.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
			t.Errorf("client kill: %v", err)
		}
	}
	pause := func() { time.Sleep(200 * time.Millisecond) }
	pause()
	for range 3 {
		killPubSub()
		pause()
	}
	// A stall: Redis stopped for a moment, everything waits.
	if err := syscall.Kill(srv.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	pause()
	if err := syscall.Kill(srv.PID(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	pause()
	// A crash: killed by PID and started again on the same port, without
	// persistence, so every stream is lost.
	if err := syscall.Kill(srv.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	srv.Stop() // reaps it
	pause()
	srv.Restart()
	pause()
	pause()
	killPubSub()
	pause()
	close(stop)
	wg.Wait()

	// Everything acknowledged has reached the node, or been told. A
	// final publication that the node dropped (a full queue) and
	// history cannot give back is replaced by another.
	for ch, opts := range channels {
		var last broker.Position
		var sent time.Time
		eventually(t, ch+" final publication", func() bool {
			if last == (broker.Position{}) || time.Since(sent) > 500*time.Millisecond {
				p, err := b.Publish(ctx, ch, json.RawMessage(`"last"`), nil, opts)
				if err != nil {
					return false
				}
				mu.Lock()
				acked[ch] = append(acked[ch], p)
				mu.Unlock()
				last, sent = p, time.Now()
			}
			got := na.received(ch)
			return len(got) > 0 && got[len(got)-1].Position == last
		})
	}
	syncNode(t, a, na)
	var report strings.Builder
	fmt.Fprintf(&report, "%-6s %8s %9s %5s %7s %5s\n", "chan", "acked", "received", "gaps", "silent", "dups")
	for ch := range channels {
		got, gaps := na.received(ch), na.gapList(ch)
		silent, dups := continuity(got, gaps)
		mu.Lock()
		n := len(acked[ch])
		mu.Unlock()
		fmt.Fprintf(&report, "%-6s %8d %9d %5d %7d %5d\n", ch, n, len(got), len(gaps), silent, dups)
		if silent != 0 || dups != 0 {
			t.Errorf("%s: %d silent jumps, %d duplicates", ch, silent, dups)
		}
		if len(gaps) == 0 {
			t.Errorf("%s: no gap although the server lost its streams", ch)
		}
		// Every acknowledged position of the final epoch that is
		// missing was announced: it lies after a gap.
		received := map[broker.Position]bool{}
		for _, p := range got {
			received[p.Position] = true
		}
		missing := 0
		for _, p := range acked[ch] {
			if !received[p] {
				missing++
			}
		}
		fmt.Fprintf(&report, "       missing but told: %d\n", missing)
	}
	mu.Lock()
	fmt.Fprintf(&report, "publishes that failed: %d\n", failed)
	mu.Unlock()
	t.Logf("\n%s", report.String())
}
