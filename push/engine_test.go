package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/superchat"
)

func TestChatAndSuperchatSeeSameOrder(t *testing.T) {
	e := newEngine(t, Config{})
	a := connect(t, e, ProtocolChat, "a")
	b := connect(t, e, ProtocolChat, "b")
	sc := connect(t, e, ProtocolSuperchat, "c")
	sc.request(`{"id":1,"op":"subscribe","channel":"chat:lobby"}`)

	var wg sync.WaitGroup
	for _, c := range []*client{a, b} {
		wg.Go(func() {
			for i := range 50 {
				if err := c.s.Handle(context.Background(), fmt.Appendf(nil, "%s says %d", c.s.Identity().UserID, i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	la, lb := a.raw(), b.raw()
	if len(la) != 100 || !slices.Equal(la, lb) {
		t.Fatalf("chat clients disagree: %d vs %d lines", len(la), len(lb))
	}
	var ls []string
	var prev uint64
	for _, m := range sc.msgs() {
		p := m.Push
		if p == nil || p.Info == nil {
			if p != nil && (p.Join != nil || p.Leave != nil) {
				continue
			}
			t.Fatalf("not a publication: %+v", m)
		}
		var text string
		if err := json.Unmarshal(p.Data, &text); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(text, p.Info.User+" says") || p.Info.Name != "Name "+p.Info.User {
			t.Fatalf("line %q has identity %+v", text, p.Info)
		}
		if p.Offset != prev+1 {
			t.Fatalf("offset %d after %d", p.Offset, prev)
		}
		prev = p.Offset
		ls = append(ls, text)
	}
	if !slices.Equal(ls, la) {
		t.Fatalf("superchat order differs from chat order")
	}
}

func TestChatSeesServerPublishAsBareText(t *testing.T) {
	e := newEngine(t, Config{})
	a := connect(t, e, ProtocolChat, "a")
	for _, tc := range []struct{ data, want string }{
		{`"hi"`, "hi"},
		{`"quote \" and \u00e9"`, `quote " and é`},
		{`{"k":1}`, `{"k":1}`},
	} {
		if _, err := e.Publish(context.Background(), PublishRequest{Channel: "chat:lobby", Data: json.RawMessage(tc.data)}); err != nil {
			t.Fatal(err)
		}
		if got := a.raw(); len(got) != 1 || got[0] != tc.want {
			t.Errorf("publish %s: chat got %q, want %q", tc.data, got, tc.want)
		}
	}
	if _, err := e.Publish(context.Background(), PublishRequest{Channel: "chat:lobby", Data: json.RawMessage(`{bad`)}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("invalid JSON: %v", err)
	}
	if _, err := e.Publish(context.Background(), PublishRequest{Channel: "nope:x", Data: json.RawMessage(`1`)}); !errors.Is(err, ErrUnknownNamespace) {
		t.Errorf("unknown namespace: %v", err)
	}
}

func TestRecovery(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, Config{})
	count := 0
	pub := func(n int) {
		t.Helper()
		for range n {
			count++
			if _, err := e.Publish(ctx, PublishRequest{Channel: "chat:r", Data: json.RawMessage(fmt.Sprintf(`"m%d"`, count))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	a := connect(t, e, ProtocolSuperchat, "a")
	top := result[subResult](t, a.request(`{"id":1,"op":"subscribe","channel":"chat:r"}`))
	if top.Offset != 0 || top.Recovered != nil || len(top.Publications) != 0 {
		t.Fatalf("fresh subscribe: %+v", top)
	}
	pub(3)
	got := a.msgs()
	last := got[len(got)-1].Push
	a.s.Close(CodeNormal, "bye")
	pub(3) // missed: 4, 5, 6

	b := connect(t, e, ProtocolSuperchat, "a")
	req := fmt.Sprintf(`{"id":2,"op":"subscribe","channel":"chat:r","since":{"epoch":%q,"offset":%d}}`, last.Epoch, last.Offset)
	b.send(req)
	pub(1) // live: 7
	ms := b.msgs()
	res := result[subResult](t, ms[0])
	if res.Recovered == nil || !*res.Recovered || res.Offset != 6 {
		t.Fatalf("recovery result: %+v", res)
	}
	if len(res.Publications) != 0 {
		t.Fatalf("publications in the reply: %+v", res.Publications)
	}
	var offs []uint64
	for _, m := range ms[1:] {
		if m.Push != nil && m.Push.Offset != 0 {
			offs = append(offs, m.Push.Offset)
		}
	}
	if want := []uint64{4, 5, 6, 7}; !slices.Equal(offs, want) {
		t.Fatalf("offsets %v, want %v", offs, want)
	}
	if string(ms[1].Push.Data) != `"m4"` {
		t.Fatalf("first replayed %s", ms[1].Push.Data)
	}
}

func TestRecoveryFails(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, Config{Namespaces: map[string]NamespaceOptions{"small": {HistorySize: 2}}})
	var pos broker.Position
	for range 5 {
		var err error
		if pos, err = e.Publish(ctx, PublishRequest{Channel: "small:x", Data: json.RawMessage(`1`)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		since  broker.Position
		reason string
		pubs   int
	}{
		{"trimmed", broker.Position{Epoch: pos.Epoch, Offset: 1}, "history trimmed", 0},
		{"epoch changed", broker.Position{Epoch: "old", Offset: 3}, "epoch changed", 0},
		{"beyond top", broker.Position{Epoch: pos.Epoch, Offset: 9}, "epoch changed", 0},
		{"just kept", broker.Position{Epoch: pos.Epoch, Offset: 3}, "", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := connect(t, e, ProtocolSuperchat, "u")
			since, _ := json.Marshal(tc.since)
			res, pushes := c.subscribe(fmt.Sprintf(`{"id":1,"op":"subscribe","channel":"small:x","since":%s}`, since))
			if *res.Recovered != (tc.reason == "") || res.Reason != tc.reason || len(pushes) != tc.pubs {
				t.Fatalf("got %+v and %d pushes", res, len(pushes))
			}
			if res.Epoch != pos.Epoch || res.Offset != pos.Offset {
				t.Fatalf("top %s/%d, want %+v", res.Epoch, res.Offset, pos)
			}
		})
	}
}

func TestRecoveryAfterRestartIsEpochChanged(t *testing.T) {
	ctx := context.Background()
	e1 := newEngine(t, Config{})
	pos, err := e1.Publish(ctx, PublishRequest{Channel: "chat:x", Data: json.RawMessage(`1`)})
	if err != nil {
		t.Fatal(err)
	}
	_ = e1.Shutdown(ctx)
	e2 := newEngine(t, Config{}) // a restarted server: new memory broker
	c := connect(t, e2, ProtocolSuperchat, "u")
	res := result[subResult](t, c.request(fmt.Sprintf(`{"id":1,"op":"subscribe","channel":"chat:x","since":{"epoch":%q,"offset":%d}}`, pos.Epoch, pos.Offset)))
	if *res.Recovered || res.Reason != "epoch changed" {
		t.Fatalf("got %+v", res)
	}
}

// TestRecoveryRace subscribes with a position while another goroutine
// publishes: replay plus live delivery must be every offset once, in order.
func TestRecoveryRace(t *testing.T) {
	ctx := context.Background()
	for round := range 20 {
		e := newEngine(t, Config{Namespaces: map[string]NamespaceOptions{"chat": {HistorySize: 1000}}})
		first, err := e.Publish(ctx, PublishRequest{Channel: "chat:race", Data: json.RawMessage(`0`)})
		if err != nil {
			t.Fatal(err)
		}
		const n = 200
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := range n {
				if _, err := e.Publish(ctx, PublishRequest{Channel: "chat:race", Data: json.RawMessage(fmt.Sprint(i + 1))}); err != nil {
					t.Error(err)
				}
			}
		})
		c := connect(t, e, ProtocolSuperchat, "u")
		c.send(fmt.Sprintf(`{"id":1,"op":"subscribe","channel":"chat:race","since":{"epoch":%q,"offset":1}}`, first.Epoch))
		wg.Wait()
		ms := c.msgs()
		res := result[subResult](t, ms[0])
		if !*res.Recovered {
			t.Fatalf("round %d: not recovered: %+v", round, res)
		}
		want := uint64(2)
		check := func(p superchat.Push) {
			if p.Offset != want {
				t.Fatalf("round %d: offset %d, want %d", round, p.Offset, want)
			}
			want++
		}
		for _, m := range ms[1:] {
			if m.Push == nil {
				b, _ := json.Marshal(m)
				var offs []string
				for _, m := range ms[1:] {
					if m.Push != nil {
						offs = append(offs, fmt.Sprint(m.Push.Offset))
					} else {
						offs = append(offs, "GAP")
					}
				}
				t.Fatalf("round %d: top %d not a push: %s; %v", round, res.Offset, b, offs)
			}
			check(*m.Push)
		}
		if want != n+2 {
			t.Fatalf("round %d: got up to %d, want %d", round, want-1, n+1)
		}
		_ = e.Shutdown(ctx)
	}
}

func TestSlowConsumerDisconnected(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, Config{QueueMessages: 4})
	slow := connect(t, e, ProtocolSuperchat, "slow")
	fast := connect(t, e, ProtocolSuperchat, "fast")
	slow.request(`{"id":1,"op":"subscribe","channel":"chat:x"}`)
	fast.request(`{"id":1,"op":"subscribe","channel":"chat:x"}`)
	fast.msgs() // slow's join
	for i := range 20 {
		if _, err := e.Publish(ctx, PublishRequest{Channel: "chat:x", Data: json.RawMessage(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range fast.msgs() {
			if m.Push.Leave == nil { // slow's leave comes when its cleanup runs
				n++
			}
		}
		if n != 1 {
			t.Fatalf("fast got %d publications for publication %d", n, i)
		}
	}
	var d *Disconnect
	if !errors.As(slow.s.Err(), &d) || d.Code != 1008 || d.Reason != ReasonSlowConsumer {
		t.Fatalf("slow session: %v", slow.s.Err())
	}
	select {
	case <-slow.s.Done():
	default:
		t.Fatal("Done not closed")
	}
	// The notice is queued past the bound, last.
	all := slow.raw()
	if len(all) != 5 || !strings.Contains(all[4], `"disconnect":{"code":1008`) {
		t.Fatalf("slow queue: %q", all)
	}
	if err := slow.s.Wait(ctx, slow.after); !errors.As(err, &d) {
		t.Fatalf("Wait after drain: %v", err)
	}
	if st := e.Stats(); st.SlowConsumers != 1 {
		t.Fatalf("stats: %+v", st)
	}
	if _, ok := e.Session(slow.s.ID()); ok {
		t.Fatal("ended session still listed")
	}
}

func TestQueueBytesBound(t *testing.T) {
	e := newEngine(t, Config{QueueBytes: 100})
	c := connect(t, e, ProtocolChat, "u")
	if _, err := e.Publish(context.Background(), PublishRequest{Channel: "chat:lobby", Data: json.RawMessage(`"` + strings.Repeat("x", 150) + `"`)}); err != nil {
		t.Fatal(err)
	}
	if d := c.s.q.ended(); d == nil || d.Reason != ReasonSlowConsumer {
		t.Fatalf("want slow consumer, got %v", d)
	}
}

func TestErrorRepliesKeepSessionUsable(t *testing.T) {
	e := newEngine(t, Config{
		PublishRate:  1,
		PublishBurst: 1,
		Namespaces:   map[string]NamespaceOptions{"news": {HistorySize: 10}, "secret": {}, "open": {ClientPublish: true}},
	})
	c := connectAs(t, e, ProtocolSuperchat, auth.Identity{UserID: "u", Subscribe: []string{"chat:*", "news:*", "open:*"}, Publish: []string{"chat:*", "open:*"}})
	for _, tc := range []struct {
		name, req string
		id        uint64
		code      int
	}{
		{"bad json", `{"id":7,"op":`, 0, 400},
		{"not an object", `[1,2]`, 0, 400},
		{"missing op", `{"id":7}`, 7, 400},
		{"bad id type", `{"id":"x","op":"connect"}`, 0, 400},
		{"unknown op", `{"id":3,"op":"dance"}`, 3, 404},
		{"unauthorized subscribe", `{"id":4,"op":"subscribe","channel":"secret:x"}`, 4, 403},
		{"unknown namespace", `{"id":5,"op":"subscribe","channel":"nope:x"}`, 5, 403},
		{"empty channel", `{"id":6,"op":"subscribe","channel":""}`, 6, 400},
		{"publish not allowed by namespace", `{"id":8,"op":"publish","channel":"news:x","data":1}`, 8, 403},
		{"publish not allowed by identity", `{"id":9,"op":"publish","channel":"secret:x","data":1}`, 9, 403},
		{"publish without data", `{"id":10,"op":"publish","channel":"open:x"}`, 10, 400},
		{"unsubscribe not subscribed", `{"id":11,"op":"unsubscribe","channel":"open:x"}`, 11, 400},
		{"presence off", `{"id":12,"op":"presence","channel":"news:x"}`, 12, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := c.request(tc.req)
			if m.Error == nil || m.Error.Code != tc.code || m.ID != tc.id {
				t.Fatalf("got %+v (error %+v), want id %d code %d", m, m.Error, tc.id, tc.code)
			}
			ok := c.request(`{"id":100,"op":"connect"}`)
			if ok.ID != 100 || ok.Error != nil {
				t.Fatalf("session unusable after %s: %+v", tc.name, ok)
			}
		})
	}
	t.Run("rate limited", func(t *testing.T) {
		if m := c.request(`{"id":20,"op":"publish","channel":"open:x","data":1}`); m.Error != nil {
			t.Fatalf("first publish: %+v", m.Error)
		}
		m := c.request(`{"id":21,"op":"publish","channel":"open:x","data":2}`)
		if m.Error == nil || m.Error.Code != 429 {
			t.Fatalf("second publish: %+v", m)
		}
		if c.s.Err() != nil {
			t.Fatal("session ended")
		}
	})
	t.Run("already subscribed", func(t *testing.T) {
		c.request(`{"id":30,"op":"subscribe","channel":"news:a"}`)
		if m := c.request(`{"id":31,"op":"subscribe","channel":"news:a"}`); m.Error == nil || m.Error.Code != 400 {
			t.Fatalf("got %+v", m)
		}
	})
}

func TestSuperchatOps(t *testing.T) {
	e := newEngine(t, Config{})
	c := connect(t, e, ProtocolSuperchat, "u1")
	info := result[map[string]string](t, c.request(`{"id":1,"op":"connect"}`))
	if info["session"] != c.s.ID() || info["user"] != "u1" || info["name"] != "Name u1" || info["protocol"] != "superchat" {
		t.Fatalf("connect: %v", info)
	}
	pos := result[broker.Position](t, c.request(`{"id":2,"op":"publish","channel":"chat:x","data":{"a":1}}`))
	if pos.Offset != 1 || pos.Epoch == "" {
		t.Fatalf("publish: %+v", pos)
	}
	c.request(`{"id":3,"op":"publish","channel":"chat:x","data":"two"}`)
	h := result[subResult](t, c.request(`{"id":4,"op":"history","channel":"chat:x"}`))
	if len(h.Publications) != 2 || h.Offset != 2 || string(h.Publications[1].Data) != `"two"` || h.Publications[0].Info.User != "u1" {
		t.Fatalf("history: %+v", h)
	}
	h = result[subResult](t, c.request(`{"id":5,"op":"history","channel":"chat:x","limit":1,"reverse":true}`))
	if len(h.Publications) != 1 || h.Publications[0].Offset != 2 {
		t.Fatalf("reverse history: %+v", h)
	}
	h = result[subResult](t, c.request(fmt.Sprintf(`{"id":6,"op":"history","channel":"chat:x","since":{"epoch":%q,"offset":1}}`, pos.Epoch)))
	if len(h.Publications) != 1 || !*h.Recovered {
		t.Fatalf("history since: %+v", h)
	}
	c.request(`{"id":7,"op":"subscribe","channel":"chat:x"}`)
	c.msgs() // own join
	if m := c.request(`{"id":8,"op":"unsubscribe","channel":"chat:x"}`); m.Error != nil || string(m.Result) != "{}" {
		t.Fatalf("unsubscribe: %+v", m)
	}
	if _, err := e.Publish(context.Background(), PublishRequest{Channel: "chat:x", Data: json.RawMessage(`3`)}); err != nil {
		t.Fatal(err)
	}
	if ms := c.msgs(); len(ms) != 0 {
		t.Fatalf("after unsubscribe got %+v", ms)
	}
	if got := c.s.Channels(); len(got) != 0 {
		t.Fatalf("channels %v", got)
	}
}

func TestPresenceAndJoinLeave(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, Config{})
	watcher := connect(t, e, ProtocolSuperchat, "w")
	watcher.request(`{"id":1,"op":"subscribe","channel":"chat:p"}`)
	watcher.msgs()

	a1 := connect(t, e, ProtocolSuperchat, "a")
	a2 := connect(t, e, ProtocolSuperchat, "a")
	a1.request(`{"id":1,"op":"subscribe","channel":"chat:p"}`)
	a2.request(`{"id":1,"op":"subscribe","channel":"chat:p"}`)
	ms := watcher.msgs()
	if len(ms) != 2 || ms[0].Push.Join == nil || ms[0].Push.Join.User != "a" || ms[0].Push.Channel != "chat:p" {
		t.Fatalf("joins: %+v", ms)
	}
	got, err := e.Presence(ctx, "chat:p")
	if err != nil {
		t.Fatal(err)
	}
	want := []PresenceClient{{User: "a", Name: "Name a", Conns: 2}, {User: "w", Name: "Name w", Conns: 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("presence %+v, want %+v", got, want)
	}
	p := result[struct{ Clients []PresenceClient }](t, watcher.request(`{"id":2,"op":"presence","channel":"chat:p"}`))
	if !slices.Equal(p.Clients, want) {
		t.Fatalf("presence op %+v", p.Clients)
	}
	a1.s.Close(CodeNormal, "")
	ms = watcher.msgs()
	if len(ms) != 1 || ms[0].Push.Leave == nil || ms[0].Push.Leave.User != "a" {
		t.Fatalf("leave: %+v", ms)
	}
	got, _ = e.Presence(ctx, "chat:p")
	if got[0].Conns != 1 {
		t.Fatalf("after leave: %+v", got)
	}
	// The session id (a polling credential) never reaches other clients.
	a2.send(`{"id":3,"op":"publish","channel":"chat:p","data":1}`)
	for _, r := range watcher.raw() {
		if strings.Contains(r, a2.s.ID()) {
			t.Fatalf("session id leaked: %s", r)
		}
	}
}

func TestPresenceExpiresWithoutRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		b := broker.NewMemory()
		e, err := New(Config{Broker: b, PresenceTTL: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Shutdown(ctx)
		connect(t, e, ProtocolChat, "a")
		time.Sleep(5 * time.Minute) // refreshed all along
		if got, _ := e.Presence(ctx, "chat:lobby"); len(got) != 1 {
			t.Fatalf("refreshed presence: %+v", got)
		}
		// An entry written by a node that then died is never refreshed.
		_ = b.AddPresence(ctx, "chat:lobby", "ghost", broker.ClientInfo{User: "g"}, 30*time.Second)
		time.Sleep(31 * time.Second)
		if got, _ := e.Presence(ctx, "chat:lobby"); len(got) != 1 || got[0].User != "a" {
			t.Fatalf("after ghost expiry: %+v", got)
		}
	})
}

func TestSessionGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		e, err := New(Config{SessionGrace: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Shutdown(ctx)
		c := connect(t, e, ProtocolSuperchat, "u")
		c.request(`{"id":1,"op":"subscribe","channel":"chat:g"}`)

		c.s.Detach()
		time.Sleep(29 * time.Second)
		if c.s.Err() != nil {
			t.Fatal("ended within grace")
		}
		// Comes back over another transport: same session, same subscriptions.
		if err := c.s.Attach("longpoll"); err != nil {
			t.Fatal(err)
		}
		if st := e.Stats(); st.SessionsByTransport["longpoll"] != 1 || st.SessionsByTransport["websocket"] != 0 {
			t.Fatalf("stats: %+v", st.SessionsByTransport)
		}
		time.Sleep(time.Minute)
		if c.s.Err() != nil {
			t.Fatal("attached session ended")
		}
		if _, err := e.Publish(ctx, PublishRequest{Channel: "chat:g", Data: json.RawMessage(`1`)}); err != nil {
			t.Fatal(err)
		}
		if ms := c.msgs(); len(ms) != 1 || ms[0].Push.Offset != 1 {
			t.Fatalf("after reattach: %+v", ms)
		}

		c.s.Detach()
		time.Sleep(31 * time.Second)
		synctest.Wait()
		var d *Disconnect
		if !errors.As(c.s.Err(), &d) || d.Reason != ReasonExpired {
			t.Fatalf("after grace: %v", c.s.Err())
		}
		if got, _ := e.Presence(ctx, "chat:g"); len(got) != 0 {
			t.Fatalf("presence left: %+v", got)
		}
		if err := c.s.Attach("websocket"); err == nil {
			t.Fatal("attach to ended session")
		}
		if st := e.Stats(); st.Sessions != 0 {
			t.Fatalf("sessions %d", st.Sessions)
		}
	})
}

func TestMaxSessions(t *testing.T) {
	e := newEngine(t, Config{MaxSessions: 2})
	a := connect(t, e, ProtocolChat, "a")
	connect(t, e, ProtocolChat, "b")
	if _, err := e.Connect(context.Background(), ConnectRequest{}); !errors.Is(err, ErrTooManySessions) {
		t.Fatalf("third: %v", err)
	}
	a.s.Close(CodeNormal, "")
	connect(t, e, ProtocolChat, "c")
	if st := e.Stats(); st.Refused != 1 || st.Sessions != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestChatPermissions(t *testing.T) {
	e := newEngine(t, Config{PublishRate: 1})
	_, err := e.Connect(context.Background(), ConnectRequest{Identity: auth.Identity{UserID: "u", Subscribe: []string{"news:*"}}, Room: "lobby"})
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("room not allowed: %v", err)
	}
	ro := connectAs(t, e, ProtocolChat, auth.Identity{UserID: "ro", Publish: []string{"news:*"}})
	var d *Disconnect
	if err := ro.s.Handle(context.Background(), []byte("hi")); !errors.As(err, &d) || d.Code != 1008 {
		t.Fatalf("read-only chat publish: %v", err)
	}
	c := connect(t, e, ProtocolChat, "c")
	c.send("one")
	if err := c.s.Handle(context.Background(), []byte("two")); !errors.As(err, &d) || !strings.Contains(d.Reason, "rate") {
		t.Fatalf("rate: %v", err)
	}
}

func TestShutdown(t *testing.T) {
	ctx := context.Background()
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	chat := connect(t, e, ProtocolChat, "a")
	sc := connect(t, e, ProtocolSuperchat, "b")
	sc.request(`{"id":1,"op":"subscribe","channel":"chat:lobby"}`)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := e.Shutdown(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, c := range []*client{chat, sc} {
		var d *Disconnect
		if !errors.As(c.s.Err(), &d) || d.Code != 1001 || d.Reason != ReasonShutdown {
			t.Fatalf("%v", c.s.Err())
		}
	}
	if got := sc.raw(); !strings.Contains(got[len(got)-1], `{"disconnect":{"code":1001,"reason":"server shutting down"}}`) {
		t.Fatalf("notice: %q", got)
	}
	if len(chat.raw()) != 0 {
		t.Fatal("chat session got a JSON notice")
	}
	if _, err := e.Connect(ctx, ConnectRequest{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("connect after shutdown: %v", err)
	}
	if err := sc.s.Handle(ctx, []byte(`{"id":2,"op":"connect"}`)); err == nil {
		t.Fatal("Handle after shutdown")
	}
}

func TestWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Shutdown(context.Background())
		c := connect(t, e, ProtocolChat, "u")
		var got error
		done := false
		go func() {
			got = c.s.Wait(context.Background(), 0)
			done = true
		}()
		synctest.Wait()
		if done {
			t.Fatal("Wait returned with nothing queued")
		}
		e.Publish(context.Background(), PublishRequest{Channel: "chat:lobby", Data: json.RawMessage(`"x"`)})
		synctest.Wait()
		if !done || got != nil {
			t.Fatalf("after publish: done=%v err=%v", done, got)
		}

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := c.s.Wait(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("timeout: %v", err)
		}
		go func() { time.Sleep(time.Second); c.s.Close(4000, "done") }()
		var d *Disconnect
		if err := c.s.Wait(context.Background(), 1); !errors.As(err, &d) || d.Code != 4000 {
			t.Fatalf("after close: %v", err)
		}
	})
}

func TestPendingAck(t *testing.T) {
	var q queue
	q.init(10, 1000)
	for i := range 5 {
		q.push(Outbound{Data: []byte{byte('a' + i)}})
	}
	seqs := func(os []Outbound) (s []uint64) {
		for _, o := range os {
			s = append(s, o.Seq)
		}
		return
	}
	if got := seqs(q.pending(0, nil)); !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
		t.Fatal(got)
	}
	if got := seqs(q.pending(3, nil)); !slices.Equal(got, []uint64{4, 5}) {
		t.Fatal(got)
	}
	q.ack(2)
	// A long poll that lost its response asks again from 0: it gets
	// everything not yet acked, nothing twice.
	if got := seqs(q.pending(0, nil)); !slices.Equal(got, []uint64{3, 4, 5}) {
		t.Fatal(got)
	}
	q.ack(1) // stale ack: no effect
	if n, b := q.size(); n != 3 || b != 3 {
		t.Fatal(n, b)
	}
	q.ack(9)
	if n, b := q.size(); n != 0 || b != 0 {
		t.Fatal(n, b)
	}
	if got := q.pending(5, nil); len(got) != 0 {
		t.Fatal(got)
	}
	q.push(Outbound{Data: []byte("x")})
	if got := seqs(q.pending(5, nil)); !slices.Equal(got, []uint64{6}) {
		t.Fatal(got)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{Namespaces: map[string]NamespaceOptions{"a:b": {}}},
		{PublishRate: -1},
		{MaxSessions: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
