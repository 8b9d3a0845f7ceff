package transport

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/hotline-rt/hotline/ws"
)

// Echo returns a handler that sends every message back with its opcode:
// a diagnostic endpoint, and what ../shared/wsbench drives for echo.
func Echo(opts *ws.AcceptOptions, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Upgrade(w, r, opts)
		if err != nil {
			log.Debug("echo: upgrade refused", "err", err, "remote", r.RemoteAddr)
			return
		}
		// Serve on a fresh goroutine and let net/http's one end: its
		// stack grew while parsing the request, and an idle echo
		// connection should cost as little as possible.
		go echo(c)
	})
}

func echo(c *ws.Conn) {
	defer c.CloseNow()
	ctx := context.Background()
	var buf []byte
	for {
		op, msg, err := c.ReadMessage(ctx, buf[:0])
		if err != nil {
			return
		}
		if err := c.WriteMessage(ctx, op, msg); err != nil {
			return
		}
		// Keep the buffer for the next message unless it is large:
		// an idle connection should not hold megabytes.
		if cap(msg) <= 64<<10 {
			buf = msg
		} else {
			buf = nil
		}
	}
}

// Broadcast is a diagnostic fan-out: every message received from any
// client goes to every connected client, encoded once as a prepared
// message. It is the bare library fan-out that the push engine is
// measured against.
type Broadcast struct {
	opts *ws.AcceptOptions
	log  *slog.Logger

	// WriteTimeout bounds one write to one client; a client that
	// cannot take a message within it is disconnected.
	WriteTimeout time.Duration

	mu    sync.RWMutex
	conns map[*ws.Conn]struct{}
}

// NewBroadcast returns an empty broadcast hub.
func NewBroadcast(opts *ws.AcceptOptions, log *slog.Logger) *Broadcast {
	return &Broadcast{opts: opts, log: log, WriteTimeout: 5 * time.Second, conns: make(map[*ws.Conn]struct{})}
}

func (b *Broadcast) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	opts := *b.opts
	opts.WriteTimeout = b.WriteTimeout
	c, err := ws.Upgrade(w, r, &opts)
	if err != nil {
		b.log.Debug("broadcast: upgrade refused", "err", err, "remote", r.RemoteAddr)
		return
	}
	b.mu.Lock()
	b.conns[c] = struct{}{}
	b.mu.Unlock()
	go b.serve(c)
}

func (b *Broadcast) serve(c *ws.Conn) {
	defer func() {
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
		c.CloseNow()
	}()
	ctx := context.Background()
	for {
		op, msg, err := c.ReadMessage(ctx, nil)
		if err != nil {
			return
		}
		b.send(ws.NewPreparedMessage(op, msg))
	}
}

// send writes pm to every client. The frame is built once; each write is
// a single syscall of shared bytes.
func (b *Broadcast) send(pm *ws.PreparedMessage) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for c := range b.conns {
		// A write that fails or outlasts WriteTimeout closes c.
		c.WritePrepared(context.Background(), pm)
	}
}

// Len returns the number of connected clients.
func (b *Broadcast) Len() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.conns)
}

// GoingAway closes every client with 1001, for shutdown.
func (b *Broadcast) GoingAway() {
	b.mu.RLock()
	conns := make([]*ws.Conn, 0, len(b.conns))
	for c := range b.conns {
		conns = append(conns, c)
	}
	b.mu.RUnlock()
	for _, c := range conns {
		go c.Close(ws.StatusGoingAway, "server shutting down")
	}
}
