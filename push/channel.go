package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/superchat"
)

// hub is a channel with local subscribers. The broker's handler fans each
// publication out over subs under mu, which also orders subscribes against
// publications (see subscribe).
//
// Locks: Engine.hubsMu guards the map of hubs and refs, and is held for map
// operations only. smu guards the state of the node's broker subscription
// of the channel; the broker's Subscribe and Unsubscribe run with no lock
// held, one at a time per channel (busy), and whoever needs the channel
// meanwhile waits for busy, bounded by its ctx, and shares the outcome. mu
// guards the subscribers. Neither smu nor mu is ever held across network
// I/O or a wait; smu is never taken on the publication path.
type hub struct {
	channel string
	refs    int // local subscriptions holding the hub; under Engine.hubsMu

	smu        sync.Mutex
	subscribed bool          // the node holds a broker subscription
	busy       chan struct{} // a broker call is in flight; closed when it ends
	busySub    bool          // that call is a Subscribe
	subErr     error         // outcome of the last Subscribe, for its waiters

	mu   sync.Mutex
	subs []*subscription

	// rmu guards the shared history reads of subscribers (sharedHistory):
	// per request, the read in flight and the next one, which gathers the
	// subscribers that arrive meanwhile. Never held across I/O.
	rmu     sync.Mutex
	reading map[readKey]*historyRead
	queued  map[readKey]*historyRead
}

// readKey names the history read a subscriber asks for: the top only, or
// the first page after a position.
type readKey struct {
	since bool
	pos   broker.Position
}

// historyRead is one history read shared by the subscribers that wait for
// it. res and err are written before done is closed and only read after.
type historyRead struct {
	req  broker.HistoryRequest
	pos  broker.Position // req.Since points here
	done chan struct{}
	res  broker.HistoryResult
	err  error
}

// subscription is one session in one channel. Fields below mu are guarded
// by the hub's mu, except that while recovering the position (epoch,
// offset, gapped) belongs to the goroutine running subscribe.
type subscription struct {
	s       *Session
	hub     *hub
	channel string
	ns      NamespaceOptions

	idx        int  // in hub.subs; -1 when not there
	dropped    bool // removed; never add again
	recovering bool // publications go to held until the replay is queued
	held       []heldItem
	epoch      string // position of the last publication given
	offset     uint64
	gapped     bool // a gap notice was queued and no publication since
	announced  bool // presence added and join published
}

// heldItem is a live publication, or a gap (gap != ""), that reached a
// recovering subscription.
type heldItem struct {
	pos broker.Position
	out Outbound
	gap string
}

// Reasons of gap notices (docs/protocol.md).
const (
	gapOffset      = "offset gap"
	gapEpoch       = "epoch changed"
	gapTrimmed     = "history trimmed"
	gapBroker      = "broker link lost"
	gapInterrupted = "replay interrupted"
)

// replayPage is how many publications a recovery reads from history at a
// time, so that a long replay is never held in memory at once.
const replayPage = 100

// errAlreadySubscribed is answered to a second subscribe to one channel.
var errAlreadySubscribed = errors.New("already subscribed")

// next says what to do with a publication at pos for sub: deliver it, and
// if gap is not "" (and the session speaks superchat) tell the client first
// that it may have missed some since its last position. A publication at
// or below that position in the same epoch is a duplicate: not delivered.
// An empty position ("", 0: the stream did not exist) is followed by offset
// 1 of any epoch. After a gap notice the next publication is taken as it
// comes.
func (sub *subscription) next(pos broker.Position) (deliver bool, gap string) {
	switch {
	case pos.Epoch == sub.epoch:
		if pos.Offset <= sub.offset {
			return false, ""
		}
		if pos.Offset == sub.offset+1 || sub.gapped {
			return true, ""
		}
		return true, gapOffset
	case sub.gapped, sub.epoch == "" && sub.offset == 0 && pos.Offset == 1:
		return true, ""
	case sub.epoch == "":
		return true, gapOffset
	}
	return true, gapEpoch
}

// brokerCtx bounds one broker call by Config.BrokerTimeout.
func (e *Engine) brokerCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.cfg.BrokerTimeout)
}

// acquireHub returns channel's hub, subscribing this node to the channel at
// the broker when it holds no subscription yet. The engine-wide map is held
// only to find the hub and count the reference. A Subscribe already in
// flight for the channel is waited for (bounded by ctx) and its outcome
// shared: when the broker does not answer, every subscriber of the channel
// fails after one BrokerTimeout, not one after another.
func (e *Engine) acquireHub(ctx context.Context, channel string) (*hub, error) {
	e.hubsMu.Lock()
	h := e.hubs[channel]
	if h == nil {
		h = &hub{channel: channel}
		e.hubs[channel] = h
	}
	h.refs++
	e.hubsMu.Unlock()

	for {
		h.smu.Lock()
		if busy := h.busy; busy != nil {
			waitedSub := h.busySub
			h.smu.Unlock()
			select {
			case <-busy:
			case <-ctx.Done():
				e.releaseHub(ctx, h)
				return nil, fmt.Errorf("push: broker subscribe %s: %w", channel, ctx.Err())
			}
			if waitedSub {
				h.smu.Lock()
				subscribed, err := h.subscribed, h.subErr
				h.smu.Unlock()
				if !subscribed && err != nil {
					e.releaseHub(ctx, h)
					return nil, fmt.Errorf("push: broker subscribe %s: %w", channel, err)
				}
			}
			continue
		}
		if h.subscribed {
			h.smu.Unlock()
			return h, nil
		}
		busy := make(chan struct{})
		h.busy, h.busySub = busy, true
		h.smu.Unlock()

		bctx, cancel := e.brokerCtx(ctx)
		err := e.broker.Subscribe(bctx, channel)
		cancel()

		h.smu.Lock()
		h.subscribed, h.subErr, h.busy = err == nil, err, nil
		close(busy)
		h.smu.Unlock()
		if err != nil {
			e.releaseHub(ctx, h)
			return nil, fmt.Errorf("push: broker subscribe %s: %w", channel, err)
		}
		return h, nil
	}
}

// releaseHub undoes one acquireHub; the last one unsubscribes the node.
// A hub stays in the map until its Unsubscribe has returned, so a new
// subscriber of the channel finds it, waits for the Unsubscribe and
// subscribes again: the broker's Subscribe and Unsubscribe of one channel
// never overlap. The Unsubscribe is bounded by BrokerTimeout, not by ctx,
// which may have ended (an abandoned request must not leave the node
// subscribed).
func (e *Engine) releaseHub(ctx context.Context, h *hub) {
	e.hubsMu.Lock()
	h.refs--
	last := h.refs == 0
	e.hubsMu.Unlock()
	if !last {
		return
	}
	for {
		h.smu.Lock()
		if busy := h.busy; busy != nil {
			h.smu.Unlock()
			<-busy // bounded by BrokerTimeout
			continue
		}
		e.hubsMu.Lock()
		if h.refs > 0 { // taken again: the new holder keeps it
			e.hubsMu.Unlock()
			h.smu.Unlock()
			return
		}
		if !h.subscribed {
			e.forgetLocked(h)
			e.hubsMu.Unlock()
			h.smu.Unlock()
			return
		}
		e.hubsMu.Unlock()
		busy := make(chan struct{})
		h.busy, h.busySub = busy, false
		h.smu.Unlock()

		bctx, cancel := e.brokerCtx(context.WithoutCancel(ctx))
		err := e.broker.Unsubscribe(bctx, h.channel)
		cancel()
		if err != nil {
			e.log.Warn("broker unsubscribe failed", slog.String("channel", h.channel), slog.Any("err", err))
		}

		h.smu.Lock()
		h.subscribed, h.busy = false, nil
		close(busy)
		e.hubsMu.Lock()
		if h.refs == 0 {
			e.forgetLocked(h)
		}
		e.hubsMu.Unlock()
		h.smu.Unlock()
		return
	}
}

// forgetLocked removes h from the map if nobody holds it. hubsMu is held.
func (e *Engine) forgetLocked(h *hub) {
	if h.refs == 0 && e.hubs[h.channel] == h {
		delete(e.hubs, h.channel)
	}
}

// subscribe adds s to channel. reply, if not nil, builds the reply to queue
// before anything else of the channel; its arguments are the top of the
// stream (Publications nil) and the history error (nil,
// broker.ErrEpochChanged or broker.ErrHistoryTrimmed). With since, the
// publications after since follow the reply, each its own queue item,
// queued under flow control (waiting for room, bounded by ctx and the
// session's end), read from history a page at a time.
//
// No gap and no duplicate between replay and live delivery: the session
// joins the hub (holding live publications back) before history is read,
// so every publication after the history's top reaches the hub after the
// session is in it. The replay stops at the top; then the held
// publications are queued in order, each checked against the last position
// given (next), which drops those the replay already gave. Live delivery
// starts when nothing is held any more. The first read is shared with the
// channel's other subscribers that join at the same time (sharedHistory),
// keeping that order. A failure of the broker is errBrokerUnavailable.
func (e *Engine) subscribe(ctx context.Context, s *Session, channel string, since *broker.Position, reply func(broker.HistoryResult, error) []byte) error {
	ns, err := e.namespace(channel)
	if err != nil {
		return err
	}
	h, err := e.acquireHub(ctx, channel)
	if err != nil {
		return fmt.Errorf("%w: %w", errBrokerUnavailable, err)
	}
	sub := &subscription{s: s, hub: h, channel: channel, ns: ns, idx: -1, recovering: true}

	s.mu.Lock()
	switch {
	case s.gone:
		s.mu.Unlock()
		e.releaseHub(ctx, h)
		return s.Err()
	case s.subs.get(channel) != nil:
		s.mu.Unlock()
		e.releaseHub(ctx, h)
		return errAlreadySubscribed
	}
	s.subs.put(sub)
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
		req.Limit = replayPage
	}
	res, herr := e.sharedHistory(h, req)
	if herr != nil && !isRecoveryError(herr) {
		e.removeSub(ctx, s, sub)
		return fmt.Errorf("push: read history of %s: %w: %w", channel, errBrokerUnavailable, herr)
	}
	top := res.Top
	sub.epoch, sub.offset = top.Epoch, top.Offset
	if reply != nil {
		if err := e.put(ctx, sub, Outbound{Data: reply(broker.HistoryResult{Top: top}, herr)}); err != nil {
			return e.abandon(ctx, sub)
		}
	}
	if since != nil && herr == nil {
		sub.epoch, sub.offset = since.Epoch, since.Offset
		if err := e.replay(ctx, sub, res.Publications, top); err != nil {
			return e.abandon(ctx, sub)
		}
	}
	if err := e.flushHeld(ctx, sub); err != nil {
		return e.abandon(ctx, sub)
	}
	e.announce(ctx, sub)
	return nil
}

// errBrokerUnavailable marks a subscribe that failed because the broker
// did not serve it (no connection to be had in time, a timeout, a broker
// going away): the client is told to retry (superchat 503), not that the
// server failed.
var errBrokerUnavailable = errors.New("push: broker unavailable")

// sharedHistory reads the history a subscriber of h starts from, sharing
// the read with the other subscribers of the channel on this node that ask
// for the same (the top, or the first page after one position): in a
// connect storm of one channel, one Redis round trip serves a batch of
// subscribers instead of one each, so the broker's connection pool is not
// emptied by one channel.
//
// Continuity: the caller has joined the hub (holding live publications)
// before it calls, and joins only a read that has not started yet: the
// read in flight, if any, began before the caller was in the hub, and a
// publication after its top could have been fanned out before the caller
// joined. So the caller waits for the next read, which starts when the one
// in flight ends; every publication after the top of that read reaches the
// hub after the caller is in it, as with a read of its own.
//
// The reads run in a goroutine of their own, one per request in flight,
// each bounded by Config.BrokerTimeout and by nobody's ctx: one
// subscriber's abandoned request must not fail the others. A subscriber
// waits for its read even when its ctx has ended, as the rest of subscribe
// sets up an abandoned request all the same (put).
func (e *Engine) sharedHistory(h *hub, req broker.HistoryRequest) (broker.HistoryResult, error) {
	key := readKey{}
	if req.Since != nil {
		key = readKey{since: true, pos: *req.Since}
	}
	h.rmu.Lock()
	if h.queued == nil {
		h.queued = make(map[readKey]*historyRead)
		h.reading = make(map[readKey]*historyRead)
	}
	r := h.queued[key]
	if r == nil {
		r = &historyRead{req: req, pos: key.pos, done: make(chan struct{})}
		if key.since {
			r.req.Since = &r.pos
		}
		h.queued[key] = r
	}
	start := h.reading[key] == nil
	if start {
		delete(h.queued, key)
		h.reading[key] = r
	}
	h.rmu.Unlock()
	if start {
		go e.runReads(h, key, r)
	}
	<-r.done // bounded by BrokerTimeout
	return r.res, r.err
}

// runReads makes r, then each read queued for key meanwhile, until none is
// queued.
func (e *Engine) runReads(h *hub, key readKey, r *historyRead) {
	for r != nil {
		r.res, r.err = e.history(context.Background(), h.channel, r.req)
		e.stats.historyReads.Add(1)
		h.rmu.Lock()
		close(r.done)
		r = h.queued[key]
		if r == nil {
			delete(h.reading, key)
		} else {
			delete(h.queued, key)
			h.reading[key] = r
		}
		h.rmu.Unlock()
	}
}

// abandon ends a subscribe whose queueing failed: the session ended, or the
// subscription was dropped (unsubscribed) meanwhile.
func (e *Engine) abandon(ctx context.Context, sub *subscription) error {
	if err := sub.s.Err(); err != nil {
		return err
	}
	e.removeSub(ctx, sub.s, sub)
	return nil
}

// history reads channel's history, bounded by Config.BrokerTimeout.
func (e *Engine) history(ctx context.Context, channel string, req broker.HistoryRequest) (broker.HistoryResult, error) {
	bctx, cancel := e.brokerCtx(ctx)
	defer cancel()
	return e.broker.History(bctx, channel, req)
}

// replay queues the publications after sub's position up to top: pubs,
// then further pages of history. A page that cannot be read ends the
// replay with a gap notice at the last position given.
func (e *Engine) replay(ctx context.Context, sub *subscription, pubs []*broker.Publication, top broker.Position) error {
	for {
		for _, p := range pubs {
			if p.Epoch != top.Epoch || p.Offset > top.Offset {
				return nil // after the top: held, or on its way to the hub
			}
			if err := e.deliver(ctx, sub, p.Position, Outbound{Data: encodeFor(sub.s.proto, p), Time: p.Time}); err != nil {
				return err
			}
		}
		if len(pubs) < replayPage || sub.epoch == top.Epoch && sub.offset >= top.Offset {
			return nil
		}
		if sub.isDropped() {
			return errDropped
		}
		if ctx.Err() != nil {
			return e.notice(ctx, sub, gapInterrupted)
		}
		last := pubs[len(pubs)-1].Position
		res, err := e.history(ctx, sub.channel, broker.HistoryRequest{Since: &last, Limit: replayPage})
		switch {
		case err == nil:
			pubs = res.Publications
			if len(pubs) == 0 {
				return nil // nothing more kept; held items are checked
			}
		case ctx.Err() != nil:
			return e.notice(ctx, sub, gapInterrupted)
		case errors.Is(err, broker.ErrHistoryTrimmed):
			return e.notice(ctx, sub, gapTrimmed)
		case errors.Is(err, broker.ErrEpochChanged):
			return e.notice(ctx, sub, gapEpoch)
		default:
			sub.s.log().Warn("replay: read history failed", slog.String("channel", sub.channel), slog.Any("err", err))
			return e.notice(ctx, sub, gapBroker)
		}
	}
}

// flushHeld queues what reached sub while it was recovering, in order, and
// switches it to live delivery once nothing is held.
func (e *Engine) flushHeld(ctx context.Context, sub *subscription) error {
	h := sub.hub
	for {
		h.mu.Lock()
		if sub.dropped {
			h.mu.Unlock()
			return errDropped
		}
		held := sub.held
		sub.held = nil
		if len(held) == 0 {
			sub.recovering = false
			h.mu.Unlock()
			return nil
		}
		h.mu.Unlock()
		for _, it := range held {
			var err error
			if it.gap != "" {
				err = e.notice(ctx, sub, it.gap)
			} else {
				err = e.deliver(ctx, sub, it.pos, it.out)
			}
			if err != nil {
				return err
			}
		}
	}
}

// errDropped: the subscription was dropped while being set up.
var errDropped = errors.New("push: subscription dropped")

func (sub *subscription) isDropped() bool {
	sub.hub.mu.Lock()
	defer sub.hub.mu.Unlock()
	return sub.dropped
}

// deliver queues out, a publication at pos, for a recovering sub: after a
// gap notice if it does not follow the last position given; not at all if
// it is a duplicate.
func (e *Engine) deliver(ctx context.Context, sub *subscription, pos broker.Position, out Outbound) error {
	ok, gap := sub.next(pos)
	if !ok {
		return nil
	}
	if gap != "" && sub.s.proto == ProtocolSuperchat {
		if err := e.put(ctx, sub, Outbound{Data: encodeGap(sub.channel, sub.epoch, sub.offset, gap)}); err != nil {
			return err
		}
		e.stats.gaps.Add(1)
	}
	sub.epoch, sub.offset, sub.gapped = pos.Epoch, pos.Offset, false
	return e.put(ctx, sub, out)
}

// notice queues a gap notice at sub's last position, unless one is already
// out with no publication since.
func (e *Engine) notice(ctx context.Context, sub *subscription, reason string) error {
	if sub.gapped || sub.s.proto != ProtocolSuperchat {
		return nil
	}
	sub.gapped = true
	if err := e.put(ctx, sub, Outbound{Data: encodeGap(sub.channel, sub.epoch, sub.offset, reason)}); err != nil {
		return err
	}
	e.stats.gaps.Add(1)
	return nil
}

// put queues o for a recovering sub, waiting for room while ctx lives.
// Once ctx has ended (the request was abandoned) the subscription is set
// up all the same, without waiting: a queue that is full then ends the
// session as a slow consumer, like live delivery does.
func (e *Engine) put(ctx context.Context, sub *subscription, o Outbound) error {
	s := sub.s
	err := s.q.pushWait(ctx, o)
	if err != nil && ctx.Err() != nil && s.q.ended() == nil {
		ok, full := s.q.push(o)
		switch {
		case ok:
			err = nil
		case full:
			s.slowConsumer()
		}
	}
	if err != nil {
		if d := s.q.ended(); d != nil {
			return d
		}
		return err
	}
	e.stats.out.Add(1)
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
		bctx, cancel := e.brokerCtx(ctx)
		err := e.broker.AddPresence(bctx, sub.channel, s.id, s.info, e.cfg.PresenceTTL)
		cancel()
		if err != nil {
			s.log().Warn("add presence failed", slog.String("channel", sub.channel), slog.Any("err", err))
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
			bctx, cancel := e.brokerCtx(ctx)
			_ = e.broker.RemovePresence(bctx, sub.channel, s.id)
			cancel()
		}
		return
	}
	if sub.ns.JoinLeave {
		bctx, cancel := e.brokerCtx(ctx)
		err := e.broker.PublishJoin(bctx, sub.channel, s.info)
		cancel()
		if err != nil {
			s.log().Warn("publish join failed", slog.String("channel", sub.channel), slog.Any("err", err))
		}
	}
}

// unsubscribe removes s from channel.
func (e *Engine) unsubscribe(ctx context.Context, s *Session, channel string) bool {
	s.mu.Lock()
	sub := s.subs.get(channel)
	if sub != nil {
		s.subs.del(channel)
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
	if s.subs.get(sub.channel) == sub {
		s.subs.del(sub.channel)
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
			bctx, cancel := e.brokerCtx(ctx)
			err := e.broker.RemovePresence(bctx, sub.channel, s.id)
			cancel()
			if err != nil {
				s.log().Warn("remove presence failed", slog.String("channel", sub.channel), slog.Any("err", err))
			}
		}
		if sub.ns.JoinLeave {
			bctx, cancel := e.brokerCtx(ctx)
			err := e.broker.PublishLeave(bctx, sub.channel, s.info)
			cancel()
			if err != nil {
				s.log().Warn("publish leave failed", slog.String("channel", sub.channel), slog.Any("err", err))
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
// ends that session. A superchat subscriber whose last position pub does
// not follow gets a gap notice first.
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
		ok, gap := sub.next(pub.Position)
		if !ok {
			continue // already delivered
		}
		if gap != "" && s.proto == ProtocolSuperchat {
			if ok, full := s.q.push(Outbound{Data: encodeGap(pub.Channel, sub.epoch, sub.offset, gap)}); ok {
				n++
				e.stats.gaps.Add(1)
			} else {
				if full {
					s.slowConsumer()
				}
				continue
			}
		}
		sub.epoch, sub.offset, sub.gapped = pub.Epoch, pub.Offset, false
		if ok, full := s.q.push(out); ok {
			n++
		} else if full {
			s.slowConsumer()
		}
	}
	h.mu.Unlock()
	e.stats.out.Add(n)
}

// HandleGap tells every local superchat subscriber of channel that
// publications after its last position may be missing, once per gap: a
// subscriber already told, with no publication since, is not told again.
// A recovering subscriber gets the notice in order with what it holds.
func (hd handler) HandleGap(channel string, reason string) {
	e := hd.e
	h := e.hub(channel)
	if h == nil {
		return
	}
	var data []byte
	var at broker.Position // position data was encoded for
	n, gaps := int64(0), int64(0)
	h.mu.Lock()
	for _, sub := range h.subs {
		s := sub.s
		if sub.recovering {
			if len(sub.held) >= s.q.maxItems {
				s.slowConsumer()
				continue
			}
			sub.held = append(sub.held, heldItem{gap: reason})
			continue
		}
		if s.proto != ProtocolSuperchat || sub.gapped {
			continue
		}
		if pos := (broker.Position{Epoch: sub.epoch, Offset: sub.offset}); data == nil || pos != at {
			data, at = encodeGap(channel, sub.epoch, sub.offset, reason), pos
		}
		sub.gapped = true
		if ok, full := s.q.push(Outbound{Data: data}); ok {
			n++
			gaps++
		} else if full {
			s.slowConsumer()
		}
	}
	h.mu.Unlock()
	e.stats.out.Add(n)
	e.stats.gaps.Add(gaps)
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

// encodeGap returns a gap notice: {"gap":{...}}.
func encodeGap(channel, epoch string, offset uint64, reason string) []byte {
	return mustMarshal(struct {
		Gap superchat.Gap `json:"gap"`
	}{superchat.Gap{Channel: channel, Epoch: epoch, Offset: offset, Reason: reason}})
}

// encodeFor returns what a session of protocol p is sent for pub.
func encodeFor(p Protocol, pub *broker.Publication) []byte {
	if p == ProtocolChat {
		return encodeChat(pub.Data)
	}
	return encodePush(pub)
}
