package push

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/hotline-rt/hotline/broker"
)

// aggregatePresence folds presence entries (one per session) into one entry
// per user.
func aggregatePresence(m map[string]broker.ClientInfo) []PresenceClient {
	byUser := make(map[string]int, len(m))
	out := make([]PresenceClient, 0, len(m))
	for _, ci := range m {
		if i, ok := byUser[ci.User]; ok {
			out[i].Conns++
			continue
		}
		byUser[ci.User] = len(out)
		out = append(out, PresenceClient{User: ci.User, Name: ci.Name, Conns: 1})
	}
	slices.SortFunc(out, func(a, b PresenceClient) int { return strings.Compare(a.User, b.User) })
	return out
}

// presenceWorkers bounds the channels whose presence is refreshed at once.
const presenceWorkers = 8

// refreshPresence renews the presence entries of every local session before
// their TTL runs out, then schedules itself again. A crashed node stops
// refreshing, so its entries expire. It makes one broker call per channel
// (RefreshPresence with every local entry of it), a few channels at a time,
// so a refresh takes a few round trips per channel, not one per session:
// with tens of thousands of sessions a serial refresh outlasted the TTL and
// presence flapped.
//
// A subscription dropped while its channel is being refreshed may have
// had its entry removed before the refresh wrote it back: such entries are
// removed again once the refresh has returned, so no ghost is left.
func (e *Engine) refreshPresence() {
	byChannel := e.presenceEntries()
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.PresenceTTL/3)
	defer cancel()
	sem := make(chan struct{}, presenceWorkers)
	var wg sync.WaitGroup
	for ch, b := range byChannel {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			bctx, cancel := e.brokerCtx(ctx)
			err := e.broker.RefreshPresence(bctx, ch, b.entries, e.cfg.PresenceTTL)
			cancel()
			if err != nil {
				e.log.Warn("refresh presence failed", slog.String("channel", ch), slog.Int("entries", len(b.entries)), slog.Any("err", err))
			}
			for _, sub := range b.subs {
				if !sub.isDropped() {
					continue
				}
				bctx, cancel := e.brokerCtx(ctx)
				err := e.broker.RemovePresence(bctx, ch, sub.s.id)
				cancel()
				if err != nil {
					e.log.Warn("remove presence failed", slog.String("channel", ch), slog.Any("err", err))
				}
			}
		})
	}
	wg.Wait()

	e.mu.Lock()
	if !e.closing {
		e.presenceTimer.Reset(e.cfg.PresenceTTL / 3)
	}
	e.mu.Unlock()
}

// presenceBatch is what one channel's refresh writes: entries by session
// id, and the subscriptions they belong to.
type presenceBatch struct {
	entries map[string]broker.ClientInfo
	subs    []*subscription
}

// presenceEntries returns the presence entries this node keeps alive, by
// channel: those of the subscriptions announced and not dropped.
func (e *Engine) presenceEntries() map[string]*presenceBatch {
	e.mu.RLock()
	list := make([]*Session, 0, len(e.sessions))
	for _, s := range e.sessions {
		list = append(list, s)
	}
	e.mu.RUnlock()

	out := make(map[string]*presenceBatch)
	var subs []*subscription
	for _, s := range list {
		subs = subs[:0]
		s.mu.Lock()
		for sub := range s.subs.all() {
			if sub.ns.Presence {
				subs = append(subs, sub)
			}
		}
		s.mu.Unlock()
		for _, sub := range subs {
			h := sub.hub
			h.mu.Lock()
			live := sub.announced && !sub.dropped
			h.mu.Unlock()
			if !live {
				continue // not added yet, or removed
			}
			b := out[sub.channel]
			if b == nil {
				b = &presenceBatch{entries: make(map[string]broker.ClientInfo)}
				out[sub.channel] = b
			}
			b.entries[s.id] = s.info
			b.subs = append(b.subs, sub)
		}
	}
	return out
}
