package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/hotline-rt/hotline/broker"
)

// hub is a channel with local subscribers. The broker's handler fans each
// publication out over subs under mu, which also orders subscribes against
// publications (see subscribe).
type hub struct {
	channel string
	refs    int // subscriptions holding the hub; under Engine.hubsMu

	mu   sync.Mutex
	subs []*subscription
}

// subscription is one session in one channel. Fields below mu are guarded
// by the hub's mu.
type subscription struct {
	s       *Session
	hub     *hub
	channel string
	ns      NamespaceOptions

	idx        int  // in hub.subs; -1 when not there
	dropped    bool // removed; never add again
	recovering bool // publications go to held until the subscribe reply is queued
	held       []heldItem
	epoch      string // position of the last publication delivered
	offset     uint64
	announced  bool // presence added and join published
}

type heldItem struct {
	pos broker.Position
	out Outbound
}

// errAlreadySubscribed is answered to a second subscribe to one channel.
var errAlreadySubscribed = errors.New("already subscribed")

// acquireHub returns channel's hub, subscribing this node to the channel at
// the broker when it is the first local subscription.
func (e *Engine) acquireHub(ctx context.Context, channel string) (*hub, error) {
	e.hubsMu.Lock()
	defer e.hubsMu.Unlock()
	h := e.hubs[channel]
	if h == nil {
		if err := e.broker.Subscribe(ctx, channel); err != nil {
			return nil, fmt.Errorf("push: broker subscribe %s: %w", channel, err)
		}
		h = &hub{channel: channel}
		e.hubs[channel] = h
	}
	h.refs++
	return h, nil
}

func (e *Engine) releaseHub(ctx context.Context, h *hub) {
	e.hubsMu.Lock()
	defer e.hubsMu.Unlock()
	h.refs--
	if h.refs > 0 {
		return
	}
	delete(e.hubs, h.channel)
	if err := e.broker.Unsubscribe(ctx, h.channel); err != nil {
		e.log.Warn("broker unsubscribe failed", slog.String("channel", h.channel), slog.Any("err", err))
	}
}

// subscribe adds s to channel. With since, the publications after since are
// replayed first. reply, if not nil, builds the reply to queue before any
// live publication; its arguments are the history read and its error
// (nil, broker.ErrEpochChanged or broker.ErrHistoryTrimmed).
//
// No gap and no duplicate between replay and live delivery: the session
// joins the hub (holding live publications back) before history is read,
// so every publication after the history's top reaches the hub after the
// session is in it; when the reply is queued, held publications at or
// below the top are dropped and the rest are queued after it, in order.
func (e *Engine) subscribe(ctx context.Context, s *Session, channel string, since *broker.Position, reply func(broker.HistoryResult, error) []byte) error {
	ns, err := e.namespace(channel)
	if err != nil {
		return err
	}
	h, err := e.acquireHub(ctx, channel)
	if err != nil {
		return err
	}
	sub := &subscription{s: s, hub: h, channel: channel, ns: ns, idx: -1, recovering: true}

	s.mu.Lock()
	switch {
	case s.subs == nil:
		s.mu.Unlock()
		e.releaseHub(ctx, h)
		return s.Err()
	case s.subs[channel] != nil:
		s.mu.Unlock()
		e.releaseHub(ctx, h)
		return errAlreadySubscribed
	}
	s.subs[channel] = sub
	s.mu.Unlock()

	h.mu.Lock()
	if sub.dropped { // the session ended meanwhile
		h.mu.Unlock()
		return s.Err()
	}
	sub.idx = len(h.subs)
	h.subs = append(h.subs, sub)
	h.mu.Unlock()

	req := broker.HistoryRequest{Since: since, Limit: 0}
	if since != nil {
		req.Limit = -1
	}
	res, herr := e.broker.History(ctx, channel, req)
	if herr != nil && !isRecoveryError(herr) {
		e.removeSub(ctx, s, sub)
		return fmt.Errorf("push: read history of %s: %w", channel, herr)
	}
	var data []byte
	if reply != nil {
		data = reply(res, herr)
	}

	h.mu.Lock()
	if sub.dropped {
		h.mu.Unlock()
		return s.Err()
	}
	if data != nil && !s.enqueue(Outbound{Data: data}) {
		h.mu.Unlock()
		return s.Err()
	}
	sub.epoch, sub.offset = res.Top.Epoch, res.Top.Offset
	n := int64(0)
	for _, it := range sub.held {
		if it.pos.Epoch == sub.epoch && it.pos.Offset <= sub.offset {
			continue // in the reply, or before the top the client starts from
		}
		sub.epoch, sub.offset = it.pos.Epoch, it.pos.Offset
		if ok, full := s.q.push(it.out); ok {
			n++
		} else if full {
			s.slowConsumer()
			break
		}
	}
	sub.held = nil
	sub.recovering = false
	h.mu.Unlock()
	e.stats.out.Add(n)

	e.announce(ctx, sub)
	return nil
}

// announce adds sub's session to the channel's presence and publishes its
// join, as the namespace says.
func (e *Engine) announce(ctx context.Context, sub *subscription) {
	if !sub.ns.Presence && !sub.ns.JoinLeave {
		return
	}
	s := sub.s
	if sub.ns.Presence {
		if err := e.broker.AddPresence(ctx, sub.channel, s.id, s.info, e.cfg.PresenceTTL); err != nil {
			s.log.Warn("add presence failed", slog.String("channel", sub.channel), slog.Any("err", err))
		}
	}
	h := sub.hub
	h.mu.Lock()
	dropped := sub.dropped
	sub.announced = !dropped
	h.mu.Unlock()
	if dropped {
		// dropSub ran before presence was added: undo it here.
		if sub.ns.Presence {
			_ = e.broker.RemovePresence(ctx, sub.channel, s.id)
		}
		return
	}
	if sub.ns.JoinLeave {
		if err := e.broker.PublishJoin(ctx, sub.channel, s.info); err != nil {
			s.log.Warn("publish join failed", slog.String("channel", sub.channel), slog.Any("err", err))
		}
	}
}

// unsubscribe removes s from channel.
func (e *Engine) unsubscribe(ctx context.Context, s *Session, channel string) bool {
	s.mu.Lock()
	sub := s.subs[channel]
	if sub != nil {
		delete(s.subs, channel)
	}
	s.mu.Unlock()
	if sub == nil {
		return false
	}
	e.dropSub(ctx, sub)
	return true
}

func (e *Engine) removeSub(ctx context.Context, s *Session, sub *subscription) {
	s.mu.Lock()
	if s.subs[sub.channel] == sub {
		delete(s.subs, sub.channel)
	}
	s.mu.Unlock()
	e.dropSub(ctx, sub)
}

// dropSub takes sub out of its hub, presence and the broker subscription
// count; it does so once, however often it is called.
func (e *Engine) dropSub(ctx context.Context, sub *subscription) {
	h := sub.hub
	h.mu.Lock()
	if sub.dropped {
		h.mu.Unlock()
		return
	}
	sub.dropped = true
	sub.held = nil
	if i := sub.idx; i >= 0 {
		last := len(h.subs) - 1
		h.subs[i] = h.subs[last]
		h.subs[i].idx = i
		h.subs[last] = nil
		h.subs = h.subs[:last]
		sub.idx = -1
	}
	announced := sub.announced
	h.mu.Unlock()

	if announced {
		s := sub.s
		if sub.ns.Presence {
			if err := e.broker.RemovePresence(ctx, sub.channel, s.id); err != nil {
				s.log.Warn("remove presence failed", slog.String("channel", sub.channel), slog.Any("err", err))
			}
		}
		if sub.ns.JoinLeave {
			if err := e.broker.PublishLeave(ctx, sub.channel, s.info); err != nil {
				s.log.Warn("publish leave failed", slog.String("channel", sub.channel), slog.Any("err", err))
			}
		}
	}
	e.releaseHub(ctx, h)
}

func (e *Engine) hub(channel string) *hub {
	e.hubsMu.RLock()
	defer e.hubsMu.RUnlock()
	return e.hubs[channel]
}

// handler is the engine's broker.Handler; a separate type keeps those
// methods off Engine's API.
type handler struct{ e *Engine }

// HandlePublication fans pub out to the local subscribers of its channel.
// It encodes pub at most once per protocol; the bytes are shared by every
// recipient, and nothing is allocated per recipient once the queues have
// grown to their working size. It never blocks on a session: a full queue
// ends that session.
func (hd handler) HandlePublication(pub *broker.Publication) {
	e := hd.e
	h := e.hub(pub.Channel)
	if h == nil {
		return
	}
	var chat, super []byte
	var haveChat bool
	n := int64(0)
	h.mu.Lock()
	for _, sub := range h.subs {
		s := sub.s
		out := Outbound{Time: pub.Time}
		if s.proto == ProtocolChat {
			if !haveChat {
				chat, haveChat = encodeChat(pub.Data), true
			}
			out.Data = chat
		} else {
			if super == nil {
				super = encodePush(pub)
			}
			out.Data = super
		}
		if sub.recovering {
			if len(sub.held) >= s.q.maxItems {
				s.slowConsumer()
				continue
			}
			sub.held = append(sub.held, heldItem{pos: pub.Position, out: out})
			continue
		}
		if pub.Epoch == sub.epoch && pub.Offset <= sub.offset {
			continue // already delivered
		}
		sub.epoch, sub.offset = pub.Epoch, pub.Offset
		if ok, full := s.q.push(out); ok {
			n++
		} else if full {
			s.slowConsumer()
		}
	}
	h.mu.Unlock()
	e.stats.out.Add(n)
}

// HandleJoin pushes a join event to the channel's superchat subscribers.
func (hd handler) HandleJoin(channel string, info broker.ClientInfo) {
	hd.event(channel, info, true)
}

// HandleLeave pushes a leave event to the channel's superchat subscribers.
func (hd handler) HandleLeave(channel string, info broker.ClientInfo) {
	hd.event(channel, info, false)
}

func (hd handler) event(channel string, info broker.ClientInfo, join bool) {
	e := hd.e
	h := e.hub(channel)
	if h == nil {
		return
	}
	var data []byte
	n := int64(0)
	h.mu.Lock()
	for _, sub := range h.subs {
		if sub.s.proto != ProtocolSuperchat || sub.recovering || !sub.ns.JoinLeave {
			continue
		}
		if data == nil {
			data = encodeEvent(channel, info, join)
		}
		if ok, full := sub.s.q.push(Outbound{Data: data}); ok {
			n++
		} else if full {
			sub.s.slowConsumer()
		}
	}
	h.mu.Unlock()
	e.stats.out.Add(n)
}
