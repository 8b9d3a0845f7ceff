package ws

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// WebSocket over HTTP/2 (RFC 8441). The handshake is an extended CONNECT
// (:method CONNECT, :protocol websocket) answered with 200, and the
// stream's DATA frames carry the WebSocket frames, exactly the bytes that
// would follow a 101 over HTTP/1.1. So the codec does not change: the
// stream is wrapped as a net.Conn (h2Stream) and the Conn runs on it as
// on a socket.
//
// Go's HTTP/2 server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL, without
// which a client never sends an extended CONNECT, only when the process
// starts with GODEBUG=http2xconnect=1 (off by default since Go 1.24,
// golang/go#71128). Package ws/h2enable sets it for a program that
// imports it; see there.

// acceptH2 answers an extended CONNECT that passed the checks and makes
// the Conn on its stream.
func acceptH2(w http.ResponseWriter, r *http.Request, resp *acceptResponse) (*Conn, error) {
	h := w.Header()
	if resp.subprotocol != "" {
		h.Set("Sec-WebSocket-Protocol", resp.subprotocol)
	}
	if resp.deflate != nil {
		h.Set("Sec-WebSocket-Extensions", resp.deflate.String())
	}
	for k, vs := range resp.opts.Header {
		for _, v := range vs {
			if headerSafe(k, v) {
				h.Add(k, v)
			}
		}
	}
	rc := http.NewResponseController(w)
	// The server's ReadTimeout and WriteTimeout bound each stream; a
	// WebSocket outlives them, as a hijacked connection does over
	// HTTP/1.1 (where Upgrade clears the socket's deadline).
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil, fmt.Errorf("ws: write handshake response: %w", err)
	}
	s := &h2Stream{
		r:     r.Body,
		w:     w,
		flush: rc.Flush,
		// A write blocked on flow control is unblocked by resetting the
		// stream: net/http does so for a write deadline in the past.
		abort:    func() { rc.SetWriteDeadline(time.Unix(1, 0)) },
		setRead:  rc.SetReadDeadline,
		setWrite: rc.SetWriteDeadline,
		raddr:    stringAddr(r.RemoteAddr),
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		s.laddr = a
	}
	c := resp.newConn(s)
	c.setWriteTimeout(resp.opts.WriteTimeout)
	c.startKeepAlive(resp.opts.KeepAlive)
	return c, nil
}

// HTTP2 reports whether c runs on a stream of an HTTP/2 connection (RFC
// 8441) rather than on a connection of its own. On the server, such a
// Conn lives only as long as the handler that upgraded it: the handler
// waits for <-c.Done() before it returns.
func (c *Conn) HTTP2() bool {
	_, ok := c.nc.(*h2Stream)
	return ok
}

// h2Stream is an HTTP/2 stream as a net.Conn: what the peer sends is read
// from r (the request body on the server, the response body on the
// client), what this side sends is written to w (the ResponseWriter, then
// flushed, or the request body's pipe).
//
// Close ends both directions and returns only once no Write is under way
// and none will touch w again: on the server, Conn.Done is closed after
// it, so that a handler waiting for Done returns when the ResponseWriter
// is no longer used (net/http forbids its use after the handler returns).
type h2Stream struct {
	r     io.ReadCloser
	w     io.Writer
	flush func() error // after each write; nil for none
	// abort unblocks a Write under way (called by Close with wmu held by
	// that Write); finish runs once nothing writes any more.
	abort, finish     func()
	setRead, setWrite func(time.Time) error // nil: not supported
	laddr, raddr      net.Addr

	wmu     sync.Mutex // held by a Write for its whole I/O
	closed  bool       // under wmu: w is not to be used
	closing atomic.Bool
	once    sync.Once
}

func (s *h2Stream) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && s.closing.Load() {
		err = net.ErrClosed
	}
	return n, err
}

func (s *h2Stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return 0, net.ErrClosed
	}
	n, err := s.w.Write(p)
	if err == nil && s.flush != nil {
		err = s.flush()
	}
	if err != nil && s.closing.Load() {
		err = net.ErrClosed
	}
	return n, err
}

func (s *h2Stream) Close() error {
	err := net.ErrClosed
	s.once.Do(func() {
		err = nil
		s.closing.Store(true)
		s.r.Close() // unblocks a Read
		if !s.wmu.TryLock() {
			if s.abort != nil {
				s.abort()
			}
			s.wmu.Lock()
		}
		s.closed = true
		s.wmu.Unlock()
		if s.finish != nil {
			s.finish()
		}
	})
	return err
}

// LocalAddr and RemoteAddr are those of the HTTP/2 connection, or an
// empty address if net/http did not say (never nil: callers print them).
func (s *h2Stream) LocalAddr() net.Addr  { return orEmpty(s.laddr) }
func (s *h2Stream) RemoteAddr() net.Addr { return orEmpty(s.raddr) }

func orEmpty(a net.Addr) net.Addr {
	if a == nil {
		return stringAddr("")
	}
	return a
}

// errStreamDeadline is what the deadline methods return where the stream
// has none (the client side): Conn bounds its calls with a ctx instead.
var errStreamDeadline = errors.New("ws: this HTTP/2 stream has no deadlines; bound calls with a ctx")

func (s *h2Stream) SetDeadline(t time.Time) error {
	return errors.Join(s.SetReadDeadline(t), s.SetWriteDeadline(t))
}

func (s *h2Stream) SetReadDeadline(t time.Time) error {
	if s.setRead == nil {
		return errStreamDeadline
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return net.ErrClosed
	}
	return s.setRead(t)
}

func (s *h2Stream) SetWriteDeadline(t time.Time) error {
	if s.setWrite == nil {
		return errStreamDeadline
	}
	// Not under wmu: a deadline may be set while a Write is blocked, to
	// end it. Close holds wmu only for an instant once nothing writes.
	if s.closing.Load() {
		return net.ErrClosed
	}
	return s.setWrite(t)
}

// stringAddr is a net.Addr known only by its string (an HTTP request's
// RemoteAddr).
type stringAddr string

func (a stringAddr) Network() string { return "tcp" }
func (a stringAddr) String() string  { return string(a) }
