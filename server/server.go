// Package server assembles a hotline server from its parts: the push
// engine, a broker, the transports, the HTTP API, metrics and the web
// pages, behind one http.Handler. cmd/hotline fills a Config from flags;
// tests build servers the same way.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/hotline-rt/hotline/transport"
	"github.com/hotline-rt/hotline/ws"
)

// Config is the whole configuration of a server. The zero value serves
// same-origin clients with compression off and no limits.
type Config struct {
	// AllowedOrigins are origin patterns allowed besides the same
	// origin, for WebSocket and the CORS of the polling endpoints.
	AllowedOrigins []string
	// Compress negotiates permessage-deflate without context takeover.
	Compress bool
	// ReadLimit is the largest message accepted; 0 means 1 MiB.
	ReadLimit int64
	// KeepAlive is the WebSocket ping period; 0 disables pings.
	KeepAlive time.Duration

	Logger *slog.Logger
}

// Server is a configured hotline server.
type Server struct {
	cfg       Config
	log       *slog.Logger
	mux       *http.ServeMux
	broadcast *transport.Broadcast
}

// New builds a server from cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ReadLimit <= 0 {
		cfg.ReadLimit = 1 << 20
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	opts := s.acceptOptions("chat", "superchat")
	s.broadcast = transport.NewBroadcast(opts, s.log)
	s.mux.Handle("GET /echo", transport.Echo(opts, s.log))
	s.mux.Handle("GET /broadcast", s.broadcast)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	return s, nil
}

// acceptOptions are the WebSocket options every endpoint shares.
func (s *Server) acceptOptions(subprotocols ...string) *ws.AcceptOptions {
	o := &ws.AcceptOptions{
		Subprotocols:   subprotocols,
		AllowedOrigins: s.cfg.AllowedOrigins,
		ReadLimit:      s.cfg.ReadLimit,
		KeepAlive:      s.cfg.KeepAlive,
	}
	if s.cfg.Compress {
		o.Compression = &ws.CompressionOptions{}
	}
	return o
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// GoingAway starts closing every WebSocket connection with 1001, without
// waiting. Register it with http.Server.RegisterOnShutdown.
func (s *Server) GoingAway() {
	s.broadcast.GoingAway()
}

// Shutdown closes every session and connection, bounded by ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.GoingAway()
	for s.broadcast.Len() > 0 {
		select {
		case <-ctx.Done():
			return errors.New("server: shutdown: connections still open")
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
