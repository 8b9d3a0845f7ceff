//go:build !linux

package transport

import (
	"errors"
	"net/http"

	"github.com/hotline-rt/hotline/ws"
)

// ServeEcho needs the event loop, which needs Linux.
func (t *EventLoop) ServeEcho(w http.ResponseWriter, r *http.Request, opts *EchoOptions) (string, error) {
	http.Error(w, "event loop unavailable", http.StatusInternalServerError)
	return "", errors.New("transport: the event loop needs Linux (epoll)")
}

func (t *EventLoop) EchoConns() int64                { return 0 }
func (t *EventLoop) EchoEvents(k ws.EventKind) int64 { return 0 }
