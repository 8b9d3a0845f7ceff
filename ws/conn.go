package ws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReadLimit is the largest message a connection accepts unless
// told otherwise.
const DefaultReadLimit = 32 << 20

// closeTimeout bounds the wait for the peer's close frame, and (client
// side) for the server to end the TCP connection after it.
const closeTimeout = 5 * time.Second

// Conn is a WebSocket connection, on the server or the client side.
//
// One goroutine may read (ReadMessage, NextReader) while any number of
// goroutines write (WriteMessage, NextWriter, WritePrepared, Ping, Close):
// writes of whole messages are serialized, and control frames (pongs,
// pings, the close frame) may go out between the frames of a fragmented
// message.
//
// Pings are answered and close frames echoed by the reading goroutine, so
// a connection that must stay alive needs one: a write-only application
// reads and discards in the background.
//
// Every blocking call takes a ctx, which bounds that call and nothing
// after it. If the ctx ends before the call is done, the connection is
// closed (a frame may be half written or half read, so it cannot go on)
// and the call returns ctx.Err(); a ctx that had ended before the call
// fails it at once and leaves the connection open. A call that returns
// nil leaves nothing behind for the next one. The frames that the connection writes on its
// own (pong replies, keepalive pings, the close frame and its echo) are
// bounded by 5 s each; one that cannot go out in that time closes the
// connection.
type Conn struct {
	nc     net.Conn
	raw    *rawReader // nil when nc is not a plain socket (TLS, net.Pipe)
	server bool       // server side: reads masked frames, writes unmasked

	subprotocol string
	extensions  string
	rsvAllowed  byte // RSV bits that a negotiated extension claims
	deflate     *deflateState

	readLimit atomic.Int64
	frames    atomic.Uint64 // frames received, for keepalive

	// Read side, owned by the goroutine holding readMu.
	readMu    sync.Mutex
	rbuf      *[bufSize]byte // pooled; nil while nothing is buffered
	rpos      int            // rbuf[rpos:rend] is read but not consumed
	rend      int
	frame     header // the current data frame
	remain    int64  // payload bytes of the current frame still to read
	maskPos   int    // bytes of the current frame unmasked so far
	msgOp     opcode // opcode of the message being read, 0 between messages
	msgLen    int64  // payload bytes of the message so far
	msgDeflat bool   // the message being read is compressed
	utf8      utf8Validator
	readErr   error // sticky: once set, every read returns it
	reader    messageReader
	ctrl      [maxControlPayload]byte

	// Write side. msgMu is held for a whole data message (so NextWriter
	// can span calls); writeMu for one frame, so that control frames can
	// go out between the frames of a message.
	msgMu     sync.Mutex
	writeMu   sync.Mutex
	closeSent bool  // under writeMu
	writeErr  error // under writeMu; sticky
	writer    messageWriter

	closeRecv chan struct{} // closed when the peer's close frame arrives
	done      chan struct{} // closed when the TCP connection is closed
	closed    atomic.Bool   // set as CloseNow starts
	closeOnce sync.Once
	peerClose CloseError // valid after closeRecv is closed
	expire    func()     // CloseNow, bound once for watch

	ka keepAlive

	// writeBound closes the connection when a data write outlasts
	// writeTimeout; armed under msgMu. nil without a WriteTimeout.
	writeBound   *time.Timer
	writeTimeout time.Duration
}

func newConn(nc net.Conn, server bool, readLimit int64) *Conn {
	c := &Conn{
		nc:        nc,
		raw:       newRawReader(nc),
		server:    server,
		closeRecv: make(chan struct{}),
		done:      make(chan struct{}),
	}
	if readLimit <= 0 {
		readLimit = DefaultReadLimit
	}
	c.readLimit.Store(readLimit)
	c.reader.c = c
	c.writer.c = c
	c.expire = func() { c.CloseNow() }
	return c
}

// Subprotocol returns the subprotocol that the handshake agreed on, or "".
func (c *Conn) Subprotocol() string { return c.subprotocol }

// Extensions returns the Sec-WebSocket-Extensions value that the handshake
// agreed on, or "".
func (c *Conn) Extensions() string { return c.extensions }

// SetReadLimit sets the largest message, in bytes after decompression,
// that the connection accepts; a larger one is refused with close status
// 1009 before it is buffered. n <= 0 restores DefaultReadLimit.
func (c *Conn) SetReadLimit(n int64) {
	if n <= 0 {
		n = DefaultReadLimit
	}
	c.readLimit.Store(n)
}

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// RemoteAddr returns the peer's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Done returns a channel that is closed when the underlying connection
// has been closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// CloseNow closes the underlying connection at once, without a close
// handshake.
func (c *Conn) CloseNow() error {
	err := ErrClosed
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.ka.stop()
		err = c.nc.Close()
		close(c.done)
	})
	return err
}

// Close performs the closing handshake: it sends a close frame with code
// and reason (cut to fit in a control frame), waits a bounded time (5 s)
// for the peer's close frame, and closes the connection. If another
// goroutine is reading, that reader receives the peer's close; otherwise
// Close reads (and discards data messages) itself.
//
// It returns nil when the peer answered. When it did not, the error is a
// *CloseError with status 1006 (abnormal closure) that says why: no answer
// in time, or the connection ended without one.
func (c *Conn) Close(code StatusCode, reason string) error {
	if code != StatusNoStatusRcvd && !code.validOnWire() {
		code = StatusInternalError
	}
	err := c.writeClose(code, reason)
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	var readErr error
	if c.readMu.TryLock() {
		stop := c.watch(ctx)
		if c.msgOp != 0 {
			c.skipMessage()
		}
		for c.readErr == nil {
			if _, err := c.nextDataFrame(); err != nil {
				break
			}
			c.skipMessage()
		}
		readErr = c.readErr
		if stop != nil {
			stop()
		}
		c.readMu.Unlock()
	} else {
		select {
		case <-c.done:
		case <-ctx.Done():
		}
	}
	c.CloseNow()
	select {
	case <-c.closeRecv:
		return err
	default:
	}
	switch {
	case err != nil && err != ErrClosed:
		return err
	case ctx.Err() != nil:
		return &CloseError{Code: StatusAbnormalClosure, Reason: "no close frame from the peer within " + closeTimeout.String(), Local: true}
	case readErr != nil && CloseStatus(readErr) != -1:
		return readErr
	}
	return &CloseError{Code: StatusAbnormalClosure, Reason: "connection closed before the peer's close frame", Local: true}
}

// WaitReadable blocks until the peer has sent something (or the
// connection has ended), without reading it and without holding a buffer:
// a server with a goroutine per connection calls it before ReadMessage so
// that its idle goroutines wait with a shallow stack, which the runtime
// then shrinks to its minimum (an idle goroutine parked deep in
// ReadMessage keeps twice that). It returns at once if bytes are already
// buffered or the connection is not a plain socket (TLS, net.Pipe). ctx
// bounds the wait as it bounds ReadMessage. Pings that arrive are handled
// by the ReadMessage that follows.
func (c *Conn) WaitReadable(ctx context.Context) error {
	if c.raw == nil {
		return nil
	}
	c.readMu.Lock()
	ready := c.rend > c.rpos || c.readErr != nil
	c.readMu.Unlock()
	if ready {
		return nil
	}
	stop, err := c.begin(ctx)
	if err != nil {
		return err
	}
	err = c.raw.wait()
	if c.closed.Load() {
		err = nil // ReadMessage says why
	}
	return c.unwatch(ctx, stop, err)
}

// Time limits on a Conn have a single mechanism: a call's ctx. watch ties
// a call to its ctx so that if the ctx ends before the call is done, the
// connection is closed, which unblocks whatever I/O the call was in (its
// state is unknown from then on, as a frame may be half written or half
// read). No deadline is ever set on the socket for a call, so nothing is
// left behind for the next caller. watch costs nothing for a ctx that
// cannot end. The call ends with unwatch.
func (c *Conn) watch(ctx context.Context) (stop func() bool) {
	if ctx.Done() == nil {
		return nil
	}
	return context.AfterFunc(ctx, c.expire)
}

// begin starts a caller's call: a ctx that has already ended fails it
// before it does anything, and leaves the connection as it is (its state
// is known); otherwise it is watch.
func (c *Conn) begin(ctx context.Context) (stop func() bool, err error) {
	if ctx.Done() == nil {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.watch(ctx), nil
}

// unwatch ends a call started with watch and returns its result. If the
// ctx ended during the call, the connection is closed (unwatch waits for
// that) and the call fails with ctx.Err(), even if its I/O got through:
// a call that returns nil leaves the connection open, whatever its ctx
// does afterwards.
func (c *Conn) unwatch(ctx context.Context, stop func() bool, err error) error {
	if stop == nil || stop() {
		return err
	}
	c.CloseNow()
	return ctx.Err()
}

// controlTimeout bounds every frame that the connection writes on its own
// (pong replies, keepalive pings, the close frame and its echo), wait for
// a data frame already on its way out included. A frame that misses it
// closes the connection: a peer that does not take a control frame in
// that time is gone or hostile.
const controlTimeout = 5 * time.Second

// errControlTimeout is the error of a control frame that missed
// controlTimeout.
var errControlTimeout = errors.New("ws: control frame not written within " + controlTimeout.String() + ": connection closed")

// writeOwnControl writes a control frame of the connection's own, bounded
// by controlTimeout. closing marks the close frame, which is sent once.
func (c *Conn) writeOwnControl(op opcode, p []byte, closing bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	stop := c.watch(ctx)
	err := c.writeControl(op, p, closing)
	if err = c.unwatch(ctx, stop, err); err != nil && ctx.Err() != nil {
		return errControlTimeout
	}
	return err
}

// setWriteTimeout sets up the bound of AcceptOptions.WriteTimeout.
func (c *Conn) setWriteTimeout(d time.Duration) {
	if d <= 0 {
		return
	}
	c.writeTimeout = d
	c.writeBound = time.AfterFunc(time.Hour, c.expire)
	c.writeBound.Stop()
}

// armWrite starts the WriteTimeout bound of a write; msgMu is held.
func (c *Conn) armWrite() {
	if c.writeBound != nil {
		c.writeBound.Reset(c.writeTimeout)
	}
}

// disarmWrite ends it. If the bound fired, the connection is closed and
// the write fails, whatever its I/O did: as with a ctx, a write that
// returns nil leaves the connection open.
func (c *Conn) disarmWrite(err error) error {
	if c.writeBound == nil || c.writeBound.Stop() {
		return err
	}
	c.CloseNow()
	return errWriteTimeout
}

// errWriteTimeout is the error of a write that missed its WriteTimeout.
var errWriteTimeout = fmt.Errorf("ws: write took longer than the WriteTimeout, connection closed: %w", os.ErrDeadlineExceeded)

// keepAlive is the state of the keepalive timer. mu orders CloseNow's
// stop against the timer's rearming, so that a run that was under way
// when the connection closed does not schedule another.
type keepAlive struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func (k *keepAlive) stop() {
	k.mu.Lock()
	k.stopped = true
	if k.t != nil {
		k.t.Stop()
	}
	k.mu.Unlock()
}

// rearm schedules the next run, unless the connection has closed.
func (k *keepAlive) rearm(d time.Duration) {
	k.mu.Lock()
	if !k.stopped {
		k.t.Reset(d)
	}
	k.mu.Unlock()
}

// startKeepAlive sends a ping every interval in which nothing arrived from
// the peer, and closes the connection when a whole further interval passes
// without anything (a pong or any other frame) arriving.
func (c *Conn) startKeepAlive(interval time.Duration) {
	if interval <= 0 {
		return
	}
	var seen uint64
	var pinged bool
	c.ka.mu.Lock()
	defer c.ka.mu.Unlock()
	if c.ka.stopped {
		return
	}
	c.ka.t = time.AfterFunc(interval, func() {
		n := c.frames.Load()
		switch {
		case n != seen:
			seen, pinged = n, false
		case pinged:
			c.writeOwnControl(opClose, closePayload(StatusPolicyViolation, "keepalive: no pong"), true)
			c.CloseNow()
			return
		default:
			pinged = true
			c.writeOwnControl(opPing, nil, false)
		}
		c.ka.rearm(interval)
	})
}
