package transport

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/hotline-rt/hotline/ws"
)

// Limiter counts connections against a limit that several endpoints
// share, such as a server's -max-conns.
type Limiter interface {
	// Acquire takes one place; false means the limit is reached.
	Acquire() bool
	// Release gives back a place taken by Acquire.
	Release()
}

// diagConns is the set of connections of one diagnostic endpoint. It
// counts them against a Limiter for their whole life, owns the goroutine
// that serves each (and those that close them at shutdown), and waits for
// them.
type diagConns struct {
	limit Limiter // nil: no limit

	mu      sync.Mutex
	conns   map[*ws.Conn]struct{}
	closing bool          // goingAway was called: accept no more
	running int           // goroutines started here and not ended
	drained chan struct{} // closed once closing and running == 0
}

// upgrade admits the request against the limit and upgrades it; on
// failure it has answered. The connection is counted until serve's f
// returns.
func (d *diagConns) upgrade(w http.ResponseWriter, r *http.Request, opts *ws.AcceptOptions, log *slog.Logger, name string) *ws.Conn {
	if d.limit != nil && !d.limit.Acquire() {
		Overloaded(w, "server is at its connection limit, retry later")
		return nil
	}
	c, err := ws.Upgrade(w, r, opts)
	if err != nil {
		if d.limit != nil {
			d.limit.Release()
		}
		log.Debug(name+": upgrade refused", "err", err, "remote", r.RemoteAddr)
		return nil
	}
	return c
}

// serve runs f(c) on a goroutine it owns; then it closes c and releases
// its place.
func (d *diagConns) serve(c *ws.Conn, f func(*ws.Conn)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conns == nil {
		d.conns = make(map[*ws.Conn]struct{})
	}
	if d.closing {
		// Upgraded as the server began to shut down: told here, on the
		// request's goroutine, which net/http owns.
		d.mu.Unlock()
		c.Close(ws.StatusGoingAway, "server shutting down")
		if d.limit != nil {
			d.limit.Release()
		}
		d.mu.Lock()
		return
	}
	d.conns[c] = struct{}{}
	d.goLocked(func() {
		f(c)
		d.mu.Lock()
		delete(d.conns, c)
		d.mu.Unlock()
		c.CloseNow()
		if d.limit != nil {
			d.limit.Release()
		}
	})
}

// goLocked runs f on a goroutine that wait waits for. d.mu is held.
func (d *diagConns) goLocked(f func()) {
	d.running++
	go func() {
		defer d.ended()
		f()
	}()
}

func (d *diagConns) ended() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.running--
	d.drainedLocked()
}

func (d *diagConns) drainedLocked() {
	if d.drained == nil {
		d.drained = make(chan struct{})
	}
	if d.closing && d.running == 0 {
		select {
		case <-d.drained:
		default:
			close(d.drained)
		}
	}
}

// goingAway starts the closing handshake (1001) of every connection and
// accepts no more; it does not wait.
func (d *diagConns) goingAway() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		return
	}
	d.closing = true
	for c := range d.conns {
		d.goLocked(func() { c.Close(ws.StatusGoingAway, "server shutting down") })
	}
	d.drainedLocked()
}

// wait blocks until goingAway has been called and every goroutine started
// here has returned, or ctx ends.
func (d *diagConns) wait(ctx context.Context, name string) error {
	d.mu.Lock()
	d.drainedLocked()
	drained := d.drained
	d.mu.Unlock()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("transport: %d %s connections still open: %w", d.len(), name, ctx.Err())
	}
}

func (d *diagConns) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.conns)
}

// Echo is a diagnostic endpoint that sends every message back with its
// opcode; what ../shared/wsbench drives for echo.
type Echo struct {
	opts *ws.AcceptOptions
	log  *slog.Logger
	set  diagConns
}

// NewEcho returns an echo endpoint whose connections count against limit
// (nil: no limit).
func NewEcho(opts *ws.AcceptOptions, limit Limiter, log *slog.Logger) *Echo {
	return &Echo{opts: opts, log: log, set: diagConns{limit: limit}}
}

func (e *Echo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if c := e.set.upgrade(w, r, e.opts, e.log, "echo"); c != nil {
		// Served on a goroutine of its own, and net/http's ends: its
		// stack grew while parsing the request, and an idle echo
		// connection should cost as little as possible.
		e.set.serve(c, echo)
		holdStream(c)
	}
}

// GoingAway closes every connection with 1001 and accepts no more,
// without waiting.
func (e *Echo) GoingAway() { e.set.goingAway() }

// Wait blocks until every connection has ended, or ctx ends. Call it
// after GoingAway.
func (e *Echo) Wait(ctx context.Context) error { return e.set.wait(ctx, "echo") }

// Len returns the number of connected clients.
func (e *Echo) Len() int { return e.set.len() }

func echo(c *ws.Conn) {
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
	set  diagConns

	// WriteTimeout bounds one write to one client; a client that
	// cannot take a message within it is disconnected.
	WriteTimeout time.Duration

	mu    sync.RWMutex
	conns map[*ws.Conn]struct{}
}

// NewBroadcast returns an empty broadcast hub whose connections count
// against limit (nil: no limit).
func NewBroadcast(opts *ws.AcceptOptions, limit Limiter, log *slog.Logger) *Broadcast {
	return &Broadcast{opts: opts, log: log, set: diagConns{limit: limit}, WriteTimeout: 5 * time.Second, conns: make(map[*ws.Conn]struct{})}
}

func (b *Broadcast) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	opts := *b.opts
	opts.WriteTimeout = b.WriteTimeout
	if c := b.set.upgrade(w, r, &opts, b.log, "broadcast"); c != nil {
		b.set.serve(c, b.serve)
		holdStream(c)
	}
}

func (b *Broadcast) serve(c *ws.Conn) {
	b.mu.Lock()
	b.conns[c] = struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
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
		// A write that fails or outlasts WriteTimeout closes c; its
		// reader fails next and its serve goroutine cleans up.
		c.WritePrepared(context.Background(), pm)
	}
}

// Len returns the number of clients that messages are sent to.
func (b *Broadcast) Len() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.conns)
}

// GoingAway closes every client with 1001 and accepts no more, without
// waiting.
func (b *Broadcast) GoingAway() { b.set.goingAway() }

// Wait blocks until every connection has ended, or ctx ends. Call it
// after GoingAway.
func (b *Broadcast) Wait(ctx context.Context) error { return b.set.wait(ctx, "broadcast") }
