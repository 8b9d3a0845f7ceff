package ws

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
)

// WriteMessage sends p as one message of type op (OpText or OpBinary) in a
// single frame. The text is not checked for UTF-8: sending valid text is
// the caller's part of the protocol.
func (c *Conn) WriteMessage(ctx context.Context, op Opcode, p []byte) error {
	if op != OpText && op != OpBinary {
		return errors.New("ws: WriteMessage needs OpText or OpBinary, not " + op.String())
	}
	c.msgMu.Lock()
	defer c.msgMu.Unlock()
	if stop := c.watch(ctx, true); stop != nil {
		defer stop()
	}
	var err error
	if c.deflate != nil && c.deflate.compressWrite(len(p)) {
		err = c.writeCompressed(op, p)
	} else {
		err = c.writeFrame(true, op, 0, p)
	}
	return c.ctxErr(ctx, err)
}

// Ping sends a ping with payload p (at most 125 bytes). The pong comes
// back to the reading goroutine, which counts it as a sign of life.
func (c *Conn) Ping(ctx context.Context, p []byte) error {
	if len(p) > maxControlPayload {
		return errors.New("ws: ping payload longer than 125 bytes")
	}
	if stop := c.watch(ctx, true); stop != nil {
		defer stop()
	}
	return c.ctxErr(ctx, c.writeControl(OpPing, p))
}

// writeFrame writes one frame. The server sends header and payload with
// one writev and no copy; the client masks through a pooled buffer.
func (c *Conn) writeFrame(fin bool, op Opcode, rsv byte, p []byte) error {
	if err := c.lockWriter(); err != nil {
		return err
	}
	defer c.writeMu.Unlock()
	h := header{fin: fin, rsv: rsv, op: op, length: int64(len(p)), masked: !c.server}
	if c.server {
		if len(p) <= bufSize-maxHeaderSize {
			// One write of a copy beats writev for small frames.
			buf := getBuf()
			out := append(appendHeader(buf[:0], h), p...)
			err := c.wrote(c.nc.Write(out))
			putBuf(buf)
			return err
		}
		hdr := appendHeader(c.wctrl[:0], h)
		c.wvec[0], c.wvec[1] = hdr, p
		c.wbufs = c.wvec[:]
		_, err := c.wbufs.WriteTo(c.nc)
		c.wvec[0], c.wvec[1] = nil, nil
		return c.wrote(0, err)
	}
	h.key = rand.Uint32()
	buf := getBuf()
	defer putBuf(buf)
	out := appendHeader(buf[:0], h)
	pos := 0
	for {
		n := copy(buf[len(out):], p)
		chunk := buf[len(out) : len(out)+n]
		pos = mask(h.key, pos, chunk)
		if _, err := c.nc.Write(buf[:len(out)+n]); err != nil {
			return c.wrote(0, err)
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
		out = buf[:0]
	}
}

// lockWriter takes writeMu for one frame. Once the connection cannot
// write (a write failed, or the close frame went out) it returns why,
// without the lock.
func (c *Conn) lockWriter() error {
	c.writeMu.Lock()
	err := c.writeErr
	if err == nil && c.closeSent {
		err = ErrClosed
	}
	if err != nil {
		c.writeMu.Unlock()
	}
	return err
}

// wrote records a failed write as the connection's sticky write error.
func (c *Conn) wrote(_ int, err error) error {
	if err != nil {
		c.writeErr = err
		go c.CloseNow() // not under writeMu: CloseNow may be slow
	}
	return err
}

// writeControl sends a control frame. It may go out between the frames of
// a data message.
func (c *Conn) writeControl(op Opcode, p []byte) error {
	if err := c.lockWriter(); err != nil {
		return err
	}
	defer c.writeMu.Unlock()
	return c.writeControlLocked(op, p)
}

func (c *Conn) writeControlLocked(op Opcode, p []byte) error {
	h := header{fin: true, op: op, length: int64(len(p)), masked: !c.server}
	if h.masked {
		h.key = rand.Uint32()
	}
	b := appendHeader(c.wctrl[:0], h)
	n := len(b)
	b = append(b, p...)
	if h.masked {
		mask(h.key, 0, b[n:])
	}
	return c.wrote(c.nc.Write(b))
}

// writeClose sends a close frame once; later calls return ErrClosed.
func (c *Conn) writeClose(code StatusCode, reason string) error {
	if err := c.lockWriter(); err != nil {
		return err
	}
	defer c.writeMu.Unlock()
	c.closeSent = true
	var payload [maxControlPayload]byte
	return c.writeControlLocked(OpClose, appendClosePayload(payload[:0], code, reason))
}

// NextWriter returns a writer for a message of type op (OpText or
// OpBinary) sent in fragments: the writer fills a pooled buffer and sends
// a frame each time it is full; Close sends the final frame. Other
// messages wait until Close; control frames do not.
func (c *Conn) NextWriter(ctx context.Context, op Opcode) (io.WriteCloser, error) {
	if op != OpText && op != OpBinary {
		return nil, errors.New("ws: NextWriter needs OpText or OpBinary, not " + op.String())
	}
	c.msgMu.Lock()
	w := &c.writer
	w.op, w.ctx, w.n, w.closed, w.err = op, ctx, 0, false, nil
	w.buf = getBuf()
	if c.deflate != nil {
		w.compress = c.deflate.compressWrite(-1)
	} else {
		w.compress = false
	}
	return w, nil
}

// messageWriter is the writer NextWriter returns; there is one per Conn,
// in use while msgMu is held.
type messageWriter struct {
	c        *Conn
	ctx      context.Context
	op       Opcode // opcode of the next frame: op, then OpContinuation
	buf      *[bufSize]byte
	n        int
	compress bool
	closed   bool
	err      error
}

func (w *messageWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, errors.New("ws: write to a closed message writer")
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.compress {
		return w.c.deflateWrite(w, p)
	}
	written := 0
	for len(p) > 0 {
		if w.n == len(w.buf) {
			if err := w.flush(false); err != nil {
				return written, err
			}
		}
		m := copy(w.buf[w.n:], p)
		w.n += m
		written += m
		p = p[m:]
	}
	return written, nil
}

// flush sends the buffered bytes as one frame.
func (w *messageWriter) flush(fin bool) error {
	if stop := w.c.watch(w.ctx, true); stop != nil {
		defer stop()
	}
	err := w.c.writeFrame(fin, w.op, w.rsv(), w.buf[:w.n])
	w.op, w.n = OpContinuation, 0
	if err != nil {
		w.err = w.c.ctxErr(w.ctx, err)
	}
	return w.err
}

func (w *messageWriter) Close() error {
	if w.closed {
		return errors.New("ws: message writer closed twice")
	}
	var err error
	if w.compress {
		err = w.c.deflateClose(w)
	} else if w.err == nil {
		err = w.flush(true)
	} else {
		err = w.err
	}
	w.closed = true
	putBuf(w.buf)
	w.buf, w.ctx = nil, nil
	w.c.msgMu.Unlock()
	return err
}
