//go:build !linux

package transport

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/ws"
)

// EventLoop is the event-loop WebSocket transport; it needs Linux (epoll),
// and Start fails elsewhere.
type EventLoop struct {
	Engine       *push.Engine
	Verifier     auth.Verifier
	Accept       ws.AcceptOptions
	Log          *slog.Logger
	WriteTimeout time.Duration
	OnDeliver    func(transport string, published time.Time)
	ReadWorkers  int
	WriteWorkers int
}

func (t *EventLoop) Start() error { return errors.New("transport: the event loop needs Linux (epoll)") }
func (t *EventLoop) Close()       {}
func (t *EventLoop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "event loop unavailable", http.StatusInternalServerError)
}
func (t *EventLoop) Wait(ctx context.Context) error { return nil }
func (t *EventLoop) Len() int                       { return 0 }
