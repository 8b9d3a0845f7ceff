package ws

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ReadMessage reads the next data message, appends its payload to buf and
// returns the result with the message's type (text or binary). Pass
// nil to get a new slice, or a slice to reuse (buf[:0]) to read without
// allocating. Control frames that arrive meanwhile are handled: pings are
// answered, and the peer's close frame is echoed and returned as a
// *CloseError.
//
// If ctx ends before the whole message has arrived, the connection is
// closed and ctx.Err() returned: a read cut in the middle of a frame
// cannot resume.
func (c *Conn) ReadMessage(ctx context.Context, buf []byte) (MessageType, []byte, error) {
	stop, err := c.begin(ctx)
	if err != nil {
		return 0, buf, err
	}
	c.readMu.Lock()
	op, buf, err := c.readMessage(buf)
	c.readMu.Unlock()
	if err = c.unwatch(ctx, stop, err); err != nil {
		return 0, buf, err
	}
	return MessageType(op), buf, nil
}

// ReadMessageReady is ReadMessage for a caller that waited with
// WaitReadable: it handles the control frames that have arrived (pings are
// answered, pongs noted, a close returned as in ReadMessage) and, if then
// nothing of a data frame is buffered, returns MessageType 0, buf and a nil
// error instead of waiting inside the read for the next data message. A
// data frame that has begun to arrive is read to the end of its message,
// as ReadMessage does. It lets a server that parks idle connections in
// WaitReadable (on a small stack) go back to waiting there after a
// keepalive ping or pong, rather than staying blocked in a read on the
// stack the read grew.
func (c *Conn) ReadMessageReady(ctx context.Context, buf []byte) (MessageType, []byte, error) {
	stop, err := c.begin(ctx)
	if err != nil {
		return 0, buf, err
	}
	c.readMu.Lock()
	op, buf, err := c.readMessageIdle(buf, true)
	c.readMu.Unlock()
	if err = c.unwatch(ctx, stop, err); err != nil {
		return 0, buf, err
	}
	return MessageType(op), buf, nil
}

// errOnlyControl ends a ReadMessageReady that found control frames only.
var errOnlyControl = errors.New("ws: only control frames were ready")

func (c *Conn) readMessage(buf []byte) (opcode, []byte, error) {
	return c.readMessageIdle(buf, false)
}

// readMessageIdle is readMessage; with idle, it returns opcode 0 and a nil
// error once it has handled control frames and no more bytes are buffered
// between messages.
func (c *Conn) readMessageIdle(buf []byte, idle bool) (opcode, []byte, error) {
	if c.msgOp != 0 {
		// A NextReader that was not read to its end: skip its rest.
		if err := c.skipMessage(); err != nil {
			return 0, buf, err
		}
	}
	for {
		h, err := c.nextFrame(idle)
		if err == errOnlyControl {
			return 0, buf, nil
		}
		if err != nil {
			return 0, buf, err
		}
		if c.msgDeflat {
			// The decompressor pulls the message's later frames itself.
			if buf, err = c.inflateAll(buf); err != nil {
				return 0, buf, err
			}
			h.fin = true
		} else if buf, err = c.readFrameInto(buf); err != nil {
			return 0, buf, err
		}
		if h.fin {
			op := c.msgOp
			if err := c.endMessage(); err != nil {
				return 0, buf, err
			}
			return op, buf, nil
		}
	}
}

// readFrameInto appends the rest of the current frame's payload to buf.
func (c *Conn) readFrameInto(buf []byte) ([]byte, error) {
	n := len(buf)
	buf = grow(buf, int(c.remain))
	p := buf[n : n+int(c.remain)]
	buf = buf[:n+len(p)]
	for len(p) > 0 {
		m, err := c.readPayload(p)
		p = p[m:]
		if err != nil {
			return buf[:len(buf)-len(p)], err
		}
	}
	return buf, nil
}

// grow makes room for n more bytes in buf, like slices.Grow, but doubling
// so that a reused buffer settles at its largest size.
func grow(buf []byte, n int) []byte {
	if cap(buf)-len(buf) >= n {
		return buf
	}
	nb := make([]byte, len(buf), max(2*cap(buf), len(buf)+n))
	copy(nb, buf)
	return nb
}

// NextReader returns the opcode of the next data message and a reader of
// its payload. The reader is valid until the next call to NextReader or
// ReadMessage; it returns io.EOF at the end of the message. Control frames
// are handled as in ReadMessage.
//
// ctx bounds the wait for the message and every read from the returned
// reader, as it bounds ReadMessage.
func (c *Conn) NextReader(ctx context.Context) (MessageType, io.Reader, error) {
	stop, err := c.begin(ctx)
	if err != nil {
		return 0, nil, err
	}
	c.readMu.Lock()
	err = c.nextReader()
	c.reader.ctx = ctx
	op := c.msgOp
	c.readMu.Unlock()
	if err = c.unwatch(ctx, stop, err); err != nil {
		return 0, nil, err
	}
	return MessageType(op), readerHandle{&c.reader, c.reader.gen}, nil
}

func (c *Conn) nextReader() error {
	if c.msgOp != 0 {
		if err := c.skipMessage(); err != nil {
			return err
		}
	}
	if _, err := c.nextDataFrame(); err != nil {
		return err
	}
	c.reader.gen++
	c.reader.eof = false
	return nil
}

// setReaderCtx makes ctx bound the reads of the current message reader.
func (c *Conn) setReaderCtx(ctx context.Context) {
	c.readMu.Lock()
	c.reader.ctx = ctx
	c.readMu.Unlock()
}

// messageReader streams one message's payload across its frames.
type messageReader struct {
	c   *Conn
	ctx context.Context // NextReader's, bounding every Read
	gen uint64          // which message; a stale handle gets an error
	eof bool
}

// readerHandle is what NextReader returns; it detects use after the
// message it belonged to is gone.
type readerHandle struct {
	r   *messageReader
	gen uint64
}

var errStaleReader = errors.New("ws: read from a message reader after the next message was requested")

func (h readerHandle) Read(p []byte) (int, error) {
	c := h.r.c
	c.readMu.Lock()
	if h.gen != h.r.gen {
		c.readMu.Unlock()
		return 0, errStaleReader
	}
	ctx := h.r.ctx
	stop := c.watch(ctx)
	n, err := h.read(p)
	c.readMu.Unlock()
	if err == io.EOF {
		// The message is complete; the ctx's end after this is
		// harmless, as after any call that succeeded.
		if uerr := c.unwatch(ctx, stop, nil); uerr != nil {
			return n, uerr
		}
		return n, io.EOF
	}
	return n, c.unwatch(ctx, stop, err)
}

// read is Read under readMu.
func (h readerHandle) read(p []byte) (int, error) {
	c := h.r.c
	if h.gen != h.r.gen {
		return 0, errStaleReader
	}
	if h.r.eof {
		return 0, io.EOF
	}
	if c.readErr != nil {
		return 0, c.readErr
	}
	if c.msgDeflat {
		n, done, err := c.inflateRead(p)
		if err != nil || !done {
			return n, err
		}
		if err := c.endMessage(); err != nil {
			return n, err
		}
		h.r.eof = true
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
	for c.remain == 0 {
		if c.frame.fin {
			if err := c.endMessage(); err != nil {
				return 0, err
			}
			h.r.eof = true
			return 0, io.EOF
		}
		if _, err := c.nextDataFrame(); err != nil {
			return 0, err
		}
	}
	return c.readPayload(p)
}

// skipMessage discards the rest of a message that the application left
// unread.
func (c *Conn) skipMessage() error {
	var tmp [512]byte
	for {
		if c.msgDeflat {
			_, done, err := c.inflateRead(tmp[:])
			if err != nil {
				return err
			}
			if done {
				return c.endMessage()
			}
			continue
		}
		for c.remain > 0 {
			if _, err := c.readPayload(tmp[:]); err != nil {
				return err
			}
		}
		if c.frame.fin {
			return c.endMessage()
		}
		if _, err := c.nextDataFrame(); err != nil {
			return err
		}
	}
}

// endMessage finishes the message whose last frame has been read.
func (c *Conn) endMessage() error {
	if c.msgDeflat {
		if err := c.inflateEnd(); err != nil {
			return err
		}
	}
	if c.msgOp == opText && !c.utf8.done() {
		return c.fail(StatusInvalidFramePayloadData, "text message ends inside a UTF-8 sequence")
	}
	c.msgOp, c.msgLen, c.msgDeflat = 0, 0, false
	return nil
}

// readPayload reads up to len(p) bytes of the current data frame into p,
// unmasked, checking UTF-8 for text. It reads straight from the socket
// when nothing is buffered and p is large, to save a copy.
func (c *Conn) readPayload(p []byte) (int, error) {
	if int64(len(p)) > c.remain {
		p = p[:c.remain]
	}
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	if c.rpos < c.rend {
		n = copy(p, c.rbuf[c.rpos:c.rend])
		c.consume(n)
	} else if len(p) >= bufSize {
		var err error
		n, err = c.nc.Read(p)
		if n == 0 {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, c.broken(err)
		}
	} else {
		if err := c.fill(1); err != nil {
			return 0, err
		}
		n = copy(p, c.rbuf[c.rpos:c.rend])
		c.consume(n)
	}
	p = p[:n]
	if c.frame.masked {
		c.maskPos = mask(c.frame.key, c.maskPos, p)
	}
	c.remain -= int64(n)
	if c.msgOp == opText && !c.msgDeflat && !c.utf8.write(p) {
		return n, c.fail(StatusInvalidFramePayloadData, "invalid UTF-8 in text message")
	}
	return n, nil
}

// consume marks n buffered bytes as used, and gives the buffer back to the
// pool when it is empty.
func (c *Conn) consume(n int) {
	c.rpos += n
	if c.rpos == c.rend {
		c.rpos, c.rend = 0, 0
		if c.raw != nil && c.rbuf != nil {
			putBuf(c.rbuf)
			c.rbuf = nil
		}
	}
}

// fill reads from the socket until at least n (<= bufSize) bytes are
// buffered.
func (c *Conn) fill(n int) error {
	for c.rend-c.rpos < n {
		if c.rbuf != nil && c.rpos+n > bufSize {
			// Move the partial frame start to the front to make room.
			copy(c.rbuf[:], c.rbuf[c.rpos:c.rend])
			c.rend -= c.rpos
			c.rpos = 0
		}
		var m int
		var err error
		if c.raw != nil {
			c.rbuf, m, err = c.raw.fill(c.rbuf, c.rend, c.rend == c.rpos)
		} else {
			if c.rbuf == nil {
				c.rbuf = getBuf()
			}
			m, err = c.nc.Read(c.rbuf[c.rend:])
		}
		c.rend += m
		if m == 0 {
			if err == nil {
				err = io.EOF
			}
			if err == io.EOF && c.rend > c.rpos {
				err = io.ErrUnexpectedEOF
			}
			return c.broken(err)
		}
	}
	return nil
}

// broken records a transport error (the peer went away without a close
// handshake, the connection was closed under the reader) and closes the
// connection.
func (c *Conn) broken(err error) error {
	if c.readErr == nil {
		switch {
		case err == io.EOF:
			err = &CloseError{Code: StatusAbnormalClosure, Reason: "TCP connection ended without a close frame", Local: true}
		case c.closed.Load():
			err = ErrClosed
		}
		c.readErr = err
	}
	c.CloseNow()
	return c.readErr
}

// fail fails the connection (RFC 6455 section 7.1.7): it sends a close
// frame with code and reason, closes the connection, and makes every
// later read return the error.
func (c *Conn) fail(code StatusCode, reason string) error {
	if c.readErr == nil {
		c.readErr = &CloseError{Code: code, Reason: reason, Local: true}
	}
	c.writeClose(code, reason)
	c.CloseNow()
	return c.readErr
}

// nextDataFrame reads frame headers, handling any control frames, until
// the header of the next data frame of a message; it checks every rule of
// RFC 6455 that a header can break.
func (c *Conn) nextDataFrame() (header, error) { return c.nextFrame(false) }

// nextFrame is nextDataFrame; with idle, once it has handled a control
// frame between messages and nothing more is buffered, it returns
// errOnlyControl instead of reading on.
func (c *Conn) nextFrame(idle bool) (header, error) {
	handled := false
	for {
		if c.readErr != nil {
			return header{}, c.readErr
		}
		if idle && handled && c.msgOp == 0 && c.rpos == c.rend {
			return header{}, errOnlyControl
		}
		if err := c.fill(2); err != nil {
			return header{}, err
		}
		h, n, err := parseHeader(c.rbuf[c.rpos:c.rend])
		if err == errShortHeader {
			if err := c.fill(headerLen(c.rbuf[c.rpos+1])); err != nil {
				return header{}, err
			}
			h, n, err = parseHeader(c.rbuf[c.rpos:c.rend])
		}
		if err != nil {
			return header{}, c.fail(StatusProtocolError, err.Error())
		}
		c.consume(n)
		c.frames.Add(1)
		if err := c.checkHeader(h); err != nil {
			return header{}, err
		}
		if h.op.IsControl() {
			if err := c.handleControl(h); err != nil {
				return header{}, err
			}
			handled = true
			continue
		}
		if h.op != opContinuation {
			c.msgOp = h.op
			c.msgDeflat = h.rsv&bitRsv1 != 0
			if c.msgDeflat {
				c.inflateStart()
			}
		}
		c.msgLen += h.length
		limit := c.readLimit.Load()
		if c.msgDeflat {
			// The limit applies to the decompressed size, counted as
			// it is inflated; this only stops absurd compressed sizes.
			limit = 2*limit + 1024
		}
		if c.msgLen > limit {
			return header{}, c.fail(StatusMessageTooBig, fmt.Sprintf("message larger than the limit of %d bytes", c.readLimit.Load()))
		}
		c.frame, c.remain, c.maskPos = h, h.length, 0
		return h, nil
	}
}

func (c *Conn) checkHeader(h header) error {
	if code, reason := headerRule(h, c.server, c.msgOp, c.rsvAllowed); code != 0 {
		return c.fail(code, reason)
	}
	return nil
}

// headerRule checks h against every rule of RFC 6455 that a header can
// break, given the side reading it (server: frames must be masked), the
// opcode of the message in progress (0 between messages) and the RSV bits
// a negotiated extension claims. It returns 0 for a valid header, else the
// close status and reason to fail the connection with. It does no I/O,
// so that the blocking reader and the event-loop Decoder share it.
func headerRule(h header, server bool, msgOp opcode, rsvAllowed byte) (StatusCode, string) {
	switch {
	case h.masked != server:
		if server {
			return StatusProtocolError, "client frame is not masked"
		}
		return StatusProtocolError, "server frame is masked"
	case h.op.isReserved():
		return StatusProtocolError, "reserved opcode " + itoa(int(h.op))
	case h.op.IsControl():
		if !h.fin {
			return StatusProtocolError, "fragmented control frame"
		}
		if h.length > maxControlPayload {
			return StatusProtocolError, "control frame payload longer than 125 bytes"
		}
		if h.rsv != 0 {
			return StatusProtocolError, "RSV bits set on a control frame"
		}
	case h.op == opContinuation:
		if msgOp == 0 {
			return StatusProtocolError, "continuation frame without a message to continue"
		}
		if h.rsv != 0 {
			return StatusProtocolError, "RSV bits set on a continuation frame"
		}
	default: // text or binary
		if msgOp != 0 {
			return StatusProtocolError, "new message before the last one was finished"
		}
		if h.rsv&^rsvAllowed != 0 {
			return StatusProtocolError, "RSV bits set without an extension that defines them"
		}
	}
	return 0, ""
}

// handleControl reads a control frame's payload and acts on it.
func (c *Conn) handleControl(h header) error {
	p := c.ctrl[:h.length]
	if h.length > 0 {
		if err := c.fill(int(h.length)); err != nil {
			return err
		}
		copy(p, c.rbuf[c.rpos:c.rend])
		c.consume(len(p))
		if h.masked {
			mask(h.key, 0, p)
		}
	}
	switch h.op {
	case opPing:
		if err := c.writeOwnControl(opPong, p, false); err != nil && err != ErrClosed {
			return c.broken(err)
		}
	case opPong:
		// Any frame counts as a sign of life for the keepalive.
	case opClose:
		return c.handleClose(p)
	}
	return nil
}

// handleClose answers the peer's close frame and ends the connection.
func (c *Conn) handleClose(p []byte) error {
	code, reason, err := parseClosePayload(p)
	if err != nil {
		status := StatusProtocolError
		if len(p) >= 2 && StatusCode(int(p[0])<<8|int(p[1])).validOnWire() {
			status = StatusInvalidFramePayloadData
		}
		return c.fail(status, err.Error())
	}
	c.peerClose = CloseError{Code: code, Reason: reason}
	c.readErr = &c.peerClose
	close(c.closeRecv)
	// Echo the status (RFC 6455 section 5.5.1), unless this side
	// started the handshake and the frame is the reply.
	c.writeClose(code, reason)
	if !c.server {
		// The server ends the TCP connection first; wait a little
		// for it so that the TIME_WAIT state stays on its side.
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		stop := c.watch(ctx)
		var tmp [64]byte
		for i := 0; i < 64; i++ {
			if _, err := c.nc.Read(tmp[:]); err != nil {
				break
			}
		}
		stop()
		cancel()
	}
	c.CloseNow()
	return c.readErr
}
