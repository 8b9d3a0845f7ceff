package ws

import (
	"context"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// NetConn returns a net.Conn that carries a byte stream over c: each Write
// is sent as one message of type typ, and Read returns the payloads of
// incoming messages one after another (of either type). Close closes c
// with status 1000. For code that speaks a stream protocol over
// WebSocket. Its deadlines follow net.Conn's, except that one passing
// during a Read or Write closes c (see SetReadDeadline).
func NetConn(c *Conn, typ MessageType) net.Conn {
	return &netConn{c: c, typ: typ}
}

type netConn struct {
	c   *Conn
	typ MessageType

	readMu sync.Mutex
	r      io.Reader // the message being read, nil between messages
	eof    bool      // the peer closed normally
	rdl    deadline

	writeMu sync.Mutex
	wdl     deadline
}

func (nc *netConn) Read(p []byte) (int, error) {
	nc.readMu.Lock()
	defer nc.readMu.Unlock()
	ctx, err := nc.rdl.begin()
	if err != nil {
		return 0, err
	}
	n, err := nc.read(ctx, p)
	return n, nc.rdl.end(err)
}

func (nc *netConn) read(ctx context.Context, p []byte) (int, error) {
	for {
		if nc.eof {
			return 0, io.EOF
		}
		if nc.r == nil {
			_, r, err := nc.c.NextReader(ctx)
			if err != nil {
				if s := CloseStatus(err); s == StatusNormalClosure || s == StatusGoingAway {
					nc.eof = true
					return 0, io.EOF
				}
				return 0, err
			}
			nc.r = r
		} else {
			nc.c.setReaderCtx(ctx) // bound this call's read, not the first one's
		}
		n, err := nc.r.Read(p)
		if err == io.EOF {
			nc.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (nc *netConn) Write(p []byte) (int, error) {
	nc.writeMu.Lock()
	defer nc.writeMu.Unlock()
	ctx, err := nc.wdl.begin()
	if err != nil {
		return 0, err
	}
	err = nc.wdl.end(nc.c.WriteMessage(ctx, nc.typ, p))
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (nc *netConn) Close() error         { return nc.c.Close(StatusNormalClosure, "") }
func (nc *netConn) LocalAddr() net.Addr  { return nc.c.LocalAddr() }
func (nc *netConn) RemoteAddr() net.Addr { return nc.c.RemoteAddr() }

// SetReadDeadline sets the deadline for Read. Unlike most net.Conn, a
// deadline that passes while a Read is waiting closes the WebSocket
// connection, whose framing cannot resume after a cut; a deadline that
// has passed when Read is called fails it at once, leaving the
// connection as it was.
func (nc *netConn) SetReadDeadline(t time.Time) error { nc.rdl.set(t); return nil }

// SetWriteDeadline sets the deadline for Write, with the same rules as
// SetReadDeadline.
func (nc *netConn) SetWriteDeadline(t time.Time) error { nc.wdl.set(t); return nil }

func (nc *netConn) SetDeadline(t time.Time) error {
	nc.rdl.set(t)
	nc.wdl.set(t)
	return nil
}

// deadline turns a net.Conn deadline into the ctx of the call in
// progress, the only time limit a Conn knows: when the deadline passes
// during a call, that call's ctx is cancelled.
type deadline struct {
	mu      sync.Mutex
	gen     uint64 // which set; a timer of an earlier one does nothing
	timer   *time.Timer
	expired bool
	cancel  context.CancelFunc // the call in progress, nil between calls
	fired   bool               // the deadline cancelled the call in progress
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.expired = false
	switch {
	case t.IsZero():
	case !time.Now().Before(t):
		d.expireLocked()
	default:
		gen := d.gen
		d.timer = time.AfterFunc(time.Until(t), func() {
			d.mu.Lock()
			if d.gen == gen {
				d.expireLocked()
			}
			d.mu.Unlock()
		})
	}
}

func (d *deadline) expireLocked() {
	d.expired = true
	if d.cancel != nil {
		d.fired = true
		d.cancel()
	}
}

// begin starts a call: it returns the call's ctx, or a timeout error if
// the deadline has passed.
func (d *deadline) begin() (context.Context, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.expired {
		return nil, os.ErrDeadlineExceeded
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.fired = cancel, false
	return ctx, nil
}

// end finishes the call, turning the cancellation by the deadline into
// the timeout error that net.Conn users expect.
func (d *deadline) end(err error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cancel()
	d.cancel = nil
	if err != nil && d.fired {
		return os.ErrDeadlineExceeded
	}
	return err
}
