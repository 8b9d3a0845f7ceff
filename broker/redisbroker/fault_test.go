package redisbroker_test

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
	"github.com/hotline-rt/hotline/broker/brokertest"
	"github.com/hotline-rt/hotline/broker/redisbroker"
	"github.com/hotline-rt/hotline/internal/testredis"
)

// continuity checks what a node received of one channel: each publication
// follows the one before it (same epoch, offset + 1; offset 1 first) or
// comes right after a HandleGap. It returns the silent jumps and the
// duplicates, which must both be 0.
func continuity(pubs []*broker.Publication, gaps []brokertest.Gap) (silent, dups int) {
	told := map[int]bool{}
	for _, g := range gaps {
		told[g.Before] = true
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
	brokertest.Pub(t, b, "small", 2, small)
	brokertest.Pub(t, b, "big", 2, big)
	brokertest.Eventually(t, "live publications", func() bool {
		return len(na.Received("small")) == 2 && len(na.Received("big")) == 2
	})
	px.cut(true)
	brokertest.Pub(t, b, "small", 10, small) // 3..12, history keeps 10..12
	brokertest.Pub(t, b, "big", 10, big)
	px.cut(false)
	brokertest.Eventually(t, "big caught up", func() bool { return len(na.Received("big")) == 12 })
	brokertest.Eventually(t, "the gap of small", func() bool { return len(na.GapList("small")) == 1 })
	brokertest.Pub(t, b, "small", 1, small) // 13: live after the gap
	brokertest.Eventually(t, "small 13", func() bool {
		got := na.Received("small")
		return len(got) > 0 && got[len(got)-1].Offset == 13
	})
	brokertest.SyncNode(t, a, na)
	if g := na.GapList("small"); len(g) != 1 || g[0].Before != 2 || g[0].Reason != "history trimmed" {
		t.Fatalf("gaps of small: %+v", g)
	}
	if got := brokertest.Offs(na.Received("small")); got != "[1 2 13]" {
		t.Fatalf("small got %s", got)
	}
	if got := brokertest.Offs(na.Received("big")); got != "[1 2 3 4 5 6 7 8 9 10 11 12]" || len(na.GapList("big")) != 0 {
		t.Fatalf("big got %s, gaps %+v", got, na.GapList("big"))
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
	old := brokertest.Pub(t, a, "e", 2, broker.PublishOptions{HistorySize: 10})
	brokertest.Eventually(t, "2 publications", func() bool { return len(na.Received("e")) == 2 })
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	if err := rc.Del(ctx, "hotline:{e}:meta", "hotline:{e}:history").Err(); err != nil {
		t.Fatal(err)
	}
	p := brokertest.Pub(t, a, "e", 1, broker.PublishOptions{HistorySize: 10})
	if p.Epoch == old.Epoch || p.Offset != 1 {
		t.Fatalf("after losing the keys: %+v", p)
	}
	brokertest.Eventually(t, "the new epoch", func() bool { return len(na.Received("e")) == 3 })
	if g := na.GapList("e"); len(g) != 1 || g[0].Before != 2 || g[0].Reason != "epoch changed" {
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
	a, err := redisbroker.New(redisbroker.Config{Addr: px.addr(), Timeout: 500 * time.Millisecond, PingInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	na := &brokertest.Node{}
	if err := a.Start(na); err != nil {
		t.Fatal(err)
	}
	b, _ := newNode(t, addr)
	opts := broker.PublishOptions{HistorySize: 100}
	if err := a.Subscribe(ctx, "h"); err != nil {
		t.Fatal(err)
	}
	brokertest.Pub(t, b, "h", 2, opts)
	brokertest.Eventually(t, "live publications", func() bool { return len(na.Received("h")) == 2 })
	px.blackhole()
	brokertest.Pub(t, b, "h", 3, opts) // 3..5: lost on the dead link
	var top broker.Position
	brokertest.Eventually(t, "a publication after the link was replaced", func() bool {
		top = brokertest.Pub(t, b, "h", 1, opts)
		time.Sleep(50 * time.Millisecond)
		got := na.Received("h")
		return len(got) > 0 && got[len(got)-1].Position == top
	})
	if silent, dups := continuity(na.Received("h"), na.GapList("h")); silent != 0 || dups != 0 {
		t.Fatalf("%d silent jumps, %d duplicates: %s gaps %+v", silent, dups, brokertest.Offs(na.Received("h")), na.GapList("h"))
	}
	t.Logf("received %s, gaps %+v", brokertest.Offs(na.Received("h")), na.GapList("h"))
}

// gatedNode is a node whose handler blocks on its first publication until
// the gate opens: the broker's queue fills behind it.
type gatedNode struct {
	brokertest.Node
	once sync.Once
	in   chan struct{} // closed when the handler is blocked
	gate chan struct{}
}

func (g *gatedNode) HandlePublication(p *broker.Publication) {
	g.once.Do(func() {
		close(g.in)
		<-g.gate
	})
	g.Node.HandlePublication(p)
}

// TestRedisQueueOverflow blocks the handler while publications pour in,
// past a tiny queue: the dropped ones are repaired from history, in
// order, and where history has none the handler is told with a gap.
//
// It runs with a bound on the count (4 messages) and on the bytes (about
// 10 messages' worth).
func TestRedisQueueOverflow(t *testing.T) {
	t.Run("count", func(t *testing.T) { testRedisQueueOverflow(t, redisbroker.Config{QueueSize: 4}) })
	t.Run("bytes", func(t *testing.T) { testRedisQueueOverflow(t, redisbroker.Config{QueueBytes: 1200}) })
}

func testRedisQueueOverflow(t *testing.T, cfg redisbroker.Config) {
	ctx := context.Background()
	addr := testredis.Start(t)
	cfg.Addr = addr
	a, err := redisbroker.New(cfg)
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
	brokertest.Pub(t, b, "first", 1, hist)
	<-g.in
	topO := brokertest.Pub(t, b, "o", 30, hist)
	topN := brokertest.Pub(t, b, "n", 30, broker.PublishOptions{})
	// The queue holds 4: most of these are dropped. Publish the
	// marker until the reader has certainly seen everything before it.
	brokertest.Pub(t, b, "first", 1, hist)
	close(g.gate)
	brokertest.Eventually(t, "o repaired", func() bool {
		got := g.Received("o")
		return len(got) > 0 && got[len(got)-1].Position == topO
	})
	topN = brokertest.Pub(t, b, "n", 1, broker.PublishOptions{})
	brokertest.Eventually(t, "n's next publication", func() bool {
		got := g.Received("n")
		return len(got) > 0 && got[len(got)-1].Position == topN
	})
	if got := g.Received("o"); len(got) != 30 || len(g.GapList("o")) != 0 {
		t.Fatalf("o: got %s, gaps %+v", brokertest.Offs(got), g.GapList("o"))
	}
	for _, ch := range []string{"o", "n", "first"} {
		if silent, dups := continuity(g.Received(ch), g.GapList(ch)); silent != 0 || dups != 0 {
			t.Fatalf("%s: %d silent jumps, %d duplicates: %s gaps %+v", ch, silent, dups, brokertest.Offs(g.Received(ch)), g.GapList(ch))
		}
	}
	if len(g.GapList("n")) == 0 {
		t.Fatalf("n: no gap, got %s", brokertest.Offs(g.Received("n")))
	}
	t.Logf("n got %d of 31 with gaps %+v", len(g.Received("n")), g.GapList("n"))
}

// TestRedisPublishOutcome tells "not published" from "outcome unknown":
// a server that stalls (SIGSTOP) while a publish waits for its answer makes
// the outcome unknown, and a retry with the same idempotency key after it
// resumes returns the first position with exactly one publication; a
// server that is gone before the publish makes a plain error.
func TestRedisPublishOutcome(t *testing.T) {
	ctx := context.Background()
	srv := testredis.StartServer(t)
	b, err := redisbroker.New(redisbroker.Config{Addr: srv.Addr, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	opts := broker.PublishOptions{HistorySize: 100, IdempotencyKey: "k", IdempotencyTTL: time.Minute}
	warm := brokertest.Pub(t, b, "o", 1, broker.PublishOptions{HistorySize: 100}) // a pooled connection

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
	brokertest.Eventually(t, "a retry after the server resumed", func() bool {
		pos, err = b.Publish(ctx, "o", json.RawMessage(`"once"`), nil, opts)
		return err == nil
	})
	again, err := b.Publish(ctx, "o", json.RawMessage(`"once"`), nil, opts)
	if err != nil || again != pos || pos.Offset != warm.Offset+1 {
		t.Fatalf("retries: %+v then %+v %v (warm %+v)", pos, again, err, warm)
	}
	res, err := b.History(ctx, "o", broker.HistoryRequest{Limit: -1})
	if err != nil || len(res.Publications) != 2 || res.Top != pos {
		t.Fatalf("history %s top %+v %v: want exactly one publication after the warm one", brokertest.Offs(res.Publications), res.Top, err)
	}

	// A server that is gone: not published.
	srv.Stop()
	_, err = b.Publish(ctx, "o", json.RawMessage(`"gone"`), nil, opts)
	if err == nil || errors.Is(err, broker.ErrOutcomeUnknown) {
		t.Fatalf("publish to a stopped server: %v, want a plain error", err)
	}
	// And a broker that never reached it: not published either.
	srv.Restart()
	c, err := redisbroker.New(redisbroker.Config{Addr: srv.Addr, Timeout: 300 * time.Millisecond})
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
	brokertest.Node
	delay time.Duration
}

func (s *slowNode) HandlePublication(p *broker.Publication) {
	time.Sleep(s.delay)
	s.Node.HandlePublication(p)
}

func testRedisFaults(t *testing.T, queueSize int, delay time.Duration) {
	ctx := context.Background()
	srv := testredis.StartServer(t)
	a, err := redisbroker.New(redisbroker.Config{Addr: srv.Addr, QueueSize: queueSize})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	sn := &slowNode{delay: delay}
	if err := a.Start(sn); err != nil {
		t.Fatal(err)
	}
	na := &sn.Node
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
		brokertest.Eventually(t, ch+" final publication", func() bool {
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
			got := na.Received(ch)
			return len(got) > 0 && got[len(got)-1].Position == last
		})
	}
	brokertest.SyncNode(t, a, na)
	var report strings.Builder
	fmt.Fprintf(&report, "%-6s %8s %9s %5s %7s %5s\n", "chan", "acked", "received", "gaps", "silent", "dups")
	for ch := range channels {
		got, gaps := na.Received(ch), na.GapList(ch)
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

// TestRedisRolledBackStream: a stream that lost its latest publications
// (a failover to a replica that had not received them) is moved to a new
// epoch by the nodes that had handed them over: each reports one gap,
// "epoch changed", then hands over the new epoch from its start; and a
// since from a lost publication is answered "epoch changed" afterwards,
// never with the publications that took the lost offsets skipped. Two
// nodes notice at once: the stream moves once (both hand over the new
// publications in the same epoch).
func TestRedisRolledBackStream(t *testing.T) {
	for _, to := range []int{3, 4} {
		t.Run(fmt.Sprint("to ", to), func(t *testing.T) { testRolledBack(t, to) })
	}
}

func testRolledBack(t *testing.T, to int) {
	ctx := context.Background()
	addr := testredis.Start(t)
	a, na := newNode(t, addr)
	a2, na2 := newNode(t, addr)
	b, _ := newNode(t, addr)
	for _, n := range []*redisbroker.Broker{a, a2} {
		if err := n.Subscribe(ctx, "rb"); err != nil {
			t.Fatal(err)
		}
	}
	opts := broker.PublishOptions{HistorySize: 100}
	brokertest.Pub(t, b, "rb", 5, opts)
	brokertest.Eventually(t, "five", func() bool { return len(na.Received("rb")) == 5 && len(na2.Received("rb")) == 5 })
	old := na.Received("rb")[4].Epoch
	// Roll the stream back, as a promoted replica might be.
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	if err := rc.HSet(ctx, "hotline:{rb}:meta", "offset", to).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.LTrim(ctx, "hotline:{rb}:history", 0, int64(to-1)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, "a gap after the link came back", func() bool { return len(na.GapList("rb")) > 0 && len(na2.GapList("rb")) > 0 })
	// More than were lost: the stream grows past the offsets handed over.
	for i := range 3 {
		if _, err := b.Publish(ctx, "rb", json.RawMessage(fmt.Sprint(10+i)), nil, opts); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []*brokertest.Node{na, na2} {
		brokertest.Eventually(t, "the three new ones", func() bool { return len(n.Received("rb")) == 8 })
	}
	// A client that had a lost publication resumes from it: no
	// continuity is claimed.
	for off := uint64(to + 1); off <= 5; off++ {
		since := broker.Position{Epoch: old, Offset: off}
		res, err := b.History(ctx, "rb", broker.HistoryRequest{Since: &since, Limit: -1})
		if !errors.Is(err, broker.ErrEpochChanged) {
			t.Fatalf("since %s/%d: %s, %v, want epoch changed", since.Epoch, off, brokertest.Offs(res.Publications), err)
		}
	}
	for _, n := range []*brokertest.Node{na, na2} {
		got := n.Received("rb")
		if brokertest.Offs(got) != "[1 2 3 4 5 1 2 3]" || string(got[5].Data) != "10" || string(got[7].Data) != "12" {
			t.Fatalf("got %s, data %s %s", brokertest.Offs(got), got[5].Data, got[7].Data)
		}
		if got[5].Epoch == old || got[5].Epoch != na.Received("rb")[5].Epoch || got[7].Epoch != got[5].Epoch {
			t.Fatalf("epochs %s, then %s %s (first node %s)", old, got[5].Epoch, got[7].Epoch, na.Received("rb")[5].Epoch)
		}
		if g := n.GapList("rb"); len(g) != 1 || g[0].Reason != "epoch changed" || g[0].Before != 5 {
			t.Fatalf("gaps %+v", g)
		}
	}
}

// TestRedisRewrittenStream: as TestRedisRolledBackStream, but new
// publications take the lost offsets and go past where the node was before
// its link comes back, so the stream's top is beyond the node's position
// again. The node reads the publication it handed over last once more,
// finds another one at that offset, moves the stream to a new epoch and
// reports one gap, then hands over the new epoch: nothing is skipped
// silently, here or for a client resuming from a lost publication.
func TestRedisRewrittenStream(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	px := newProxy(t, addr)
	a, na := newNode(t, px.addr())
	b, _ := newNode(t, addr)
	if err := a.Subscribe(ctx, "rw"); err != nil {
		t.Fatal(err)
	}
	opts := broker.PublishOptions{HistorySize: 100}
	brokertest.Pub(t, b, "rw", 5, opts)
	brokertest.Eventually(t, "five", func() bool { return len(na.Received("rw")) == 5 })
	old := na.Received("rw")[4].Epoch
	px.cut(true)
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	if err := rc.HSet(ctx, "hotline:{rw}:meta", "offset", 3).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.LTrim(ctx, "hotline:{rw}:history", 0, 2).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // offsets 4, 5, 6 again
		if _, err := b.Publish(ctx, "rw", json.RawMessage(fmt.Sprint(10+i)), nil, opts); err != nil {
			t.Fatal(err)
		}
	}
	px.cut(false)
	brokertest.Eventually(t, "a gap", func() bool { return len(na.GapList("rw")) > 0 })
	for i := range 2 {
		if _, err := b.Publish(ctx, "rw", json.RawMessage(fmt.Sprint(20+i)), nil, opts); err != nil {
			t.Fatal(err)
		}
	}
	brokertest.Eventually(t, "seven", func() bool { return len(na.Received("rw")) >= 7 })
	for _, off := range []uint64{4, 5} {
		since := broker.Position{Epoch: old, Offset: off}
		res, err := b.History(ctx, "rw", broker.HistoryRequest{Since: &since, Limit: -1})
		if !errors.Is(err, broker.ErrEpochChanged) {
			t.Fatalf("since %s/%d: %s, %v, want epoch changed", since.Epoch, off, brokertest.Offs(res.Publications), err)
		}
	}
	got := na.Received("rw")
	gaps := na.GapList("rw")
	if len(gaps) != 1 || gaps[0].Reason != "epoch changed" || gaps[0].Before != 5 {
		t.Fatalf("gaps %+v, received %s", gaps, brokertest.Offs(got))
	}
	if brokertest.Offs(got) != "[1 2 3 4 5 1 2]" || got[5].Epoch == old || string(got[5].Data) != "20" || string(got[6].Data) != "21" {
		t.Fatalf("received %s, epoch %s (was %s)", brokertest.Offs(got), got[5].Epoch, old)
	}
}

// TestRedisRewrittenBeforeAnyDelivered: as TestRedisRewrittenStream, but
// the node subscribed after the publications that get lost and handed
// none over: it saw them only as the stream's top when it subscribed (a
// client may have got them from history there). It checks that top
// publication too, so the rewrite is found and the stream moved.
func TestRedisRewrittenBeforeAnyDelivered(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	px := newProxy(t, addr)
	a, na := newNode(t, px.addr())
	b, _ := newNode(t, addr)
	opts := broker.PublishOptions{HistorySize: 100}
	old := brokertest.Pub(t, b, "rb0", 5, opts).Epoch
	if err := a.Subscribe(ctx, "rb0"); err != nil {
		t.Fatal(err)
	}
	px.cut(true)
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	if err := rc.HSet(ctx, "hotline:{rb0}:meta", "offset", 3).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.LTrim(ctx, "hotline:{rb0}:history", 0, 2).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // offsets 4, 5, 6 again
		if _, err := b.Publish(ctx, "rb0", json.RawMessage(fmt.Sprint(10+i)), nil, opts); err != nil {
			t.Fatal(err)
		}
	}
	px.cut(false)
	brokertest.Eventually(t, "a gap", func() bool { return len(na.GapList("rb0")) > 0 || len(na.Received("rb0")) > 0 })
	if _, err := b.Publish(ctx, "rb0", json.RawMessage("20"), nil, opts); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, "the new one", func() bool {
		got := na.Received("rb0")
		return len(got) > 0 && string(got[len(got)-1].Data) == "20"
	})
	since := broker.Position{Epoch: old, Offset: 5}
	if res, err := b.History(ctx, "rb0", broker.HistoryRequest{Since: &since, Limit: -1}); !errors.Is(err, broker.ErrEpochChanged) {
		t.Fatalf("since %s/5: %s, %v, want epoch changed", old, brokertest.Offs(res.Publications), err)
	}
	got := na.Received("rb0")
	if g := na.GapList("rb0"); len(g) != 1 || g[0].Reason != "epoch changed" || g[0].Before != 0 {
		t.Fatalf("gaps %+v, received %s", g, brokertest.Offs(got))
	}
	if brokertest.Offs(got) != "[1]" || got[0].Epoch == old {
		t.Fatalf("received %s, epoch %s (was %s)", brokertest.Offs(got), got[0].Epoch, old)
	}
}
