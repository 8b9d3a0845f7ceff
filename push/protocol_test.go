package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/superchat"
)

type historyPage struct {
	Epoch        string           `json:"epoch"`
	Offset       uint64           `json:"offset"`
	Recovered    *bool            `json:"recovered"`
	Reason       string           `json:"reason"`
	Publications []superchat.Push `json:"publications"`
	More         bool             `json:"more"`
}

// readAll pages through a channel's history the way a client does: again
// with since = the last position returned, until "more" is false.
func readAll(t *testing.T, c *client, channel string, reverse bool, limit int) (offsets []uint64, pages int) {
	t.Helper()
	var since *broker.Position
	for id := uint64(1); ; id++ {
		req := map[string]any{"id": id, "op": "history", "channel": channel, "reverse": reverse}
		if since != nil {
			req["since"] = since
		}
		if limit >= 0 {
			req["limit"] = limit
		}
		b, _ := json.Marshal(req)
		p := result[historyPage](t, c.request(string(b)))
		pages++
		for _, pub := range p.Publications {
			offsets = append(offsets, pub.Offset)
		}
		if !p.More {
			return offsets, pages
		}
		if len(p.Publications) == 0 {
			t.Fatalf("more without publications: %+v", p)
		}
		last := p.Publications[len(p.Publications)-1]
		since = &broker.Position{Epoch: last.Epoch, Offset: last.Offset}
		if pages > 1000 {
			t.Fatal("paging does not end")
		}
	}
}

func publishN(t *testing.T, e *Engine, channel string, n int, data func(i int) string) {
	t.Helper()
	for i := range n {
		if _, err := e.Publish(context.Background(), PublishRequest{Channel: channel, Data: json.RawMessage(data(i))}); err != nil {
			t.Fatal(err)
		}
	}
}

func wantOffsets(t *testing.T, got []uint64, from, to uint64) {
	t.Helper()
	step := uint64(1)
	n := to - from + 1
	if from > to {
		step, n = ^uint64(0), from-to+1 // counting down
	}
	if uint64(len(got)) != n {
		t.Fatalf("%d publications, want %d (%d to %d)", len(got), n, from, to)
	}
	for i, o := range got {
		if want := from + uint64(i)*step; o != want {
			t.Fatalf("publication %d has offset %d, want %d", i, o, want)
		}
	}
}

func TestHistoryPagedByCount(t *testing.T) {
	e := newEngine(t, Config{Namespaces: map[string]NamespaceOptions{"big": {HistorySize: 1000}}})
	publishN(t, e, "big:x", 250, func(i int) string { return fmt.Sprint(i) })
	c := connect(t, e, ProtocolSuperchat, "a")

	// No limit: the server's page size.
	p := result[historyPage](t, c.request(`{"id":1,"op":"history","channel":"big:x"}`))
	if len(p.Publications) != 100 || !p.More || p.Offset != 250 {
		t.Fatalf("first page: %d publications, more %v, top %d", len(p.Publications), p.More, p.Offset)
	}
	// A limit above the maximum is the maximum.
	p = result[historyPage](t, c.request(`{"id":2,"op":"history","channel":"big:x","limit":5000}`))
	if len(p.Publications) != 100 || !p.More {
		t.Fatalf("limit 5000: %d publications, more %v", len(p.Publications), p.More)
	}
	// A client's own limit: more says there is more.
	p = result[historyPage](t, c.request(`{"id":3,"op":"history","channel":"big:x","limit":7}`))
	if len(p.Publications) != 7 || !p.More {
		t.Fatalf("limit 7: %d publications, more %v", len(p.Publications), p.More)
	}
	// Exactly all: no more.
	p = result[historyPage](t, c.request(`{"id":4,"op":"history","channel":"big:x","limit":50,"since":{"epoch":"`+p.Epoch+`","offset":200}}`))
	if len(p.Publications) != 50 || p.More {
		t.Fatalf("last 50: %d publications, more %v", len(p.Publications), p.More)
	}

	got, pages := readAll(t, c, "big:x", false, -1)
	wantOffsets(t, got, 1, 250)
	if pages != 3 {
		t.Fatalf("%d pages, want 3", pages)
	}
	got, _ = readAll(t, c, "big:x", true, -1)
	wantOffsets(t, got, 250, 1)
	got, pages = readAll(t, c, "big:x", false, 30)
	wantOffsets(t, got, 1, 250)
	if pages != 9 {
		t.Fatalf("%d pages of 30, want 9", pages)
	}
}

// History poisoning (issue 10.2): a few large publications must not make
// every history reader a slow consumer.
func TestHistoryPagedByBytes(t *testing.T) {
	const queue = 64 << 10
	e := newEngine(t, Config{QueueBytes: queue, Namespaces: map[string]NamespaceOptions{"chat": ChatNamespace}})
	big := `"` + strings.Repeat("x", 10<<10) + `"`
	publishN(t, e, "chat:lobby", 20, func(int) string { return big })

	c := connect(t, e, ProtocolSuperchat, "a")
	c.send(`{"id":1,"op":"history","channel":"chat:lobby"}`)
	if c.s.Err() != nil {
		t.Fatalf("history ended the session: %v", c.s.Err())
	}
	raw := c.raw()
	if len(raw) != 1 || len(raw[0]) > queue/4+1024 {
		t.Fatalf("reply of %d items, %d bytes; want one of at most %d", len(raw), len(raw[0]), queue/4+1024)
	}
	got, pages := readAll(t, c, "chat:lobby", false, -1)
	wantOffsets(t, got, 1, 20)
	if pages < 10 {
		t.Fatalf("%d pages of 10 KiB publications in a 16 KiB budget", pages)
	}
	got, _ = readAll(t, c, "chat:lobby", true, -1)
	wantOffsets(t, got, 20, 1)
	if c.s.Err() != nil {
		t.Fatal(c.s.Err())
	}

	// A publication bigger than the budget still comes, alone.
	huge := `"` + strings.Repeat("y", 20<<10) + `"`
	publishN(t, e, "chat:lobby", 2, func(int) string { return huge })
	p := result[historyPage](t, c.request(`{"id":9,"op":"history","channel":"chat:lobby","reverse":true}`))
	if len(p.Publications) != 1 || !p.More || p.Publications[0].Offset != 22 {
		t.Fatalf("huge: %d publications, more %v", len(p.Publications), p.More)
	}
}

func TestHistoryBytesReachBroker(t *testing.T) {
	rec := &recordingBroker{Memory: broker.NewMemory()}
	e := newEngine(t, Config{Broker: rec, Namespaces: map[string]NamespaceOptions{"n": {HistorySize: 5, HistoryBytes: 4096}}})
	if _, err := e.Publish(context.Background(), PublishRequest{Channel: "n:x", Data: json.RawMessage(`1`)}); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(); got.HistoryBytes != 4096 || got.HistorySize != 5 || got.IdempotencyKey != "" {
		t.Fatalf("publish options %+v", got)
	}
	if ChatNamespace.HistoryBytes == 0 || DefaultNamespace.HistoryBytes == 0 {
		t.Fatal("default namespaces without a byte bound")
	}
}

// A presence reply for a room of 12,000 users must not end the session
// that asks for it (issue 10.2).
func TestPresenceCapped(t *testing.T) {
	ctx := context.Background()
	const queue = 64 << 10
	b := broker.NewMemory()
	e := newEngine(t, Config{Broker: b, QueueBytes: queue})
	for i := range 12000 {
		info := broker.ClientInfo{User: fmt.Sprintf("user-%05d", i), Name: fmt.Sprintf("Name %d", i)}
		if err := b.AddPresence(ctx, "chat:big", fmt.Sprintf("s%d", i), info, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	c := connect(t, e, ProtocolSuperchat, "asker")
	c.send(`{"id":1,"op":"presence","channel":"chat:big"}`)
	if c.s.Err() != nil {
		t.Fatalf("presence ended the session: %v", c.s.Err())
	}
	raw := c.raw()
	if len(raw) != 1 || len(raw[0]) > queue/4+256 {
		t.Fatalf("reply of %d items, %d bytes", len(raw), len(raw[0]))
	}
	var m superchat.ServerMessage
	if err := json.Unmarshal([]byte(raw[0]), &m); err != nil {
		t.Fatal(err)
	}
	p := result[PresencePage](t, m)
	if p.Total != 12000 || !p.Truncated || len(p.Clients) == 0 || len(p.Clients) > 1000 || p.Clients[0].User != "user-00000" {
		t.Fatalf("presence: total %d truncated %v, %d clients", p.Total, p.Truncated, len(p.Clients))
	}

	// With room in the queue, the count bound.
	e2 := newEngine(t, Config{Broker: b, QueueBytes: 64 << 20})
	c2 := connect(t, e2, ProtocolSuperchat, "asker")
	p = result[PresencePage](t, c2.request(`{"id":1,"op":"presence","channel":"chat:big"}`))
	if p.Total != 12000 || !p.Truncated || len(p.Clients) != 1000 {
		t.Fatalf("presence: total %d truncated %v, %d clients", p.Total, p.Truncated, len(p.Clients))
	}
	page, err := e2.PresencePage(ctx, "chat:big", 10)
	if err != nil || len(page.Clients) != 10 || !page.Truncated {
		t.Fatalf("limit 10: %+v %v", page, err)
	}
	// A small room: everything, not truncated.
	connect(t, e2, ProtocolChat, "chatter")
	p = result[PresencePage](t, c2.request(`{"id":2,"op":"presence","channel":"chat:lobby"}`))
	if p.Total != 1 || p.Truncated || len(p.Clients) != 1 {
		t.Fatalf("small room: %+v", p)
	}
}

func TestMaxSubscriptions(t *testing.T) {
	e := newEngine(t, Config{MaxSubscriptions: 3})
	c := connect(t, e, ProtocolSuperchat, "a")
	for i := range 3 {
		if m := c.request(fmt.Sprintf(`{"id":%d,"op":"subscribe","channel":"chat:%d"}`, i+1, i)); m.Error != nil {
			t.Fatalf("subscribe %d: %+v", i, m.Error)
		}
	}
	m := c.request(`{"id":4,"op":"subscribe","channel":"chat:x"}`)
	if m.Error == nil || m.Error.Code != 429 || !strings.Contains(m.Error.Message, "at most 3") {
		t.Fatalf("fourth subscribe: %+v", m)
	}
	if m := c.request(`{"id":5,"op":"unsubscribe","channel":"chat:0"}`); m.Error != nil {
		t.Fatal(m.Error)
	}
	if m := c.request(`{"id":6,"op":"subscribe","channel":"chat:x"}`); m.Error != nil {
		t.Fatalf("after unsubscribe: %+v", m.Error)
	}
	if c.s.Err() != nil {
		t.Fatal(c.s.Err())
	}
}

// blockingBroker blocks Subscribe until released, so that a test can hold
// a subscribe between its limit check and its effect.
type blockingBroker struct {
	*broker.Memory
	entered chan string
	release chan struct{}
}

func (b *blockingBroker) Subscribe(ctx context.Context, channel string) error {
	b.entered <- channel
	<-b.release
	return b.Memory.Subscribe(ctx, channel)
}

// The subscription limit is exact when two transports (a WebSocket and a
// polling POST) send requests to one session at once: one message at a
// time. Without the session's turn both subscribes pass the check and
// reach the broker (checked: the test fails).
func TestMaxSubscriptionsConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bb := &blockingBroker{Memory: broker.NewMemory(), entered: make(chan string, 2), release: make(chan struct{})}
		e, err := New(Config{Broker: bb, MaxSubscriptions: 1, SessionGrace: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Shutdown(context.Background())
		c := connect(t, e, ProtocolSuperchat, "a")
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				_ = c.s.Handle(context.Background(), fmt.Appendf(nil, `{"id":%d,"op":"subscribe","channel":"chat:%d"}`, i+1, i))
			})
		}
		synctest.Wait()
		n := len(bb.entered)
		close(bb.release)
		wg.Wait()
		if n != 1 {
			t.Fatalf("%d subscribes reached the broker at once", n)
		}
		if n := len(c.s.Channels()); n != 1 {
			t.Fatalf("%d subscriptions, limit 1", n)
		}
		var ok, refused int
		for _, m := range c.msgs() {
			switch {
			case m.Error != nil && m.Error.Code == 429:
				refused++
			case m.Error == nil && m.ID != 0:
				ok++
			}
		}
		if ok != 1 || refused != 1 {
			t.Fatalf("%d subscribed, %d refused", ok, refused)
		}
		c.s.Close(CodeNormal, "bye")
	})
}

func TestHandleBatch(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 3})
	c := connect(t, e, ProtocolSuperchat, "a")
	msgs := func(n int) [][]byte {
		var out [][]byte
		for i := range n {
			out = append(out, fmt.Appendf(nil, `{"id":%d,"op":"connect"}`, i+1))
		}
		return out
	}
	if err := c.s.HandleBatch(context.Background(), msgs(4)); !errors.Is(err, ErrBatchTooLarge) {
		t.Fatalf("batch of 4: %v", err)
	}
	if got := c.msgs(); len(got) != 0 {
		t.Fatalf("a refused batch was handled: %+v", got)
	}
	if err := c.s.HandleBatch(context.Background(), msgs(3)); err != nil {
		t.Fatal(err)
	}
	got := c.msgs()
	if len(got) != 3 || got[0].ID != 1 || got[2].ID != 3 {
		t.Fatalf("replies %+v", got)
	}
}

// recordingBroker remembers the options of each Publish and can fail it.
type recordingBroker struct {
	*broker.Memory
	mu   sync.Mutex
	opts []broker.PublishOptions
	fail error
}

func (b *recordingBroker) Publish(ctx context.Context, channel string, data json.RawMessage, info *broker.ClientInfo, opts broker.PublishOptions) (broker.Position, error) {
	b.mu.Lock()
	b.opts = append(b.opts, opts)
	fail := b.fail
	b.mu.Unlock()
	if fail != nil {
		return broker.Position{}, fail
	}
	return b.Memory.Publish(ctx, channel, data, info, opts)
}

func (b *recordingBroker) last() broker.PublishOptions {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opts[len(b.opts)-1]
}

func (b *recordingBroker) setFail(err error) {
	b.mu.Lock()
	b.fail = err
	b.mu.Unlock()
}

func TestPublishOutcome(t *testing.T) {
	rec := &recordingBroker{Memory: broker.NewMemory()}
	e := newEngine(t, Config{Broker: rec, IdempotencyTTL: time.Minute})
	c := connect(t, e, ProtocolSuperchat, "a")

	m := c.request(`{"id":1,"op":"publish","channel":"chat:x","data":1,"idempotency_key":"k-1"}`)
	if m.Error != nil {
		t.Fatal(m.Error)
	}
	if o := rec.last(); o.IdempotencyKey != "k-1" || o.IdempotencyTTL != time.Minute || o.HistoryBytes != ChatNamespace.HistoryBytes {
		t.Fatalf("options %+v", o)
	}
	m = c.request(`{"id":2,"op":"publish","channel":"chat:x","data":1,"idempotency_key":"` + strings.Repeat("k", MaxIdempotencyKey+1) + `"}`)
	if m.Error == nil || m.Error.Code != 400 {
		t.Fatalf("long key: %+v", m)
	}
	if _, err := e.Publish(context.Background(), PublishRequest{Channel: "chat:x", Data: json.RawMessage(`1`), IdempotencyKey: strings.Repeat("k", MaxIdempotencyKey+1)}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("long key: %v", err)
	}

	for _, tc := range []struct {
		err  error
		code int
		text string
		is   error
	}{
		{errors.New("connection refused"), 503, "not published: ", ErrNotPublished},
		{fmt.Errorf("%w: i/o timeout", broker.ErrOutcomeUnknown), 504, "outcome unknown: ", broker.ErrOutcomeUnknown},
	} {
		rec.setFail(tc.err)
		m := c.request(`{"id":3,"op":"publish","channel":"chat:x","data":1}`)
		if m.Error == nil || m.Error.Code != tc.code || !strings.HasPrefix(m.Error.Message, tc.text) {
			t.Errorf("%v: reply %+v, want %d %q", tc.err, m.Error, tc.code, tc.text)
		}
		_, err := e.Publish(context.Background(), PublishRequest{Channel: "chat:x", Data: json.RawMessage(`1`)})
		if !errors.Is(err, tc.is) || (tc.is == ErrNotPublished) == errors.Is(err, broker.ErrOutcomeUnknown) {
			t.Errorf("%v: Publish error %v", tc.err, err)
		}
	}
	if c.s.Err() != nil {
		t.Fatal(c.s.Err())
	}
}

// A retry with the same key returns the first position and publishes once
// (the broker keeps the keys: SEAMS §4).
func TestPublishIdempotent(t *testing.T) {
	e := newEngine(t, Config{})
	sub := connect(t, e, ProtocolSuperchat, "s")
	sub.request(`{"id":1,"op":"subscribe","channel":"chat:x"}`)
	c := connect(t, e, ProtocolSuperchat, "a")
	first := result[broker.Position](t, c.request(`{"id":1,"op":"publish","channel":"chat:x","data":"once","idempotency_key":"abc"}`))
	again := result[broker.Position](t, c.request(`{"id":2,"op":"publish","channel":"chat:x","data":"once","idempotency_key":"abc"}`))
	api, err := e.Publish(context.Background(), PublishRequest{Channel: "chat:x", Data: json.RawMessage(`"once"`), IdempotencyKey: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	if again != first || api != first {
		t.Fatalf("positions %+v %+v %+v", first, again, api)
	}
	other := result[broker.Position](t, c.request(`{"id":3,"op":"publish","channel":"chat:x","data":"two","idempotency_key":"abd"}`))
	if other.Offset != first.Offset+1 {
		t.Fatalf("another key: %+v after %+v", other, first)
	}
	var pushes int
	for _, m := range sub.msgs() {
		if m.Push != nil && m.Push.Data != nil {
			pushes++
		}
	}
	if pushes != 2 {
		t.Fatalf("%d pushes, want 2", pushes)
	}
}

// The publish rate is per user: one user with 20 sessions does not get 20
// times the rate (issue 10.4).
func TestPublishRatePerUser(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, err := New(Config{PublishRate: 1, PublishBurst: 2, MaxUserSessions: 20})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Shutdown(context.Background())
		var cs []*client
		for range 20 {
			cs = append(cs, connect(t, e, ProtocolSuperchat, "greedy"))
		}
		other := connect(t, e, ProtocolSuperchat, "other")
		publish := func(c *client) int {
			m := c.request(`{"id":1,"op":"publish","channel":"chat:x","data":1}`)
			if m.Error != nil {
				return m.Error.Code
			}
			return 200
		}
		ok := 0
		for _, c := range cs {
			if publish(c) == 200 {
				ok++
			}
		}
		if ok != 2 {
			t.Fatalf("20 sessions of one user published %d times at once, burst 2", ok)
		}
		if publish(other) != 200 {
			t.Fatal("another user is limited too")
		}
		time.Sleep(time.Second)
		if publish(cs[7]) != 200 || publish(cs[8]) != 429 {
			t.Fatal("the bucket did not refill by one per second")
		}
		for _, c := range cs {
			c.s.Close(CodeNormal, "bye")
		}
		other.s.Close(CodeNormal, "bye")
		if n := len(e.users.m); n != 0 {
			t.Fatalf("%d users left after their sessions", n)
		}
	})
}

func TestMaxUserSessions(t *testing.T) {
	e := newEngine(t, Config{MaxUserSessions: 2, SessionGrace: -1})
	a1 := connect(t, e, ProtocolSuperchat, "a")
	connect(t, e, ProtocolChat, "a")
	_, err := e.Connect(context.Background(), ConnectRequest{Identity: auth.Identity{UserID: "a"}, Protocol: ProtocolSuperchat})
	if !errors.Is(err, ErrTooManyUserSessions) {
		t.Fatalf("third session: %v", err)
	}
	connect(t, e, ProtocolSuperchat, "b")
	a1.s.Close(CodeNormal, "bye")
	if n := e.users.count("a"); n != 1 {
		t.Fatalf("user a has %d sessions", n)
	}
	connect(t, e, ProtocolSuperchat, "a")

	// Refused for the engine's limit: the user's count is given back.
	e2 := newEngine(t, Config{MaxSessions: 1})
	connect(t, e2, ProtocolSuperchat, "x")
	for range 3 {
		if _, err := e2.Connect(context.Background(), ConnectRequest{Identity: auth.Identity{UserID: "y"}, Protocol: ProtocolSuperchat}); !errors.Is(err, ErrTooManySessions) {
			t.Fatal(err)
		}
	}
	if n := e2.users.count("y"); n != 0 {
		t.Fatalf("refused sessions counted: %d", n)
	}
	// Unlimited.
	e3 := newEngine(t, Config{MaxUserSessions: -1})
	for range 30 {
		connect(t, e3, ProtocolSuperchat, "many")
	}
}

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestTokenExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		v, err := auth.New(auth.Config{Secret: secret})
		if err != nil {
			t.Fatal(err)
		}
		e, err := New(Config{Verifier: v})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Shutdown(ctx)
		id := auth.Identity{UserID: "u", Name: "U", Expires: time.Now().Add(time.Minute)}
		c := connectAs(t, e, ProtocolSuperchat, id)
		chat := connectAs(t, e, ProtocolChat, id)
		forever := connect(t, e, ProtocolSuperchat, "no-exp")
		conn := result[superchat.ConnectResult](t, c.request(`{"id":1,"op":"connect"}`))
		if conn.Exp != id.Expires.Unix() {
			t.Fatalf("connect result exp %d, want %d", conn.Exp, id.Expires.Unix())
		}

		time.Sleep(59 * time.Second)
		synctest.Wait()
		if c.s.Err() != nil || chat.s.Err() != nil {
			t.Fatal("ended before the token expired")
		}
		// Refresh the superchat session only.
		tok, _ := auth.Sign(secret, auth.Identity{UserID: "u", Subscribe: []string{"chat:*"}}, time.Hour)
		r := result[struct {
			Exp int64 `json:"exp"`
		}](t, c.request(`{"id":2,"op":"refresh","token":"`+tok+`"}`))
		if r.Exp != time.Now().Add(time.Hour).Unix() {
			t.Fatalf("refresh exp %d", r.Exp)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		var d *Disconnect
		if !errors.As(chat.s.Err(), &d) || d.Code != CodeTokenExpired || d.Reason != ReasonTokenExpired {
			t.Fatalf("chat session after its token expired: %v", chat.s.Err())
		}
		if c.s.Err() != nil {
			t.Fatalf("refreshed session ended: %v", c.s.Err())
		}
		if got := c.s.Identity(); got.Name != "U" || len(got.Subscribe) != 1 {
			t.Fatalf("identity after refresh %+v", got)
		}

		time.Sleep(time.Hour)
		synctest.Wait()
		if !errors.As(c.s.Err(), &d) || d.Code != CodeTokenExpired {
			t.Fatalf("after the refreshed token expired: %v", c.s.Err())
		}
		msgs := c.msgs()
		if last := msgs[len(msgs)-1]; last.Disconnect == nil || last.Disconnect.Code != CodeTokenExpired || last.Disconnect.Reason != "token expired" {
			t.Fatalf("last message %+v", last)
		}
		if forever.s.Err() != nil {
			t.Fatal("a session without exp ended")
		}
	})
}

func TestRefreshErrors(t *testing.T) {
	v, err := auth.New(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, Config{Verifier: v})
	c := connect(t, e, ProtocolSuperchat, "u")
	other, _ := auth.Sign(secret, auth.Identity{UserID: "someone else"}, time.Hour)
	expired, _ := auth.Sign(secret, auth.Identity{UserID: "u"}, -time.Minute)
	for _, tc := range []struct {
		req  string
		code int
	}{
		{`{"id":1,"op":"refresh"}`, 400},
		{`{"id":2,"op":"refresh","token":"garbage"}`, 401},
		{`{"id":3,"op":"refresh","token":"` + expired + `"}`, 401},
		{`{"id":4,"op":"refresh","token":"` + other + `"}`, 403},
	} {
		if m := c.request(tc.req); m.Error == nil || m.Error.Code != tc.code {
			t.Errorf("%.40s: %+v, want %d", tc.req, m.Error, tc.code)
		}
	}
	if got := c.s.Identity().UserID; got != "u" {
		t.Fatalf("identity changed to %q", got)
	}
	noVerifier := newEngine(t, Config{})
	c2 := connect(t, noVerifier, ProtocolSuperchat, "u")
	if m := c2.request(`{"id":1,"op":"refresh","token":"x"}`); m.Error == nil || m.Error.Code != 400 {
		t.Fatalf("no verifier: %+v", m)
	}
}

// The expiry timer may fire just before a refresh moves the expiry; the
// late timer must not end the refreshed session.
func TestExpiryTimerAfterRefresh(t *testing.T) {
	v, _ := auth.New(auth.Config{Secret: secret})
	e := newEngine(t, Config{Verifier: v})
	c := connectAs(t, e, ProtocolSuperchat, auth.Identity{UserID: "u", Expires: time.Now().Add(time.Hour)})
	tok, _ := auth.Sign(secret, auth.Identity{UserID: "u"}, 2*time.Hour)
	c.request(`{"id":1,"op":"refresh","token":"` + tok + `"}`)
	c.s.tokenExpired() // the old timer, late
	if c.s.Err() != nil {
		t.Fatalf("a stale expiry ended the session: %v", c.s.Err())
	}
}

func TestSessionIDNotLogged(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rec := &recordingBroker{Memory: broker.NewMemory()}
	e := newEngine(t, Config{Logger: log, Broker: rec})
	c := connect(t, e, ProtocolSuperchat, "u")
	rec.setFail(errors.New("boom"))
	c.request(`{"id":1,"op":"publish","channel":"chat:x","data":1}`) // logs a warning
	c.s.Close(CodeNormal, "bye")
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if strings.Contains(out, c.s.ID()) {
		t.Fatalf("session id in the log:\n%s", out)
	}
	if !strings.Contains(out, "session="+LogID(c.s.ID())) || len(LogID(c.s.ID())) != 12 {
		t.Fatalf("no session hash in the log:\n%s", out)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
