package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

type recorder struct {
	mu     sync.Mutex
	pubs   []*Publication
	events []string
}

func (r *recorder) HandlePublication(p *Publication) {
	r.mu.Lock()
	r.pubs = append(r.pubs, p)
	r.mu.Unlock()
}

func (r *recorder) HandleJoin(ch string, ci ClientInfo) {
	r.mu.Lock()
	r.events = append(r.events, "join "+ch+" "+ci.User)
	r.mu.Unlock()
}

func (r *recorder) HandleLeave(ch string, ci ClientInfo) {
	r.mu.Lock()
	r.events = append(r.events, "leave "+ch+" "+ci.User)
	r.mu.Unlock()
}

func (r *recorder) HandleGap(ch, reason string) {
	r.mu.Lock()
	r.events = append(r.events, "gap "+ch+" "+reason)
	r.mu.Unlock()
}

func publish(t *testing.T, b Broker, ch string, n int, opts PublishOptions) Position {
	t.Helper()
	var pos Position
	for i := range n {
		var err error
		pos, err = b.Publish(context.Background(), ch, json.RawMessage(fmt.Sprint(i)), &ClientInfo{User: "u"}, opts)
		if err != nil {
			t.Fatal(err)
		}
	}
	return pos
}

func offsets(ps []*Publication) []uint64 {
	var out []uint64
	for _, p := range ps {
		out = append(out, p.Offset)
	}
	return out
}

func TestPositions(t *testing.T) {
	ctx := context.Background()
	b := NewMemory()
	var r recorder
	if err := b.Start(&r); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "a", 1, PublishOptions{}) // not subscribed: not fanned out
	if err := b.Subscribe(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "a", 3, PublishOptions{})
	publish(t, b, "b", 2, PublishOptions{})
	if got := offsets(r.pubs); fmt.Sprint(got) != "[2 3 4]" {
		t.Fatalf("fanned out %v", got)
	}
	epoch := r.pubs[0].Epoch
	for _, p := range r.pubs {
		if p.Epoch != epoch || p.Channel != "a" || p.Info.User != "u" || p.Time.IsZero() {
			t.Fatalf("publication %+v", p)
		}
	}
	res, err := b.History(ctx, "b", HistoryRequest{})
	if err != nil || res.Top.Offset != 2 || res.Top.Epoch == epoch {
		t.Fatalf("b top %+v %v (epochs must be per stream)", res.Top, err)
	}
	// Each Subscribe needs its Unsubscribe.
	_ = b.Subscribe(ctx, "a")
	_ = b.Unsubscribe(ctx, "a")
	publish(t, b, "a", 1, PublishOptions{})
	_ = b.Unsubscribe(ctx, "a")
	publish(t, b, "a", 1, PublishOptions{})
	if len(r.pubs) != 4 {
		t.Fatalf("got %d publications", len(r.pubs))
	}
	// A new broker (a restarted process) has new epochs.
	res2, _ := NewMemory().History(ctx, "a", HistoryRequest{})
	if res2.Top.Epoch == epoch || res2.Top.Offset != 0 {
		t.Fatalf("fresh broker top %+v", res2.Top)
	}
}

func TestHistory(t *testing.T) {
	ctx := context.Background()
	b := NewMemory()
	top := publish(t, b, "c", 10, PublishOptions{HistorySize: 5})
	at := func(off uint64) *Position { return &Position{Epoch: top.Epoch, Offset: off} }
	for _, tc := range []struct {
		name string
		req  HistoryRequest
		want string
		err  error
	}{
		{"top only", HistoryRequest{}, "[]", nil},
		{"all kept", HistoryRequest{Limit: -1}, "[6 7 8 9 10]", nil},
		{"limit", HistoryRequest{Limit: 2}, "[6 7]", nil},
		{"reverse", HistoryRequest{Limit: 2, Reverse: true}, "[10 9]", nil},
		{"since", HistoryRequest{Since: at(7), Limit: -1}, "[8 9 10]", nil},
		{"since limit", HistoryRequest{Since: at(7), Limit: 1}, "[8]", nil},
		{"since oldest kept - 1", HistoryRequest{Since: at(5), Limit: -1}, "[6 7 8 9 10]", nil},
		{"since top", HistoryRequest{Since: at(10), Limit: -1}, "[]", nil},
		{"since trimmed", HistoryRequest{Since: at(4), Limit: -1}, "[]", ErrHistoryTrimmed},
		{"since zero trimmed", HistoryRequest{Since: at(0), Limit: -1}, "[]", ErrHistoryTrimmed},
		{"reverse since", HistoryRequest{Since: at(8), Limit: -1, Reverse: true}, "[7 6]", nil},
		{"other epoch", HistoryRequest{Since: &Position{Epoch: "x", Offset: 7}}, "[]", ErrEpochChanged},
		{"beyond top", HistoryRequest{Since: at(11)}, "[]", ErrEpochChanged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := b.History(ctx, "c", tc.req)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if got := fmt.Sprint(offsets(res.Publications)); got != tc.want && !(got == "[]" && tc.want == "[]") {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			if res.Top != top {
				t.Fatalf("top %+v, want %+v", res.Top, top)
			}
		})
	}
	// Without history, positions are still assigned and since == top is
	// still servable.
	p := publish(t, b, "none", 3, PublishOptions{})
	if res, err := b.History(ctx, "none", HistoryRequest{Since: &p, Limit: -1}); err != nil || len(res.Publications) != 0 {
		t.Fatalf("since top without history: %v", err)
	}
	p.Offset--
	if _, err := b.History(ctx, "none", HistoryRequest{Since: &p, Limit: -1}); !errors.Is(err, ErrHistoryTrimmed) {
		t.Fatalf("since top-1 without history: %v", err)
	}
}

func TestHistoryTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		b := NewMemory()
		opts := PublishOptions{HistorySize: 100, HistoryTTL: time.Minute}
		publish(t, b, "t", 2, opts)
		time.Sleep(40 * time.Second)
		top := publish(t, b, "t", 1, opts)
		time.Sleep(30 * time.Second) // the first two are 70s old
		res, err := b.History(ctx, "t", HistoryRequest{Limit: -1})
		if err != nil || fmt.Sprint(offsets(res.Publications)) != "[3]" {
			t.Fatalf("%v %v", offsets(res.Publications), err)
		}
		if _, err := b.History(ctx, "t", HistoryRequest{Since: &Position{Epoch: top.Epoch, Offset: 1}, Limit: -1}); !errors.Is(err, ErrHistoryTrimmed) {
			t.Fatalf("since expired: %v", err)
		}
		// An idle, empty stream is eventually dropped: new epoch.
		time.Sleep(25 * time.Hour)
		publish(t, b, "other", 1, opts) // triggers a sweep
		res, _ = b.History(ctx, "t", HistoryRequest{})
		if res.Top.Epoch == top.Epoch || res.Top.Offset != 0 {
			t.Fatalf("idle stream kept: %+v", res.Top)
		}
	})
}

func TestPresence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		b := NewMemory()
		var r recorder
		_ = b.Start(&r)
		_ = b.AddPresence(ctx, "p", "s1", ClientInfo{User: "a", Client: "s1"}, time.Minute)
		_ = b.AddPresence(ctx, "p", "s2", ClientInfo{User: "b", Client: "s2"}, time.Minute)
		got, _ := b.Presence(ctx, "p")
		if len(got) != 2 || got["s1"].User != "a" {
			t.Fatalf("%+v", got)
		}
		_ = b.RemovePresence(ctx, "p", "s2")
		time.Sleep(50 * time.Second)
		_ = b.AddPresence(ctx, "p", "s1", ClientInfo{User: "a"}, time.Minute) // refresh
		time.Sleep(50 * time.Second)
		if got, _ := b.Presence(ctx, "p"); len(got) != 1 {
			t.Fatalf("refreshed entry lost: %+v", got)
		}
		time.Sleep(11 * time.Second)
		if got, _ := b.Presence(ctx, "p"); len(got) != 0 {
			t.Fatalf("expired entry kept: %+v", got)
		}

		_ = b.PublishJoin(ctx, "p", ClientInfo{User: "x"}) // not subscribed
		_ = b.Subscribe(ctx, "p")
		_ = b.PublishJoin(ctx, "p", ClientInfo{User: "a"})
		_ = b.PublishLeave(ctx, "p", ClientInfo{User: "a"})
		if fmt.Sprint(r.events) != "[join p a leave p a]" {
			t.Fatalf("events %v", r.events)
		}
	})
}

func TestClosed(t *testing.T) {
	ctx := context.Background()
	b := NewMemory()
	_ = b.Close(ctx)
	_ = b.Close(ctx)
	if _, err := b.Publish(ctx, "x", json.RawMessage(`1`), nil, PublishOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if _, err := b.History(ctx, "x", HistoryRequest{}); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if err := b.AddPresence(ctx, "x", "c", ClientInfo{}, time.Second); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
}

func TestConcurrentPublishOrder(t *testing.T) {
	ctx := context.Background()
	b := NewMemory()
	var r recorder
	_ = b.Start(&r)
	_ = b.Subscribe(ctx, "o")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { publish(t, b, "o", 100, PublishOptions{HistorySize: 1000}) })
	}
	wg.Wait()
	for i, p := range r.pubs {
		if p.Offset != uint64(i+1) {
			t.Fatalf("fan-out out of order at %d: %d", i, p.Offset)
		}
	}
	res, _ := b.History(ctx, "o", HistoryRequest{Limit: -1})
	if len(res.Publications) != 800 || res.Top.Offset != 800 {
		t.Fatalf("history %d top %d", len(res.Publications), res.Top.Offset)
	}
}

// TestEmptyStreamsExpire checks that the memory broker drops a stream with
// no history and no subscriber once it is idle for EmptyStreamTTL, keeps
// one with history or a subscriber, and starts a new epoch after.
func TestEmptyStreamsExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		m := NewMemoryConfig(MemoryConfig{EmptyStreamTTL: time.Minute})
		if err := m.Start(&recorder{}); err != nil {
			t.Fatal(err)
		}
		old := publish(t, m, "empty", 2, PublishOptions{})
		publish(t, m, "kept", 2, PublishOptions{HistorySize: 10})
		publish(t, m, "watched", 2, PublishOptions{})
		_ = m.Subscribe(ctx, "watched")
		time.Sleep(2 * time.Minute)
		_, _ = m.History(ctx, "other", HistoryRequest{}) // reads sweep too
		m.mu.RLock()
		_, empty := m.streams["empty"]
		_, kept := m.streams["kept"]
		_, watched := m.streams["watched"]
		m.mu.RUnlock()
		if empty || !kept || !watched {
			t.Fatalf("after the TTL: empty %v, kept %v, watched %v", empty, kept, watched)
		}
		p := publish(t, m, "empty", 1, PublishOptions{})
		if p.Epoch == old.Epoch || p.Offset != 1 {
			t.Fatalf("after expiry: %+v (before %+v)", p, old)
		}
		// A live idempotency key keeps an empty stream too.
		opts := PublishOptions{IdempotencyKey: "k", IdempotencyTTL: 10 * time.Minute}
		first, _ := m.Publish(ctx, "idem", json.RawMessage(`1`), nil, opts)
		time.Sleep(2 * time.Minute)
		_, _ = m.History(ctx, "other", HistoryRequest{})
		if again, _ := m.Publish(ctx, "idem", json.RawMessage(`1`), nil, opts); again != first {
			t.Fatalf("idempotency key lost with its stream: %+v then %+v", first, again)
		}
		_ = m.Close(ctx)
	})
}
