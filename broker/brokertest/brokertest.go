// Package brokertest is the conformance suite that every broker.Broker
// passes: the memory broker in package broker, and the Redis broker (one
// server, Cluster, Sentinel) in package redisbroker run the same checks.
package brokertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/broker"
)

// This file holds the behaviour every Broker shares, checked against each
// implementation by Run. Fan-out may be asynchronous (Redis), so the
// checks wait for deliveries and use SyncNode before asserting that
// something did not arrive.

// Run checks the documented behaviour of a Broker. newBroker returns
// a started broker with an empty store, recording its fan-out in the node,
// and closed when the test ends. stored counts the entries (streams,
// presence) a broker keeps.
func Run(t *testing.T, newBroker func(t *testing.T) (broker.Broker, *Node), stored func(t *testing.T, b broker.Broker) int) {
	t.Run("positions", func(t *testing.T) {
		ctx := context.Background()
		b, n := newBroker(t)
		Pub(t, b, "a", 1, broker.PublishOptions{}) // not subscribed: not fanned out
		if err := b.Subscribe(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		Pub(t, b, "a", 3, broker.PublishOptions{})
		Pub(t, b, "b", 2, broker.PublishOptions{})
		Eventually(t, "3 publications", func() bool { return len(n.Received("a")) >= 3 })
		SyncNode(t, b, n)
		got := n.Received("a")
		if Offs(got) != "[2 3 4]" || len(n.Received("b")) != 0 {
			t.Fatalf("fanned out a %s, b %d", Offs(got), len(n.Received("b")))
		}
		epoch := got[0].Epoch
		for i, p := range got {
			if p.Epoch != epoch || p.Channel != "a" || p.Info == nil || p.Info.User != "u" ||
				string(p.Data) != fmt.Sprint(i) || time.Since(p.Time).Abs() > time.Minute {
				t.Fatalf("publication %+v", p)
			}
		}
		res, err := b.History(ctx, "b", broker.HistoryRequest{})
		if err != nil || res.Top.Offset != 2 || res.Top.Epoch == epoch {
			t.Fatalf("b top %+v %v (epochs must be per stream)", res.Top, err)
		}

		// A channel nobody published to has no stream: top {"", 0}.
		// Its first publication starts one at offset 1.
		res, err = b.History(ctx, "fresh", broker.HistoryRequest{Limit: -1})
		if err != nil || res.Top != (broker.Position{}) || len(res.Publications) != 0 {
			t.Fatalf("fresh stream %+v %v", res, err)
		}
		if p := Pub(t, b, "fresh", 1, broker.PublishOptions{}); p.Epoch == "" || p.Offset != 1 || p.Epoch == epoch {
			t.Fatalf("first publication %+v", p)
		}

		// The publisher's info is the broker's own copy; server-side
		// publications have none.
		_ = b.Subscribe(ctx, "s")
		info := &broker.ClientInfo{User: "u", Name: "Ann"}
		if _, err := b.Publish(ctx, "s", json.RawMessage(`{"x":"é\n"}`), info, broker.PublishOptions{HistorySize: 2}); err != nil {
			t.Fatal(err)
		}
		info.Name = "changed"
		if _, err := b.Publish(ctx, "s", json.RawMessage(`[1, 2]`), nil, broker.PublishOptions{HistorySize: 2}); err != nil {
			t.Fatal(err)
		}
		Eventually(t, "publications on s", func() bool { return len(n.Received("s")) == 2 })
		hist, err := b.History(ctx, "s", broker.HistoryRequest{Limit: -1})
		if err != nil || len(hist.Publications) != 2 {
			t.Fatalf("history of s: %d %v", len(hist.Publications), err)
		}
		for _, ps := range [][]*broker.Publication{n.Received("s"), hist.Publications} {
			if p := ps[0]; p.Info == nil || p.Info.Name != "Ann" || string(p.Data) != `{"x":"é\n"}` {
				t.Fatalf("first publication %+v %s", p, p.Data)
			}
			if p := ps[1]; p.Info != nil || string(p.Data) != `[1, 2]` {
				t.Fatalf("server publication %+v %s", p, p.Data)
			}
		}
	})

	t.Run("subscriptions are counted", func(t *testing.T) {
		ctx := context.Background()
		b, n := newBroker(t)
		_ = b.Subscribe(ctx, "a")
		_ = b.Subscribe(ctx, "a")
		if err := b.Unsubscribe(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		Pub(t, b, "a", 1, broker.PublishOptions{})
		if err := b.Unsubscribe(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		Pub(t, b, "a", 1, broker.PublishOptions{})
		_ = b.Unsubscribe(ctx, "a") // one too many: harmless
		SyncNode(t, b, n)
		if got := Offs(n.Received("a")); got != "[1]" {
			t.Fatalf("got %s", got)
		}
		// Subscribed again, the node receives again.
		_ = b.Subscribe(ctx, "a")
		Pub(t, b, "a", 1, broker.PublishOptions{})
		Eventually(t, "offset 3", func() bool { return len(n.Received("a")) == 2 })
		if got := Offs(n.Received("a")); got != "[1 3]" {
			t.Fatalf("got %s", got)
		}
	})

	t.Run("history", func(t *testing.T) {
		ctx := context.Background()
		b, _ := newBroker(t)
		top := Pub(t, b, "c", 10, broker.PublishOptions{HistorySize: 5})
		at := func(off uint64) *broker.Position { return &broker.Position{Epoch: top.Epoch, Offset: off} }
		for _, tc := range []struct {
			name string
			req  broker.HistoryRequest
			want string
			err  error
		}{
			{"top only", broker.HistoryRequest{}, "[]", nil},
			{"all kept", broker.HistoryRequest{Limit: -1}, "[6 7 8 9 10]", nil},
			{"limit", broker.HistoryRequest{Limit: 2}, "[6 7]", nil},
			{"reverse", broker.HistoryRequest{Limit: 2, Reverse: true}, "[10 9]", nil},
			{"reverse all", broker.HistoryRequest{Limit: -1, Reverse: true}, "[10 9 8 7 6]", nil},
			{"since", broker.HistoryRequest{Since: at(7), Limit: -1}, "[8 9 10]", nil},
			{"since limit", broker.HistoryRequest{Since: at(7), Limit: 1}, "[8]", nil},
			{"since limit 0", broker.HistoryRequest{Since: at(7)}, "[]", nil},
			{"since oldest kept - 1", broker.HistoryRequest{Since: at(5), Limit: -1}, "[6 7 8 9 10]", nil},
			{"since top", broker.HistoryRequest{Since: at(10), Limit: -1}, "[]", nil},
			{"since trimmed", broker.HistoryRequest{Since: at(4), Limit: -1}, "[]", broker.ErrHistoryTrimmed},
			{"since trimmed limit 0", broker.HistoryRequest{Since: at(4)}, "[]", broker.ErrHistoryTrimmed},
			{"since zero trimmed", broker.HistoryRequest{Since: at(0), Limit: -1}, "[]", broker.ErrHistoryTrimmed},
			{"reverse since", broker.HistoryRequest{Since: at(8), Limit: -1, Reverse: true}, "[7 6]", nil},
			{"reverse since limit", broker.HistoryRequest{Since: at(9), Limit: 2, Reverse: true}, "[8 7]", nil},
			{"reverse since top+1", broker.HistoryRequest{Since: at(10), Limit: 1, Reverse: true}, "[9]", nil},
			{"reverse since oldest", broker.HistoryRequest{Since: at(6), Limit: -1, Reverse: true}, "[]", nil},
			{"reverse since trimmed", broker.HistoryRequest{Since: at(2), Limit: -1, Reverse: true}, "[]", nil},
			{"other epoch", broker.HistoryRequest{Since: &broker.Position{Epoch: "x", Offset: 7}}, "[]", broker.ErrEpochChanged},
			{"beyond top", broker.HistoryRequest{Since: at(11)}, "[]", broker.ErrEpochChanged},
			{"beyond top reverse", broker.HistoryRequest{Since: at(11), Reverse: true}, "[]", broker.ErrEpochChanged},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res, err := b.History(ctx, "c", tc.req)
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				if got := Offs(res.Publications); got != tc.want {
					t.Fatalf("got %s, want %s", got, tc.want)
				}
				if res.Top != top {
					t.Fatalf("top %+v, want %+v", res.Top, top)
				}
				for _, p := range res.Publications {
					if p.Channel != "c" || p.Epoch != top.Epoch || string(p.Data) != fmt.Sprint(p.Offset-1) || p.Info.User != "u" {
						t.Fatalf("publication %+v", p)
					}
				}
			})
		}

		// Without history, positions are still assigned and since == top
		// is still servable.
		p := Pub(t, b, "none", 3, broker.PublishOptions{})
		if res, err := b.History(ctx, "none", broker.HistoryRequest{Since: &p, Limit: -1}); err != nil || len(res.Publications) != 0 {
			t.Fatalf("since top without history: %v", err)
		}
		p.Offset--
		if _, err := b.History(ctx, "none", broker.HistoryRequest{Since: &p, Limit: -1}); !errors.Is(err, broker.ErrHistoryTrimmed) {
			t.Fatalf("since top-1 without history: %v", err)
		}

		// A smaller HistorySize trims what is kept.
		Pub(t, b, "c", 1, broker.PublishOptions{HistorySize: 2})
		if res, err := b.History(ctx, "c", broker.HistoryRequest{Limit: -1}); err != nil || Offs(res.Publications) != "[10 11]" {
			t.Fatalf("after shrinking: %s %v", Offs(res.Publications), err)
		}
	})

	t.Run("history ttl", func(t *testing.T) {
		ctx := context.Background()
		b, _ := newBroker(t)
		// Deadlines count from times taken around the calls, so a
		// slow machine makes the test slower, not wrong.
		const ttl = time.Second
		const margin = 150 * time.Millisecond
		opts := broker.PublishOptions{HistorySize: 100, HistoryTTL: ttl}
		Pub(t, b, "t", 2, opts)
		two := time.Now() // the first two were published before
		time.Sleep(ttl / 2)
		top := Pub(t, b, "t", 1, opts)
		three := time.Now()
		time.Sleep(time.Until(two.Add(ttl + margin))) // the first two are past the TTL, the third is not
		res, err := b.History(ctx, "t", broker.HistoryRequest{Limit: -1})
		if err != nil || Offs(res.Publications) != "[3]" || res.Top != top {
			t.Fatalf("%s %+v %v", Offs(res.Publications), res.Top, err)
		}
		since := func(off uint64) *broker.Position { return &broker.Position{Epoch: top.Epoch, Offset: off} }
		if _, err := b.History(ctx, "t", broker.HistoryRequest{Since: since(1), Limit: -1}); !errors.Is(err, broker.ErrHistoryTrimmed) {
			t.Fatalf("since expired: %v", err)
		}
		if res, err := b.History(ctx, "t", broker.HistoryRequest{Since: since(2), Limit: -1}); err != nil || Offs(res.Publications) != "[3]" {
			t.Fatalf("since kept: %s %v", Offs(res.Publications), err)
		}
		// Once all are past the TTL the stream keeps its position.
		time.Sleep(time.Until(three.Add(ttl + margin)))
		res, err = b.History(ctx, "t", broker.HistoryRequest{Limit: -1})
		if err != nil || len(res.Publications) != 0 || res.Top != top {
			t.Fatalf("all expired: %s %+v %v", Offs(res.Publications), res.Top, err)
		}
		if p := Pub(t, b, "t", 1, opts); p != (broker.Position{Epoch: top.Epoch, Offset: 4}) {
			t.Fatalf("next publication %+v after %+v", p, top)
		}
	})

	t.Run("presence", func(t *testing.T) {
		ctx := context.Background()
		b, n := newBroker(t)
		const ttl = time.Second
		const margin = 150 * time.Millisecond
		ann := broker.ClientInfo{User: "a", Name: "Ann", Client: "s1"}
		if err := b.AddPresence(ctx, "p", "s1", ann, ttl); err != nil {
			t.Fatal(err)
		}
		_ = b.AddPresence(ctx, "p", "s2", broker.ClientInfo{User: "b", Client: "s2"}, ttl)
		added := time.Now() // s1 and s2 expire by added+ttl
		_ = b.AddPresence(ctx, "p", "s3", broker.ClientInfo{User: "c", Client: "s3"}, time.Minute)
		got, err := b.Presence(ctx, "p")
		if err != nil || len(got) != 3 || got["s1"] != ann || got["s2"].User != "b" {
			t.Fatalf("presence %+v %v", got, err)
		}
		if err := b.RemovePresence(ctx, "p", "s3"); err != nil {
			t.Fatal(err)
		}
		if err := b.RemovePresence(ctx, "p", "unknown"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(added.Add(ttl / 2)))
		_ = b.AddPresence(ctx, "p", "s1", ann, ttl) // refresh
		refreshed := time.Now()
		time.Sleep(time.Until(added.Add(ttl + margin)))
		got, err = b.Presence(ctx, "p")
		if err != nil || len(got) != 1 || got["s1"] != ann {
			t.Fatalf("after s2 expired: %+v %v", got, err)
		}
		time.Sleep(time.Until(refreshed.Add(ttl + margin)))
		if got, err := b.Presence(ctx, "p"); err != nil || len(got) != 0 {
			t.Fatalf("expired entry kept: %+v %v", got, err)
		}
		if got, err := b.Presence(ctx, "nobody"); err != nil || got == nil || len(got) != 0 {
			t.Fatalf("empty channel %+v %v", got, err)
		}

		_ = b.PublishJoin(ctx, "p", broker.ClientInfo{User: "x"}) // not subscribed
		SyncNode(t, b, n)
		if ev := n.EventList(); len(ev) != 0 {
			t.Fatalf("events while not subscribed: %v", ev)
		}
		_ = b.Subscribe(ctx, "p")
		if err := b.PublishJoin(ctx, "p", broker.ClientInfo{User: "a"}); err != nil {
			t.Fatal(err)
		}
		if err := b.PublishLeave(ctx, "p", broker.ClientInfo{User: "a"}); err != nil {
			t.Fatal(err)
		}
		Eventually(t, "join and leave", func() bool { return len(n.EventList()) == 2 })
		if got := fmt.Sprint(n.EventList()); got != "[join p a leave p a]" {
			t.Fatalf("events %s", got)
		}
	})

	t.Run("refresh presence", func(t *testing.T) {
		ctx := context.Background()
		b, _ := newBroker(t)
		const ttl = time.Second
		const margin = 150 * time.Millisecond
		entries := map[string]broker.ClientInfo{}
		for i := range 500 {
			id := fmt.Sprintf("s%d", i)
			entries[id] = broker.ClientInfo{User: fmt.Sprintf("u%d", i%7), Name: "N", Client: id}
		}
		if err := b.RefreshPresence(ctx, "rp", entries, ttl); err != nil {
			t.Fatal(err)
		}
		if err := b.RefreshPresence(ctx, "rp", nil, ttl); err != nil {
			t.Fatalf("empty refresh: %v", err)
		}
		added := time.Now()
		got, err := b.Presence(ctx, "rp")
		if err != nil || len(got) != 500 || got["s42"] != entries["s42"] {
			t.Fatalf("presence %d %+v %v", len(got), got["s42"], err)
		}
		// A refresh of some keeps those and lets the others expire.
		time.Sleep(time.Until(added.Add(ttl / 2)))
		if err := b.RefreshPresence(ctx, "rp", map[string]broker.ClientInfo{"s1": entries["s1"], "s2": entries["s2"]}, ttl); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(added.Add(ttl + margin)))
		got, err = b.Presence(ctx, "rp")
		if err != nil || len(got) != 2 || got["s1"] != entries["s1"] {
			t.Fatalf("after refresh of two: %d %v", len(got), err)
		}
	})

	t.Run("concurrent publish order", func(t *testing.T) {
		ctx := context.Background()
		b, n := newBroker(t)
		_ = b.Subscribe(ctx, "o")
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { Pub(t, b, "o", 50, broker.PublishOptions{HistorySize: 1000}) })
		}
		wg.Wait()
		Eventually(t, "400 publications", func() bool { return len(n.Received("o")) == 400 })
		for i, p := range n.Received("o") {
			if p.Offset != uint64(i+1) {
				t.Fatalf("fan-out out of order at %d: %d", i, p.Offset)
			}
		}
		res, _ := b.History(ctx, "o", broker.HistoryRequest{Limit: -1})
		if len(res.Publications) != 400 || res.Top.Offset != 400 {
			t.Fatalf("history %d top %d", len(res.Publications), res.Top.Offset)
		}
	})

	t.Run("reads create nothing", func(t *testing.T) {
		ctx := context.Background()
		b, _ := newBroker(t)
		Pub(t, b, "real", 2, broker.PublishOptions{HistorySize: 10})
		before := stored(t, b)
		reqs := []broker.HistoryRequest{
			{},
			{Limit: -1},
			{Limit: 10, Reverse: true},
			{Since: &broker.Position{}, Limit: -1},
			{Since: &broker.Position{Epoch: "made-up", Offset: 5}, Limit: -1},
			{Since: &broker.Position{Offset: 5}},
		}
		// 10,000 reads of made-up channels, as a hostile client
		// would send: none leaves anything behind.
		var wg sync.WaitGroup
		var bad atomic.Int64
		for w := range 8 {
			wg.Go(func() {
				for i := range 1250 {
					ch := fmt.Sprintf("made-up-%d-%d", w, i)
					req := reqs[i%len(reqs)]
					res, err := b.History(ctx, ch, req)
					wantErr := req.Since != nil && *req.Since != (broker.Position{})
					if res.Top != (broker.Position{}) || len(res.Publications) != 0 || (err != nil) != wantErr ||
						(wantErr && !errors.Is(err, broker.ErrEpochChanged)) {
						bad.Add(1)
					}
					if i%10 == 0 {
						if p, err := b.Presence(ctx, ch); err != nil || len(p) != 0 {
							bad.Add(1)
						}
					}
				}
			})
		}
		wg.Wait()
		if n := bad.Load(); n != 0 {
			t.Fatalf("%d reads of made-up channels answered wrongly", n)
		}
		// Subscribing to a channel without a stream creates none either.
		if err := b.Subscribe(ctx, "made-up-sub"); err != nil {
			t.Fatal(err)
		}
		if err := b.Unsubscribe(ctx, "made-up-sub"); err != nil {
			t.Fatal(err)
		}
		if after := stored(t, b); after != before {
			t.Fatalf("reads created entries: %d before, %d after", before, after)
		}
	})

	t.Run("since the start", func(t *testing.T) {
		ctx := context.Background()
		b, _ := newBroker(t)
		start := &broker.Position{}
		top := Pub(t, b, "s", 3, broker.PublishOptions{HistorySize: 10})
		res, err := b.History(ctx, "s", broker.HistoryRequest{Since: start, Limit: -1})
		if err != nil || Offs(res.Publications) != "[1 2 3]" || res.Top != top {
			t.Fatalf("since {\"\", 0} with offset 1 kept: %s %+v %v", Offs(res.Publications), res.Top, err)
		}
		if res, err := b.History(ctx, "s", broker.HistoryRequest{Since: start, Limit: -1, Reverse: true}); err != nil || len(res.Publications) != 0 {
			t.Fatalf("reverse since {\"\", 0}: %s %v", Offs(res.Publications), err)
		}
		top = Pub(t, b, "s", 10, broker.PublishOptions{HistorySize: 5})
		res, err = b.History(ctx, "s", broker.HistoryRequest{Since: start, Limit: -1})
		if !errors.Is(err, broker.ErrHistoryTrimmed) || res.Top != top {
			t.Fatalf("since {\"\", 0} with offset 1 trimmed: %+v %v", res.Top, err)
		}
		if _, err := b.History(ctx, "s", broker.HistoryRequest{Since: &broker.Position{Offset: 3}}); !errors.Is(err, broker.ErrEpochChanged) {
			t.Fatalf("since {\"\", 3}: %v", err)
		}
	})

	t.Run("idempotency", func(t *testing.T) {
		ctx := context.Background()
		b, n := newBroker(t)
		_ = b.Subscribe(ctx, "i")
		opts := broker.PublishOptions{HistorySize: 100, IdempotencyKey: "k1", IdempotencyTTL: time.Minute}
		first, err := b.Publish(ctx, "i", json.RawMessage(`"one"`), nil, opts)
		if err != nil {
			t.Fatal(err)
		}
		again, err := b.Publish(ctx, "i", json.RawMessage(`"one again"`), nil, opts)
		if err != nil || again != first {
			t.Fatalf("retry with the same key: %+v %v, first %+v", again, err, first)
		}
		// Many retries at once get the first position too.
		var wg sync.WaitGroup
		var wrong atomic.Int64
		for range 8 {
			wg.Go(func() {
				if p, err := b.Publish(ctx, "i", json.RawMessage(`1`), nil, opts); err != nil || p != first {
					wrong.Add(1)
				}
			})
		}
		wg.Wait()
		if wrong.Load() != 0 {
			t.Fatalf("%d concurrent retries got another answer", wrong.Load())
		}
		// A long key works the same (a broker may store its hash).
		long := opts
		long.IdempotencyKey = strings.Repeat("k", 10000)
		lp, err := b.Publish(ctx, "long", json.RawMessage(`"long"`), nil, long)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := b.Publish(ctx, "long", json.RawMessage(`"long"`), nil, long); err != nil || again != lp {
			t.Fatalf("long key: %+v then %+v %v", lp, again, err)
		}
		long.IdempotencyKey = strings.Repeat("k", 9999) + "j"
		if other, err := b.Publish(ctx, "long", json.RawMessage(`"long"`), nil, long); err != nil || other.Offset != lp.Offset+1 {
			t.Fatalf("another long key: %+v after %+v %v", other, lp, err)
		}

		// Another key, or the same key on another channel, publishes.
		opts.IdempotencyKey = "k2"
		second, err := b.Publish(ctx, "i", json.RawMessage(`"two"`), nil, opts)
		if err != nil || second.Offset != first.Offset+1 {
			t.Fatalf("another key: %+v %v", second, err)
		}
		opts.IdempotencyKey = "k1"
		if p, err := b.Publish(ctx, "j", json.RawMessage(`"j"`), nil, opts); err != nil || p.Offset != 1 {
			t.Fatalf("same key on another channel: %+v %v", p, err)
		}
		// Past its TTL a key is forgotten.
		short := broker.PublishOptions{HistorySize: 100, IdempotencyKey: "k3", IdempotencyTTL: 200 * time.Millisecond}
		third, _ := b.Publish(ctx, "i", json.RawMessage(`"three"`), nil, short)
		time.Sleep(400 * time.Millisecond)
		fourth, err := b.Publish(ctx, "i", json.RawMessage(`"three later"`), nil, short)
		if err != nil || fourth.Offset != third.Offset+1 {
			t.Fatalf("key past its TTL: %+v then %+v %v", third, fourth, err)
		}
		Eventually(t, "4 publications", func() bool { return len(n.Received("i")) >= 4 })
		SyncNode(t, b, n)
		res, _ := b.History(ctx, "i", broker.HistoryRequest{Limit: -1})
		if Offs(res.Publications) != "[1 2 3 4]" || Offs(n.Received("i")) != "[1 2 3 4]" {
			t.Fatalf("history %s, fanned out %s", Offs(res.Publications), Offs(n.Received("i")))
		}
		if string(res.Publications[0].Data) != `"one"` {
			t.Fatalf("first publication %s", res.Publications[0].Data)
		}
	})

	t.Run("history bytes", func(t *testing.T) {
		ctx := context.Background()
		b, _ := newBroker(t)
		data := json.RawMessage(`"` + strings.Repeat("x", 198) + `"`)
		opts := broker.PublishOptions{HistorySize: 100, HistoryBytes: 1000}
		var top broker.Position
		for range 20 {
			var err error
			if top, err = b.Publish(ctx, "hb", data, nil, opts); err != nil {
				t.Fatal(err)
			}
		}
		res, err := b.History(ctx, "hb", broker.HistoryRequest{Limit: -1})
		if err != nil {
			t.Fatal(err)
		}
		// 200 bytes of data each, plus what a broker stores with it:
		// 3 to 5 fit in 1000 bytes, the newest ones.
		if k := len(res.Publications); k < 3 || k > 5 || res.Publications[k-1].Offset != top.Offset {
			t.Fatalf("kept %s of top %d", Offs(res.Publications), top.Offset)
		}
		// One publication larger than the bound is kept alone.
		big := json.RawMessage(`"` + strings.Repeat("y", 5000) + `"`)
		top, _ = b.Publish(ctx, "hb", big, nil, opts)
		res, _ = b.History(ctx, "hb", broker.HistoryRequest{Limit: -1})
		if len(res.Publications) != 1 || res.Publications[0].Offset != top.Offset {
			t.Fatalf("after a large one: %s", Offs(res.Publications))
		}
		// Without the bound the size bound alone counts again.
		opts.HistoryBytes = 0
		for range 10 {
			top, _ = b.Publish(ctx, "hb", data, nil, opts)
		}
		res, _ = b.History(ctx, "hb", broker.HistoryRequest{Limit: -1})
		if len(res.Publications) != 11 {
			t.Fatalf("without a byte bound: %s", Offs(res.Publications))
		}
		if _, err := b.History(ctx, "hb", broker.HistoryRequest{Since: &broker.Position{Epoch: top.Epoch, Offset: top.Offset - 11}, Limit: -1}); err != nil {
			t.Fatalf("since the oldest kept - 1: %v", err)
		}
	})

	t.Run("closed", func(t *testing.T) {
		ctx := context.Background()
		b, n := newBroker(t)
		_ = b.Subscribe(ctx, "x")
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(ctx); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		checks := map[string]error{}
		_, checks["publish"] = b.Publish(ctx, "x", json.RawMessage(`1`), nil, broker.PublishOptions{})
		_, checks["history"] = b.History(ctx, "x", broker.HistoryRequest{})
		checks["subscribe"] = b.Subscribe(ctx, "x")
		checks["unsubscribe"] = b.Unsubscribe(ctx, "x")
		checks["join"] = b.PublishJoin(ctx, "x", broker.ClientInfo{})
		checks["leave"] = b.PublishLeave(ctx, "x", broker.ClientInfo{})
		checks["add presence"] = b.AddPresence(ctx, "x", "c", broker.ClientInfo{}, time.Second)
		checks["remove presence"] = b.RemovePresence(ctx, "x", "c")
		checks["refresh presence"] = b.RefreshPresence(ctx, "x", map[string]broker.ClientInfo{"c": {}}, time.Second)
		_, checks["presence"] = b.Presence(ctx, "x")
		checks["start"] = b.Start(n)
		for name, err := range checks {
			if !errors.Is(err, broker.ErrClosed) {
				t.Errorf("%s after Close: %v", name, err)
			}
		}
	})
}

// Node records what a broker fans out to it.
type Node struct {
	mu     sync.Mutex
	pubs   []*broker.Publication
	events []string
	gaps   []Gap
}

// Gap is one HandleGap call: Before is how many publications of the
// channel the node had received when it came.
type Gap struct {
	Channel, Reason string
	Before          int
}

func (n *Node) HandleGap(ch, reason string) {
	n.mu.Lock()
	before := 0
	for _, p := range n.pubs {
		if p.Channel == ch {
			before++
		}
	}
	n.gaps = append(n.gaps, Gap{Channel: ch, Reason: reason, Before: before})
	n.mu.Unlock()
}

// GapList returns the gaps of channel ("" for all) so far.
func (n *Node) GapList(channel string) []Gap {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Gap
	for _, g := range n.gaps {
		if channel == "" || g.Channel == channel {
			out = append(out, g)
		}
	}
	return out
}

func (n *Node) HandlePublication(p *broker.Publication) {
	n.mu.Lock()
	n.pubs = append(n.pubs, p)
	n.mu.Unlock()
}

func (n *Node) HandleJoin(ch string, ci broker.ClientInfo) {
	n.mu.Lock()
	n.events = append(n.events, "join "+ch+" "+ci.User)
	n.mu.Unlock()
}

func (n *Node) HandleLeave(ch string, ci broker.ClientInfo) {
	n.mu.Lock()
	n.events = append(n.events, "leave "+ch+" "+ci.User)
	n.mu.Unlock()
}

// Received returns a copy of the publications so far with the given
// channel ("" for all).
func (n *Node) Received(channel string) []*broker.Publication {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*broker.Publication
	for _, p := range n.pubs {
		if channel == "" || p.Channel == channel {
			out = append(out, p)
		}
	}
	return out
}

func (n *Node) EventList() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.events...)
}

// WaitFor is how long a test waits for something to travel through a
// broker.
const WaitFor = 5 * time.Second

// Eventually fails the test unless cond holds within WaitFor.
func Eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Pub publishes the numbers 0 to n-1 to ch as user "u" and returns the
// last position.
func Pub(t testing.TB, b broker.Broker, ch string, n int, opts broker.PublishOptions) broker.Position {
	t.Helper()
	var pos broker.Position
	for i := range n {
		var err error
		pos, err = b.Publish(context.Background(), ch, json.RawMessage(fmt.Sprint(i)), &broker.ClientInfo{User: "u"}, opts)
		if err != nil {
			t.Fatal(err)
		}
	}
	return pos
}

func Offs(ps []*broker.Publication) string {
	out := make([]uint64, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Offset)
	}
	return fmt.Sprint(out)
}

// SyncNode makes sure everything b's node was sent before now has been
// handled: it publishes to a marker channel and waits for it, since a
// broker fans out in order.
func SyncNode(t *testing.T, b broker.Broker, n *Node) {
	t.Helper()
	ctx := context.Background()
	if err := b.Subscribe(ctx, "marker"); err != nil {
		t.Fatal(err)
	}
	before := len(n.Received("marker"))
	Pub(t, b, "marker", 1, broker.PublishOptions{})
	Eventually(t, "marker", func() bool { return len(n.Received("marker")) > before })
	if err := b.Unsubscribe(ctx, "marker"); err != nil {
		t.Fatal(err)
	}
}
