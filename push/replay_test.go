package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/superchat"
)

// TestReplayLargerThanQueue: history whose replay is larger than the
// session's queue (20 publications of 60 KB, a 1 MiB queue) is streamed
// under flow control to a client that reads as fast as it can: it gets
// the reply, all 20, then live ones, once each, and stays connected. Before
// the replay was streamed it was one queue item over the byte bound, which
// ended every recovering session as a slow consumer.
func TestReplayLargerThanQueue(t *testing.T) {
	ctx := context.Background()
	b := &hookBroker{Memory: broker.NewMemory()}
	e := newEngine(t, Config{Broker: b, QueueBytes: 1 << 20, Namespaces: map[string]NamespaceOptions{"g": {HistorySize: 100}}})
	big := json.RawMessage(`"` + strings.Repeat("x", 60<<10) + `"`)
	var first broker.Position
	for i := range 20 {
		p, err := e.Publish(ctx, PublishRequest{Channel: "g:big", Data: big})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = p
		}
	}
	c := connect(t, e, ProtocolSuperchat, "c")

	// The transport: writes (here: decodes) and acks what is queued.
	var got []superchat.ServerMessage
	var reader sync.WaitGroup
	want := 1 + 20 + 3 // reply, replay, live
	reader.Go(func() {
		var after uint64
		for len(got) < want {
			if err := c.s.Wait(ctx, after); err != nil {
				t.Errorf("wait: %v", err)
				return
			}
			for _, o := range c.s.Pending(after, nil) {
				var m superchat.ServerMessage
				if err := json.Unmarshal(o.Data, &m); err != nil {
					t.Errorf("decode: %v", err)
				}
				got = append(got, m)
				after = o.Seq
			}
			c.s.Ack(after)
		}
	})
	// Live publications arrive after the history read, while the replay
	// is being queued: they are held, then queued under flow control too.
	b.afterHistory = func(string, broker.HistoryRequest) {
		b.afterHistory = nil
		for range 3 {
			if _, err := e.Publish(ctx, PublishRequest{Channel: "g:big", Data: big}); err != nil {
				t.Error(err)
			}
		}
	}
	c.send(fmt.Sprintf(`{"id":1,"op":"subscribe","channel":"g:big","since":{"epoch":%q,"offset":0}}`, first.Epoch))
	reader.Wait()
	if err := c.s.Err(); err != nil {
		t.Fatalf("session ended: %v", err)
	}
	res := result[subResult](t, got[0])
	if !*res.Recovered || res.Offset != 20 || len(res.Publications) != 0 {
		t.Fatalf("reply %+v", res)
	}
	for i, m := range got[1:] {
		if m.Push == nil || m.Push.Offset != uint64(i+1) || len(m.Push.Data) != len(big) {
			t.Fatalf("item %d: %+v", i+1, m)
		}
	}
	if st := e.Stats(); st.SlowConsumers != 0 {
		t.Fatalf("slow consumers: %d", st.SlowConsumers)
	}
}

// TestReplayAbandonedRequest: a subscribe whose request ctx ends while the
// replay waits for queue room does not leave the subscription half set up
// (recovering for ever, or silently dropped after its reply): it goes on
// without waiting, and a queue without room ends the session as a slow
// consumer, as live delivery would.
func TestReplayAbandonedRequest(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, Config{QueueMessages: 4, Namespaces: map[string]NamespaceOptions{"g": {HistorySize: 100}}})
	var first broker.Position
	for i := range 10 {
		p, err := e.Publish(ctx, PublishRequest{Channel: "g:x", Data: json.RawMessage(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = p
		}
	}
	c := connect(t, e, ProtocolSuperchat, "c")
	gone, cancel := context.WithCancel(ctx)
	cancel()
	err := c.s.Handle(gone, fmt.Appendf(nil, `{"id":1,"op":"subscribe","channel":"g:x","since":{"epoch":%q,"offset":1}}`, first.Epoch))
	var d *Disconnect
	if !errors.As(err, &d) || d.Reason != ReasonSlowConsumer {
		t.Fatalf("Handle: %v; want the session ended as a slow consumer", err)
	}
	e.wg.Wait() // the slow-consumer cleanup
	if e.hub("g:x") != nil {
		t.Fatal("the ended session's subscription is still in its hub")
	}
}
