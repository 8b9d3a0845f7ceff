package redisbroker

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/broker/brokertest"
	"github.com/hotline-rt/hotline/internal/testredis"
)

// TestRedisCatchUpDoesNotStall holds one channel's catch-up after the
// node's Pub/Sub link was killed: another channel keeps being delivered
// meanwhile, and the held channel gets everything, in order, once its
// catch-up ends. A catch-up run on the dispatch goroutine would stall the
// other channel and fail the test.
func TestRedisCatchUpDoesNotStall(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	a, err := New(Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	b, err := New(Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	rec := &brokertest.Node{}
	if err := a.Start(rec); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{"slow", "fast"} {
		if err := a.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	opts := broker.PublishOptions{HistorySize: 100}
	count := func(ch string) (n int, last uint64) {
		for _, p := range rec.Received(ch) {
			n, last = n+1, p.Offset
		}
		return n, last
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	brokertest.Pub(t, b, "slow", 1, opts)
	brokertest.Pub(t, b, "fast", 1, opts)
	waitUntil("first publications", func() bool {
		ns, _ := count("slow")
		nf, _ := count("fast")
		return ns == 1 && nf == 1
	})

	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	hook := func(ch string) {
		if ch == "slow" {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
		}
	}
	catchUpHook.Store(&hook)
	defer catchUpHook.Store(nil)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	if err := rc.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	brokertest.Pub(t, b, "slow", 2, opts) // held behind the catch-up: 2, 3
	// Once slow's catch-up has started (the link is back), fast flows
	// while it is held.
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("slow was not caught up after the link came back")
	}
	top := brokertest.Pub(t, b, "fast", 1, opts)
	waitUntil("fast while slow catches up", func() bool {
		_, last := count("fast")
		return last == top.Offset
	})
	if n, _ := count("slow"); n != 1 {
		t.Fatalf("slow got %d before its catch-up ended", n)
	}
	close(release)
	waitUntil("slow caught up", func() bool { n, _ := count("slow"); return n == 3 })
	got := brokertest.Offs(rec.Received("slow"))
	if got != "[1 2 3]" || len(rec.EventList()) != 0 || len(rec.GapList("")) != 0 {
		t.Fatalf("slow got %v, events %v, gaps %v", got, rec.EventList(), rec.GapList(""))
	}
}

// TestRedisBumpEpochOnce: nodes that find the same rolled-back epoch at
// once move the stream once: one call moves it, the others get the epoch
// it moved to, and publications after any of them are in that epoch, from
// offset 1. A node that saw an older epoch changes nothing.
func TestRedisBumpEpochOnce(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	r, err := New(Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	opts := broker.PublishOptions{HistorySize: 10}
	old := brokertest.Pub(t, r, "b1", 3, opts).Epoch
	const n = 4
	type out struct {
		epoch string
		moved bool
		err   error
	}
	outs := make(chan out, n)
	for range n {
		go func() {
			e, m, err := r.bumpEpoch(ctx, "b1", old)
			outs <- out{e, m, err}
		}()
	}
	moved, epochs := 0, map[string]bool{}
	for range n {
		o := <-outs
		if o.err != nil {
			t.Fatal(o.err)
		}
		if o.moved {
			moved++
		}
		epochs[o.epoch] = true
	}
	if moved != 1 || len(epochs) != 1 || epochs[old] || epochs[""] {
		t.Fatalf("moved %d times, epochs %v (old %s)", moved, epochs, old)
	}
	p := brokertest.Pub(t, r, "b1", 1, opts)
	if !epochs[p.Epoch] || p.Offset != 1 {
		t.Fatalf("next publication at %+v, epochs %v", p, epochs)
	}
	if e, m, err := r.bumpEpoch(ctx, "b1", old); err != nil || m || e != p.Epoch {
		t.Fatalf("stale bump: %q %v %v", e, m, err)
	}
	if e, m, err := r.bumpEpoch(ctx, "none", old); err != nil || m || e != "" {
		t.Fatalf("bump of no stream: %q %v %v", e, m, err)
	}
}

// TestRedisRolledBackHeldDropped: publications of the rolled-back epoch
// that arrive live while the node catches up (they took the lost offsets,
// before the stream moved to a new epoch) are dropped after the one gap:
// without that, each would come as a second "epoch changed" gap and the
// old epoch's offsets again.
func TestRedisRolledBackHeldDropped(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	a, err := New(Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	b, err := New(Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	rec := &brokertest.Node{}
	if err := a.Start(rec); err != nil {
		t.Fatal(err)
	}
	if err := a.Subscribe(ctx, "hd"); err != nil {
		t.Fatal(err)
	}
	opts := broker.PublishOptions{HistorySize: 100}
	old := brokertest.Pub(t, b, "hd", 5, opts).Epoch
	brokertest.Eventually(t, "five", func() bool { return len(rec.Received("hd")) == 5 })

	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	hook := func(ch string) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	}
	catchUpHook.Store(&hook)
	defer catchUpHook.Store(nil)
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	if err := rc.HSet(ctx, "hotline:{hd}:meta", "offset", 3).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.LTrim(ctx, "hotline:{hd}:history", 0, 2).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no catch-up after the link came back")
	}
	// Offsets 4, 5, 6 again, in the old epoch, held behind the catch-up.
	for i := range 3 {
		if _, err := b.Publish(ctx, "hd", json.RawMessage(fmt.Sprint(10+i)), nil, opts); err != nil {
			t.Fatal(err)
		}
	}
	brokertest.Eventually(t, "three held", func() bool {
		a.ps.mu.Lock()
		defer a.ps.mu.Unlock()
		return a.ps.held == 3
	})
	released = true
	close(release)
	brokertest.Eventually(t, "a gap", func() bool { return len(rec.GapList("hd")) > 0 })
	for i := range 2 {
		if _, err := b.Publish(ctx, "hd", json.RawMessage(fmt.Sprint(20+i)), nil, opts); err != nil {
			t.Fatal(err)
		}
	}
	brokertest.Eventually(t, "seven", func() bool { return len(rec.Received("hd")) >= 7 })
	got := rec.Received("hd")
	if g := rec.GapList("hd"); len(g) != 1 || g[0].Reason != "epoch changed" || g[0].Before != 5 {
		t.Fatalf("gaps %+v, received %s", g, brokertest.Offs(got))
	}
	if brokertest.Offs(got) != "[1 2 3 4 5 1 2]" || got[5].Epoch == old || string(got[5].Data) != "20" {
		t.Fatalf("received %s, epoch %s (was %s)", brokertest.Offs(got), got[5].Epoch, old)
	}
}
