package push

import (
	"context"
	"log/slog"
	"sync"
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
	ident auth.Identity
	info  broker.ClientInfo // user, name, client = id
	proto Protocol
	room  string // chat: the room channel; superchat: ""
	log   *slog.Logger
	q     queue

	mu        sync.Mutex
	subs      map[string]*subscription // nil once the session has ended
	transport string
	attached  int         // transports attached now
	grace     *time.Timer // ends a detached session
	gone      bool        // ended: Attach does nothing
	tokens    float64     // publish rate bucket
	refilled  time.Time
}

func (e *Engine) newSession(req ConnectRequest, room string) *Session {
	s := &Session{
		e:         e,
		id:        newID(),
		ident:     req.Identity,
		proto:     req.Protocol,
		room:      room,
		subs:      make(map[string]*subscription),
		transport: req.Transport,
		attached:  1,
		tokens:    float64(e.cfg.PublishBurst),
	}
	s.info = broker.ClientInfo{User: req.Identity.UserID, Name: req.Identity.Name, Client: s.id}
	s.log = e.log.With(slog.String("session", s.id), slog.String("user", s.info.User), slog.String("protocol", s.proto.String()))
	s.q.init(e.cfg.QueueMessages, e.cfg.QueueBytes)
	return s
}

// ID returns the session id: 128 random bits, base64url. It is a bearer
// credential for polling transports; it is never shown to other clients.
func (s *Session) ID() string { return s.id }

// Identity returns who the client is, as authenticated at connect.
func (s *Session) Identity() auth.Identity { return s.ident }

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

// Ack removes the queued items with Seq <= seq: the transport has written
// them (WebSocket) or the client said it got them (polling).
func (s *Session) Ack(seq uint64) { s.q.ack(seq) }

// QueueSize reports what the outbound queue holds, in items and bytes.
func (s *Session) QueueSize() (items, bytes int) { return s.q.size() }

// Channels returns the channels the session is subscribed to.
func (s *Session) Channels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.subs))
	for ch := range s.subs {
		out = append(out, ch)
	}
	return out
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
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	s.e.removeSession(s)
	s.log.Debug("session ended", slog.Int("code", d.Code), slog.String("reason", d.Reason))
	cleanup := func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		for _, sub := range subs {
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

// allowPublish takes a token from the session's publish rate bucket.
func (s *Session) allowPublish() bool {
	rate := s.e.cfg.PublishRate
	if rate <= 0 {
		return true
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.refilled.IsZero() {
		s.tokens = min(float64(s.e.cfg.PublishBurst), s.tokens+now.Sub(s.refilled).Seconds()*rate)
	}
	s.refilled = now
	if s.tokens < 1 {
		s.e.stats.rateLimited.Add(1)
		return false
	}
	s.tokens--
	return true
}
