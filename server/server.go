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
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/transport"
	"github.com/hotline-rt/hotline/ws"
)

// Config is the whole configuration of a server. The zero value is a
// development server: anonymous users, memory broker, same-origin clients,
// no limits.
type Config struct {
	// AllowedOrigins are origin patterns allowed besides the same
	// origin, for WebSocket and the CORS of the polling endpoints.
	AllowedOrigins []string
	// Compress negotiates permessage-deflate without context takeover.
	Compress bool
	// ReadLimit is the largest message accepted; 0 means 64 KiB.
	ReadLimit int64
	// KeepAlive is the WebSocket ping period; 0 disables pings.
	KeepAlive time.Duration
	// MaxConns bounds the sessions (over every transport); past it new
	// clients get 503 with Retry-After. 0 means no limit.
	MaxConns int

	// Auth verifies client tokens; nil means development mode
	// (auth.Anonymous).
	Auth auth.Verifier
	// APIKey protects /api/ ("Authorization: apikey KEY"); empty
	// disables the API.
	APIKey string

	// Broker is where messages meet; nil means an in-memory broker.
	Broker broker.Broker
	// Namespaces configures channels; nil means push's defaults plus
	// "stats" (the dashboard feed) and "bench" (hotline bench).
	Namespaces map[string]push.NamespaceOptions
	// QueueMessages and QueueBytes bound each session's outbound
	// queue; 0 means push's defaults.
	QueueMessages, QueueBytes int
	// PublishRate limits each client's publications per second; 0
	// means no limit.
	PublishRate float64
	// StatsInterval is how often the stats:server channel gets a
	// snapshot for the dashboard; 0 means 1s, negative disables.
	StatsInterval time.Duration

	// LongPollTimeout is how long a long poll is held when there is
	// nothing to send; 0 means 25s.
	LongPollTimeout time.Duration
	// MaxWaiting bounds the long polls held at once; past it polls get
	// 503 with Retry-After. 0 means no limit.
	MaxWaiting int

	// Web serves the pages (chat, dashboard, hotline.js) at "/"; nil
	// serves none.
	Web http.Handler

	Logger *slog.Logger
}

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
	engine    *push.Engine
	websocket *transport.WebSocket
	polling   *transport.Polling
	broadcast *transport.Broadcast
	metrics   *metrics
	stop      chan struct{}
	stopped   chan struct{}
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
	if cfg.Namespaces == nil {
		cfg.Namespaces = DefaultNamespaces()
	}
	engine, err := push.New(push.Config{
		Broker:        cfg.Broker,
		Logger:        cfg.Logger,
		Namespaces:    cfg.Namespaces,
		MaxSessions:   cfg.MaxConns,
		QueueMessages: cfg.QueueMessages,
		QueueBytes:    cfg.QueueBytes,
		PublishRate:   cfg.PublishRate,
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
	s.metrics = newMetrics(engine)
	opts := s.acceptOptions()
	s.websocket = &transport.WebSocket{
		Engine:    engine,
		Verifier:  cfg.Auth,
		Accept:    *opts,
		Log:       cfg.Logger,
		OnDeliver: s.metrics.delivered,
	}
	s.polling = &transport.Polling{
		Engine:          engine,
		Verifier:        cfg.Auth,
		AllowedOrigins:  cfg.AllowedOrigins,
		LongPollTimeout: cfg.LongPollTimeout,
		MaxWaiting:      cfg.MaxWaiting,
		MaxBody:         cfg.ReadLimit,
		Log:             cfg.Logger,
		OnDeliver:       s.metrics.delivered,
	}
	opts.Subprotocols = transport.Subprotocols
	s.broadcast = transport.NewBroadcast(opts, s.log)

	s.mux.Handle("GET /chat", s.websocket)
	s.mux.Handle("GET /chat/{room}", s.websocket)
	s.mux.Handle("GET /echo", transport.Echo(opts, s.log))
	s.mux.Handle("GET /broadcast", s.broadcast)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	s.mux.Handle("GET /metrics", s.metrics.handler())
	s.api()
	s.mux.Handle("/poll/", s.polling)
	if cfg.Web != nil {
		s.mux.Handle("/", cfg.Web)
	}
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
func (s *Server) Handler() http.Handler { return s.mux }

// GoingAway answers held long polls at once and starts closing the
// diagnostic connections with 1001, without waiting. Register it with http.Server.RegisterOnShutdown; Shutdown does
// the rest.
func (s *Server) GoingAway() {
	s.broadcast.GoingAway()
	s.polling.GoingAway()
}

// Shutdown ends every session (WebSocket clients get 1001 after their
// queued messages), waits for the connections to close, and stops the
// engine, all bounded by ctx. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.stopped
	s.GoingAway()
	err := s.engine.Shutdown(ctx)
	s.polling.Close()
	err = errors.Join(err, s.websocket.Wait(ctx))
	for s.broadcast.Len() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	if ctx.Err() != nil {
		err = errors.Join(err, fmt.Errorf("server: shutdown: %w", ctx.Err()))
	}
	return err
}
