// Package server assembles a hotline server from its parts: the push
// engine, a broker, the transports, the HTTP API, metrics and the web
// pages, behind one http.Handler. cmd/hotline fills a Config from flags;
// tests build servers the same way.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/transport"
	"github.com/hotline-rt/hotline/ws"
)

// Config is the whole configuration of a server. The zero value is a
// development server: anonymous users, memory broker, same-origin clients,
// diagnostics on, no connection limit, and the HTTP and engine limits at
// their defaults.
type Config struct {
	// AllowedOrigins are origin patterns allowed besides the same
	// origin, for WebSocket and the CORS of the polling endpoints.
	AllowedOrigins []string
	// AllowedHosts are the host names the server answers to, as
	// path.Match patterns against the request's Host ("chat.example.com",
	// "localhost:*"); other requests get 421 Misdirected Request. Empty
	// means any host. Set it against DNS rebinding: a browser treats an
	// Origin whose host equals Host as the same origin, whatever name
	// resolved to this server.
	AllowedHosts []string
	// Compress negotiates permessage-deflate without context takeover.
	Compress bool
	// ReadLimit is the largest message accepted; 0 means 64 KiB.
	ReadLimit int64
	// KeepAlive is the WebSocket ping period; 0 disables pings.
	KeepAlive time.Duration
	// WriteTimeout bounds the write of one message to a WebSocket client;
	// past it the client is dropped. 0 means 10s.
	WriteTimeout time.Duration
	// EventLoop serves /chat with the event-loop WebSocket transport
	// (transport.EventLoop: epoll, no goroutine or buffer per idle
	// connection; Linux, plain TCP, no permessage-deflate).
	EventLoop bool
	// MaxConns bounds the connections: live sessions over every
	// transport (a detached session in its grace period counts) plus
	// diagnostic connections (/echo, /broadcast). Past it new clients
	// get 503 with Retry-After. 0 means no limit.
	MaxConns int
	// Diagnostics turns the diagnostic endpoints /echo and /broadcast on
	// or off (404). DiagnosticsAuto: on in development mode, off when
	// Auth verifies tokens.
	Diagnostics Diagnostics

	// ReadTimeout bounds how long a client may take to send a request,
	// headers and body (408 or a closed connection past it). A held long
	// poll and a WebSocket connection are not bound by it. 0 means 10s;
	// negative means no limit.
	ReadTimeout time.Duration
	// IdleTimeout is how long an idle keep-alive connection is kept
	// between requests. 0 means 30s; negative means no limit.
	IdleTimeout time.Duration
	// H2C serves HTTP/2 without TLS (prior knowledge, as h2c) beside
	// HTTP/1.1. HTTP/2 over TLS is always on; WebSockets ride on it
	// (RFC 8441) when the program imports ws/xconnect.
	H2C bool
	// H2MaxStreams bounds the concurrent streams of one HTTP/2
	// connection: its requests and its WebSockets. 0 means 250.
	H2MaxStreams int
	// MaxHeaderBytes bounds the request line and headers, handshakes
	// included (431 past it). 0 means 16 KiB.
	MaxHeaderBytes int
	// MaxBody bounds the body of a polling request (POST /poll/open,
	// /poll/{id}, which may carry a batch of envelopes): 413 past it. 0
	// means ReadLimit + 64 KiB. (POST /api/publish carries one message
	// and takes ReadLimit + 1 KiB.)
	MaxBody int64

	// Auth verifies client tokens; nil means development mode
	// (auth.Anonymous). Unless in development mode, the server lets only
	// tokens whose subscribe patterns name the stats namespace subscribe
	// to stats:server.
	Auth auth.Verifier
	// APIKey protects /api/ ("Authorization: apikey KEY"); empty
	// disables the API.
	APIKey string

	// Broker is where messages meet; nil means an in-memory broker. If it
	// implements broker.Readier, /readyz asks it.
	Broker broker.Broker
	// Namespaces configures channels; nil means push's defaults plus
	// "stats" (the dashboard feed) and "bench" (hotline bench).
	Namespaces map[string]push.NamespaceOptions
	// QueueMessages and QueueBytes bound each session's outbound
	// queue; 0 means push's defaults.
	QueueMessages, QueueBytes int
	// PublishRate limits each user's publications per second, over all
	// of the user's sessions; 0 means no limit.
	PublishRate float64
	// Engine limits, passed to push.Config (each: 0 means push's
	// default): sessions of one user (20; negative: no limit), channels
	// of one session (128), requests in one polling POST (32),
	// publications of one history reply (100), users of one presence
	// reply (1000), how long an idempotency key is remembered (2m), the
	// bound of each broker call (5s), and how long a session outlives
	// its transport (30s; negative: not at all).
	MaxUserSessions  int
	MaxSubscriptions int
	MaxBatch         int
	MaxHistoryReply  int
	MaxPresenceReply int
	IdempotencyTTL   time.Duration
	BrokerTimeout    time.Duration
	SessionGrace     time.Duration
	// MaxEndedPolls bounds the ended polling sessions remembered (a few
	// hundred bytes each, for a minute) so that a late poll learns why its
	// session ended; 0 means 10,000.
	MaxEndedPolls int
	// StatsInterval is how often the stats:server channel gets a
	// snapshot for the dashboard; 0 means 1s, negative disables.
	StatsInterval time.Duration

	// LongPollTimeout is how long a long poll is held when there is
	// nothing to send; 0 means 25s.
	LongPollTimeout time.Duration
	// MaxWaiting bounds the long polls held at once; past it polls get
	// 503 with Retry-After. 0 means no limit.
	MaxWaiting int

	// Web serves the pages (chat, dashboard, hotline.js) for GET
	// requests under "/"; nil serves none.
	Web http.Handler

	Logger *slog.Logger
}

// Diagnostics says whether the diagnostic endpoints are served.
type Diagnostics int

const (
	// DiagnosticsAuto serves them in development mode only.
	DiagnosticsAuto Diagnostics = iota
	// DiagnosticsOn serves /echo and /broadcast.
	DiagnosticsOn
	// DiagnosticsOff answers 404 there.
	DiagnosticsOff
)

// DefaultNamespaces are the namespaces of a server that is not told
// otherwise: push's "" and "chat", "stats" (the dashboard feed, which only
// the server publishes to) and "bench" (for hotline bench).
func DefaultNamespaces() map[string]push.NamespaceOptions {
	return map[string]push.NamespaceOptions{
		"":      push.DefaultNamespace,
		"chat":  push.ChatNamespace,
		"stats": {HistorySize: 1},
		"bench": {HistorySize: 1000, HistoryTTL: time.Minute, ClientPublish: true},
	}
}

// Server is a configured hotline server.
type Server struct {
	cfg       Config
	log       *slog.Logger
	mux       *http.ServeMux
	handler   http.Handler // mux behind the Host check
	engine    *push.Engine
	websocket *transport.WebSocket
	eventloop *transport.EventLoop // nil unless Config.EventLoop
	polling   *transport.Polling
	echo      *transport.Echo      // nil: diagnostics off
	broadcast *transport.Broadcast // nil: diagnostics off
	limit     *connLimit
	metrics   *metrics
	stopOnce  sync.Once
	stop      chan struct{} // closed by Shutdown: the stats publisher ends
	stopped   chan struct{} // closed when the stats publisher has ended
}

// statsGate is the server's policy for its stats feed (stats:server,
// the dashboard's): with tokens verified, only an identity whose Subscribe
// patterns name the stats namespace ("stats:server", "stats:*") may
// subscribe; a pattern such as "*" that happens to match does not count.
// In development mode (no gate) anyone may. A backend reads the latest
// snapshot with its API key: GET /api/history?channel=stats:server.
type statsGate struct{ auth.Verifier }

func (g statsGate) Verify(token string) (auth.Identity, error) {
	id, err := g.Verifier.Verify(token)
	if err != nil {
		return id, err
	}
	for _, p := range id.Subscribe {
		if strings.HasPrefix(p, "stats:") {
			return id, nil
		}
	}
	id.Denied = append(slices.Clip(id.Denied), "stats:*")
	return id, nil
}

// connLimit counts every connection against Config.MaxConns: the engine's
// live sessions, the diagnostic connections, and the session handshakes
// in flight. Each admission adds itself before it reads the sum, so two
// at once cannot both pass the last place; a handshake is counted twice
// for a moment (in flight and as a session), never not at all.
type connLimit struct {
	max     int64 // 0: no limit
	engine  *push.Engine
	diag    atomic.Int64
	opening atomic.Int64
}

func (l *connLimit) over() bool {
	return l.max > 0 && l.engine.Stats().Sessions+l.diag.Load()+l.opening.Load() > l.max
}

// Acquire and Release count a diagnostic connection (transport.Limiter).
func (l *connLimit) Acquire() bool {
	l.diag.Add(1)
	if l.over() {
		l.diag.Add(-1)
		return false
	}
	return true
}

func (l *connLimit) Release() { l.diag.Add(-1) }

// admit wraps an endpoint that creates sessions: past the limit it
// answers 503. A WebSocket request that resumes a live session adds none
// and passes.
func (s *Server) admit(h http.Handler) http.Handler {
	if s.limit.max <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.URL.Query().Get("session"); id != "" {
			if _, ok := s.engine.Session(id); ok {
				h.ServeHTTP(w, r)
				return
			}
		}
		s.limit.opening.Add(1)
		defer s.limit.opening.Add(-1)
		if s.limit.over() {
			transport.Overloaded(w, "server is at its connection limit, retry later")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// New builds a server from cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ReadLimit <= 0 {
		cfg.ReadLimit = 64 << 10
	}
	if cfg.Auth == nil {
		cfg.Auth = auth.Anonymous()
	}
	if !cfg.Auth.Dev() {
		cfg.Auth = statsGate{cfg.Auth}
	}
	if cfg.Namespaces == nil {
		cfg.Namespaces = DefaultNamespaces()
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.H2MaxStreams <= 0 {
		cfg.H2MaxStreams = 250
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = 16 << 10
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = cfg.ReadLimit + 64<<10
	}
	if cfg.Diagnostics == DiagnosticsAuto {
		cfg.Diagnostics = DiagnosticsOff
		if cfg.Auth.Dev() {
			cfg.Diagnostics = DiagnosticsOn
		}
	}
	engine, err := push.New(push.Config{
		Broker:        cfg.Broker,
		Logger:        cfg.Logger,
		Namespaces:    cfg.Namespaces,
		MaxSessions:   cfg.MaxConns,
		QueueMessages: cfg.QueueMessages,
		QueueBytes:    cfg.QueueBytes,
		PublishRate:   cfg.PublishRate,
		Verifier:      cfg.Auth,

		MaxUserSessions:  cfg.MaxUserSessions,
		MaxSubscriptions: cfg.MaxSubscriptions,
		MaxBatch:         cfg.MaxBatch,
		MaxHistoryReply:  cfg.MaxHistoryReply,
		MaxPresenceReply: cfg.MaxPresenceReply,
		IdempotencyTTL:   cfg.IdempotencyTTL,
		BrokerTimeout:    cfg.BrokerTimeout,
		SessionGrace:     cfg.SessionGrace,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		mux:     http.NewServeMux(),
		engine:  engine,
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	s.limit = &connLimit{max: int64(cfg.MaxConns), engine: engine}
	s.metrics = newMetrics(engine, s.limit, func() int { _, n := s.polling.Sessions(); return n })

	opts := s.acceptOptions()
	s.websocket = &transport.WebSocket{
		Engine:       engine,
		Verifier:     cfg.Auth,
		Accept:       *opts,
		Log:          cfg.Logger,
		OnDeliver:    s.metrics.delivered,
		WriteTimeout: cfg.WriteTimeout,
	}
	s.polling = &transport.Polling{
		Engine:          engine,
		Verifier:        cfg.Auth,
		AllowedOrigins:  cfg.AllowedOrigins,
		LongPollTimeout: cfg.LongPollTimeout,
		MaxWaiting:      cfg.MaxWaiting,
		MaxBody:         cfg.MaxBody,
		BodyTimeout:     max(cfg.ReadTimeout, 0),
		MaxEnded:        cfg.MaxEndedPolls,
		Log:             cfg.Logger,
		OnDeliver:       s.metrics.delivered,
		Takeover:        s.websocket.Takeover, // client: a session moved off a WebSocket
	}
	opts.Subprotocols = transport.Subprotocols

	if cfg.EventLoop {
		// GET (HTTP/1.1 upgrades) from the event loop; CONNECT (RFC
		// 8441, a stream of an HTTP/2 connection: no socket of its own
		// to poll) stays with the goroutine transport.
		if s.eventloop, err = s.newEventLoop(opts); err != nil {
			return nil, err
		}
		// Polling takes a session over from either WebSocket transport.
		wsTakeover, el := s.polling.Takeover, s.eventloop
		s.polling.Takeover = func(ps *push.Session) { wsTakeover(ps); el.Takeover(ps) }
		// A session resumed over HTTP/2 CONNECT stops being served by
		// the event loop (and the other way round: newEventLoop).
		s.websocket.TakeoverOther = el.Takeover
		for _, p := range []string{"/chat", "/chat/{room}"} {
			s.mux.Handle("GET "+p, s.admit(s.eventloop))
			s.mux.Handle("CONNECT "+p, s.admit(s.websocket))
		}
	} else {
		s.handleWS("/chat", s.admit(s.websocket))
		s.handleWS("/chat/{room}", s.admit(s.websocket))
	}
	if cfg.Diagnostics == DiagnosticsOn {
		s.echo = transport.NewEcho(opts, s.limit, s.log)
		s.broadcast = transport.NewBroadcast(opts, s.limit, s.log)
		s.handleWS("/echo", s.echo)
		s.handleWS("/broadcast", s.broadcast)
	}
	// /healthz: liveness, 200 while the process serves. /readyz: 503
	// with the reason while the broker cannot be reached (a broker that
	// cannot tell, such as the memory broker, is ready).
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	readier, _ := cfg.Broker.(broker.Readier)
	const readyTimeout = 2 * time.Second // bounds the broker's answer
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if readier != nil {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			defer cancel()
			if err := readier.Ready(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "not ready: %v\n", err)
				return
			}
		}
		w.Write([]byte("ready\n"))
	})
	s.mux.Handle("GET /metrics", s.metrics.handler())
	s.api()
	s.mux.Handle("POST /poll/open", s.admit(s.polling))
	for _, m := range []string{"GET", "POST", "DELETE", "OPTIONS"} {
		s.mux.Handle(m+" /poll/", s.polling)
	}
	if cfg.Web != nil {
		// GET only: a request with another method whose path has a
		// handler for other methods (POST /chat, POST /api/history) gets
		// 405 with Allow from the mux, not the pages' 404.
		s.mux.Handle("GET /", cfg.Web)
		// The one POST-only endpoint that GET / would shadow.
		s.mux.HandleFunc("GET /api/publish", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", "POST")
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
		})
	}
	s.handler = s.checkHost(s.mux)
	go s.publishStats()
	return s, nil
}

// acceptOptions are the WebSocket options every endpoint shares.
func (s *Server) acceptOptions() *ws.AcceptOptions {
	o := &ws.AcceptOptions{
		AllowedOrigins: s.cfg.AllowedOrigins,
		ReadLimit:      s.cfg.ReadLimit,
		KeepAlive:      s.cfg.KeepAlive,
	}
	if s.cfg.Compress {
		o.Compression = &ws.CompressionOptions{}
	}
	return o
}

// Engine returns the server's push engine.
func (s *Server) Engine() *push.Engine { return s.engine }

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// handleWS routes a WebSocket endpoint: GET for the HTTP/1.1 upgrade,
// CONNECT for the extended CONNECT of HTTP/2 (RFC 8441).
func (s *Server) handleWS(path string, h http.Handler) {
	s.mux.Handle("GET "+path, h)
	s.mux.Handle("CONNECT "+path, h)
}

// checkHost answers 421 to a request whose Host is not allowed.
func (s *Server) checkHost(h http.Handler) http.Handler {
	if len(s.cfg.AllowedHosts) == 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := strings.ToLower(r.Host)
		for _, p := range s.cfg.AllowedHosts {
			if ok, _ := path.Match(strings.ToLower(p), host); ok {
				h.ServeHTTP(w, r)
				return
			}
		}
		http.Error(w, "this server does not answer to host "+strconv.Quote(r.Host), http.StatusMisdirectedRequest)
	})
}

// HTTPServer returns an http.Server for Handler with the configured
// limits (ReadTimeout, IdleTimeout, MaxHeaderBytes, H2MaxStreams),
// HTTP/2 on TLS (and without it if H2C), and GoingAway
// registered for its Shutdown. Serve it, and at the end call its Shutdown
// and then the server's.
func (s *Server) HTTPServer() *http.Server {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: max(s.cfg.ReadTimeout, 0),
		ReadTimeout:       max(s.cfg.ReadTimeout, 0),
		IdleTimeout:       max(s.cfg.IdleTimeout, 0),
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: s.cfg.H2MaxStreams},
		Protocols:         new(http.Protocols),
	}
	hs.Protocols.SetHTTP1(true)
	hs.Protocols.SetHTTP2(true) // used with TLS only
	hs.Protocols.SetUnencryptedHTTP2(s.cfg.H2C)
	hs.RegisterOnShutdown(s.GoingAway)
	return hs
}

// GoingAway answers held long polls at once and starts closing the
// diagnostic connections with 1001, without waiting. Register it with
// http.Server.RegisterOnShutdown; Shutdown does the rest. It is safe to
// call more than once.
func (s *Server) GoingAway() {
	if s.echo != nil {
		s.echo.GoingAway()
		s.broadcast.GoingAway()
	}
	s.polling.GoingAway()
}

// Shutdown ends every session (WebSocket clients get 1001 after their
// queued messages), waits for the connections to close, and stops the
// engine, all bounded by ctx. It may be called more than once and from
// several goroutines at once: every call waits for the same shutdown,
// each bounded by its own ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stop) })
	select {
	case <-s.stopped:
	case <-ctx.Done():
		return fmt.Errorf("server: shutdown: %w", ctx.Err())
	}
	s.GoingAway()
	err := s.engine.Shutdown(ctx)
	s.polling.Close()
	err = errors.Join(err, s.websocket.Wait(ctx))
	if s.eventloop != nil {
		err = errors.Join(err, s.eventloop.Wait(ctx))
		s.eventloop.Close()
	}
	if s.echo != nil {
		err = errors.Join(err, s.echo.Wait(ctx), s.broadcast.Wait(ctx))
	}
	return err
}
