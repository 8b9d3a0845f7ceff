package ws

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
)

// WriteMessage sends p as one message of type typ in a single frame. The
// text is not checked for UTF-8: sending valid text is the caller's part
// of the protocol.
func (c *Conn) WriteMessage(ctx context.Context, typ MessageType, p []byte) error {
	if !typ.valid() {
		return errors.New("ws: WriteMessage of " + typ.String())
	}
	op := opcode(typ)
	stop, err := c.begin(ctx)
	if err != nil {
		return err
	}
	c.msgMu.Lock()
	c.armWrite()
	if c.deflate != nil && c.deflate.compressWrite(len(p)) {
		err = c.writeCompressed(op, p)
	} else {
		err = c.writeFrame(true, op, 0, p)
	}
	err = c.disarmWrite(err)
	c.msgMu.Unlock()
	return c.unwatch(ctx, stop, err)
}

// Ping sends a ping with payload p (at most 125 bytes). The pong comes
// back to the reading goroutine, which counts it as a sign of life.
func (c *Conn) Ping(ctx context.Context, p []byte) error {
	if len(p) > maxControlPayload {
		return errors.New("ws: ping payload longer than 125 bytes")
	}
	stop, err := c.begin(ctx)
	if err != nil {
		return err
	}
	return c.unwatch(ctx, stop, c.writeControl(opPing, p, false))
}

// writeFrame writes one frame. The server sends header and payload with
// one writev and no copy; the client masks through a pooled buffer.
func (c *Conn) writeFrame(fin bool, op opcode, rsv byte, p []byte) error {
	if err := c.lockWriter(); err != nil {
		return err
	}
	h := header{fin: fin, rsv: rsv, op: op, length: int64(len(p)), masked: !c.server}
	if c.server {
		if len(p) <= bufSize-maxHeaderSize {
			// One write of a copy beats writev for small frames.
			buf := getBuf()
			out := append(appendHeader(buf[:0], h), p...)
			err := c.wrote(c.nc.Write(out))
			putBuf(buf)
			return c.unlockWriter(err)
		}
		// The header and payload as one writev, through a pooled
		// batch: a connection holds no write buffers while idle.
		b := batchPool.Get().(*batch)
		b.n = len(appendHeader(b.buf[:0], h))
		b.cut()
		b.vec = append(b.vec, p)
		b.msgs = 1
		var written int
		err := c.flushBatch(b, &written)
		b.n, b.mark, b.msgs = 0, 0, 0
		batchPool.Put(b)
		return c.unlockWriter(err)
	}
	h.key = rand.Uint32()
	buf := getBuf()
	out := appendHeader(buf[:0], h)
	pos := 0
	var err error
	for {
		n := copy(buf[len(out):], p)
		chunk := buf[len(out) : len(out)+n]
		pos = mask(h.key, pos, chunk)
		if _, err = c.nc.Write(buf[:len(out)+n]); err != nil {
			err = c.wrote(0, err)
			break
		}
		p = p[n:]
		if len(p) == 0 {
			break
		}
		out = buf[:0]
	}
	putBuf(buf)
	return c.unlockWriter(err)
}

// lockWriter takes writeMu for one frame. Once the connection cannot
// write (it is closed, a write failed, or the close frame went out) it
// returns why, without the lock.
func (c *Conn) lockWriter() error {
	c.writeMu.Lock()
	err := c.writeErr
	if err == nil && (c.closeSent || c.closed.Load()) {
		err = ErrClosed
	}
	if err != nil {
		c.writeMu.Unlock()
	}
	return err
}

// unlockWriter releases writeMu after a frame. A failed write leaves the
// connection unusable (part of a frame may be out), so the writer closes
// it, after releasing the lock: closing a TLS connection writes.
func (c *Conn) unlockWriter(err error) error {
	c.writeMu.Unlock()
	if err != nil {
		c.CloseNow()
	}
	return err
}

// wrote records a failed write as the connection's sticky write error.
// Called under writeMu.
func (c *Conn) wrote(_ int, err error) error {
	if err != nil {
		if c.closed.Load() {
			err = ErrClosed
		}
		c.writeErr = err
	}
	return err
}

// writeControl sends a control frame; closing marks the close frame, which
// goes out once. It may go out between the frames of a data message.
func (c *Conn) writeControl(op opcode, p []byte, closing bool) error {
	if err := c.lockWriter(); err != nil {
		return err
	}
	if closing {
		c.closeSent = true
	}
	return c.unlockWriter(c.writeControlLocked(op, p))
}

func (c *Conn) writeControlLocked(op opcode, p []byte) error {
	h := header{fin: true, op: op, length: int64(len(p)), masked: !c.server}
	if h.masked {
		h.key = rand.Uint32()
	}
	buf := getBuf() // not a buffer of the connection's own: idle, it holds none
	b := appendHeader(buf[:0], h)
	n := len(b)
	b = append(b, p...)
	if h.masked {
		mask(h.key, 0, b[n:])
	}
	err := c.wrote(c.nc.Write(b))
	putBuf(buf)
	return err
}

// writeClose sends a close frame once, bounded by controlTimeout; later
// calls return ErrClosed.
func (c *Conn) writeClose(code StatusCode, reason string) error {
	return c.writeOwnControl(opClose, closePayload(code, reason), true)
}

// NextWriter returns a writer for a message of type typ sent in
// fragments: the writer fills a pooled buffer and sends a frame each time
// it is full; Close sends the final frame. Other messages wait until
// Close; control frames do not. ctx bounds the wait for other messages
// and every write of this one, until Close.
func (c *Conn) NextWriter(ctx context.Context, typ MessageType) (io.WriteCloser, error) {
	if !typ.valid() {
		return nil, errors.New("ws: NextWriter of " + typ.String())
	}
	op := opcode(typ)
	stop, err := c.begin(ctx)
	if err != nil {
		return nil, err
	}
	c.msgMu.Lock()
	if err := c.unwatch(ctx, stop, nil); err != nil {
		c.msgMu.Unlock()
		return nil, err
	}
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
	op       opcode // opcode of the next frame: op, then OpContinuation
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
	stop := w.c.watch(w.ctx)
	w.c.armWrite()
	err := w.c.disarmWrite(w.c.writeFrame(fin, w.op, w.rsv(), w.buf[:w.n]))
	w.op, w.n = opContinuation, 0
	w.err = w.c.unwatch(w.ctx, stop, err)
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
