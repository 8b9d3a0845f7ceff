package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/internal/testredis"
	"github.com/hotline-rt/hotline/push"
)

// waitFor is how long a test waits for something to travel through Redis.
const waitFor = 5 * time.Second

// node records what a Redis broker fans out to it.
type node struct {
	mu     sync.Mutex
	pubs   []*broker.Publication
	events []string
}

func (n *node) HandlePublication(p *broker.Publication) {
	n.mu.Lock()
	n.pubs = append(n.pubs, p)
	n.mu.Unlock()
}

func (n *node) HandleJoin(ch string, ci broker.ClientInfo) {
	n.mu.Lock()
	n.events = append(n.events, "join "+ch+" "+ci.User)
	n.mu.Unlock()
}

func (n *node) HandleLeave(ch string, ci broker.ClientInfo) {
	n.mu.Lock()
	n.events = append(n.events, "leave "+ch+" "+ci.User)
	n.mu.Unlock()
}

// received returns a copy of the publications so far with the given
// channel ("" for all).
func (n *node) received(channel string) []*broker.Publication {
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

func (n *node) eventList() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.events...)
}

// eventually fails the test unless cond holds within waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newNode returns a started Redis broker on addr, closed when the test ends.
func newNode(t *testing.T, addr string) (*broker.Redis, *node) {
	t.Helper()
	b, err := broker.NewRedis(broker.RedisConfig{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	n := &node{}
	if err := b.Start(n); err != nil {
		t.Fatal(err)
	}
	return b, n
}

func pub(t *testing.T, b broker.Broker, ch string, n int, opts broker.PublishOptions) broker.Position {
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

func offs(ps []*broker.Publication) string {
	out := make([]uint64, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Offset)
	}
	return fmt.Sprint(out)
}

// sync makes sure everything b's node was sent before now has been handled:
// it publishes to a marker channel and waits for it.
func syncNode(t *testing.T, b broker.Broker, n *node) {
	t.Helper()
	ctx := context.Background()
	if err := b.Subscribe(ctx, "marker"); err != nil {
		t.Fatal(err)
	}
	before := len(n.received("marker"))
	pub(t, b, "marker", 1, broker.PublishOptions{})
	eventually(t, "marker", func() bool { return len(n.received("marker")) > before })
	if err := b.Unsubscribe(ctx, "marker"); err != nil {
		t.Fatal(err)
	}
}

func TestRedisNewFails(t *testing.T) {
	if _, err := broker.NewRedis(broker.RedisConfig{}); err == nil {
		t.Fatal("empty address accepted")
	}
	if _, err := broker.NewRedis(broker.RedisConfig{Addr: "127.0.0.1:1"}); err == nil {
		t.Fatal("unreachable server accepted")
	}
}

func TestRedisPositions(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	b, n := newNode(t, addr)

	pub(t, b, "a", 1, broker.PublishOptions{}) // not subscribed: not fanned out
	if err := b.Subscribe(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	pub(t, b, "a", 3, broker.PublishOptions{})
	pub(t, b, "b", 2, broker.PublishOptions{})
	eventually(t, "3 publications", func() bool { return len(n.received("a")) >= 3 })
	syncNode(t, b, n)
	got := n.received("a")
	if offs(got) != "[2 3 4]" || len(n.received("b")) != 0 {
		t.Fatalf("fanned out a %s, b %d", offs(got), len(n.received("b")))
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
	// Each Subscribe needs its Unsubscribe.
	_ = b.Subscribe(ctx, "a")
	_ = b.Unsubscribe(ctx, "a")
	pub(t, b, "a", 1, broker.PublishOptions{})
	_ = b.Unsubscribe(ctx, "a")
	pub(t, b, "a", 1, broker.PublishOptions{})
	syncNode(t, b, n)
	if got := n.received("a"); offs(got) != "[2 3 4 5]" {
		t.Fatalf("got %s", offs(got))
	}

	// A stream nobody published to has a fresh epoch and offset 0, and
	// its first publication keeps that epoch.
	res, err = b.History(ctx, "fresh", broker.HistoryRequest{Limit: -1})
	if err != nil || res.Top.Offset != 0 || res.Top.Epoch == "" || len(res.Publications) != 0 {
		t.Fatalf("fresh stream %+v %v", res, err)
	}
	if p := pub(t, b, "fresh", 1, broker.PublishOptions{}); p != (broker.Position{Epoch: res.Top.Epoch, Offset: 1}) {
		t.Fatalf("first publication %+v after top %+v", p, res.Top)
	}

	// Lost keys (expired, or the server was flushed) start a new epoch.
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	if err := rc.Del(ctx, "hotline:meta:a").Err(); err != nil {
		t.Fatal(err)
	}
	if p := pub(t, b, "a", 1, broker.PublishOptions{}); p.Epoch == epoch || p.Offset != 1 {
		t.Fatalf("after losing the stream: %+v", p)
	}

	// Another prefix is another set of streams.
	other, err := broker.NewRedis(broker.RedisConfig{Addr: addr, Prefix: "other:"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if res, _ := other.History(ctx, "b", broker.HistoryRequest{}); res.Top.Offset != 0 {
		t.Fatalf("prefix not applied: %+v", res.Top)
	}

	if _, err := b.Publish(ctx, "a", json.RawMessage(`{`), nil, broker.PublishOptions{}); err == nil {
		t.Fatal("invalid JSON published")
	}
	// Server-side publications have no info.
	_ = b.Subscribe(ctx, "s")
	if _, err := b.Publish(ctx, "s", json.RawMessage(`{"x":"é\n"}`), nil, broker.PublishOptions{HistorySize: 1}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "server publication", func() bool { return len(n.received("s")) == 1 })
	if p := n.received("s")[0]; p.Info != nil || string(p.Data) != `{"x":"é\n"}` {
		t.Fatalf("server publication %+v %s", p, p.Data)
	}
}

func TestRedisHistory(t *testing.T) {
	ctx := context.Background()
	b, _ := newNode(t, testredis.Start(t))
	top := pub(t, b, "c", 10, broker.PublishOptions{HistorySize: 5})
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
		{"since zero trimmed", broker.HistoryRequest{Since: at(0), Limit: -1}, "[]", broker.ErrHistoryTrimmed},
		{"reverse since", broker.HistoryRequest{Since: at(8), Limit: -1, Reverse: true}, "[7 6]", nil},
		{"reverse since oldest", broker.HistoryRequest{Since: at(6), Limit: -1, Reverse: true}, "[]", nil},
		{"reverse since trimmed", broker.HistoryRequest{Since: at(2), Limit: -1, Reverse: true}, "[]", nil},
		{"other epoch", broker.HistoryRequest{Since: &broker.Position{Epoch: "x", Offset: 7}}, "[]", broker.ErrEpochChanged},
		{"beyond top", broker.HistoryRequest{Since: at(11)}, "[]", broker.ErrEpochChanged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := b.History(ctx, "c", tc.req)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if got := offs(res.Publications); got != tc.want {
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

	// Without history, positions are still assigned and since == top is
	// still servable.
	p := pub(t, b, "none", 3, broker.PublishOptions{})
	if res, err := b.History(ctx, "none", broker.HistoryRequest{Since: &p, Limit: -1}); err != nil || len(res.Publications) != 0 {
		t.Fatalf("since top without history: %v", err)
	}
	p.Offset--
	if _, err := b.History(ctx, "none", broker.HistoryRequest{Since: &p, Limit: -1}); !errors.Is(err, broker.ErrHistoryTrimmed) {
		t.Fatalf("since top-1 without history: %v", err)
	}
}

func TestRedisHistoryTTL(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	b, _ := newNode(t, addr)
	const ttl = 600 * time.Millisecond
	opts := broker.PublishOptions{HistorySize: 100, HistoryTTL: ttl}
	start := time.Now()
	pub(t, b, "t", 2, opts)
	time.Sleep(ttl / 2)
	top := pub(t, b, "t", 1, opts)
	time.Sleep(time.Until(start.Add(ttl + 50*time.Millisecond))) // the first two are past the TTL
	res, err := b.History(ctx, "t", broker.HistoryRequest{Limit: -1})
	if err != nil || offs(res.Publications) != "[3]" || res.Top != top {
		t.Fatalf("%s %+v %v", offs(res.Publications), res.Top, err)
	}
	if _, err := b.History(ctx, "t", broker.HistoryRequest{Since: &broker.Position{Epoch: top.Epoch, Offset: 1}, Limit: -1}); !errors.Is(err, broker.ErrHistoryTrimmed) {
		t.Fatalf("since expired: %v", err)
	}
	if res, err := b.History(ctx, "t", broker.HistoryRequest{Since: &broker.Position{Epoch: top.Epoch, Offset: 2}, Limit: -1}); err != nil || offs(res.Publications) != "[3]" {
		t.Fatalf("since kept: %s %v", offs(res.Publications), err)
	}
	// The history key expires with its last publication; the stream
	// (epoch and offset) outlives it.
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	eventually(t, "history key expiry", func() bool { return rc.Exists(ctx, "hotline:history:t").Val() == 0 })
	if d := rc.PTTL(ctx, "hotline:meta:t").Val(); d < time.Hour {
		t.Fatalf("meta TTL %v", d)
	}
	res, err = b.History(ctx, "t", broker.HistoryRequest{Limit: -1})
	if err != nil || len(res.Publications) != 0 || res.Top != top {
		t.Fatalf("after expiry: %s %+v %v", offs(res.Publications), res.Top, err)
	}
	// Without a TTL the keys are kept.
	pub(t, b, "keep", 2, broker.PublishOptions{HistorySize: 1})
	for _, k := range []string{"hotline:history:keep", "hotline:meta:keep"} {
		if d := rc.PTTL(ctx, k).Val(); d != -1 {
			t.Fatalf("%s TTL %v", k, d)
		}
	}
	if n := rc.LLen(ctx, "hotline:history:keep").Val(); n != 1 {
		t.Fatalf("history length %d", n)
	}
}

func TestRedisTwoNodes(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	a, na := newNode(t, addr)
	b, nb := newNode(t, addr)
	c, nc := newNode(t, addr) // subscribed elsewhere only
	for _, x := range []broker.Broker{a, b} {
		if err := x.Subscribe(ctx, "room"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Subscribe(ctx, "elsewhere"); err != nil {
		t.Fatal(err)
	}
	pa := pub(t, a, "room", 2, broker.PublishOptions{HistorySize: 10})
	pb := pub(t, b, "room", 2, broker.PublishOptions{HistorySize: 10})
	if pa.Epoch != pb.Epoch || pa.Offset != 2 || pb.Offset != 4 {
		t.Fatalf("positions %+v %+v", pa, pb)
	}
	for name, n := range map[string]*node{"a": na, "b": nb} {
		eventually(t, name+" gets 4", func() bool { return len(n.received("room")) == 4 })
		if got := offs(n.received("room")); got != "[1 2 3 4]" {
			t.Fatalf("node %s got %s", name, got)
		}
	}
	res, err := c.History(ctx, "room", broker.HistoryRequest{Limit: -1})
	if err != nil || offs(res.Publications) != "[1 2 3 4]" || res.Top != pb {
		t.Fatalf("history from a third node: %s %+v %v", offs(res.Publications), res.Top, err)
	}

	// Join and leave reach the subscribed nodes.
	_ = c.PublishJoin(ctx, "room", broker.ClientInfo{User: "x"})
	_ = a.PublishLeave(ctx, "room", broker.ClientInfo{User: "x"})
	for name, n := range map[string]*node{"a": na, "b": nb} {
		eventually(t, name+" events", func() bool { return len(n.eventList()) == 2 })
		if got := fmt.Sprint(n.eventList()); got != "[join room x leave room x]" {
			t.Fatalf("node %s events %s", name, got)
		}
	}

	syncNode(t, c, nc)
	if len(nc.received("room")) != 0 || len(nc.eventList()) != 0 {
		t.Fatalf("unsubscribed node got %d publications, events %v", len(nc.received("room")), nc.eventList())
	}

	// After b unsubscribes only a receives.
	if err := b.Unsubscribe(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	pub(t, c, "room", 1, broker.PublishOptions{})
	eventually(t, "a gets 5", func() bool { return len(na.received("room")) == 5 })
	syncNode(t, b, nb)
	if got := offs(nb.received("room")); got != "[1 2 3 4]" {
		t.Fatalf("unsubscribed b got %s", got)
	}
}

func TestRedisConcurrentPublishOrder(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	a, na := newNode(t, addr)
	b, nb := newNode(t, addr)
	_ = a.Subscribe(ctx, "o")
	_ = b.Subscribe(ctx, "o")
	var wg sync.WaitGroup
	for i := range 8 {
		x := broker.Broker(a)
		if i%2 == 1 {
			x = b
		}
		wg.Go(func() { pub(t, x, "o", 50, broker.PublishOptions{HistorySize: 1000}) })
	}
	wg.Wait()
	for name, n := range map[string]*node{"a": na, "b": nb} {
		eventually(t, name+" gets 400", func() bool { return len(n.received("o")) == 400 })
		for i, p := range n.received("o") {
			if p.Offset != uint64(i+1) {
				t.Fatalf("node %s: fan-out out of order at %d: %d", name, i, p.Offset)
			}
		}
	}
	res, _ := a.History(ctx, "o", broker.HistoryRequest{Limit: -1})
	if len(res.Publications) != 400 || res.Top.Offset != 400 {
		t.Fatalf("history %d top %d", len(res.Publications), res.Top.Offset)
	}
}

func TestRedisPresence(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	a, _ := newNode(t, addr)
	b, _ := newNode(t, addr)
	const short = 500 * time.Millisecond
	if err := a.AddPresence(ctx, "p", "s1", broker.ClientInfo{User: "a", Name: "Ann", Client: "s1"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.AddPresence(ctx, "p", "s2", broker.ClientInfo{User: "b", Client: "s2"}, short); err != nil {
		t.Fatal(err)
	}
	added := time.Now()
	_ = b.AddPresence(ctx, "p", "s3", broker.ClientInfo{User: "c", Client: "s3"}, time.Minute)
	for _, x := range []broker.Broker{a, b} {
		got, err := x.Presence(ctx, "p")
		if err != nil || len(got) != 3 || got["s1"] != (broker.ClientInfo{User: "a", Name: "Ann", Client: "s1"}) || got["s2"].User != "b" {
			t.Fatalf("merged presence %+v %v", got, err)
		}
	}
	if err := a.RemovePresence(ctx, "p", "s3"); err != nil { // removed by another node
		t.Fatal(err)
	}
	time.Sleep(time.Until(added.Add(short + 50*time.Millisecond)))
	got, err := a.Presence(ctx, "p")
	if err != nil || len(got) != 1 || got["s1"].User != "a" {
		t.Fatalf("after expiry %+v %v", got, err)
	}
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	if n := rc.HLen(ctx, "hotline:presence:p").Val(); n != 1 {
		t.Fatalf("expired entries kept: %d", n)
	}
	// A refresh extends the entry, and the key lives as long as its
	// longest entry.
	_ = b.AddPresence(ctx, "p", "s1", broker.ClientInfo{User: "a"}, 2*time.Minute)
	if d := rc.PTTL(ctx, "hotline:presence:p").Val(); d < 90*time.Second {
		t.Fatalf("key TTL %v", d)
	}
	_ = b.AddPresence(ctx, "p", "s4", broker.ClientInfo{User: "d"}, time.Second)
	if d := rc.PTTL(ctx, "hotline:presence:p").Val(); d < 90*time.Second {
		t.Fatalf("key TTL shortened to %v", d)
	}
	_ = a.RemovePresence(ctx, "p", "s1")
	_ = a.RemovePresence(ctx, "p", "s4")
	if got, err := b.Presence(ctx, "p"); err != nil || len(got) != 0 {
		t.Fatalf("after remove %+v %v", got, err)
	}
	if got, err := b.Presence(ctx, "nobody"); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("empty channel %+v %v", got, err)
	}
}

func TestRedisClose(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	a, na := newNode(t, addr)
	b, _ := newNode(t, addr)
	_ = a.Subscribe(ctx, "x")
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	pub(t, b, "x", 3, broker.PublishOptions{})
	time.Sleep(50 * time.Millisecond)
	if n := len(na.received("")); n != 0 {
		t.Fatalf("closed node got %d publications", n)
	}
	checks := map[string]error{}
	_, checks["publish"] = a.Publish(ctx, "x", json.RawMessage(`1`), nil, broker.PublishOptions{})
	_, checks["history"] = a.History(ctx, "x", broker.HistoryRequest{})
	checks["subscribe"] = a.Subscribe(ctx, "x")
	checks["unsubscribe"] = a.Unsubscribe(ctx, "x")
	checks["join"] = a.PublishJoin(ctx, "x", broker.ClientInfo{})
	checks["add presence"] = a.AddPresence(ctx, "x", "c", broker.ClientInfo{}, time.Second)
	checks["remove presence"] = a.RemovePresence(ctx, "x", "c")
	_, checks["presence"] = a.Presence(ctx, "x")
	checks["start"] = a.Start(na)
	for name, err := range checks {
		if !errors.Is(err, broker.ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
	// A broker that was never started closes too.
	c, err := broker.NewRedis(broker.RedisConfig{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRedisPushEngines runs two push engines, as two nodes would, on one
// Redis: a publication on one reaches a session on the other.
func TestRedisPushEngines(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	engine := func() *push.Engine {
		b, err := broker.NewRedis(broker.RedisConfig{Addr: addr})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close(context.Background()) })
		e, err := push.New(push.Config{Broker: b})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
		return e
	}
	ea, eb := engine(), engine()

	s, err := eb.Connect(ctx, push.ConnectRequest{
		Identity:  auth.Identity{UserID: "u"},
		Protocol:  push.ProtocolSuperchat,
		Transport: "websocket",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Handle(ctx, []byte(`{"id":1,"op":"subscribe","channel":"chat:x"}`)); err != nil {
		t.Fatal(err)
	}
	var after uint64
	// next returns the next queued item that satisfies keep.
	next := func(what string, keep func(string) bool) string {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, waitFor)
		defer cancel()
		for {
			if err := s.Wait(wctx, after); err != nil {
				t.Fatalf("waiting for %s: %v", what, err)
			}
			for _, o := range s.Pending(after, nil) {
				after = o.Seq
				if keep(string(o.Data)) {
					s.Ack(after)
					return string(o.Data)
				}
			}
			s.Ack(after)
		}
	}
	reply := next("subscribe reply", func(m string) bool { return strings.Contains(m, `"id":1`) })
	if strings.Contains(reply, `"error"`) {
		t.Fatalf("subscribe failed: %s", reply)
	}

	pos, err := ea.Publish(ctx, "chat:x", json.RawMessage(`"hello from A"`), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := next("publication", func(m string) bool { return strings.Contains(m, `"push"`) && strings.Contains(m, `"data"`) })
	var m struct {
		Push struct {
			Channel string          `json:"channel"`
			Epoch   string          `json:"epoch"`
			Offset  uint64          `json:"offset"`
			Data    json.RawMessage `json:"data"`
		} `json:"push"`
	}
	if err := json.Unmarshal([]byte(got), &m); err != nil {
		t.Fatalf("decode %s: %v", got, err)
	}
	if m.Push.Channel != "chat:x" || string(m.Push.Data) != `"hello from A"` || m.Push.Epoch != pos.Epoch || m.Push.Offset != pos.Offset {
		t.Fatalf("got %s, published at %+v", got, pos)
	}

	// Engine B's own publications go through Redis too, and positions
	// are shared.
	pos2, err := eb.Publish(ctx, "chat:x", json.RawMessage(`"from B"`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if pos2.Epoch != pos.Epoch || pos2.Offset != pos.Offset+1 {
		t.Fatalf("positions %+v then %+v", pos, pos2)
	}
	got = next("second publication", func(m string) bool { return strings.Contains(m, `"from B"`) })
	if !strings.Contains(got, fmt.Sprintf(`"offset":%d`, pos2.Offset)) {
		t.Fatalf("got %s", got)
	}
}
