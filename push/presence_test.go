package push

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hotline-rt/hotline/broker"
)

// slowPresence is a memory broker whose presence writes take a round trip
// (fake time under synctest) once slow is set.
type slowPresence struct {
	*broker.Memory
	slow  atomic.Bool
	calls atomic.Int64
}

const presenceRTT = 2 * time.Millisecond

func (b *slowPresence) AddPresence(ctx context.Context, channel, client string, info broker.ClientInfo, ttl time.Duration) error {
	if b.slow.Load() {
		b.calls.Add(1)
		time.Sleep(presenceRTT)
	}
	return b.Memory.AddPresence(ctx, channel, client, info, ttl)
}

func (b *slowPresence) RefreshPresence(ctx context.Context, channel string, entries map[string]broker.ClientInfo, ttl time.Duration) error {
	if b.slow.Load() {
		b.calls.Add(1)
		time.Sleep(presenceRTT)
	}
	return b.Memory.RefreshPresence(ctx, channel, entries, ttl)
}

// TestPresenceDoesNotFlap: with 1,500 sessions in 3 channels and a broker
// round trip of 2ms, one call per session would take 3s, as long as the
// TTL, and entries would expire between refreshes. Refreshing one batch
// per channel keeps every entry present all the time.
func TestPresenceDoesNotFlap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		b := &slowPresence{Memory: broker.NewMemory()}
		const ttl = 3 * time.Second
		e, err := New(Config{Broker: b, PresenceTTL: ttl, Namespaces: map[string]NamespaceOptions{"p": {Presence: true}}})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Shutdown(ctx)
		const sessions, channels = 1500, 3
		for i := range sessions {
			c := connect(t, e, ProtocolSuperchat, fmt.Sprint("u", i))
			c.request(fmt.Sprintf(`{"id":1,"op":"subscribe","channel":"p:%d"}`, i%channels))
		}
		b.slow.Store(true)
		for i := range 40 { // 4 TTLs
			time.Sleep(ttl / 10)
			for ch := range channels {
				m, err := b.Presence(ctx, fmt.Sprint("p:", ch))
				if err != nil {
					t.Fatal(err)
				}
				if len(m) != sessions/channels {
					t.Fatalf("after %d checks: %d present in p:%d, want %d", i+1, len(m), ch, sessions/channels)
				}
			}
		}
		// A few refreshes of one call per channel each.
		if n := b.calls.Load(); n > 20*channels {
			t.Fatalf("%d presence calls for %d sessions in %d channels", n, sessions, channels)
		}
	})
}

// hookPresence runs inRefresh inside RefreshPresence, before the memory
// broker writes the entries.
type hookPresence struct {
	*broker.Memory
	inRefresh atomic.Pointer[func(channel string)]
}

func (b *hookPresence) RefreshPresence(ctx context.Context, channel string, entries map[string]broker.ClientInfo, ttl time.Duration) error {
	if f := b.inRefresh.Swap(nil); f != nil {
		(*f)(channel)
	}
	return b.Memory.RefreshPresence(ctx, channel, entries, ttl)
}

// TestRefreshLeavesNoGhost: a session that leaves while the refresh of its
// channel is in flight (its entry removed before the refresh writes it
// back) is not left present until the TTL runs out.
func TestRefreshLeavesNoGhost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		b := &hookPresence{Memory: broker.NewMemory()}
		const ttl = 30 * time.Second
		e, err := New(Config{Broker: b, PresenceTTL: ttl, Namespaces: map[string]NamespaceOptions{"p": {Presence: true}}})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Shutdown(ctx)
		stay := connect(t, e, ProtocolSuperchat, "stay")
		stay.request(`{"id":1,"op":"subscribe","channel":"p:x"}`)
		leave := connect(t, e, ProtocolSuperchat, "leave")
		leave.request(`{"id":1,"op":"subscribe","channel":"p:x"}`)
		hook := func(string) {
			leave.s.Close(CodeNormal, "") // removes its entry now
		}
		b.inRefresh.Store(&hook)
		time.Sleep(ttl/3 + time.Second) // one refresh
		synctest.Wait()
		m, err := b.Presence(ctx, "p:x")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m[leave.s.ID()]; ok || len(m) != 1 {
			t.Fatalf("after the refresh: %v", m)
		}
	})
}
