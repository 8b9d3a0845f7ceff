package ws

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReadLimit is the largest message a connection accepts unless
// told otherwise.
const DefaultReadLimit = 32 << 20

// closeTimeout bounds each step of the close handshake: waiting for the
// peer's close frame, and (client side) for the server to end the TCP
// connection.
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
	msgOp     Opcode // opcode of the message being read, 0 between messages
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
	wctrl     [maxHeaderSize + maxControlPayload]byte
	wvec      [2][]byte
	wbufs     net.Buffers
	writer    messageWriter

	closeRecv chan struct{} // closed when the peer's close frame arrives
	done      chan struct{} // closed when the TCP connection is closed
	closeOnce sync.Once
	peerClose CloseError // valid after closeRecv is closed

	keepAlive atomic.Pointer[time.Timer]
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

// SetReadDeadline sets the deadline for reads, as net.Conn does. A read
// that times out leaves the connection broken: close it.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline for writes, as net.Conn does. A write
// that times out leaves the connection broken: close it.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }

// Done returns a channel that is closed when the underlying connection
// has been closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// CloseNow closes the underlying connection at once, without a close
// handshake.
func (c *Conn) CloseNow() error {
	err := ErrClosed
	c.closeOnce.Do(func() {
		if t := c.keepAlive.Load(); t != nil {
			t.Stop()
		}
		err = c.nc.Close()
		close(c.done)
	})
	return err
}

// Close performs the closing handshake: it sends a close frame with code
// and reason (cut to fit in a control frame), waits a bounded time for the
// peer's close frame, and closes the connection. If another goroutine is
// reading, that reader receives the peer's close; otherwise Close reads
// (and discards data messages) itself.
func (c *Conn) Close(code StatusCode, reason string) error {
	if code != StatusNoStatusRcvd && !code.validOnWire() {
		code = StatusInternalError
	}
	err := c.writeClose(code, reason)
	if c.readMu.TryLock() {
		c.nc.SetReadDeadline(time.Now().Add(closeTimeout))
		if c.msgOp != 0 {
			c.skipMessage()
		}
		for c.readErr == nil {
			if _, err := c.nextDataFrame(); err != nil {
				break
			}
			c.skipMessage()
		}
		c.nc.SetReadDeadline(time.Time{})
		c.readMu.Unlock()
	} else {
		t := time.NewTimer(closeTimeout)
		select {
		case <-c.done:
		case <-t.C:
		}
		t.Stop()
	}
	c.CloseNow()
	select {
	case <-c.closeRecv:
		return err
	default:
		if err == nil {
			err = context.DeadlineExceeded
		}
		return err
	}
}

// contextDeadline arranges for a blocking call on c to stop when ctx ends,
// by moving the read or write deadline into the past. It costs nothing for
// a context that cannot end. The returned stop must be called when the
// call returns.
func (c *Conn) watch(ctx context.Context, write bool) (stop func() bool) {
	if ctx.Done() == nil {
		return nil
	}
	return context.AfterFunc(ctx, func() {
		if write {
			c.nc.SetWriteDeadline(aLongTimeAgo)
		} else {
			c.nc.SetReadDeadline(aLongTimeAgo)
		}
	})
}

var aLongTimeAgo = time.Unix(1, 0)

// ctxErr prefers the context's error when the context's end is what broke
// a call, and then closes the connection, whose state is now unknown.
func (c *Conn) ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		c.CloseNow()
		return ctx.Err()
	}
	return err
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
	var t *time.Timer
	t = time.AfterFunc(time.Hour, func() {
		select {
		case <-c.done:
			// CloseNow's Stop came too late for this run; do not Reset.
			return
		default:
		}
		n := c.frames.Load()
		switch {
		case n != seen:
			seen, pinged = n, false
		case pinged:
			c.writeClose(StatusPolicyViolation, "keepalive: no pong")
			c.CloseNow()
			return
		default:
			pinged = true
			c.writeControl(OpPing, nil)
		}
		t.Reset(interval)
	})
	c.keepAlive.Store(t)
	t.Reset(interval)
}
