package push

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/broker"
)

// Engine owns the sessions of one process and connects them to a broker.
type Engine struct {
	cfg       Config
	log       *slog.Logger
	broker    broker.Broker
	ownBroker bool // created by New, closed by Shutdown

	mu       sync.RWMutex
	sessions map[string]*Session
	closing  bool

	users users // sessions and publish bucket per user (session.go)

	hubsMu sync.RWMutex
	hubs   map[string]*hub // channels with local subscribers

	// wg counts the goroutines the engine starts (session cleanups after a
	// slow-consumer or shutdown disconnect); Shutdown waits for them.
	wg            sync.WaitGroup
	presenceTimer *time.Timer // refreshes presence; stopped by Shutdown

	shutdownOnce sync.Once
	shutdownDone chan struct{}

	stats counters
}

// New returns an engine with cfg's defaults applied and starts its broker
// handler.
func New(cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	e := &Engine{
		cfg:          cfg,
		log:          cfg.Logger,
		broker:       cfg.Broker,
		sessions:     make(map[string]*Session),
		hubs:         make(map[string]*hub),
		shutdownDone: make(chan struct{}),
	}
	if e.broker == nil {
		e.broker = broker.NewMemory()
		e.ownBroker = true
	}
	if err := e.broker.Start(handler{e}); err != nil {
		return nil, fmt.Errorf("push: start broker: %w", err)
	}
	e.mu.Lock()
	e.presenceTimer = time.AfterFunc(cfg.PresenceTTL/3, e.refreshPresence)
	e.mu.Unlock()
	return e, nil
}

// ConnectRequest describes a new client.
type ConnectRequest struct {
	Identity auth.Identity
	Protocol Protocol
	// Room is the chat room of a chat session: channel "chat:"+Room,
	// subscribed at connect. "": "lobby". Ignored for superchat.
	Room string
	// Transport names the transport for Stats: "websocket", "longpoll",
	// "poll".
	Transport string
}

// Connect creates a session for an authenticated client. The session starts
// attached to req.Transport; the transport calls Detach when it lets go.
// Past Config.MaxSessions it returns ErrTooManySessions, past
// Config.MaxUserSessions ErrTooManyUserSessions; after Shutdown, ErrClosed.
// The session ends with CodeTokenExpired when req.Identity.Expires passes,
// unless a refresh request moves it. A chat session whose identity may not subscribe to its room
// gets ErrForbidden.
func (e *Engine) Connect(ctx context.Context, req ConnectRequest) (*Session, error) {
	if req.Protocol != ProtocolChat && req.Protocol != ProtocolSuperchat {
		return nil, fmt.Errorf("push: unknown protocol %v", req.Protocol)
	}
	var room string
	if req.Protocol == ProtocolChat {
		if req.Room == "" {
			req.Room = "lobby"
		}
		room = "chat:" + req.Room
		if _, err := e.namespace(room); err != nil {
			return nil, err
		}
		if !req.Identity.CanSubscribe(room) {
			return nil, fmt.Errorf("%w: not allowed to subscribe to %s", ErrForbidden, room)
		}
	}
	s := e.newSession(req, room)
	u, err := e.users.join(s.info.User, e.cfg.MaxUserSessions, e.cfg.PublishBurst)
	if err != nil {
		e.stats.refused.Add(1)
		return nil, err
	}
	s.user = u

	e.mu.Lock()
	switch {
	case e.closing:
		e.mu.Unlock()
		e.users.leave(u)
		return nil, ErrClosed
	case e.cfg.MaxSessions > 0 && len(e.sessions) >= e.cfg.MaxSessions:
		e.mu.Unlock()
		e.users.leave(u)
		e.stats.refused.Add(1)
		return nil, ErrTooManySessions
	}
	e.sessions[s.id] = s
	e.mu.Unlock()
	e.stats.transport(s.transport).Add(1)
	e.stats.connects.Add(1)
	s.mu.Lock()
	s.armExpiry()
	s.mu.Unlock()

	if room != "" {
		if err := e.subscribe(ctx, s, room, nil, nil); err != nil {
			s.end(&Disconnect{Code: CodeTryAgainLater, Reason: "cannot join room"}, false)
			return nil, fmt.Errorf("push: join %s: %w", room, err)
		}
	}
	s.log().Debug("session connected")
	return s, nil
}

// Session returns the live session with this id; polling transports use it
// to find the session a request belongs to.
func (e *Engine) Session(id string) (*Session, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	s, ok := e.sessions[id]
	return s, ok
}

func (e *Engine) removeSession(s *Session) {
	e.mu.Lock()
	_, ok := e.sessions[s.id]
	delete(e.sessions, s.id)
	e.mu.Unlock()
	if ok {
		e.stats.transport(s.Transport()).Add(-1)
	}
}

// PublishRequest is a publication made through Engine.Publish.
type PublishRequest struct {
	Channel string
	Data    json.RawMessage    // valid JSON
	Info    *broker.ClientInfo // the publisher; nil for the server itself
	// IdempotencyKey, if set, makes a retry safe: a publish with a key
	// already used on Channel within Config.IdempotencyTTL returns the
	// first publication's position and publishes nothing. At most
	// MaxIdempotencyKey bytes.
	IdempotencyKey string
}

// Publish publishes req.Data to req.Channel from the server side, whatever
// the namespace allows clients. A broker failure wraps ErrNotPublished
// (nothing was published) or broker.ErrOutcomeUnknown (it may have been).
func (e *Engine) Publish(ctx context.Context, req PublishRequest) (broker.Position, error) {
	ns, err := e.namespace(req.Channel)
	if err != nil {
		return broker.Position{}, err
	}
	if !json.Valid(req.Data) {
		return broker.Position{}, fmt.Errorf("%w: data is not valid JSON", ErrBadRequest)
	}
	if err := checkIdempotencyKey(req.IdempotencyKey); err != nil {
		return broker.Position{}, err
	}
	return e.publish(ctx, req, ns)
}

func (e *Engine) publish(ctx context.Context, req PublishRequest, ns NamespaceOptions) (broker.Position, error) {
	opts := ns.publishOptions()
	if req.IdempotencyKey != "" {
		opts.IdempotencyKey = req.IdempotencyKey
		opts.IdempotencyTTL = e.cfg.IdempotencyTTL
	}
	bctx, cancel := e.brokerCtx(ctx)
	pos, err := e.broker.Publish(bctx, req.Channel, req.Data, req.Info, opts)
	cancel()
	if err != nil {
		if errors.Is(err, broker.ErrOutcomeUnknown) {
			return broker.Position{}, fmt.Errorf("push: publish to %s: %w", req.Channel, err)
		}
		return broker.Position{}, fmt.Errorf("%w: %s: %w", ErrNotPublished, req.Channel, err)
	}
	e.stats.publications.Add(1)
	return pos, nil
}

// History reads channel's history (see broker.HistoryRequest). Positions
// that cannot be served fail with broker.ErrEpochChanged or
// broker.ErrHistoryTrimmed, with the result's Top set.
func (e *Engine) History(ctx context.Context, channel string, req broker.HistoryRequest) (broker.HistoryResult, error) {
	if _, err := e.namespace(channel); err != nil {
		return broker.HistoryResult{}, err
	}
	return e.history(ctx, channel, req)
}

// Shutdown ends every session with Disconnect{1001, "server shutting
// down"}, refuses new ones, waits (bounded by ctx) for their cleanup, and
// closes the broker it created. It may be called more than once; every call
// waits for the same shutdown.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.shutdownOnce.Do(func() {
		e.mu.Lock()
		e.closing = true
		list := make([]*Session, 0, len(e.sessions))
		for _, s := range e.sessions {
			list = append(list, s)
		}
		e.presenceTimer.Stop()
		e.mu.Unlock()
		e.log.Info("shutting down", slog.Int("sessions", len(list)))
		for _, s := range list {
			s.end(&Disconnect{Code: CodeGoingAway, Reason: ReasonShutdown}, true)
		}
		// Ends once every cleanup started above has; bounded by the
		// broker call timeouts of the cleanups.
		go func() {
			e.wg.Wait()
			if e.ownBroker {
				_ = e.broker.Close(context.Background())
			}
			close(e.shutdownDone)
		}()
	})
	select {
	case <-e.shutdownDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("push: shutdown: %w", ctx.Err())
	}
}

// cleanupTimeout bounds the broker calls made when a session ends.
const cleanupTimeout = 5 * time.Second

// newID returns an unguessable session id: 128 random bits, base64url.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand docs)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// isRecoveryError reports whether err says a position cannot be served.
func isRecoveryError(err error) bool {
	return errors.Is(err, broker.ErrEpochChanged) || errors.Is(err, broker.ErrHistoryTrimmed)
}

func recoveryReason(err error) string {
	if errors.Is(err, broker.ErrEpochChanged) {
		return "epoch changed"
	}
	return "history trimmed"
}
