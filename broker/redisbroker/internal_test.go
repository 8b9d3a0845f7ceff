package redisbroker

import (
	"context"

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
