package server

import (
	"fmt"

	"github.com/hotline-rt/hotline/transport"
	"github.com/hotline-rt/hotline/ws"
)

// newEventLoop starts the event-loop transport with the options of the
// goroutine-per-connection one (Config.EventLoop).
func (s *Server) newEventLoop(opts *ws.AcceptOptions) (*transport.EventLoop, error) {
	el := &transport.EventLoop{
		Engine:       s.engine,
		Verifier:     s.cfg.Auth,
		Accept:       *opts,
		Log:          s.cfg.Logger,
		OnDeliver:    s.metrics.delivered,
		WriteTimeout: s.cfg.WriteTimeout,
	}
	if err := el.Start(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return el, nil
}
