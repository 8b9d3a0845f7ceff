package push

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"iter"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/broker"
)

// Session is one client: who it is, what it subscribes to with the last
// position it got in each channel, and its outbound queue. It outlives the
// transport under it by Config.SessionGrace, so a client may switch from
// long polling to WebSocket (or reconnect) without losing anything.
type Session struct {
	e     *Engine
	id    string
	info  broker.ClientInfo // user, name, client = id
	proto Protocol
	room  string // chat: the room channel; superchat: ""
	q     queue
	user  *user       // the user's publish bucket and session count
	busy  atomic.Bool // a message is being handled (takeTurn)

	mu        sync.Mutex
	ident     auth.Identity // replaced by a refresh
	expiry    *time.Timer   // ends the session at ident.Expires
	subs      subSet        // emptied when the session ends (gone)
	transport string
	attached  int           // transports attached now
	grace     *time.Timer   // ends a detached session
	turnFree  chan struct{} // made by a takeTurn that waits, closed by endTurn
	gone      bool          // ended: Attach does nothing
}

func (e *Engine) newSession(req ConnectRequest, room string) *Session {
	s := &Session{
		e:         e,
		id:        newID(),
		ident:     req.Identity,
		proto:     req.Protocol,
		room:      room,
		transport: req.Transport,
		attached:  1,
	}
	s.info = broker.ClientInfo{User: req.Identity.UserID, Name: req.Identity.Name, Client: s.id}
	s.q.init(e.cfg.QueueMessages, e.cfg.QueueBytes)
	return s
}

// log returns the session's logger: the engine's, with the session's
// attributes added to each record as it is logged. It is made for each
// call: a session logs seldom (its connect and end at debug level, and
// failures), and a logger kept per session is memory every idle session
// would hold for it.
func (s *Session) log() *slog.Logger {
	return slog.New(&sessionLog{h: s.e.log.Handler(), s: s})
}

// subSet is a session's subscriptions by channel: a slice while they are
// few (most sessions have one or two; a map's smallest table is ~250 B
// that every idle session would hold), a map past subSetSlice.
type subSet struct {
	list []*subscription
	m    map[string]*subscription
}

// subSetSlice is the most subscriptions a subSet keeps in its slice.
const subSetSlice = 8

func (ss *subSet) get(channel string) *subscription {
	if ss.m != nil {
		return ss.m[channel]
	}
	for _, sub := range ss.list {
		if sub.channel == channel {
			return sub
		}
	}
	return nil
}

// put adds sub, whose channel is not in the set.
func (ss *subSet) put(sub *subscription) {
	if ss.m == nil && len(ss.list) < subSetSlice {
		ss.list = append(ss.list, sub)
		return
	}
	if ss.m == nil {
		ss.m = make(map[string]*subscription, 2*subSetSlice)
		for _, s := range ss.list {
			ss.m[s.channel] = s
		}
		ss.list = nil
	}
	ss.m[sub.channel] = sub
}

func (ss *subSet) del(channel string) {
	if ss.m != nil {
		delete(ss.m, channel)
		return
	}
	for i, sub := range ss.list {
		if sub.channel == channel {
			last := len(ss.list) - 1
			ss.list[i] = ss.list[last]
			ss.list[last] = nil
			ss.list = ss.list[:last]
			if last == 0 {
				ss.list = nil
			}
			return
		}
	}
}

func (ss *subSet) len() int {
	if ss.m != nil {
		return len(ss.m)
	}
	return len(ss.list)
}

// all yields the subscriptions (in no particular order).
func (ss *subSet) all() iter.Seq[*subscription] {
	return func(yield func(*subscription) bool) {
		if ss.m != nil {
			for _, sub := range ss.m {
				if !yield(sub) {
					return
				}
			}
			return
		}
		for _, sub := range ss.list {
			if !yield(sub) {
				return
			}
		}
	}
}

// sessionLog is a session's log handler: the engine's, with the session's
// attributes added to each record as it is logged. slog.Logger.With would
// format them once, ahead, into a handler of the session's own: a few
// hundred bytes that every idle session would hold for logs it seldom
// writes.
type sessionLog struct {
	h slog.Handler
	s *Session
}

func (l *sessionLog) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l *sessionLog) Handle(ctx context.Context, r slog.Record) error {
	s := l.s
	r.AddAttrs(slog.String("session", LogID(s.id)), slog.String("user", s.info.User), slog.String("protocol", s.proto.String()))
	return l.h.Handle(ctx, r)
}

func (l *sessionLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &sessionLog{h: l.h.WithAttrs(as), s: l.s}
}

func (l *sessionLog) WithGroup(name string) slog.Handler {
	return &sessionLog{h: l.h.WithGroup(name), s: l.s}
}

// ID returns the session id: 128 random bits, base64url. It is a bearer
// credential for polling transports; it is never shown to other clients
// and never logged (log LogID instead).
func (s *Session) ID() string { return s.id }

// LogID returns what logs show of a session id: the first 48 bits of its
// SHA-256 in hex (as transport.LogID, so engine and transport logs of one
// session match), enough to follow one session through a log and useless
// as a credential.
func LogID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:6])
}

// Identity returns who the client is: as authenticated at connect, or by
// its last refresh.
func (s *Session) Identity() auth.Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ident
}

// Protocol returns the session's protocol.
func (s *Session) Protocol() Protocol { return s.proto }

// Transport returns the name of the transport the session was last attached
// with.
func (s *Session) Transport() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.transport
}

// Done is closed when the session ends.
func (s *Session) Done() <-chan struct{} { return s.q.done }

// Err returns the *Disconnect that ended the session, or nil while it lives.
func (s *Session) Err() error {
	if d := s.q.ended(); d != nil {
		return d
	}
	return nil
}

// Attach binds a transport to the session and cancels its grace period.
// Each Attach needs one Detach. It returns the session's *Disconnect if the
// session has ended.
func (s *Session) Attach(transport string) error {
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		return s.Err()
	}
	s.attached++
	if s.grace != nil {
		s.grace.Stop()
	}
	if transport != s.transport {
		s.e.stats.transport(s.transport).Add(-1)
		s.e.stats.transport(transport).Add(1)
		s.transport = transport
	}
	s.mu.Unlock()
	return nil
}

// Detach says a transport let go of the session. When none is left, the
// session ends after Config.SessionGrace unless a transport attaches again.
func (s *Session) Detach() {
	s.mu.Lock()
	if s.gone || s.attached == 0 {
		s.mu.Unlock()
		return
	}
	s.attached--
	if s.attached > 0 {
		s.mu.Unlock()
		return
	}
	grace := s.e.cfg.SessionGrace
	if grace > 0 {
		if s.grace == nil {
			s.grace = time.AfterFunc(grace, s.expire)
		} else {
			s.grace.Reset(grace)
		}
	}
	s.mu.Unlock()
	if grace < 0 {
		s.expire()
	}
}

// expire ends a session nobody came back to.
func (s *Session) expire() {
	s.mu.Lock()
	attached := s.attached
	s.mu.Unlock()
	if attached == 0 {
		s.end(&Disconnect{Code: CodeGoingAway, Reason: ReasonExpired}, false)
	}
}

// Close ends the session: its subscriptions and presence are dropped before
// Close returns, and Wait reports Disconnect{code, reason}.
func (s *Session) Close(code int, reason string) {
	s.end(&Disconnect{Code: code, Reason: reason}, false)
}

// Wait blocks until the queue holds an item with Seq > after, ctx ends, or
// the session ends. Queued items are reported before the end (so a
// transport can flush them); then Wait returns the session's *Disconnect.
func (s *Session) Wait(ctx context.Context, after uint64) error {
	return s.q.wait(ctx, after)
}

// Pending appends to dst the queued items with Seq > after, oldest first,
// without removing them.
func (s *Session) Pending(after uint64, dst []Outbound) []Outbound {
	return s.q.pending(after, dst)
}

// HasPending reports whether the queue holds an item with Seq > after.
func (s *Session) HasPending(after uint64) bool { return s.q.hasPending(after) }

// SetWake makes the session call *f each time an item is queued for it
// and when it ends, on the goroutine that queued the item or ended the
// session, after the item is in the queue (or the end visible to Err).
// That goroutine may hold an engine lock: *f must return at once and must
// not call into the engine (start a goroutine, signal one). It lets a
// transport keep no goroutine waiting on an idle session: the WebSocket
// writer runs only while there is something to write. One wake function
// at a time; SetWake replaces the previous one.
func (s *Session) SetWake(f *func()) { s.q.onSignal.Store(f) }

// ClearWake removes f if it is the session's wake function.
func (s *Session) ClearWake(f *func()) { s.q.onSignal.CompareAndSwap(f, nil) }

// Ack removes the queued items with Seq <= seq: the transport has written
// them (WebSocket) or the client said it got them (polling).
func (s *Session) Ack(seq uint64) { s.q.ack(seq) }

// Compact gives back the memory an empty queue keeps for the next items
// (Ack keeps a small array, so that a stream of deliveries allocates
// nothing). A transport calls it when its connection has been quiet for a
// while, such as on a keepalive pong, so that a long-idle session holds
// only what it needs.
func (s *Session) Compact() { s.q.compact() }

// QueueSize reports what the outbound queue holds, in items and bytes.
func (s *Session) QueueSize() (items, bytes int) { return s.q.size() }

// Channels returns the channels the session is subscribed to.
func (s *Session) Channels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, s.subs.len())
	for sub := range s.subs.all() {
		out = append(out, sub.channel)
	}
	return out
}

// subCount returns how many channels the session is subscribed to.
func (s *Session) subCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subs.len()
}

// enqueue queues o for the client; a full queue ends the session.
func (s *Session) enqueue(o Outbound) bool {
	ok, full := s.q.push(o)
	if ok {
		s.e.stats.out.Add(1)
	} else if full {
		s.slowConsumer()
	}
	return ok
}

// slowConsumer ends the session whose queue is full. It may run under a
// hub's lock, so the cleanup runs on its own goroutine.
func (s *Session) slowConsumer() {
	if s.end(&Disconnect{Code: CodePolicyViolation, Reason: ReasonSlowConsumer}, true) {
		s.e.stats.slowConsumers.Add(1)
	}
}

// end ends the session with d and reports whether this call did. The
// cleanup (subscriptions, presence, leave events) runs before end returns,
// or on a goroutine the engine waits for if async.
func (s *Session) end(d *Disconnect, async bool) bool {
	var notice []byte
	if s.proto == ProtocolSuperchat {
		notice = encodeDisconnect(d)
	}
	if !s.q.close(d, notice) {
		return false
	}
	s.mu.Lock()
	s.gone = true
	if s.grace != nil {
		s.grace.Stop()
	}
	if s.expiry != nil {
		s.expiry.Stop()
	}
	subs := s.subs
	s.subs = subSet{}
	s.mu.Unlock()
	s.e.removeSession(s)
	s.e.users.leave(s.user)
	s.log().Debug("session ended", slog.Int("code", d.Code), slog.String("reason", d.Reason))
	cleanup := func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		for sub := range subs.all() {
			s.e.dropSub(ctx, sub)
		}
	}
	if async {
		s.e.wg.Go(cleanup)
	} else {
		cleanup()
	}
	return true
}

// allowPublish takes a token from the publish rate bucket of the
// session's user, which all of that user's sessions share.
func (s *Session) allowPublish() bool {
	rate := s.e.cfg.PublishRate
	if rate <= 0 {
		return true
	}
	if !s.user.take(time.Now(), rate, s.e.cfg.PublishBurst) {
		s.e.stats.rateLimited.Add(1)
		return false
	}
	return true
}

// Close codes and reasons of credentials (docs/protocol.md): 4000-4999 is
// the range RFC 6455 leaves to applications.
const (
	// CodeTokenExpired ends a session whose token's exp has passed and
	// was not refreshed in time.
	CodeTokenExpired   = 4001
	ReasonTokenExpired = "token expired"
)

// armExpiry (re)starts the timer that ends the session when its
// identity expires. s.mu is held.
func (s *Session) armExpiry() {
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	if s.gone || s.ident.Expires.IsZero() {
		return
	}
	s.expiry = time.AfterFunc(time.Until(s.ident.Expires), s.tokenExpired)
}

// tokenExpired ends the session if its identity has expired. A refresh
// may have moved the expiry after the timer fired and before this runs:
// then nothing happens.
func (s *Session) tokenExpired() {
	s.mu.Lock()
	exp := s.ident.Expires
	s.mu.Unlock()
	if exp.IsZero() || time.Now().Before(exp) {
		return
	}
	s.end(&Disconnect{Code: CodeTokenExpired, Reason: ReasonTokenExpired}, false)
}

// HandleBatch handles msgs in order, as Handle does each, with no other
// message of the session handled between them. A batch of more than
// Config.MaxBatch messages is refused whole with ErrBatchTooLarge. It stops
// at the first error: the session's *Disconnect, or ctx's error if ctx
// ended before the rest could be handled.
func (s *Session) HandleBatch(ctx context.Context, msgs [][]byte) error {
	if len(msgs) > s.e.cfg.MaxBatch {
		return ErrBatchTooLarge
	}
	if err := s.takeTurn(ctx); err != nil {
		return err
	}
	defer s.endTurn()
	for _, m := range msgs {
		if err := s.handle(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// takeTurn waits until no other message of the session is being handled.
// Handling one message at a time keeps replies in request order across
// transports and makes the per-session limits exact.
// The turn is a flag, and a channel made only when a message has to wait
// for it: most sessions never have two messages at once, and an idle
// session then holds no channel for it.
func (s *Session) takeTurn(ctx context.Context) error {
	for {
		if s.busy.CompareAndSwap(false, true) {
			return nil
		}
		s.mu.Lock()
		if s.busy.CompareAndSwap(false, true) {
			s.mu.Unlock()
			return nil
		}
		if s.turnFree == nil {
			s.turnFree = make(chan struct{})
		}
		free := s.turnFree
		s.mu.Unlock()
		select {
		case <-free:
		case <-s.q.done:
			return s.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// endTurn gives the turn back and wakes the messages waiting for it (one
// takes it; the others wait again).
func (s *Session) endTurn() {
	s.busy.Store(false)
	s.mu.Lock()
	if s.turnFree != nil {
		close(s.turnFree)
		s.turnFree = nil
	}
	s.mu.Unlock()
}

// users counts the sessions of each user on this engine and holds the
// publish rate bucket they share. An entry lives from its user's first
// session to its last, so the table is bounded by the sessions.
type users struct {
	mu sync.Mutex
	m  map[string]*user
}

type user struct {
	id       string
	sessions int // under users.mu

	mu       sync.Mutex
	tokens   float64
	refilled time.Time
}

// join counts one more session of id, refusing it past max (max <= 0: no
// bound).
func (t *users) join(id string, max, burst int) (*user, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.m[id]
	if u == nil {
		if t.m == nil {
			t.m = make(map[string]*user)
		}
		u = &user{id: id, tokens: float64(burst)}
		t.m[id] = u
	}
	if max > 0 && u.sessions >= max {
		if u.sessions == 0 {
			delete(t.m, id)
		}
		return nil, ErrTooManyUserSessions
	}
	u.sessions++
	return u, nil
}

// leave undoes one join; the user's last session removes its entry.
func (t *users) leave(u *user) {
	if u == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	u.sessions--
	if u.sessions <= 0 && t.m[u.id] == u {
		delete(t.m, u.id)
	}
}

// count returns the sessions of user id.
func (t *users) count(id string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if u := t.m[id]; u != nil {
		return u.sessions
	}
	return 0
}

// take takes a token from the bucket, refilled at rate per second up to
// burst.
func (u *user) take(now time.Time, rate float64, burst int) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.refilled.IsZero() {
		u.tokens = min(float64(burst), u.tokens+now.Sub(u.refilled).Seconds()*rate)
	}
	u.refilled = now
	if u.tokens < 1 {
		return false
	}
	u.tokens--
	return true
}

var (
	// ErrTooManyUserSessions: the user already has Config.MaxUserSessions
	// sessions. Transports answer 429 with Retry-After.
	ErrTooManyUserSessions = errors.New("push: too many sessions of this user")
	// ErrBatchTooLarge: more than Config.MaxBatch messages in one
	// HandleBatch. Transports answer 413.
	ErrBatchTooLarge = errors.New("push: too many requests in one batch")
	// ErrNotPublished wraps a failed publish that the broker did not
	// carry out: nothing was published, and a retry cannot duplicate it.
	// A failure that may have been published wraps
	// broker.ErrOutcomeUnknown instead.
	ErrNotPublished = errors.New("push: not published")
)
