package push

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hotline-rt/hotline/broker"
)

// TestSlowSubscribeDoesNotStallOthers: while the broker's Subscribe of one
// channel hangs, publications of other channels keep being delivered and
// other channels can be subscribed and unsubscribed.
func TestSlowSubscribeDoesNotStallOthers(t *testing.T) {
	ctx := context.Background()
	entered, release := make(chan struct{}), make(chan struct{})
	b := &hookBroker{Memory: broker.NewMemory()}
	b.onSubscribe = func(ctx context.Context, channel string) error {
		if channel == "g:a" {
			close(entered)
			<-release
		}
		return nil
	}
	e := newEngine(t, Config{Broker: b, Namespaces: gapNS})
	x := connect(t, e, ProtocolSuperchat, "x")
	x.request(`{"id":1,"op":"subscribe","channel":"g:b"}`)

	y := connect(t, e, ProtocolSuperchat, "y")
	var blocked sync.WaitGroup
	blocked.Go(func() {
		if err := y.s.Handle(ctx, []byte(`{"id":1,"op":"subscribe","channel":"g:a"}`)); err != nil {
			t.Error(err)
		}
	})
	<-entered

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10 {
			if _, err := e.Publish(ctx, PublishRequest{Channel: "g:b", Data: json.RawMessage(fmt.Sprint(i))}); err != nil {
				t.Error(err)
			}
		}
		z := connect(t, e, ProtocolSuperchat, "z")
		z.request(`{"id":1,"op":"subscribe","channel":"g:c"}`)
		z.request(`{"id":2,"op":"unsubscribe","channel":"g:c"}`)
	}()
	// A liveness bound, not a speed claim: with the old engine-wide lock
	// held across Subscribe this never finishes.
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("publications of another channel stalled behind a broker Subscribe")
	}
	if _, pushes := x.subscribeTail(); len(pushes) != 10 {
		t.Fatalf("x got %d publications while g:a was being subscribed", len(pushes))
	}
	close(release)
	blocked.Wait()
	if m := y.msgs(); len(m) != 1 || m[0].Error != nil {
		t.Fatalf("y's subscribe: %+v", m)
	}
}

// TestBrokerTimeout: a broker call that never returns is bounded by
// Config.BrokerTimeout even when the caller's ctx has no deadline (as the
// WebSocket read loop's has not).
func TestBrokerTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &hookBroker{Memory: broker.NewMemory()}
		b.onSubscribe = func(ctx context.Context, channel string) error {
			<-ctx.Done()
			return ctx.Err()
		}
		e, err := New(Config{Broker: b, Namespaces: gapNS, BrokerTimeout: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Shutdown(context.Background())
		c := connect(t, e, ProtocolSuperchat, "c")
		start := time.Now()
		m := c.request(`{"id":1,"op":"subscribe","channel":"g:x"}`)
		if m.Error == nil || m.Error.Code != 503 {
			t.Fatalf("reply %+v", m)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("subscribe failed after %v, want the 3s BrokerTimeout", d)
		}
		if e.hub("g:x") != nil || len(c.s.Channels()) != 0 {
			t.Fatal("a failed subscribe left state behind")
		}
	})
}

// countBroker counts the broker subscription of each channel and checks
// that the engine never overlaps Subscribe and Unsubscribe of one channel,
// nor holds more than one subscription of it.
type countBroker struct {
	*broker.Memory
	t        testing.TB
	mu       sync.Mutex
	subs     map[string]int
	inFlight map[string]bool
	calls    int
	// inUnsubscribe, if set, runs inside Unsubscribe (counted, in flight).
	inUnsubscribe func(channel string)
}

func (b *countBroker) enter(channel string, delta int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inFlight[channel] {
		b.t.Errorf("overlapping broker calls on %s", channel)
	}
	b.inFlight[channel] = true
	b.calls++
	b.subs[channel] += delta
	if n := b.subs[channel]; n < 0 || n > 1 {
		b.t.Errorf("%d broker subscriptions of %s", n, channel)
	}
}

func (b *countBroker) leave(channel string) {
	b.mu.Lock()
	b.inFlight[channel] = false
	b.mu.Unlock()
}

func (b *countBroker) Subscribe(ctx context.Context, channel string) error {
	b.enter(channel, 1)
	defer b.leave(channel)
	runtime.Gosched() // widen the window for another call to overlap
	return b.Memory.Subscribe(ctx, channel)
}

func (b *countBroker) Unsubscribe(ctx context.Context, channel string) error {
	b.enter(channel, -1)
	defer b.leave(channel)
	runtime.Gosched()
	if f := b.inUnsubscribe; f != nil {
		f(channel)
	}
	return b.Memory.Unsubscribe(ctx, channel)
}

// TestSubscribeUnsubscribeRace: sessions subscribing and unsubscribing one
// channel at once leave the node subscribed at the broker exactly when it
// has local subscribers, with Subscribe and Unsubscribe never overlapping.
func TestSubscribeUnsubscribeRace(t *testing.T) {
	ctx := context.Background()
	total := 0
	for round := range 30 {
		b := &countBroker{Memory: broker.NewMemory(), t: t, subs: map[string]int{}, inFlight: map[string]bool{}}
		e := newEngine(t, Config{Broker: b, Namespaces: gapNS})
		n := 1 + round%4
		cs := make([]*client, n)
		for i := range cs {
			cs[i] = connect(t, e, ProtocolSuperchat, fmt.Sprint("u", i))
		}
		var wg sync.WaitGroup
		for i, c := range cs {
			wg.Go(func() {
				for j := range 20 {
					op := "subscribe"
					if j%2 == 1 {
						op = "unsubscribe"
					}
					_ = c.s.Handle(ctx, fmt.Appendf(nil, `{"id":%d,"op":%q,"channel":"g:r"}`, j, op))
				}
				if (i+round)%3 == 0 { // some end subscribed
					_ = c.s.Handle(ctx, []byte(`{"id":99,"op":"subscribe","channel":"g:r"}`))
				}
				if i == round%n { // and one ends its session meanwhile
					c.s.Close(CodeNormal, "")
				}
			})
		}
		wg.Wait()
		local := 0
		for _, c := range cs {
			local += len(c.s.Channels())
		}
		b.mu.Lock()
		subscribed, calls := b.subs["g:r"], b.calls
		b.mu.Unlock()
		if (local > 0) != (subscribed == 1) {
			t.Fatalf("round %d: %d local subscribers, %d broker subscriptions", round, local, subscribed)
		}
		if h := e.hub("g:r"); (h != nil) != (local > 0) {
			t.Fatalf("round %d: %d local subscribers, hub %v", round, local, h)
		}
		total += calls
		for _, c := range cs {
			c.s.Close(CodeNormal, "")
		}
		b.mu.Lock()
		subscribed = b.subs["g:r"]
		b.mu.Unlock()
		if subscribed != 0 {
			t.Fatalf("round %d: %d broker subscriptions after every session ended", round, subscribed)
		}
		_ = e.Shutdown(ctx)
	}
	if total < 100 {
		t.Fatalf("only %d broker calls in all: the races were not exercised", total)
	}
	t.Logf("%d broker Subscribe/Unsubscribe calls", total)
}

// TestResubscribeWaitsForUnsubscribe: a subscribe that comes while the
// last local subscriber's Unsubscribe is in flight waits for it, then
// subscribes again; the broker never sees the two overlap and the node
// ends subscribed.
func TestResubscribeWaitsForUnsubscribe(t *testing.T) {
	ctx := context.Background()
	b := &countBroker{Memory: broker.NewMemory(), t: t, subs: map[string]int{}, inFlight: map[string]bool{}}
	e := newEngine(t, Config{Broker: b, Namespaces: gapNS})
	a := connect(t, e, ProtocolSuperchat, "a")
	c := connect(t, e, ProtocolSuperchat, "c")
	a.request(`{"id":1,"op":"subscribe","channel":"g:r"}`)
	var again sync.WaitGroup
	b.inUnsubscribe = func(string) {
		b.inUnsubscribe = nil
		again.Go(func() {
			c.request(`{"id":1,"op":"subscribe","channel":"g:r"}`)
		})
		// Give a wrong engine time to call Subscribe now; a right one
		// holds it until this Unsubscribe returns.
		time.Sleep(20 * time.Millisecond)
	}
	a.request(`{"id":2,"op":"unsubscribe","channel":"g:r"}`)
	again.Wait()
	b.mu.Lock()
	n := b.subs["g:r"]
	b.mu.Unlock()
	if n != 1 || e.hub("g:r") == nil {
		t.Fatalf("%d broker subscriptions after the resubscribe", n)
	}
	if _, err := e.Publish(ctx, PublishRequest{Channel: "g:r", Data: json.RawMessage(`1`)}); err != nil {
		t.Fatal(err)
	}
	if _, pushes := c.subscribeTail(); len(pushes) != 1 {
		t.Fatalf("resubscribed session got %d publications", len(pushes))
	}
}

// TestSubscribeFailureShared: when the broker does not answer, the
// subscribers of one channel wait for the one Subscribe in flight and share
// its failure: all fail after one BrokerTimeout, with one broker call, not
// one timeout after another.
func TestSubscribeFailureShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		b := &hookBroker{Memory: broker.NewMemory()}
		b.onSubscribe = func(ctx context.Context, channel string) error {
			calls.Add(1)
			<-ctx.Done()
			return ctx.Err()
		}
		const timeout = 3 * time.Second
		e, err := New(Config{Broker: b, Namespaces: gapNS, BrokerTimeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Shutdown(context.Background())
		start := time.Now()
		var wg sync.WaitGroup
		for i := range 10 {
			c := connect(t, e, ProtocolSuperchat, fmt.Sprint("u", i))
			wg.Go(func() {
				if m := c.request(`{"id":1,"op":"subscribe","channel":"g:x"}`); m.Error == nil || m.Error.Code != 503 {
					t.Errorf("reply %+v", m)
				}
				if d := time.Since(start); d != timeout {
					t.Errorf("failed after %v, want %v", d, timeout)
				}
			})
		}
		wg.Wait()
		if n := calls.Load(); n != 1 {
			t.Fatalf("%d broker Subscribe calls, want 1", n)
		}
		if e.hub("g:x") != nil {
			t.Fatal("hub left behind")
		}
		// The broker answers again: the next subscribe succeeds.
		b.onSubscribe = nil
		c := connect(t, e, ProtocolSuperchat, "late")
		if m := c.request(`{"id":1,"op":"subscribe","channel":"g:x"}`); m.Error != nil {
			t.Fatalf("after recovery: %+v", m)
		}
	})
}
