package push

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/broker/redisbroker"
	"github.com/hotline-rt/hotline/internal/testredis"
	"github.com/hotline-rt/hotline/superchat"
)

// TestSubscribeStormRedis: 2,000 sessions subscribe to one channel at once
// on a node whose Redis pool has 4 connections; half ask for the top, half
// recover from one position. Every subscribe succeeds, the node reads
// Redis about once per batch of subscribers (not once each), and every
// subscriber then gets the next publications in order with no gap notice.
// Without the shared read (sharedHistory replaced by e.history) the node
// made 2,000 reads and some subscribes failed on the pool's timeout
// (checked: the test fails).
func TestSubscribeStormRedis(t *testing.T) {
	addr := testredis.Start(t)
	b, err := redisbroker.New(redisbroker.Config{Addr: addr, PoolSize: 4, PoolTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	ns := map[string]NamespaceOptions{"news": {HistorySize: 100}}
	e := newEngine(t, Config{Broker: b, Namespaces: ns})
	ctx := context.Background()
	var top broker.Position
	for i := range 5 {
		if top, err = e.Publish(ctx, PublishRequest{Channel: "news:x", Data: json.RawMessage(fmt.Sprint(i + 1))}); err != nil {
			t.Fatal(err)
		}
	}

	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	if err := rc.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	const n = 2000
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = connect(t, e, ProtocolSuperchat, fmt.Sprint("u", i))
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range cs {
		msg := `{"id":1,"op":"subscribe","channel":"news:x"}`
		if i%2 == 1 {
			msg = fmt.Sprintf(`{"id":1,"op":"subscribe","channel":"news:x","since":{"epoch":%q,"offset":2}}`, top.Epoch)
		}
		wg.Go(func() {
			<-start
			if err := c.s.Handle(ctx, []byte(msg)); err != nil {
				t.Errorf("handle: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	reads := e.Stats().SubscribeReads
	calls := scriptCalls(t, rc)

	failed := 0
	for i, c := range cs {
		res, pushes := c.subscribeReply()
		if res.Error != nil {
			failed++
			if failed <= 3 {
				t.Errorf("subscriber %d: %+v", i, res.Error)
			}
			continue
		}
		r := result[subResult](t, res)
		if r.Epoch != top.Epoch || r.Offset != top.Offset {
			t.Fatalf("subscriber %d: top %s/%d, want %+v", i, r.Epoch, r.Offset, top)
		}
		want := 0
		if i%2 == 1 {
			want = 3 // 3, 4, 5 replayed
			if r.Recovered == nil || !*r.Recovered {
				t.Fatalf("subscriber %d: not recovered: %+v", i, r)
			}
		}
		if len(pushes) != want {
			t.Fatalf("subscriber %d: %d publications replayed, want %d", i, len(pushes), want)
		}
	}
	t.Logf("%d subscribes, %d failed; %d shared history reads, %d Redis script calls", n, failed, reads, calls)
	if failed > 0 {
		t.Fatalf("%d of %d subscribes failed", failed, n)
	}
	// One read per batch: a batch is every subscriber that arrived while
	// the read before it was in flight, so a storm of 2,000 needs a few
	// dozen at most (each key, top and since, has its own).
	// A read of the top is one script call, a recovery read two (where
	// the stream is, then the range); the first call of a script may be
	// refused (NOSCRIPT) and sent again whole.
	if reads > n/20 || calls > 2*reads+2 {
		t.Fatalf("%d history reads (%d Redis script calls) for %d subscribers", reads, calls, n)
	}

	for i := range 3 {
		if _, err := e.Publish(ctx, PublishRequest{Channel: "news:x", Data: json.RawMessage(fmt.Sprint(10 + i))}); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cs {
		var got []uint64
		deadline := time.Now().Add(10 * time.Second)
		for len(got) < 3 && time.Now().Before(deadline) {
			for _, m := range c.msgs() {
				switch {
				case m.Gap != nil:
					t.Fatalf("subscriber %d: gap notice %+v", i, m.Gap)
				case m.Push != nil && m.Push.Offset > 0:
					got = append(got, m.Push.Offset)
				}
			}
			if len(got) < 3 {
				time.Sleep(time.Millisecond)
			}
		}
		if len(got) != 3 || got[0] != top.Offset+1 || got[1] != top.Offset+2 || got[2] != top.Offset+3 {
			t.Fatalf("subscriber %d got offsets %v, want %d..%d", i, got, top.Offset+1, top.Offset+3)
		}
	}
}

// subscribeReply returns the reply to a subscribe and the publications
// queued after it.
func (c *client) subscribeReply() (superchat.ServerMessage, []superchat.Push) {
	var reply superchat.ServerMessage
	var pushes []superchat.Push
	for _, m := range c.msgs() {
		switch {
		case m.Push != nil && m.Push.Offset > 0:
			pushes = append(pushes, *m.Push)
		case m.Push == nil && m.Gap == nil:
			reply = m
		case m.Gap != nil:
			c.t.Fatalf("gap notice %+v", m.Gap)
		}
	}
	return reply, pushes
}

// scriptCalls returns the EVAL and EVALSHA calls Redis counted.
func scriptCalls(t *testing.T, rc *redis.Client) int64 {
	t.Helper()
	info, err := rc.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "cmdstat_evalsha" && name != "cmdstat_eval") {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			t.Fatalf("commandstats %q: %v", line, err)
		}
		total += n
	}
	return total
}

// TestSharedReadStartsAfterJoin: a subscriber that arrives while another
// one's history read is in flight waits for the next read instead of
// sharing that one: a publication fanned out between the read and its
// arrival would otherwise be neither in its starting position nor held
// for it, and it would get a gap notice. Sharing the read in flight
// (checked by letting sharedHistory join h.reading[key]) makes the test
// fail with that gap notice.
func TestSharedReadStartsAfterJoin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &hookBroker{Memory: broker.NewMemory()}
		e, err := New(Config{Broker: b, Namespaces: gapNS})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Shutdown(context.Background())
		ctx := context.Background()
		if _, err := e.Publish(ctx, PublishRequest{Channel: "g:x", Data: json.RawMessage(`0`)}); err != nil {
			t.Fatal(err)
		}
		first, second := connect(t, e, ProtocolSuperchat, "a"), connect(t, e, ProtocolSuperchat, "b")
		var once sync.Once
		var wg sync.WaitGroup
		b.afterHistory = func(channel string, req broker.HistoryRequest) {
			once.Do(func() {
				// first's read has its top; a publication lands
				// (first holds it), then second subscribes.
				if _, err := e.Publish(ctx, PublishRequest{Channel: "g:x", Data: json.RawMessage(`1`)}); err != nil {
					t.Error(err)
				}
				wg.Go(func() { _ = second.s.Handle(ctx, []byte(`{"id":1,"op":"subscribe","channel":"g:x"}`)) })
				synctest.Wait()
			})
		}
		first.send(`{"id":1,"op":"subscribe","channel":"g:x"}`)
		wg.Wait()
		if _, err := e.Publish(ctx, PublishRequest{Channel: "g:x", Data: json.RawMessage(`2`)}); err != nil {
			t.Fatal(err)
		}
		for name, c := range map[string]*client{"first": first, "second": second} {
			res, pushes := c.subscribeReply()
			r := result[subResult](t, res)
			var got []uint64
			for _, p := range pushes {
				got = append(got, p.Offset)
			}
			t.Logf("%s: top %d, then %v", name, r.Offset, got)
			if last := r.Offset + uint64(len(got)); len(got) == 0 || got[0] != r.Offset+1 || last != 3 {
				t.Fatalf("%s: top %d, then %v; want every offset to 3", name, r.Offset, got)
			}
		}
		if n := e.Stats().SubscribeReads; n != 2 {
			t.Fatalf("%d reads, want 2", n)
		}
	})
}

// TestSubscribeBrokerUnavailable: a subscribe that Redis does not serve in
// time (the server stalled: one call holds the pool's only connection until
// its read timeout, the other waits for the pool and times out) is answered
// 503, retry, not 500; once Redis answers again the retry succeeds.
func TestSubscribeBrokerUnavailable(t *testing.T) {
	srv := testredis.StartServer(t)
	b, err := redisbroker.New(redisbroker.Config{Addr: srv.Addr, PoolSize: 1, PoolTimeout: 50 * time.Millisecond, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	e := newEngine(t, Config{Broker: b, Namespaces: gapNS})
	holder := connect(t, e, ProtocolSuperchat, "holder")
	holder.request(`{"id":1,"op":"subscribe","channel":"g:x"}`)
	holder.request(`{"id":2,"op":"subscribe","channel":"g:y"}`)

	pid := srv.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	cs := []*client{connect(t, e, ProtocolSuperchat, "a"), connect(t, e, ProtocolSuperchat, "b")}
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			_ = c.s.Handle(context.Background(), fmt.Appendf(nil, `{"id":1,"op":"subscribe","channel":"g:%c"}`, "xy"[i]))
		})
	}
	wg.Wait()
	for i, c := range cs {
		m := c.msgs()
		if len(m) != 1 || m[0].Error == nil || m[0].Error.Code != 503 {
			t.Fatalf("subscriber %d: %+v", i, m)
		}
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	for i, c := range cs {
		if m := c.request(fmt.Sprintf(`{"id":2,"op":"subscribe","channel":"g:%c"}`, "xy"[i])); m.Error != nil {
			t.Fatalf("retry of subscriber %d: %+v", i, m.Error)
		}
	}
}
