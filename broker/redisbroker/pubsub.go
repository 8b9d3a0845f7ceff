// This file is the Redis broker's Pub/Sub state machine: subscribe and
// confirm, receive, dispatch, catch up. Scripts and codecs are in
// scripts.go.
//
// Ownership:
//   - receive (one goroutine) owns the reads of the Pub/Sub connection. It
//     never blocks on anything but the socket: it confirms (UN)SUBSCRIBEs
//     to their waiters and puts messages on a queue bounded in count and
//     bytes; when the queue is full it drops the message and marks its
//     channel overflowed. It also checks a silent link with PING and
//     replaces a dead one.
//   - dispatch (one goroutine) is the only caller of the Handler and the
//     only writer of a chanState's delivery fields (pos, held, catching).
//     It never does network I/O: a channel that needs catching up gets a
//     catch-up goroutine (at most CatchUps at once), and its live messages
//     are held until the result comes back; other channels keep flowing.
//   - catch-up goroutines read one page of history and send it back to
//     dispatch on a channel with room for all of them, so they never block.
//   - Subscribe and Unsubscribe create and delete chanStates (under mu) and
//     talk to Redis; calls on one channel are ordered by its stripe lock.
//
// Whoever starts a goroutine here waits for it: Close waits for all three
// kinds through Broker.wg.

package redisbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hotline-rt/hotline/broker"
)

// Reasons given to Handler.HandleGap.
const (
	gapLinkLost      = "broker link lost"
	gapTrimmed       = "history trimmed"
	gapEpochChanged  = "epoch changed"
	gapQueueOverflow = "queue overflow"
)

// catchUpTimeout bounds one history read that fills a gap in fan-out.
const catchUpTimeout = 5 * time.Second

// catchUpTries and catchUpBackoff bound the retries of a catch-up read that
// failed because Redis did not answer.
const (
	catchUpTries   = 3
	catchUpBackoff = 100 * time.Millisecond
)

// catchUpPage is how many publications one catch-up read returns; a longer
// gap is read page by page, live messages held meanwhile.
const catchUpPage = 500

// catchUpHook, if set, runs in each catch-up goroutine before its read; a
// test holds one channel's catch-up with it.
var catchUpHook atomic.Pointer[func(channel string)]

// subStripes orders Subscribe and Unsubscribe per channel without one lock
// for all channels.
const subStripes = 64

// pubsub is the Redis broker's fan-out. See the ownership notes above.
type pubsub struct {
	r         *Broker
	queue     chan item        // receive -> dispatch, bounded
	caught    chan catchResult // catch-up goroutines -> dispatch
	overflow  atomic.Bool      // receive dropped something; see overflowed
	wake      chan struct{}    // receive -> dispatch after an overflow
	catchUps  int              // most catch-up reads at once
	pingEvery time.Duration    // silence after which the link is checked
	maxHeld   int              // most messages held over all channels
	maxBytes  int64            // most payload bytes queued, and held
	qbytes    atomic.Int64     // payload bytes in queue

	stripes [subStripes]sync.Mutex
	seed    maphash.Seed

	omu        sync.Mutex
	overflowed map[string]bool // channels whose messages receive dropped

	mu      sync.Mutex
	handler broker.Handler
	conn    *redis.PubSub
	closed  bool
	subs    map[string]int             // channel -> Subscribe count
	chans   map[string]*chanState      // subscribed channel -> its fan-out state
	waiters map[string][]chan struct{} // kind+" "+Redis channel -> (UN)SUBSCRIBEs awaiting confirmation, in order
	held    int                        // messages held over all channels
	hbytes  int64                      // their payload bytes
	running int                        // catch-up reads running
	waiting []*chanState               // catch-ups waiting for a slot, in order
}

// item is what receive queues for dispatch: a message of a channel, or the
// news that go-redis subscribed the channel again after a reconnect.
type item struct {
	channel string
	pub     bool   // a publication (else a join or leave)
	payload string // the message
	resub   bool   // no message: the subscription was renewed
	// drop, if set, is no message: the subscription of st ended, and
	// everything Redis sent before confirming that has been handled.
	drop *chanState
}

// chanState is the fan-out state of one subscribed channel. A new
// Subscribe of a channel gets a new chanState; a catch-up result for an
// older one is discarded.
type chanState struct {
	channel string

	// pos is the last publication handed to the handler (delivered) or,
	// before any, the stream's top when the subscription started:
	// publications up to pos are not handed over, the next is
	// pos.Offset+1. known is false when continuity cannot be checked (no
	// top was read, or a gap was just reported): the next publication is
	// taken as it comes, unless it was handed over already.
	pos       broker.Position
	known     bool
	delivered bool

	catching    bool   // a catch-up runs or waits for a slot
	reason      string // why: the gap reason if history cannot fill it
	again       bool   // another catch-up is needed after this one
	againReason string
	held        []item // live messages that came while catching up
}

// catchResult is one page of history read by a catch-up.
type catchResult struct {
	st   *chanState
	from broker.Position
	page bool // read with a limit: more may follow
	res  broker.HistoryResult
	err  error
}

func (ps *pubsub) init(r *Broker, queueSize, queueBytes, catchUps int, pingEvery time.Duration) {
	ps.r = r
	ps.maxBytes = int64(queueBytes)
	ps.pingEvery = pingEvery
	ps.queue = make(chan item, queueSize)
	ps.caught = make(chan catchResult, catchUps)
	ps.wake = make(chan struct{}, 1)
	ps.catchUps = catchUps
	ps.maxHeld = queueSize
	ps.seed = maphash.MakeSeed()
	ps.overflowed = make(map[string]bool)
	ps.subs = make(map[string]int)
	ps.chans = make(map[string]*chanState)
	ps.waiters = make(map[string][]chan struct{})
}

func (ps *pubsub) start(h broker.Handler) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return broker.ErrClosed
	}
	if ps.conn != nil {
		return errors.New("broker: redis broker already started")
	}
	ps.handler = h
	ps.conn = ps.r.client.Subscribe(context.Background())
	ps.r.wg.Add(2)
	go ps.receive(ps.conn)
	go ps.dispatch()
	return nil
}

// close marks the fan-out closed and closes the Pub/Sub connection, which
// ends receive. It reports false if it was closed already.
func (ps *pubsub) close() bool {
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		return false
	}
	ps.closed = true
	conn := ps.conn
	ps.handler = nil
	ps.subs = map[string]int{}
	ps.chans = map[string]*chanState{}
	ps.waiting = nil
	ps.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
	return true
}

// receive reads the Pub/Sub connection. See the ownership notes. A link
// silent for a ping interval is sent a PING; if nothing comes back within
// another, it is taken for dead (a half-open TCP connection never errors)
// and replaced.
func (ps *pubsub) receive(conn *redis.PubSub) {
	defer ps.r.wg.Done()
	retry := time.NewTimer(0)
	defer retry.Stop()
	pinged := false
	for {
		msg, err := conn.ReceiveTimeout(context.Background(), ps.pingEvery)
		if err != nil {
			if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
				if !pinged {
					pinged = true
					ctx, cancel := context.WithTimeout(ps.r.ctx, ps.pingEvery)
					_ = conn.Ping(ctx)
					cancel()
					continue
				}
				pinged = false
				if conn = ps.replaceConn(conn); conn == nil {
					return
				}
				continue
			}
			// go-redis reconnects and subscribes every channel
			// again on the next Receive.
			pinged = false
			retry.Reset(100 * time.Millisecond)
			select {
			case <-ps.r.done:
				return
			case <-retry.C:
				continue
			}
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if ps.confirm(m.Kind+" "+m.Channel) || m.Kind != "subscribe" {
				break
			}
			// Nobody waits: go-redis subscribed again after a
			// reconnect. What was published meanwhile is caught up.
			if ch, ok := strings.CutPrefix(m.Channel, ps.r.prefix+"pub:"); ok {
				ps.enqueue(item{channel: ch, resub: true})
			}
		case *redis.Message:
			rest, _ := strings.CutPrefix(m.Channel, ps.r.prefix)
			if ch, ok := strings.CutPrefix(rest, "pub:"); ok {
				ps.enqueue(item{channel: ch, pub: true, payload: m.Payload})
			} else if ch, ok := strings.CutPrefix(rest, "ev:"); ok {
				ps.enqueue(item{channel: ch, payload: m.Payload})
			}
		}
	}
}

// replaceConn closes old, a Pub/Sub connection that stopped answering, and
// subscribes a new one to every subscribed channel. The waiters of
// commands sent on old are released: their channels are subscribed again
// on the new connection, and, as nobody waits for those confirmations,
// caught up like after any reconnect. It returns nil once closed.
func (ps *pubsub) replaceConn(old *redis.PubSub) *redis.PubSub {
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		return nil
	}
	conn := ps.r.client.Subscribe(context.Background())
	ps.conn = conn
	rchs := make([]string, 0, 2*len(ps.subs))
	for ch := range ps.subs {
		rchs = append(rchs, ps.r.pubChannel(ch), ps.r.evChannel(ch))
	}
	for _, ws := range ps.waiters {
		for _, w := range ws {
			close(w)
		}
	}
	clear(ps.waiters)
	ps.mu.Unlock()
	_ = old.Close()
	if len(rchs) > 0 {
		// On failure go-redis subscribes them on the next Receive.
		ctx, cancel := context.WithTimeout(ps.r.ctx, ps.pingEvery)
		_ = conn.Subscribe(ctx, rchs...)
		cancel()
	}
	return conn
}

// enqueue queues it for dispatch, or drops it and marks its channel for
// repair if the queue is full.
func (ps *pubsub) enqueue(it item) {
	n := int64(len(it.payload))
	if ps.qbytes.Add(n) <= ps.maxBytes {
		select {
		case ps.queue <- it:
			return
		default:
		}
	}
	ps.qbytes.Add(-n)
	ps.omu.Lock()
	ps.overflowed[it.channel] = true
	ps.omu.Unlock()
	ps.overflow.Store(true)
	select {
	case ps.wake <- struct{}{}:
	default:
	}
}

// confirm wakes the oldest waiter for key (kind and Redis channel) and
// reports whether there was one.
func (ps *pubsub) confirm(key string) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ws := ps.waiters[key]
	if len(ws) == 0 {
		return false
	}
	close(ws[0])
	if len(ws) == 1 {
		delete(ps.waiters, key)
	} else {
		ps.waiters[key] = ws[1:]
	}
	return true
}

// expectLocked registers waiters for the confirmations of one
// (UN)SUBSCRIBE of rchs. ps.mu is held.
func (ps *pubsub) expectLocked(kind string, rchs ...string) []chan struct{} {
	ws := make([]chan struct{}, len(rchs))
	for i, rch := range rchs {
		ws[i] = make(chan struct{})
		k := kind + " " + rch
		ps.waiters[k] = append(ps.waiters[k], ws[i])
	}
	return ws
}

// forget removes the waiters ws of a command that was never sent, so no
// later confirmation is matched to them.
func (ps *pubsub) forget(kind string, ws []chan struct{}, rchs ...string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i, rch := range rchs {
		k := kind + " " + rch
		q := slices.DeleteFunc(ps.waiters[k], func(w chan struct{}) bool { return w == ws[i] })
		if len(q) == 0 {
			delete(ps.waiters, k)
		} else {
			ps.waiters[k] = q
		}
	}
}

// await waits for the confirmations ws. A confirmation that arrives after
// ctx is done goes to the waiter left in the queue, which keeps later
// waiters matched to their own.
func (ps *pubsub) await(ctx context.Context, ws []chan struct{}) error {
	for _, w := range ws {
		select {
		case <-w:
		case <-ctx.Done():
			return ctx.Err()
		case <-ps.r.done:
			return broker.ErrClosed
		}
	}
	return nil
}

func (ps *pubsub) stripe(channel string) *sync.Mutex {
	return &ps.stripes[maphash.String(ps.seed, channel)%subStripes]
}

// subscribe is Broker.Subscribe. A fresh subscription reads the stream's
// top once Redis has confirmed it: publications after that top all arrive
// live, so a later catch-up knows where to start.
func (ps *pubsub) subscribe(ctx context.Context, channel string) error {
	mu := ps.stripe(channel)
	mu.Lock()
	defer mu.Unlock()
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		return broker.ErrClosed
	}
	if ps.conn == nil {
		ps.mu.Unlock()
		return errors.New("broker: redis broker not started")
	}
	n := ps.subs[channel]
	ps.subs[channel] = n + 1
	if n > 0 {
		ps.mu.Unlock()
		return nil
	}
	st := &chanState{channel: channel}
	ps.chans[channel] = st
	pc, ec := ps.r.pubChannel(channel), ps.r.evChannel(channel)
	ws := ps.expectLocked("subscribe", pc, ec)
	conn := ps.conn
	ps.mu.Unlock()

	err := conn.Subscribe(ctx, pc, ec)
	if err == nil {
		err = ps.await(ctx, ws)
	} else {
		ps.forget("subscribe", ws, pc, ec)
	}
	if err == nil {
		ps.setBase(ctx, st)
		return nil
	}
	if errors.Is(err, broker.ErrClosed) {
		return err
	}
	// Undo.
	ps.mu.Lock()
	if ps.subs[channel] <= 1 {
		delete(ps.subs, channel)
	} else {
		ps.subs[channel]--
	}
	last := ps.subs[channel] == 0
	var uws []chan struct{}
	if last {
		ps.dropStateLocked(channel, st)
		// Nobody waits; the waiters keep the queues in step.
		uws = ps.expectLocked("unsubscribe", pc, ec)
	}
	ps.mu.Unlock()
	if last {
		if conn.Unsubscribe(context.WithoutCancel(ctx), pc, ec) != nil {
			ps.forget("unsubscribe", uws, pc, ec)
		}
	}
	return fmt.Errorf("broker: redis subscribe %s: %w", channel, err)
}

// setBase reads the top of st's stream after its subscription is confirmed
// and makes it where st starts, unless a publication came first. If the
// read fails, st stays unknown: a later catch-up cannot prove continuity
// and reports a gap.
func (ps *pubsub) setBase(ctx context.Context, st *chanState) {
	vals, err := ps.r.client.HMGet(ctx, ps.r.metaKey(st.channel), "epoch", "offset").Result()
	if err != nil || len(vals) != 2 {
		return
	}
	var base broker.Position
	if e, ok := vals[0].(string); ok && e != "" {
		s, _ := vals[1].(string)
		off, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return
		}
		base = broker.Position{Epoch: e, Offset: off}
	}
	ps.mu.Lock()
	if ps.chans[st.channel] == st && !st.known {
		st.pos, st.known, st.delivered = base, true, false
	}
	ps.mu.Unlock()
}

// dropStateLocked forgets the fan-out state of channel if it is st.
// ps.mu is held.
func (ps *pubsub) dropStateLocked(channel string, st *chanState) {
	if ps.chans[channel] != st {
		return
	}
	delete(ps.chans, channel)
	ps.unholdLocked(st.held)
	st.held = nil
	if i := slices.Index(ps.waiting, st); i >= 0 {
		ps.waiting = slices.Delete(ps.waiting, i, i+1)
	}
}

// unsubscribe is Broker.Unsubscribe.
func (ps *pubsub) unsubscribe(ctx context.Context, channel string) error {
	mu := ps.stripe(channel)
	mu.Lock()
	defer mu.Unlock()
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		return broker.ErrClosed
	}
	n := ps.subs[channel]
	if n > 1 {
		ps.subs[channel] = n - 1
		ps.mu.Unlock()
		return nil
	}
	delete(ps.subs, channel)
	st := ps.chans[channel]
	conn := ps.conn
	if n == 0 || conn == nil {
		ps.mu.Unlock()
		return nil
	}
	pc, ec := ps.r.pubChannel(channel), ps.r.evChannel(channel)
	ws := ps.expectLocked("unsubscribe", pc, ec)
	ps.mu.Unlock()
	err := conn.Unsubscribe(ctx, pc, ec)
	if err == nil {
		err = ps.await(ctx, ws)
	} else {
		ps.forget("unsubscribe", ws, pc, ec)
	}
	if err == nil && st != nil {
		// What was received before the confirmation is queued ahead
		// of this: it is still handed over, and nothing after it. A
		// full queue is not waited for (the handler may be the
		// caller): the state goes at once.
		select {
		case ps.queue <- item{channel: channel, drop: st}:
			return nil
		default:
		}
	}
	if st != nil {
		ps.mu.Lock()
		ps.dropStateLocked(channel, st)
		ps.mu.Unlock()
	}
	if err != nil && !errors.Is(err, broker.ErrClosed) {
		return fmt.Errorf("broker: redis unsubscribe %s: %w", channel, err)
	}
	return err
}

// dispatch hands queued messages and catch-up results to the handler. See
// the ownership notes.
func (ps *pubsub) dispatch() {
	defer ps.r.wg.Done()
	for {
		select {
		case it := <-ps.queue:
			ps.qbytes.Add(-int64(len(it.payload)))
			ps.dispatchItem(it)
		case res := <-ps.caught:
			ps.caughtUp(res)
		case <-ps.wake:
		case <-ps.r.done:
			return
		}
		if ps.overflow.Load() {
			ps.repairOverflow()
		}
	}
}

// dispatchItem handles one queued item: held if its channel is catching
// up, a catch-up if it renews a subscription, else delivered.
func (ps *pubsub) dispatchItem(it item) {
	ps.mu.Lock()
	if it.drop != nil {
		if ps.subs[it.channel] == 0 {
			ps.dropStateLocked(it.channel, it.drop)
		}
		ps.mu.Unlock()
		return
	}
	st := ps.chans[it.channel]
	if st == nil || ps.handler == nil {
		ps.mu.Unlock()
		return // not subscribed (any more)
	}
	if it.resub {
		ps.needCatchUpLocked(st, gapLinkLost)
		ps.mu.Unlock()
		return
	}
	if st.catching {
		ps.holdLocked(st, it)
		ps.mu.Unlock()
		return
	}
	ps.mu.Unlock()
	ps.deliver(st, it)
}

// holdLocked keeps it until st's catch-up ends, or, past the bound on held
// messages, drops it and asks for another catch-up. ps.mu is held.
func (ps *pubsub) holdLocked(st *chanState, it item) {
	if ps.held >= ps.maxHeld || ps.hbytes+int64(len(it.payload)) > ps.maxBytes {
		st.again, st.againReason = true, gapQueueOverflow
		return
	}
	st.held = append(st.held, it)
	ps.held++
	ps.hbytes += int64(len(it.payload))
}

// unholdLocked takes items out of the held counts. ps.mu is held.
func (ps *pubsub) unholdLocked(items []item) {
	ps.held -= len(items)
	for _, it := range items {
		ps.hbytes -= int64(len(it.payload))
	}
}

// needCatchUpLocked starts a catch-up of st, or asks for another one after
// the one running. ps.mu is held.
func (ps *pubsub) needCatchUpLocked(st *chanState, reason string) {
	if st.catching {
		st.again = true
		if st.againReason == "" || reason == gapQueueOverflow {
			st.againReason = reason
		}
		return
	}
	st.catching, st.reason = true, reason
	ps.scheduleLocked(st)
}

// scheduleLocked runs st's catch-up read now, or when a slot frees.
// ps.mu is held.
func (ps *pubsub) scheduleLocked(st *chanState) {
	if ps.running >= ps.catchUps {
		ps.waiting = append(ps.waiting, st)
		return
	}
	ps.running++
	from, known := st.pos, st.known
	ps.r.wg.Go(func() {
		ctx, cancel := context.WithTimeout(ps.r.ctx, catchUpTimeout)
		defer cancel()
		cr := catchResult{st: st, from: from}
		if hook := catchUpHook.Load(); hook != nil {
			(*hook)(st.channel)
		}
		// A read that failed for want of Redis (a pooled connection
		// that died with the link, a server still starting) is tried
		// again before the hole is reported.
		for attempt := 0; ; attempt++ {
			if known {
				cr.page = true
				cr.res, cr.err = ps.r.History(ctx, st.channel, broker.HistoryRequest{Since: &from, Limit: catchUpPage})
			} else {
				// Nothing to start from: only the top, to resume there.
				cr.res, cr.err = ps.r.History(ctx, st.channel, broker.HistoryRequest{})
			}
			if cr.err == nil || errors.Is(cr.err, broker.ErrHistoryTrimmed) || errors.Is(cr.err, broker.ErrEpochChanged) || attempt == catchUpTries-1 {
				break
			}
			t := time.NewTimer(catchUpBackoff << attempt)
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
			}
			break
		}
		ps.caught <- cr // room for every running catch-up
	})
}

// deliver hands one live message of st's channel to the handler, first
// making sure it follows what the handler already has: a duplicate is
// dropped, a hole starts a catch-up (it is held until then), a new epoch
// is a gap.
func (ps *pubsub) deliver(st *chanState, it item) {
	if !it.pub {
		var ev wireEvent
		if err := json.Unmarshal([]byte(it.payload), &ev); err != nil {
			return
		}
		ps.mu.Lock()
		h := ps.handler
		live := ps.chans[st.channel] == st
		ps.mu.Unlock()
		if h == nil || !live {
			return
		}
		if ev.Join {
			h.HandleJoin(st.channel, ev.Info)
		} else {
			h.HandleLeave(st.channel, ev.Info)
		}
		return
	}
	p, err := decodePublication([]byte(it.payload))
	if err != nil || p.Channel != st.channel {
		return // not ours; nothing sensible to do with it
	}
	ps.mu.Lock()
	h := ps.handler
	if h == nil || ps.chans[st.channel] != st {
		ps.mu.Unlock()
		return
	}
	gap := ""
	switch {
	case !st.known && st.delivered && p.Epoch == st.pos.Epoch && p.Offset <= st.pos.Offset:
		// Continuity is unknown (after a gap), but this one was
		// handed over already.
		ps.mu.Unlock()
		return
	case !st.known:
		st.pos, st.known, st.delivered = p.Position, true, true
	case st.pos.Epoch == "":
		// Subscribed before the stream existed: it starts at 1.
		if p.Offset != 1 {
			ps.startCatchUpLocked(st, it, gapLinkLost)
			ps.mu.Unlock()
			return
		}
		st.pos, st.delivered = p.Position, true
	case p.Epoch != st.pos.Epoch:
		gap = gapEpochChanged
		st.pos, st.delivered = p.Position, true
	case p.Offset <= st.pos.Offset:
		// Handed over by a catch-up already, or at or before where
		// the node resumed (the subscription's start, or the top
		// after a gap): whoever needs it reads it from history.
		ps.mu.Unlock()
		return
	case p.Offset == st.pos.Offset+1:
		st.pos, st.delivered = p.Position, true
	default:
		ps.startCatchUpLocked(st, it, gapLinkLost)
		ps.mu.Unlock()
		return
	}
	ps.mu.Unlock()
	if gap != "" {
		h.HandleGap(st.channel, gap)
	}
	h.HandlePublication(p)
}

// startCatchUpLocked holds it and catches st up to it. ps.mu is held.
func (ps *pubsub) startCatchUpLocked(st *chanState, it item, reason string) {
	st.held = append(st.held, it) // over the bound by one at most per channel
	ps.held++
	ps.hbytes += int64(len(it.payload))
	ps.needCatchUpLocked(st, reason)
}

// caughtUp takes one catch-up result: it hands the publications read to the
// handler (or a gap if history could not fill the hole), then the messages
// held meanwhile.
func (ps *pubsub) caughtUp(cr catchResult) {
	st := cr.st
	ps.mu.Lock()
	ps.running--
	for len(ps.waiting) > 0 && ps.running < ps.catchUps {
		next := ps.waiting[0]
		ps.waiting = ps.waiting[1:]
		ps.scheduleLocked(next)
	}
	h := ps.handler
	if h == nil || ps.chans[st.channel] != st {
		ps.mu.Unlock()
		return
	}
	var pubs []*broker.Publication
	gap := ""
	more := false
	switch {
	case cr.err == nil && !cr.page:
		// Nothing was known: continuity cannot be proved unless the
		// stream does not exist (then it starts at offset 1).
		if cr.res.Top != (broker.Position{}) {
			gap = st.reason
			st.known = false
		} else {
			st.pos, st.known, st.delivered = broker.Position{}, true, false
		}
	case cr.err == nil:
		for _, p := range cr.res.Publications {
			if p.Epoch == st.pos.Epoch && p.Offset <= st.pos.Offset && st.delivered {
				continue
			}
			pubs = append(pubs, p)
			st.pos, st.delivered = p.Position, true
		}
		more = len(cr.res.Publications) == catchUpPage && st.pos.Offset < cr.res.Top.Offset
	default:
		gap = st.reason
		switch {
		case errors.Is(cr.err, broker.ErrHistoryTrimmed):
			gap = gapTrimmed
		case errors.Is(cr.err, broker.ErrEpochChanged):
			gap = gapEpochChanged
		}
		// After the gap the next publication is taken as it comes
		// (those held meanwhile are live and follow each other); the
		// ones after it are checked again.
		st.known = false
	}
	var held []item
	again := false
	if more {
		ps.scheduleLocked(st)
	} else {
		held, st.held = st.held, nil
		ps.unholdLocked(held)
		st.catching = false
		again, st.again = st.again, false
		if again {
			st.reason, st.againReason = st.againReason, ""
		}
	}
	ps.mu.Unlock()

	if gap != "" {
		h.HandleGap(st.channel, gap)
	}
	for _, p := range pubs {
		h.HandlePublication(p)
	}
	for i, it := range held {
		ps.deliver(st, it)
		ps.mu.Lock()
		if st.catching {
			// A new hole: the rest waits behind it.
			rest := held[i+1:]
			st.held = append(st.held, rest...)
			ps.held += len(rest)
			for _, it := range rest {
				ps.hbytes += int64(len(it.payload))
			}
			ps.mu.Unlock()
			break
		}
		ps.mu.Unlock()
	}
	if again {
		ps.mu.Lock()
		if ps.chans[st.channel] == st {
			ps.needCatchUpLocked(st, st.reason)
		}
		ps.mu.Unlock()
	}
}

// repairOverflow catches up every channel whose messages receive dropped.
func (ps *pubsub) repairOverflow() {
	ps.overflow.Store(false)
	ps.omu.Lock()
	chs := ps.overflowed
	ps.overflowed = make(map[string]bool)
	ps.omu.Unlock()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for ch := range chs {
		if st := ps.chans[ch]; st != nil {
			ps.needCatchUpLocked(st, gapQueueOverflow)
		}
	}
}
