// This file is the Redis broker's Pub/Sub state machine: subscribe and
// confirm, receive, dispatch, catch up. Scripts and codecs are in
// scripts.go.
//
// Ownership:
//   - receive (one goroutine per link: the one Pub/Sub connection to a
//     single server, or one sharded connection per hash slot in use in a
//     cluster) owns the reads of its connection. It
//     never blocks on anything but the socket: it confirms (UN)SUBSCRIBEs
//     to their waiters and puts messages on a queue bounded in count and
//     bytes; when the queue is full it drops the message and marks its
//     channel overflowed. It also checks a silent link with PING and
//     replaces a dead one, or one whose slot moved (MOVED, or the server
//     ending the subscription): the new connection goes to the slot's
//     owner, and every channel on it is caught up.
//   - dispatch (one goroutine) is the only caller of the Handler and the
//     only writer of a chanState's delivery fields (pos, held, catching).
//     It never does network I/O: a channel that needs catching up gets a
//     catch-up goroutine (at most CatchUps at once), and its live messages
//     are held until the result comes back; other channels keep flowing.
//   - catch-up goroutines read one page of history and send it back to
//     dispatch on a channel with room for all of them, so they never block.
//   - Subscribe and Unsubscribe create and delete chanStates and links
//     (under mu) and talk to Redis; calls on one channel are ordered by its
//     stripe lock.
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
	started bool
	links   map[int]*link // by hash slot; -1 for the one link to a single server
	closed  bool
	subs    map[string]int             // channel -> Subscribe count
	chans   map[string]*chanState      // subscribed channel -> its fan-out state
	waiters map[string][]chan struct{} // kind+" "+Redis channel -> (UN)SUBSCRIBEs awaiting confirmation, in order
	held    int                        // messages held over all channels
	hbytes  int64                      // their payload bytes
	running int                        // catch-up reads running
	waiting []*chanState               // catch-ups waiting for a slot, in order

	subKind, unsubKind string // (s)subscribe and (s)unsubscribe, as Redis names them in replies
}

// link is one Pub/Sub connection and its receive goroutine: the only one
// to a single server (or Sentinel's master), or, in a cluster, the sharded
// connection of one hash slot, which go-redis renews on the slot's owner.
type link struct {
	slot    int
	conn    *redis.PubSub // replaced by replaceConn; under ps.mu
	n       int           // channels subscribed on it (cluster: closed at 0)
	running bool          // its receive goroutine runs
	closed  bool
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
	// posTime is the Redis time of the publication at pos, if it was
	// handed over or read with the top the subscription started at: a
	// catch-up reads that publication again and, if it is another one,
	// knows the stream was rolled back (a failover to a replica that
	// had not received it) and its offsets given to new publications.
	posTime time.Time

	// retired is the epoch this node moved the stream from (or found
	// moved) after it was rolled back: a late live publication of it is
	// dropped, the gap was reported.
	retired string

	catching    bool   // a catch-up runs or waits for a slot
	reason      string // why: the gap reason if history cannot fill it
	again       bool   // another catch-up is needed after this one
	againReason string
	held        []item // live messages that came while catching up
}

// catchResult is one page of history read by a catch-up.
type catchResult struct {
	st    *chanState
	from  broker.Position
	page  bool // read with a limit: more may follow
	limit int  // the limit
	// rewritten: the publication read at from is not the one handed
	// over there (see chanState.posTime).
	rewritten bool
	// moved: the stream was found rolled back and is now in epoch (moved
	// there by this read or by another node first; "" if it is gone);
	// res is read from that epoch's start.
	moved bool
	epoch string
	res   broker.HistoryResult
	err   error
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
	ps.links = make(map[int]*link)
	ps.subKind, ps.unsubKind = "subscribe", "unsubscribe"
	if r.cluster != nil {
		ps.subKind, ps.unsubKind = "ssubscribe", "sunsubscribe"
	}
}

// slotOf is the link key of channel: its hash slot in a cluster, else -1.
func (ps *pubsub) slotOf(channel string) int {
	if ps.r.cluster == nil {
		return -1
	}
	return int(keySlot(tag(channel)))
}

// newConn returns a Pub/Sub connection of the right kind, not yet
// connected: go-redis connects it on its first (S)SUBSCRIBE, to the owner
// of the slot of the channels it holds.
func (ps *pubsub) newConn() *redis.PubSub {
	if ps.r.cluster != nil {
		return ps.r.cluster.SSubscribe(context.Background())
	}
	return ps.r.single.Subscribe(context.Background())
}

func (ps *pubsub) sub(ctx context.Context, conn *redis.PubSub, rchs ...string) error {
	if ps.r.cluster != nil {
		return conn.SSubscribe(ctx, rchs...)
	}
	return conn.Subscribe(ctx, rchs...)
}

func (ps *pubsub) unsub(ctx context.Context, conn *redis.PubSub, rchs ...string) error {
	if ps.r.cluster != nil {
		return conn.SUnsubscribe(ctx, rchs...)
	}
	return conn.Unsubscribe(ctx, rchs...)
}

// linkLocked returns the link of slot, made if there is none. ps.mu is
// held.
func (ps *pubsub) linkLocked(slot int) *link {
	l := ps.links[slot]
	if l == nil {
		l = &link{slot: slot, conn: ps.newConn()}
		ps.links[slot] = l
	}
	return l
}

// runLocked starts l's receive goroutine once a subscription was sent on
// it (so go-redis has connected it to the right node). ps.mu is held.
func (ps *pubsub) runLocked(l *link) {
	if l.running || l.closed || ps.closed {
		return
	}
	l.running = true
	conn := l.conn
	ps.r.wg.Go(func() { ps.receive(l, conn) })
}

// releaseLocked takes one channel off l and, in a cluster, closes l when
// it has none left; the caller closes the returned connection after
// unlocking. ps.mu is held.
func (ps *pubsub) releaseLocked(l *link) *redis.PubSub {
	l.n--
	if l.n > 0 || l.slot < 0 || l.closed {
		return nil
	}
	l.closed = true
	if ps.links[l.slot] == l {
		delete(ps.links, l.slot)
	}
	return l.conn
}

func (ps *pubsub) start(h broker.Handler) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return broker.ErrClosed
	}
	if ps.started {
		return errors.New("broker: redis broker already started")
	}
	ps.started = true
	ps.handler = h
	ps.r.wg.Go(ps.dispatch)
	return nil
}

// close marks the fan-out closed and closes the Pub/Sub connections, which
// ends their receive goroutines. It reports false if it was closed
// already.
func (ps *pubsub) close() bool {
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		return false
	}
	ps.closed = true
	var conns []*redis.PubSub
	for _, l := range ps.links {
		l.closed = true
		conns = append(conns, l.conn)
	}
	ps.links = map[int]*link{}
	ps.handler = nil
	ps.subs = map[string]int{}
	ps.chans = map[string]*chanState{}
	ps.waiting = nil
	ps.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	return true
}

// receive reads l's Pub/Sub connection. See the ownership notes. A link
// silent for a ping interval is sent a PING; if nothing comes back within
// another, it is taken for dead (a half-open TCP connection never errors)
// and replaced. In a cluster, a link whose slot moved is replaced too: the
// server answered MOVED or ASK, or ended a subscription nobody asked to
// end (Redis does so when it gives a slot away).
func (ps *pubsub) receive(l *link, conn *redis.PubSub) {
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
				if conn = ps.replaceConn(l, conn, false); conn == nil {
					return
				}
				continue
			}
			if ps.linkClosed(l) {
				return
			}
			pinged = false
			if ps.r.cluster != nil && (redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK")) {
				if conn = ps.replaceConn(l, conn, true); conn == nil {
					return
				}
				continue
			}
			// go-redis reconnects and subscribes every channel
			// again on the next Receive (in a cluster, on the
			// slot's owner in a freshly loaded slot map).
			ps.r.reloadOnError(err)
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
			if ps.confirm(m.Kind + " " + m.Channel) {
				break
			}
			switch m.Kind {
			case ps.subKind:
				// Nobody waits: go-redis subscribed again after
				// a reconnect. What was published meanwhile is
				// caught up.
				if ch, pub, ok := ps.r.parsePSName(m.Channel); ok && pub {
					ps.enqueue(item{channel: ch, resub: true})
				}
			case ps.unsubKind:
				// Nobody asked: the server gave the slot away.
				if ps.r.cluster != nil {
					if conn = ps.replaceConn(l, conn, true); conn == nil {
						return
					}
				}
			}
		case *redis.Message:
			if ch, pub, ok := ps.r.parsePSName(m.Channel); ok {
				ps.enqueue(item{channel: ch, pub: pub, payload: m.Payload})
			}
		}
	}
}

// linkClosed reports whether l was closed (its last channel went, or the
// broker closed).
func (ps *pubsub) linkClosed(l *link) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return l.closed || ps.closed
}

// replaceConn closes old, a Pub/Sub connection that stopped answering or
// whose slot moved, and subscribes a new one to every channel of l. The
// waiters of commands sent on old are released: their channels are
// subscribed again on the new connection, and, as nobody waits for those
// confirmations, caught up like after any reconnect. moved reloads the
// cluster's slot map first. It returns nil once l is closed.
func (ps *pubsub) replaceConn(l *link, old *redis.PubSub, moved bool) *redis.PubSub {
	if moved && ps.r.cluster != nil {
		ctx, cancel := context.WithTimeout(ps.r.ctx, ps.pingEvery)
		ps.r.cluster.ReloadState(ctx)
		cancel()
	}
	ps.mu.Lock()
	if ps.closed || l.closed {
		ps.mu.Unlock()
		return nil
	}
	conn := ps.newConn()
	l.conn = conn
	rchs := make([]string, 0, 2*len(ps.subs))
	for ch := range ps.subs {
		if ps.slotOf(ch) != l.slot {
			continue
		}
		rchs = append(rchs, ps.r.pubChannel(ch), ps.r.evChannel(ch))
	}
	for k, ws := range ps.waiters {
		_, rch, _ := strings.Cut(k, " ")
		if ch, _, ok := ps.r.parsePSName(rch); !ok || ps.slotOf(ch) != l.slot {
			continue
		}
		for _, w := range ws {
			close(w)
		}
		delete(ps.waiters, k)
	}
	ps.mu.Unlock()
	_ = old.Close()
	if len(rchs) > 0 {
		// On failure go-redis subscribes them on the next Receive.
		ctx, cancel := context.WithTimeout(ps.r.ctx, ps.pingEvery)
		_ = ps.sub(ctx, conn, rchs...)
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
	if !ps.started {
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
	ws := ps.expectLocked(ps.subKind, pc, ec)
	l := ps.linkLocked(ps.slotOf(channel))
	l.n++
	conn := l.conn
	ps.mu.Unlock()

	err := ps.sub(ctx, conn, pc, ec)
	if err == nil {
		ps.mu.Lock()
		ps.runLocked(l)
		ps.mu.Unlock()
		err = ps.await(ctx, ws)
	} else {
		ps.forget(ps.subKind, ws, pc, ec)
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
	var closeConn *redis.PubSub
	if last {
		ps.dropStateLocked(channel, st)
		if closeConn = ps.releaseLocked(l); closeConn == nil {
			// Nobody waits; the waiters keep the queues in step.
			uws = ps.expectLocked(ps.unsubKind, pc, ec)
		}
	}
	ps.mu.Unlock()
	switch {
	case closeConn != nil:
		_ = closeConn.Close()
	case last:
		if ps.unsub(context.WithoutCancel(ctx), conn, pc, ec) != nil {
			ps.forget(ps.unsubKind, uws, pc, ec)
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
	var baseTime time.Time
	if e, ok := vals[0].(string); ok && e != "" {
		s, _ := vals[1].(string)
		off, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return
		}
		base = broker.Position{Epoch: e, Offset: off}
		// The publication at the top, if history keeps it (and it
		// is still the top): a catch-up checks it is still there,
		// as it does the last one handed over. A client may have
		// got it from history here.
		if last, err := ps.r.client.LIndex(ctx, ps.r.historyKey(st.channel), -1).Result(); err == nil {
			if p, err := decodePublication([]byte(last)); err == nil && p.Position == base {
				baseTime = p.Time
			}
		}
	}
	ps.mu.Lock()
	if ps.chans[st.channel] == st && !st.known {
		st.pos, st.known, st.delivered, st.posTime = base, true, false, baseTime
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
	l := ps.links[ps.slotOf(channel)]
	if n == 0 || l == nil {
		ps.mu.Unlock()
		return nil
	}
	conn := l.conn
	pc, ec := ps.r.pubChannel(channel), ps.r.evChannel(channel)
	ws := ps.expectLocked(ps.unsubKind, pc, ec)
	ps.mu.Unlock()
	err := ps.unsub(ctx, conn, pc, ec)
	if err == nil {
		err = ps.await(ctx, ws)
	} else {
		ps.forget(ps.unsubKind, ws, pc, ec)
	}
	ps.mu.Lock()
	closeConn := ps.releaseLocked(l)
	ps.mu.Unlock()
	if closeConn != nil {
		// After the confirmation: what came before it is queued.
		defer closeConn.Close()
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
	check := known && from.Offset >= 1 && !st.posTime.IsZero()
	fromTime := st.posTime
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
				cr.page, cr.limit, cr.rewritten = true, catchUpPage, false
				if check {
					// The last one handed over is read too, to
					// check it is still the same publication.
					prev := broker.Position{Epoch: from.Epoch, Offset: from.Offset - 1}
					cr.limit = catchUpPage + 1
					cr.res, cr.err = ps.r.History(ctx, st.channel, broker.HistoryRequest{Since: &prev, Limit: cr.limit})
					if errors.Is(cr.err, broker.ErrHistoryTrimmed) {
						// Not kept any more: it cannot be checked.
						cr.limit = catchUpPage
						cr.res, cr.err = ps.r.History(ctx, st.channel, broker.HistoryRequest{Since: &from, Limit: catchUpPage})
					} else if got := cr.res.Publications; cr.err == nil && len(got) > 0 && got[0].Offset == from.Offset && !got[0].Time.Equal(fromTime) {
						cr.rewritten = true
					} else if cr.err == nil && cr.res.Top.Offset < from.Offset {
						// Rolled back to just before from: the
						// read of from would have said so.
						cr.err = broker.ErrEpochChanged
					}
				} else {
					cr.res, cr.err = ps.r.History(ctx, st.channel, broker.HistoryRequest{Since: &from, Limit: catchUpPage})
				}
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
		if known && (cr.rewritten || rolledBack(cr.err, cr.res.Top, from)) {
			ps.moveEpoch(ctx, st.channel, &cr)
		}
		ps.caught <- cr // room for every running catch-up
	})
}

// rolledBack reports whether a read of history since from, which the node
// saw in its epoch, found the stream's top before it in the same epoch.
func rolledBack(err error, top, from broker.Position) bool {
	return errors.Is(err, broker.ErrEpochChanged) && top.Epoch != "" && top.Epoch == from.Epoch && top.Offset < from.Offset
}

// moveEpoch, in a catch-up goroutine, moves a stream found rolled back
// (offsets the node saw in cr.from's epoch now missing or holding other
// publications) to a new epoch in Redis, and reads the new epoch from its
// start. In the old epoch, a since from a lost publication would be
// answered with the publications after it, skipping the ones that took
// the lost offsets: in the new one it is answered "epoch changed", on
// every node. If Redis does not answer, cr stays as read: the node reports
// the gap and resumes in the old epoch.
func (ps *pubsub) moveEpoch(ctx context.Context, channel string, cr *catchResult) {
	var epoch string
	var err error
	for attempt := range catchUpTries {
		if epoch, _, err = ps.r.bumpEpoch(ctx, channel, cr.from.Epoch); err == nil {
			break
		}
		if attempt == catchUpTries-1 {
			return
		}
		t := time.NewTimer(catchUpBackoff << attempt)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
	cr.moved, cr.epoch, cr.rewritten = true, epoch, false
	cr.page, cr.limit = true, catchUpPage
	cr.res, cr.err = broker.HistoryResult{}, nil
	if epoch != "" {
		since := broker.Position{Epoch: epoch}
		cr.res, cr.err = ps.r.History(ctx, channel, broker.HistoryRequest{Since: &since, Limit: catchUpPage})
	}
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
	case st.retired != "" && p.Epoch == st.retired:
		// Published in the epoch this node left (before the move,
		// maybe at an offset lost): the gap was reported.
		ps.mu.Unlock()
		return
	case !st.known && st.delivered && p.Epoch == st.pos.Epoch && p.Offset <= st.pos.Offset:
		// Continuity is unknown (after a gap), but this one was
		// handed over already.
		ps.mu.Unlock()
		return
	case !st.known:
		st.pos, st.known, st.delivered, st.posTime = p.Position, true, true, p.Time
	case st.pos.Epoch == "":
		// Subscribed before the stream existed: it starts at 1.
		if p.Offset != 1 {
			ps.startCatchUpLocked(st, it, gapLinkLost)
			ps.mu.Unlock()
			return
		}
		st.pos, st.delivered, st.posTime = p.Position, true, p.Time
	case p.Epoch != st.pos.Epoch:
		gap = gapEpochChanged
		st.pos, st.delivered, st.posTime = p.Position, true, p.Time
	case p.Offset <= st.pos.Offset:
		// Handed over by a catch-up already, or at or before where
		// the node resumed (the subscription's start, or the top
		// after a gap): whoever needs it reads it from history.
		ps.mu.Unlock()
		return
	case p.Offset == st.pos.Offset+1:
		st.pos, st.delivered, st.posTime = p.Position, true, p.Time
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
	case cr.moved:
		// Rolled back, and the stream moved to a new epoch: one gap,
		// then the new epoch from its start.
		gap = gapEpochChanged
		st.retired = cr.from.Epoch
		st.pos, st.known, st.delivered, st.posTime = broker.Position{Epoch: cr.epoch}, true, false, time.Time{}
		if cr.err != nil {
			// Trimmed already, or moved on again: the next
			// publication is taken as it comes.
			st.known = false
			break
		}
		for _, p := range cr.res.Publications {
			pubs = append(pubs, p)
			st.pos, st.delivered, st.posTime = p.Position, true, p.Time
		}
		more = len(cr.res.Publications) == cr.limit && st.pos.Offset < cr.res.Top.Offset
	case cr.err == nil && !cr.page:
		// Nothing was known: continuity cannot be proved unless the
		// stream does not exist (then it starts at offset 1).
		if cr.res.Top != (broker.Position{}) {
			gap = st.reason
			st.known = false
		} else {
			st.pos, st.known, st.delivered, st.posTime = broker.Position{}, true, false, time.Time{}
		}
	case cr.err == nil && cr.rewritten:
		// Rolled back: what was handed over from some offset on is
		// not in the stream. Say so, then hand over what is there
		// from the offset handed over last.
		gap = gapEpochChanged
		for _, p := range cr.res.Publications {
			pubs = append(pubs, p)
			st.pos, st.delivered, st.posTime = p.Position, true, p.Time
		}
		st.known = len(pubs) > 0
		more = len(cr.res.Publications) == cr.limit && st.pos.Offset < cr.res.Top.Offset
	case cr.err == nil:
		for _, p := range cr.res.Publications {
			if p.Epoch == st.pos.Epoch && p.Offset <= st.pos.Offset {
				// Handed over, or at or before where the node
				// started (read again to check it).
				continue
			}
			pubs = append(pubs, p)
			st.pos, st.delivered, st.posTime = p.Position, true, p.Time
		}
		more = len(cr.res.Publications) == cr.limit && st.pos.Offset < cr.res.Top.Offset
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
		if top := cr.res.Top; errors.Is(cr.err, broker.ErrEpochChanged) && top.Epoch != "" && top.Epoch == st.pos.Epoch && top.Offset < st.pos.Offset {
			// Rolled back (a failover to a replica that had not
			// all of it): the offsets after top go to new
			// publications, not the ones handed over. Resume at
			// top, so they are handed over, in order.
			st.pos, st.known, st.delivered, st.posTime = top, true, false, time.Time{}
		}
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
