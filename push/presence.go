package push

import (
	"context"
	"log/slog"
	"slices"
	"strings"

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

// refreshPresence renews the presence entries of every local session before
// their TTL runs out, then schedules itself again. A crashed node stops
// refreshing, so its entries expire.
func (e *Engine) refreshPresence() {
	e.mu.RLock()
	list := make([]*Session, 0, len(e.sessions))
	for _, s := range e.sessions {
		list = append(list, s)
	}
	e.mu.RUnlock()

	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.PresenceTTL/3)
	defer cancel()
	for _, s := range list {
		s.mu.Lock()
		var chans []string
		for ch, sub := range s.subs {
			if sub.ns.Presence {
				chans = append(chans, ch)
			}
		}
		s.mu.Unlock()
		for _, ch := range chans {
			if err := e.broker.AddPresence(ctx, ch, s.id, s.info, e.cfg.PresenceTTL); err != nil {
				e.log.Warn("refresh presence failed", slog.String("channel", ch), slog.Any("err", err))
			}
		}
	}

	e.mu.Lock()
	if !e.closing {
		e.presenceTimer.Reset(e.cfg.PresenceTTL / 3)
	}
	e.mu.Unlock()
}
