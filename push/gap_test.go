package push

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/superchat"
)

// subscribe sends a subscribe request and returns its reply and the
// publications queued after it (the replay and any live ones). Join and
// leave events are skipped; anything else fails the test.
func (c *client) subscribe(msg string) (subResult, []superchat.Push) {
	c.t.Helper()
	c.send(msg)
	ms := c.msgs()
	if len(ms) == 0 {
		c.t.Fatalf("no reply to %s", msg)
	}
	res := result[subResult](c.t, ms[0])
	var pushes []superchat.Push
	for _, m := range ms[1:] {
		switch {
		case m.Push != nil && (m.Push.Join != nil || m.Push.Leave != nil):
		case m.Push != nil:
			pushes = append(pushes, *m.Push)
		default:
			b, _ := json.Marshal(m)
			c.t.Fatalf("unexpected message after the reply: %s", b)
		}
	}
	return res, pushes
}

// hookBroker is a memory broker whose calls can be intercepted, to make
// races deterministic: a hook runs inside the call, before the memory
// broker's own work.
type hookBroker struct {
	*broker.Memory
	onHistory   func(channel string, req broker.HistoryRequest)
	onSubscribe func(ctx context.Context, channel string) error
	// afterHistory runs after the memory broker's read, before the
	// result is returned.
	afterHistory func(channel string, req broker.HistoryRequest)
	// emptyTop reports a stream without publications as {"", 0}, as a
	// broker that creates no state on reads does (SEAMS 2).
	emptyTop bool
}

func (b *hookBroker) History(ctx context.Context, channel string, req broker.HistoryRequest) (broker.HistoryResult, error) {
	if b.onHistory != nil {
		b.onHistory(channel, req)
	}
	res, err := b.Memory.History(ctx, channel, req)
	if b.afterHistory != nil {
		b.afterHistory(channel, req)
	}
	if b.emptyTop && res.Top.Offset == 0 {
		res.Top = broker.Position{}
	}
	return res, err
}

func (b *hookBroker) Subscribe(ctx context.Context, channel string) error {
	if b.onSubscribe != nil {
		if err := b.onSubscribe(ctx, channel); err != nil {
			return err
		}
	}
	return b.Memory.Subscribe(ctx, channel)
}

// gapNS is a namespace without presence, join/leave events or history, so
// that tests see only publications and notices.
var gapNS = map[string]NamespaceOptions{"g": {}}

// emptyTopEngine returns an engine over a memory broker that reports
// channels without publications at {"", 0}.
func emptyTopEngine(t *testing.T) *Engine {
	return newEngine(t, Config{Broker: &hookBroker{Memory: broker.NewMemory(), emptyTop: true}, Namespaces: gapNS})
}

func pubAt(channel, epoch string, offset uint64) *broker.Publication {
	p := &broker.Publication{Channel: channel, Data: json.RawMessage(fmt.Sprint(offset))}
	p.Epoch, p.Offset = epoch, offset
	return p
}

// trace renders what a superchat client got: "E/3" for a push, "gap E/3
// reason" for a notice.
func (c *client) trace() []string {
	c.t.Helper()
	var out []string
	for _, m := range c.msgs() {
		switch {
		case m.Gap != nil:
			out = append(out, fmt.Sprintf("gap %s/%d %s", m.Gap.Epoch, m.Gap.Offset, m.Gap.Reason))
		case m.Push != nil && m.Push.Join == nil && m.Push.Leave == nil:
			out = append(out, fmt.Sprintf("%s/%d", m.Push.Epoch, m.Push.Offset))
		default:
			b, _ := json.Marshal(m)
			out = append(out, string(b))
		}
	}
	return out
}

func wantTrace(t *testing.T, who string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s got\n\t%q\nwant\n\t%q", who, got, want)
	}
}

// TestGapOnJump: a publication that does not follow the last one a
// superchat subscriber got comes after one gap notice with the position
// to resume from; duplicates are dropped; chat sees the publications only.
func TestGapOnJump(t *testing.T) {
	e := emptyTopEngine(t)
	h := handler{e}
	sc := connect(t, e, ProtocolSuperchat, "s")
	sc.request(`{"id":1,"op":"subscribe","channel":"g:x"}`) // top "",0: no stream yet
	ch := connect(t, e, ProtocolSuperchat, "c")
	ch.request(`{"id":1,"op":"subscribe","channel":"g:x"}`)
	chat := connect(t, e, ProtocolChat, "chat")
	if err := e.subscribe(context.Background(), chat.s, "g:x", nil, nil); err != nil {
		t.Fatal(err)
	}
	ch.s.Close(CodeNormal, "") // only needed one superchat reference
	for _, p := range []*broker.Publication{
		pubAt("g:x", "E", 1), // offset 1 of any epoch follows "",0
		pubAt("g:x", "E", 2),
		pubAt("g:x", "E", 5), // jump: 3 and 4 missing
		pubAt("g:x", "E", 6),
		pubAt("g:x", "E", 6), // duplicate
		pubAt("g:x", "E", 4), // late duplicate
		pubAt("g:x", "F", 1), // new epoch
		pubAt("g:x", "F", 2),
	} {
		h.HandlePublication(p)
	}
	wantTrace(t, "superchat", sc.trace(),
		"E/1", "E/2", "gap E/2 offset gap", "E/5", "E/6", "gap E/6 epoch changed", "F/1", "F/2")
	if got := chat.raw(); !slices.Equal(got, []string{"1", "2", "5", "6", "1", "2"}) {
		t.Fatalf("chat got %q", got)
	}
}

// TestGapFromEmptyStream: a subscriber of a channel without a stream
// ("",0) is told when the first publication it sees is not offset 1.
func TestGapFromEmptyStream(t *testing.T) {
	e := emptyTopEngine(t)
	sc := connect(t, e, ProtocolSuperchat, "s")
	sc.request(`{"id":1,"op":"subscribe","channel":"g:x"}`)
	handler{e}.HandlePublication(pubAt("g:x", "E", 3))
	handler{e}.HandlePublication(pubAt("g:x", "E", 4))
	wantTrace(t, "superchat", sc.trace(), "gap /0 offset gap", "E/3", "E/4")
}

// TestHandleGap: every superchat subscriber is told once, with its own
// last position; the next publication then comes without another notice,
// and a later jump is a new gap.
func TestHandleGap(t *testing.T) {
	e := emptyTopEngine(t)
	h := handler{e}
	a := connect(t, e, ProtocolSuperchat, "a")
	a.request(`{"id":1,"op":"subscribe","channel":"g:x"}`)
	for i := range 3 {
		h.HandlePublication(pubAt("g:x", "E", uint64(i+1)))
	}
	b := connect(t, e, ProtocolSuperchat, "b") // at the broker's top: "",0
	b.request(`{"id":1,"op":"subscribe","channel":"g:x"}`)
	chat := connect(t, e, ProtocolChat, "chat")
	if err := e.subscribe(context.Background(), chat.s, "g:x", nil, nil); err != nil {
		t.Fatal(err)
	}
	a.trace()

	h.HandleGap("g:x", "broker link lost")
	h.HandleGap("g:x", "queue overflow") // the same gap: no second notice
	h.HandlePublication(pubAt("g:x", "E", 10))
	h.HandlePublication(pubAt("g:x", "E", 11))
	h.HandlePublication(pubAt("g:x", "E", 13))
	wantTrace(t, "a", a.trace(), "gap E/3 broker link lost", "E/10", "E/11", "gap E/11 offset gap", "E/13")
	wantTrace(t, "b", b.trace(), "gap /0 broker link lost", "E/10", "E/11", "gap E/11 offset gap", "E/13")
	if got := chat.raw(); !slices.Equal(got, []string{"10", "11", "13"}) {
		t.Fatalf("chat got %q", got)
	}
	if n := e.Stats().GapNotices; n != 4 {
		t.Fatalf("Stats.GapNotices %d, want 4", n)
	}
	h.HandleGap("g:nobody", "broker link lost") // no hub: nothing happens
}

// TestHandleGapWhileRecovering: a gap reported while a subscriber is
// being replayed to reaches it after the replay and the publications held
// before the gap, at its last position then; the reply (recovered) stands.
func TestHandleGapWhileRecovering(t *testing.T) {
	ctx := context.Background()
	b := &hookBroker{Memory: broker.NewMemory()}
	e := newEngine(t, Config{Broker: b, Namespaces: map[string]NamespaceOptions{"g": {HistorySize: 100}}})
	var first broker.Position
	for i := range 3 {
		p, err := e.Publish(ctx, PublishRequest{Channel: "g:x", Data: json.RawMessage(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = p
		}
	}
	ep := first.Epoch
	publish := func(data string) {
		if _, err := e.Publish(ctx, PublishRequest{Channel: "g:x", Data: json.RawMessage(data)}); err != nil {
			t.Error(err)
		}
	}
	b.onHistory = func(string, broker.HistoryRequest) {
		publish("4") // held and in the history read
	}
	b.afterHistory = func(string, broker.HistoryRequest) {
		b.onHistory, b.afterHistory = nil, nil
		publish("5") // after the read: held only
		handler{e}.HandleGap("g:x", "broker link lost")
		handler{e}.HandlePublication(pubAt("g:x", ep, 9))
	}
	c := connect(t, e, ProtocolSuperchat, "c")
	c.send(fmt.Sprintf(`{"id":1,"op":"subscribe","channel":"g:x","since":{"epoch":%q,"offset":1}}`, ep))
	ms := c.msgs()
	res := result[subResult](t, ms[0])
	if !*res.Recovered || res.Offset != 4 {
		t.Fatalf("reply %+v", res)
	}
	c.after = 1
	var got []string
	for _, m := range ms[1:] {
		switch {
		case m.Gap != nil:
			got = append(got, fmt.Sprintf("gap %d %s", m.Gap.Offset, m.Gap.Reason))
		case m.Push != nil:
			got = append(got, fmt.Sprint(m.Push.Offset))
		}
	}
	wantTrace(t, "recovering", got, "2", "3", "4", "5", "gap 5 broker link lost", "9")
	handler{e}.HandlePublication(pubAt("g:x", ep, 10))
	wantTrace(t, "live", c.trace(), ep+"/10")
}

// TestReplayLiveExactlyOnce makes the race between the history read and
// live delivery happen every time: the broker publishes from inside each
// history read, so those publications reach the session both live (held
// while it recovers) and in the read. The session must get every offset
// once, in order, across several replay pages.
func TestReplayLiveExactlyOnce(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		history int  // publications before the subscribe
		since   bool // recover from offset 1, or subscribe at the top
	}{
		{"since", 250, true},
		{"top", 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &hookBroker{Memory: broker.NewMemory()}
			e := newEngine(t, Config{Broker: b, Namespaces: map[string]NamespaceOptions{"g": {HistorySize: 1000}}})
			count := 0
			publish := func() {
				count++
				if _, err := e.Publish(ctx, PublishRequest{Channel: "g:x", Data: json.RawMessage(fmt.Sprint(count))}); err != nil {
					t.Error(err)
				}
			}
			for range tc.history {
				publish()
			}
			top, err := e.History(ctx, "g:x", broker.HistoryRequest{})
			if err != nil {
				t.Fatal(err)
			}
			reads := 0
			b.onHistory = func(string, broker.HistoryRequest) {
				reads++
				for range 3 {
					publish()
				}
			}
			c := connect(t, e, ProtocolSuperchat, "c")
			from := uint64(tc.history) + 3 // the top the reply starts from
			req := `{"id":1,"op":"subscribe","channel":"g:x"}`
			if tc.since {
				from = 1
				req = fmt.Sprintf(`{"id":1,"op":"subscribe","channel":"g:x","since":{"epoch":%q,"offset":1}}`, top.Top.Epoch)
			}
			res, pushes := c.subscribe(req)
			b.onHistory = nil
			publish() // live
			_, live := c.subscribeTail()
			pushes = append(pushes, live...)
			if res.Offset != uint64(tc.history)+3 {
				t.Fatalf("reply top %d, want %d", res.Offset, tc.history+3)
			}
			if tc.since && reads < 3 {
				t.Fatalf("%d history reads: the replay was not paged", reads)
			}
			want := from + 1
			for _, p := range pushes {
				if p.Offset != want || p.Epoch != top.Top.Epoch {
					t.Fatalf("got offset %d, want %d (of %d)", p.Offset, want, count)
				}
				want++
			}
			if want != uint64(count)+1 {
				t.Fatalf("got up to %d, want %d", want-1, count)
			}
		})
	}
}

// subscribeTail returns what was queued since the last read: pushes
// (join and leave skipped) and the number of other messages.
func (c *client) subscribeTail() (int, []superchat.Push) {
	var pushes []superchat.Push
	other := 0
	for _, m := range c.msgs() {
		switch {
		case m.Push != nil && m.Push.Join == nil && m.Push.Leave == nil:
			pushes = append(pushes, *m.Push)
		case m.Push == nil:
			other++
		}
	}
	return other, pushes
}

// TestRecoverFromEmptyPosition: a client that subscribed while the channel
// had no stream holds {"", 0}; recovering from it replays the stream from
// offset 1, with no gap notice.
func TestRecoverFromEmptyPosition(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, Config{Namespaces: map[string]NamespaceOptions{"g": {HistorySize: 10}}})
	for i := range 3 {
		if _, err := e.Publish(ctx, PublishRequest{Channel: "g:x", Data: json.RawMessage(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	c := connect(t, e, ProtocolSuperchat, "c")
	res, pushes := c.subscribe(`{"id":1,"op":"subscribe","channel":"g:x","since":{"epoch":"","offset":0}}`)
	if !*res.Recovered || res.Offset != 3 || len(pushes) != 3 || pushes[0].Offset != 1 {
		t.Fatalf("reply %+v, %d pushes", res, len(pushes))
	}
}
