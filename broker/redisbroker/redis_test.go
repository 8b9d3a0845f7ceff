package redisbroker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/broker/brokertest"
	"github.com/hotline-rt/hotline/broker/redisbroker"
	"github.com/hotline-rt/hotline/internal/testredis"
	"github.com/hotline-rt/hotline/push"
)

// newNode returns a started Redis broker on addr, closed when the test ends.
func newNode(t *testing.T, addr string) (*redisbroker.Broker, *brokertest.Node) {
	t.Helper()
	return newNodePrefix(t, addr, "")
}

// newNodePrefix is newNode with a key prefix ("" for the default).
func newNodePrefix(t *testing.T, addr, prefix string) (*redisbroker.Broker, *brokertest.Node) {
	t.Helper()
	b, err := redisbroker.New(redisbroker.Config{Addr: addr, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	n := &brokertest.Node{}
	if err := b.Start(n); err != nil {
		t.Fatal(err)
	}
	return b, n
}

func TestRedisNewFails(t *testing.T) {
	if _, err := redisbroker.New(redisbroker.Config{}); err == nil {
		t.Fatal("empty address accepted")
	}
	if _, err := redisbroker.New(redisbroker.Config{Addr: "127.0.0.1:1"}); err == nil {
		t.Fatal("unreachable server accepted")
	}
}

// TestRedisStreams checks what is particular to streams kept in Redis:
// lost keys start a new epoch, prefixes separate deployments, and data
// must be JSON.
func TestRedisStreams(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	b, _ := newNode(t, addr)
	epoch := brokertest.Pub(t, b, "a", 3, broker.PublishOptions{HistorySize: 10}).Epoch
	brokertest.Pub(t, b, "b", 2, broker.PublishOptions{})

	// Lost keys (expired, or the server was flushed) start a new epoch,
	// and history of the old one is not served.
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	if err := rc.Del(ctx, "hotline:{a}:meta").Err(); err != nil {
		t.Fatal(err)
	}
	p := brokertest.Pub(t, b, "a", 1, broker.PublishOptions{HistorySize: 10})
	if p.Epoch == epoch || p.Offset != 1 {
		t.Fatalf("after losing the stream: %+v", p)
	}
	res, err := b.History(ctx, "a", broker.HistoryRequest{Limit: -1})
	if err != nil || brokertest.Offs(res.Publications) != "[1]" || res.Publications[0].Epoch != p.Epoch {
		t.Fatalf("history after losing the stream: %s %v", brokertest.Offs(res.Publications), err)
	}
	if _, err := b.History(ctx, "a", broker.HistoryRequest{Since: &broker.Position{Epoch: epoch, Offset: 3}}); !errors.Is(err, broker.ErrEpochChanged) {
		t.Fatalf("old epoch: %v", err)
	}

	// Another prefix is another set of streams.
	other, err := redisbroker.New(redisbroker.Config{Addr: addr, Prefix: "other:"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if res, _ := other.History(ctx, "b", broker.HistoryRequest{}); res.Top.Offset != 0 {
		t.Fatalf("prefix not applied: %+v", res.Top)
	}
	if n := rc.Exists(ctx, "other:meta:b").Val(); n != 0 {
		t.Fatalf("a read created other:meta:b (%d)", n)
	}

	if _, err := b.Publish(ctx, "a", json.RawMessage(`{`), nil, broker.PublishOptions{}); err == nil {
		t.Fatal("invalid JSON published")
	}
}

// TestRedisKeyTTL checks that Redis forgets what no longer needs keeping:
// the history key expires with its last publication, the stream's meta key
// outlives it, and nothing expires without a TTL.
func TestRedisKeyTTL(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	b, _ := newNode(t, addr)
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()

	top := brokertest.Pub(t, b, "t", 3, broker.PublishOptions{HistorySize: 100, HistoryTTL: 300 * time.Millisecond})
	brokertest.Eventually(t, "history key expiry", func() bool { return rc.Exists(ctx, "hotline:{t}:history").Val() == 0 })
	// The meta key outlives the history by EmptyStreamTTL.
	if d := rc.PTTL(ctx, "hotline:{t}:meta").Val(); d < broker.DefaultEmptyStreamTTL-time.Minute || d > broker.DefaultEmptyStreamTTL+time.Second {
		t.Fatalf("meta TTL %v", d)
	}
	res, err := b.History(ctx, "t", broker.HistoryRequest{Limit: -1})
	if err != nil || len(res.Publications) != 0 || res.Top != top {
		t.Fatalf("after expiry: %s %+v %v", brokertest.Offs(res.Publications), res.Top, err)
	}

	// Without a TTL the keys are kept, and the list is bounded.
	brokertest.Pub(t, b, "keep", 2, broker.PublishOptions{HistorySize: 1})
	for _, k := range []string{"hotline:{keep}:history", "hotline:{keep}:meta"} {
		if d := rc.PTTL(ctx, k).Val(); d != -1 {
			t.Fatalf("%s TTL %v", k, d)
		}
	}
	if n := rc.LLen(ctx, "hotline:{keep}:history").Val(); n != 1 {
		t.Fatalf("history length %d", n)
	}
	// Without history there is no list, and the stream is kept for
	// EmptyStreamTTL.
	brokertest.Pub(t, b, "none", 2, broker.PublishOptions{})
	if n := rc.Exists(ctx, "hotline:{none}:history").Val(); n != 0 {
		t.Fatal("history key without history")
	}
	if d := rc.PTTL(ctx, "hotline:{none}:meta").Val(); d < broker.DefaultEmptyStreamTTL-time.Minute || d > broker.DefaultEmptyStreamTTL {
		t.Fatalf("idle stream TTL %v", d)
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
	pa := brokertest.Pub(t, a, "room", 2, broker.PublishOptions{HistorySize: 10})
	pb := brokertest.Pub(t, b, "room", 2, broker.PublishOptions{HistorySize: 10})
	if pa.Epoch != pb.Epoch || pa.Offset != 2 || pb.Offset != 4 {
		t.Fatalf("positions %+v %+v", pa, pb)
	}
	for name, n := range map[string]*brokertest.Node{"a": na, "b": nb} {
		brokertest.Eventually(t, name+" gets 4", func() bool { return len(n.Received("room")) == 4 })
		if got := brokertest.Offs(n.Received("room")); got != "[1 2 3 4]" {
			t.Fatalf("node %s got %s", name, got)
		}
	}
	res, err := c.History(ctx, "room", broker.HistoryRequest{Limit: -1})
	if err != nil || brokertest.Offs(res.Publications) != "[1 2 3 4]" || res.Top != pb {
		t.Fatalf("history from a third node: %s %+v %v", brokertest.Offs(res.Publications), res.Top, err)
	}

	// Join and leave reach the subscribed nodes.
	_ = c.PublishJoin(ctx, "room", broker.ClientInfo{User: "x"})
	_ = a.PublishLeave(ctx, "room", broker.ClientInfo{User: "x"})
	for name, n := range map[string]*brokertest.Node{"a": na, "b": nb} {
		brokertest.Eventually(t, name+" events", func() bool { return len(n.EventList()) == 2 })
		if got := fmt.Sprint(n.EventList()); got != "[join room x leave room x]" {
			t.Fatalf("node %s events %s", name, got)
		}
	}

	brokertest.SyncNode(t, c, nc)
	if len(nc.Received("room")) != 0 || len(nc.EventList()) != 0 {
		t.Fatalf("unsubscribed node got %d publications, events %v", len(nc.Received("room")), nc.EventList())
	}

	// After b unsubscribes only a receives.
	if err := b.Unsubscribe(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	brokertest.Pub(t, c, "room", 1, broker.PublishOptions{})
	brokertest.Eventually(t, "a gets 5", func() bool { return len(na.Received("room")) == 5 })
	brokertest.SyncNode(t, b, nb)
	if got := brokertest.Offs(nb.Received("room")); got != "[1 2 3 4]" {
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
		wg.Go(func() { brokertest.Pub(t, x, "o", 50, broker.PublishOptions{HistorySize: 1000}) })
	}
	wg.Wait()
	for name, n := range map[string]*brokertest.Node{"a": na, "b": nb} {
		brokertest.Eventually(t, name+" gets 400", func() bool { return len(n.Received("o")) == 400 })
		for i, p := range n.Received("o") {
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
	if n := rc.HLen(ctx, "hotline:{p}:presence").Val(); n != 1 {
		t.Fatalf("expired entries kept: %d", n)
	}
	// A refresh extends the entry, and the key lives as long as its
	// longest entry.
	_ = b.AddPresence(ctx, "p", "s1", broker.ClientInfo{User: "a"}, 2*time.Minute)
	if d := rc.PTTL(ctx, "hotline:{p}:presence").Val(); d < 90*time.Second {
		t.Fatalf("key TTL %v", d)
	}
	_ = b.AddPresence(ctx, "p", "s4", broker.ClientInfo{User: "d"}, time.Second)
	if d := rc.PTTL(ctx, "hotline:{p}:presence").Val(); d < 90*time.Second {
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

// TestRedisClose checks what the conformance test cannot with one node: a
// closed node receives nothing more, and a broker that was never started
// closes too.
func TestRedisClose(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	a, na := newNode(t, addr)
	b, nb := newNode(t, addr)
	_ = a.Subscribe(ctx, "x")
	_ = b.Subscribe(ctx, "x")
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Close waited for a's goroutines: once b has the publications, a
	// would have had them too.
	brokertest.Pub(t, b, "x", 3, broker.PublishOptions{})
	brokertest.Eventually(t, "b gets 3", func() bool { return len(nb.Received("x")) == 3 })
	if n := len(na.Received("")); n != 0 {
		t.Fatalf("closed node got %d publications", n)
	}

	c, err := redisbroker.New(redisbroker.Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(ctx, "x"); err == nil {
		t.Fatal("Subscribe before Start accepted")
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(nb); err == nil {
		t.Fatal("second Start accepted")
	}
}

// TestRedisPushEngines runs two push engines, as two nodes would, on one
// Redis: a publication on one reaches a session on the other.
func TestRedisPushEngines(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	engine := func() *push.Engine {
		b, err := redisbroker.New(redisbroker.Config{Addr: addr})
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
		wctx, cancel := context.WithTimeout(ctx, brokertest.WaitFor)
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

	pos, err := ea.Publish(ctx, push.PublishRequest{Channel: "chat:x", Data: json.RawMessage(`"hello from A"`)})
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
	pos2, err := eb.Publish(ctx, push.PublishRequest{Channel: "chat:x", Data: json.RawMessage(`"from B"`)})
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

// TestRedisCatchUp cuts one node off Redis while another publishes: the cut
// node's calls fail, and once its Pub/Sub connection is back it hands over
// what it missed, from history, in order and once.
func TestRedisCatchUp(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	px := newProxy(t, addr)
	a, na := newNode(t, px.addr()) // the node that is cut off
	b, _ := newNode(t, addr)
	opts := broker.PublishOptions{HistorySize: 100}
	for _, ch := range []string{"r", "quiet", "nohist"} {
		if err := a.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	brokertest.Pub(t, b, "r", 2, opts)
	brokertest.Pub(t, b, "quiet", 1, opts)
	brokertest.Pub(t, b, "nohist", 1, broker.PublishOptions{})
	brokertest.Eventually(t, "live publications", func() bool {
		return len(na.Received("r")) == 2 && len(na.Received("quiet")) == 1 && len(na.Received("nohist")) == 1
	})

	px.cut(true)
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := a.Publish(cctx, "r", json.RawMessage(`1`), nil, opts); err == nil {
		t.Fatal("Publish succeeded while cut off")
	}
	if err := a.Subscribe(cctx, "new"); err == nil {
		t.Fatal("Subscribe succeeded while cut off")
	}
	brokertest.Pub(t, b, "r", 3, opts)                         // 3..5
	brokertest.Pub(t, b, "quiet", 2, opts)                     // 2..3
	brokertest.Pub(t, b, "nohist", 2, broker.PublishOptions{}) // 2..3: nothing to catch up from
	brokertest.Pub(t, b, "new", 1, broker.PublishOptions{})    // a never subscribed
	px.cut(false)

	// Nothing more is published to quiet: the resubscription itself
	// catches it up. Its Pub/Sub subscribes all channels at once, so
	// after that a receives the others live.
	brokertest.Eventually(t, "quiet caught up", func() bool { return len(na.Received("quiet")) == 3 })
	brokertest.Pub(t, b, "r", 1, opts)                         // 6: a gap after 2, filled before it
	brokertest.Pub(t, b, "nohist", 1, broker.PublishOptions{}) // 4: the gap stays
	brokertest.Eventually(t, "r and nohist", func() bool {
		return len(na.Received("r")) == 6 && len(na.Received("nohist")) == 2
	})
	brokertest.SyncNode(t, a, na)
	for ch, want := range map[string]string{"r": "[1 2 3 4 5 6]", "quiet": "[1 2 3]", "nohist": "[1 4]", "new": "[]"} {
		if got := brokertest.Offs(na.Received(ch)); got != want {
			t.Errorf("%s: got %s, want %s", ch, got, want)
		}
	}
	// What history could not fill was told, before offset 4.
	if g := na.GapList(""); len(g) != 1 || g[0].Channel != "nohist" || g[0].Before != 1 || g[0].Reason != "history trimmed" {
		t.Errorf("gaps %+v", g)
	}
	// The failed Subscribe left no subscription behind.
	if err := a.Unsubscribe(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	brokertest.Pub(t, b, "new", 1, broker.PublishOptions{})
	brokertest.SyncNode(t, a, na)
	if got := brokertest.Offs(na.Received("new")); got != "[]" {
		t.Fatalf("new: got %s", got)
	}
}

// TestRedisServerRestart stops Redis and starts it again, empty: calls fail
// while it is away, and afterwards the streams start new epochs, which a
// client holding an old position learns.
func TestRedisServerRestart(t *testing.T) {
	ctx := context.Background()
	srv := testredis.StartServer(t)
	a, na := newNode(t, srv.Addr)
	opts := broker.PublishOptions{HistorySize: 100}
	_ = a.Subscribe(ctx, "r")
	old := brokertest.Pub(t, a, "r", 2, opts)
	brokertest.Eventually(t, "2 publications", func() bool { return len(na.Received("r")) == 2 })

	srv.Stop()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := a.Publish(cctx, "r", json.RawMessage(`1`), nil, opts); err == nil {
		t.Error("Publish succeeded without Redis")
	}
	if _, err := a.History(cctx, "r", broker.HistoryRequest{}); err == nil {
		t.Error("History succeeded without Redis")
	}
	if err := a.AddPresence(cctx, "r", "c", broker.ClientInfo{}, time.Minute); err == nil {
		t.Error("AddPresence succeeded without Redis")
	}
	srv.Restart()

	// Publish until a receives one: its Pub/Sub reconnects on its own
	// time, and the first publications may come before.
	brokertest.Eventually(t, "a publication after the restart", func() bool {
		if _, err := a.Publish(ctx, "r", json.RawMessage(`1`), nil, opts); err != nil {
			return false
		}
		return len(na.Received("r")) > 2
	})
	got := na.Received("r")
	p := got[2]
	if p.Epoch == old.Epoch || p.Offset < 1 {
		t.Fatalf("after the restart: %+v (before: %+v)", p.Position, old)
	}
	for i, q := range got[3:] {
		if q.Epoch != p.Epoch || q.Offset != p.Offset+uint64(i)+1 {
			t.Fatalf("after the restart: %s", brokertest.Offs(got))
		}
	}
	res, err := a.History(ctx, "r", broker.HistoryRequest{Since: &old, Limit: -1})
	if !errors.Is(err, broker.ErrEpochChanged) || res.Top.Epoch != p.Epoch {
		t.Fatalf("old position after the restart: %+v %v", res.Top, err)
	}
}

// proxy forwards TCP connections to addr until it is cut: then it closes
// them and refuses new ones until it is resumed. It stands for a network
// that fails between one node and Redis.
type proxy struct {
	ln net.Listener
	to string
	wg sync.WaitGroup

	mu     sync.Mutex
	isCut  bool
	conns  map[net.Conn]struct{}
	holes  map[net.Conn]bool // connections whose data is dropped
	closed bool
}

// blackhole makes every open connection drop what it carries, without
// closing: a link that died silently (half-open). New connections work.
func (p *proxy) blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		p.holes[c] = true
	}
}

func (p *proxy) dropping(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.holes[c]
}

func newProxy(t *testing.T, to string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, to: to, conns: make(map[net.Conn]struct{}), holes: make(map[net.Conn]bool)}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		p.closed = true
		p.closeAllLocked()
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// cut closes every connection and refuses new ones (true), or lets them
// through again (false).
func (p *proxy) cut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isCut = cut
	if cut {
		p.closeAllLocked()
	}
}

func (p *proxy) closeAllLocked() {
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.isCut || p.closed {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.to)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 && !p.dropping(src) {
					if _, werr := dst.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			_ = dst.Close()
			_ = src.Close()
		}
		p.wg.Go(func() { pipe(s, c) })
		p.wg.Go(func() { pipe(c, s) })
	}
}

// BenchmarkPublish measures Publish on Memory and on Redis in one run (the
// ratio is the cost of a round trip and a Lua script), with and without
// history, one publisher at a time and many at once. A node is subscribed
// to the channel, as in use, so Redis also fans each publication out.
func BenchmarkPublish(b *testing.B) {
	addr := testredis.Start(b)
	brokers := []struct {
		name string
		new  func(b *testing.B) broker.Broker
	}{
		{"memory", func(b *testing.B) broker.Broker { return broker.NewMemory() }},
		{"redis", func(b *testing.B) broker.Broker {
			r, err := redisbroker.New(redisbroker.Config{Addr: addr, Prefix: "bench:"})
			if err != nil {
				b.Fatal(err)
			}
			return r
		}},
	}
	for _, bk := range brokers {
		for _, size := range []int{16, 1 << 10, 64 << 10} {
			for _, hist := range []int{0, 100} {
				for _, parallel := range []bool{false, true} {
					name := fmt.Sprintf("%s/size=%d/history=%d/parallel=%v", bk.name, size, hist, parallel)
					b.Run(name, func(b *testing.B) {
						benchPublish(b, bk.new(b), size, broker.PublishOptions{HistorySize: hist, HistoryTTL: time.Minute}, parallel)
					})
				}
			}
		}
	}
}

// counter counts what a broker hands to its node.
type counter struct{ n atomic.Int64 }

func (c *counter) HandlePublication(*broker.Publication) { c.n.Add(1) }
func (c *counter) HandleJoin(string, broker.ClientInfo)  {}
func (c *counter) HandleLeave(string, broker.ClientInfo) {}
func (c *counter) HandleGap(string, string)              {}

func benchPublish(b *testing.B, br broker.Broker, size int, opts broker.PublishOptions, parallel bool) {
	ctx := context.Background()
	defer br.Close(ctx)
	var c counter
	if err := br.Start(&c); err != nil {
		b.Fatal(err)
	}
	ch := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	if err := br.Subscribe(ctx, ch); err != nil {
		b.Fatal(err)
	}
	data := json.RawMessage(`"` + strings.Repeat("x", size-2) + `"`)
	info := &broker.ClientInfo{User: "bench", Name: "Bench"}
	publish := func() {
		if _, err := br.Publish(ctx, ch, data, info, opts); err != nil {
			b.Error(err)
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(size))
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				publish()
			}
		})
	} else {
		for b.Loop() {
			publish()
		}
	}
	// Count the fan-out in: wait until the node has every publication.
	want := int64(b.N)
	deadline := time.Now().Add(time.Minute)
	for c.n.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := c.n.Load(); got < want {
		b.Fatalf("node got %d of %d publications", got, want)
	}
}

// TestRedisReadsCreateNoKey reads 10,000 made-up channels, as a hostile
// client would: the server holds no key afterwards.
func TestRedisReadsCreateNoKey(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	b, _ := newNode(t, addr)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 1250 {
				ch := fmt.Sprintf("nothing-%d-%d", w, i)
				if _, err := b.History(ctx, ch, broker.HistoryRequest{Limit: -1}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	_ = b.Subscribe(ctx, "nothing")
	_ = b.Unsubscribe(ctx, "nothing")
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	if n := rc.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("DBSIZE %d after reads", n)
	}
}

// TestRedisIdempotencyAcrossNodes retries a publish with the same key on
// another node: it returns the first position and publishes nothing.
func TestRedisIdempotencyAcrossNodes(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	a, _ := newNode(t, addr)
	b, _ := newNode(t, addr)
	opts := broker.PublishOptions{HistorySize: 10, IdempotencyKey: "req-1"}
	p1, err := a.Publish(ctx, "x", json.RawMessage(`1`), nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := b.Publish(ctx, "x", json.RawMessage(`1`), nil, opts)
	if err != nil || p2 != p1 {
		t.Fatalf("retry on another node: %+v %v, first %+v", p2, err, p1)
	}
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	// The key expires with the default TTL.
	keys := rc.Keys(ctx, "hotline:*:idem:*").Val()
	if len(keys) != 1 {
		t.Fatalf("idempotency keys %v", keys)
	}
	if d := rc.PTTL(ctx, keys[0]).Val(); d <= 0 || d > broker.DefaultIdempotencyTTL {
		t.Fatalf("idempotency key TTL %v", d)
	}
	if res, _ := a.History(ctx, "x", broker.HistoryRequest{Limit: -1}); len(res.Publications) != 1 {
		t.Fatalf("history %s", brokertest.Offs(res.Publications))
	}
	// A long key is stored as its hash: the client does not decide the
	// size of what Redis keeps.
	opts.IdempotencyKey = strings.Repeat("k", 100000)
	if _, err := a.Publish(ctx, "x", json.RawMessage(`2`), nil, opts); err != nil {
		t.Fatal(err)
	}
	for _, k := range rc.Keys(ctx, "hotline:*:idem:*").Val() {
		if len(k) > 200 {
			t.Fatalf("idempotency key of %d bytes stored", len(k))
		}
	}
}

// TestRedisHistoryBytesAfterExpiry: the byte count of a history that
// expired as a whole starts again from zero, so the next publications are
// kept as the bound allows.
func TestRedisHistoryBytesAfterExpiry(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	b, _ := newNode(t, addr)
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	opts := broker.PublishOptions{HistorySize: 100, HistoryBytes: 600, HistoryTTL: 200 * time.Millisecond} // 5 fit
	brokertest.Pub(t, b, "hb", 5, opts)
	brokertest.Eventually(t, "history key expiry", func() bool { return rc.Exists(ctx, "hotline:{hb}:history").Val() == 0 })
	brokertest.Pub(t, b, "hb", 5, opts)
	res, err := b.History(ctx, "hb", broker.HistoryRequest{Limit: -1})
	if err != nil || brokertest.Offs(res.Publications) != "[6 7 8 9 10]" {
		t.Fatalf("after expiry: %s %v", brokertest.Offs(res.Publications), err)
	}
	if n := rc.HGet(ctx, "hotline:{hb}:meta", "bytes").Val(); n == "0" || n == "" {
		t.Fatalf("bytes %q", n)
	}
}

// BenchmarkHistoryTail reads the last 10 publications of a channel that
// keeps 1,000 of 1 KiB, as a catch-up or a recovering client does: the
// cost should follow what is read, not what is kept.
func BenchmarkHistoryTail(b *testing.B) {
	ctx := context.Background()
	addr := testredis.Start(b)
	br, err := redisbroker.New(redisbroker.Config{Addr: addr})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close(ctx)
	data := json.RawMessage(`"` + strings.Repeat("x", 1022) + `"`)
	var top broker.Position
	for range 1000 {
		if top, err = br.Publish(ctx, "tail", data, nil, broker.PublishOptions{HistorySize: 1000}); err != nil {
			b.Fatal(err)
		}
	}
	since := broker.Position{Epoch: top.Epoch, Offset: top.Offset - 10}
	b.ReportAllocs()
	for b.Loop() {
		res, err := br.History(ctx, "tail", broker.HistoryRequest{Since: &since, Limit: -1})
		if err != nil || len(res.Publications) != 10 {
			b.Fatalf("%d %v", len(res.Publications), err)
		}
	}
}

// TestRedisHistoryMatchesMemory runs one random sequence of publications
// (with changing history sizes) and history reads against Memory and
// Redis and compares every answer: the range selection of the Redis script
// must agree with the memory broker's. The seed is fixed, so a failure
// replays.
func TestRedisHistoryMatchesMemory(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	rb, _ := newNode(t, addr)
	mb := broker.NewMemory()
	defer mb.Close(ctx)
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 3, 10, 50}
	limits := []int{-1, 0, 1, 2, 5, 100}
	var tops [2]broker.Position
	for i := range 600 {
		if rng.IntN(3) == 0 {
			opts := broker.PublishOptions{HistorySize: sizes[rng.IntN(len(sizes))]}
			n := 1 + rng.IntN(4)
			tops[0] = brokertest.Pub(t, mb, "d", n, opts)
			tops[1] = brokertest.Pub(t, rb, "d", n, opts)
			continue
		}
		req := broker.HistoryRequest{Limit: limits[rng.IntN(len(limits))], Reverse: rng.IntN(2) == 0}
		kind := rng.IntN(5) // 0: no since, 1: start, 2: other epoch, 3-4: own epoch
		// An offset near the top, where history is kept (or beyond).
		off := tops[0].Offset + 2 - uint64(rng.IntN(int(min(tops[0].Offset+3, 60))))
		var got [2]string
		for j, b := range []broker.Broker{mb, rb} {
			r := req
			switch kind {
			case 1:
				r.Since = &broker.Position{}
			case 2:
				r.Since = &broker.Position{Epoch: "other", Offset: off}
			case 3, 4:
				r.Since = &broker.Position{Epoch: tops[j].Epoch, Offset: off}
			}
			res, err := b.History(ctx, "d", r)
			got[j] = fmt.Sprintf("%s top %d err %v", brokertest.Offs(res.Publications), res.Top.Offset, err)
		}
		if got[0] != got[1] {
			t.Fatalf("step %d, read %+v kind %d offset %d: memory %s, redis %s", i, req, kind, off, got[0], got[1])
		}
	}
}

// TestRedisRefreshPresenceOneRoundTrip refreshes 2,000 clients of one
// channel and counts the commands Redis ran for it: one script call.
func TestRedisRefreshPresenceOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	addr := testredis.Start(t)
	b, _ := newNode(t, addr)
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	entries := make(map[string]broker.ClientInfo, 2000)
	for i := range 2000 {
		id := fmt.Sprintf("s%d", i)
		entries[id] = broker.ClientInfo{User: fmt.Sprintf("u%d", i), Client: id}
	}
	// Load the script once, then count.
	if err := b.RefreshPresence(ctx, "warm", entries, time.Minute); err != nil {
		t.Fatal(err)
	}
	calls := func() int {
		info := rc.Info(ctx, "commandstats").Val()
		n := 0
		for _, line := range strings.Split(info, "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:calls="); ok {
				n, _ = strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			}
		}
		return n
	}
	before := calls()
	if err := b.RefreshPresence(ctx, "room", entries, time.Minute); err != nil {
		t.Fatal(err)
	}
	if d := calls() - before; d != 1 {
		t.Fatalf("refreshing 2,000 clients took %d script calls", d)
	}
	got, err := b.Presence(ctx, "room")
	if err != nil || len(got) != 2000 || got["s7"] != entries["s7"] {
		t.Fatalf("presence %d %v", len(got), err)
	}
}
