package ws

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
)

// deflateTail is the end of a sync flush, which permessage-deflate leaves
// off every message (RFC 7692 section 7.2.1).
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// deflateFinal ends the stream after the tail: an empty final stored
// block, so that the reader reports io.EOF instead of an early end.
var deflateFinal = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// windowSize is the LZ77 window of compress/flate, 2^15.
const windowSize = 1 << 15

// deflateState is one connection's permessage-deflate state. Without
// context takeover the compressor and decompressor come from pools for
// one message at a time; with it they stay for the connection's life (and
// cost it about flate's state plus a 32 KiB window each: see the package
// documentation for measurements).
type deflateState struct {
	params        deflateParams
	writeTakeover bool // keep the compressor's window across messages
	readTakeover  bool // keep the decompressor's window across messages
	compress      bool // compress what this side writes at all
	level         int
	minSize       int // messages shorter than this go uncompressed

	// Write side, under msgMu.
	fw   *flate.Writer
	sink sink

	// Read side, under readMu.
	fr   io.ReadCloser
	src  inflateSource
	dict []byte // the last window of output, with readTakeover
	out  int64  // decompressed bytes of the current message
	done bool   // the current message is fully decompressed
}

func newDeflateState(p deflateParams, server bool, opts *CompressionOptions) *deflateState {
	d := &deflateState{params: p, compress: true, level: flate.BestSpeed, minSize: 128}
	if opts != nil {
		if opts.Level != 0 {
			d.level = opts.Level
		}
		if opts.Threshold > 0 {
			d.minSize = opts.Threshold
		}
	}
	ourBits, peerNoCtx, ourNoCtx := p.clientMaxWindowBits, p.serverNoContextTakeover, p.clientNoContextTakeover
	if server {
		ourBits, peerNoCtx, ourNoCtx = p.serverMaxWindowBits, p.clientNoContextTakeover, p.serverNoContextTakeover
	}
	// compress/flate cannot shrink its window; with a smaller one agreed
	// on, this side sends uncompressed messages, which is always allowed.
	d.compress = ourBits <= 0 || ourBits == 15
	d.writeTakeover = !ourNoCtx
	d.readTakeover = !peerNoCtx
	return d
}

// compressWrite reports whether a message of n bytes (-1: unknown, a
// stream) goes out compressed.
func (d *deflateState) compressWrite(n int) bool {
	return d.compress && (n < 0 || n >= d.minSize)
}

// sink collects compressed output.
type sink struct{ b []byte }

func (s *sink) Write(p []byte) (int, error) {
	s.b = append(s.b, p...)
	return len(p), nil
}

// reset empties s for the next message, and lets go of a buffer that a
// large message grew, so that a connection does not keep it while idle.
func (s *sink) reset() {
	s.b = s.b[:0]
	if cap(s.b) > 4*bufSize {
		s.b = nil
	}
}

var (
	flateWriters = [10]sync.Pool{}
	flateReaders sync.Pool
	sinkPool     = sync.Pool{New: func() any { return new(sink) }}
)

func getFlateWriter(level int, w io.Writer) *flate.Writer {
	if level < flate.HuffmanOnly || level > flate.BestCompression {
		level = flate.BestSpeed
	}
	if fw, ok := flateWriters[level+2].Get().(*flate.Writer); ok {
		fw.Reset(w)
		return fw
	}
	fw, _ := flate.NewWriter(w, level) // the level is valid
	return fw
}

func putFlateWriter(level int, fw *flate.Writer) {
	if level < flate.HuffmanOnly || level > flate.BestCompression {
		level = flate.BestSpeed
	}
	flateWriters[level+2].Put(fw)
}

// compressMessage compresses p as one message and returns the payload
// without its tail; the result is valid until the sink is reused. fw is
// the connection's compressor with context takeover; nil means a pooled
// one, reset for this message. The caller holds msgMu if fw is d.fw.
func compressMessage(fw *flate.Writer, level int, s *sink, p []byte) ([]byte, error) {
	s.b = s.b[:0]
	if fw == nil {
		fw = getFlateWriter(level, s)
		defer putFlateWriter(level, fw)
	}
	if _, err := fw.Write(p); err != nil {
		return nil, err
	}
	if err := fw.Flush(); err != nil {
		return nil, err
	}
	return trimTail(s.b)
}

func trimTail(b []byte) ([]byte, error) {
	if len(b) < 4 || string(b[len(b)-4:]) != string(deflateTail) {
		return nil, errors.New("ws: compressor output lacks the sync flush tail")
	}
	return b[:len(b)-4], nil
}

// writeCompressed sends p compressed, as one frame with RSV1 set.
func (c *Conn) writeCompressed(op opcode, p []byte) error {
	d := c.deflate
	if d.writeTakeover {
		if d.fw == nil {
			d.fw, _ = flate.NewWriter(&d.sink, d.level)
		}
		out, err := compressMessage(d.fw, d.level, &d.sink, p)
		if err == nil {
			err = c.writeFrame(true, op, bitRsv1, out)
		}
		d.sink.reset()
		return err
	}
	s := sinkPool.Get().(*sink)
	defer sinkPool.Put(s)
	out, err := compressMessage(nil, d.level, s, p)
	if err != nil {
		return err
	}
	return c.writeFrame(true, op, bitRsv1, out)
}

// rsv is the RSV bits of the writer's next frame: RSV1 on the first frame
// of a compressed message only.
func (w *messageWriter) rsv() byte {
	if w.compress && w.op != opContinuation {
		return bitRsv1
	}
	return 0
}

// deflateWrite compresses p into the message writer; compressed output
// goes out in frames as it accumulates.
func (c *Conn) deflateWrite(w *messageWriter, p []byte) (int, error) {
	d := c.deflate
	if d.fw == nil {
		d.fw = getFlateWriter(d.level, &d.sink)
	}
	if _, err := d.fw.Write(p); err != nil {
		return 0, err
	}
	for len(d.sink.b) > bufSize+len(deflateTail) {
		// Keep the last bytes back: they may turn out to be the tail.
		n := copy(w.buf[:], d.sink.b[:bufSize])
		w.n = n
		d.sink.b = d.sink.b[:copy(d.sink.b, d.sink.b[n:])]
		if err := w.flush(false); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// deflateClose flushes the compressor and sends the final frame.
func (c *Conn) deflateClose(w *messageWriter) error {
	d := c.deflate
	if d.fw == nil {
		d.fw = getFlateWriter(d.level, &d.sink)
	}
	defer func() {
		d.sink.reset()
		if !d.writeTakeover {
			putFlateWriter(d.level, d.fw)
			d.fw = nil
		}
	}()
	if w.err != nil {
		return w.err
	}
	if err := d.fw.Flush(); err != nil {
		return err
	}
	out, err := trimTail(d.sink.b)
	if err != nil {
		return err
	}
	for {
		n := copy(w.buf[:], out)
		w.n = n
		out = out[n:]
		if err := w.flush(len(out) == 0); err != nil || len(out) == 0 {
			return err
		}
	}
}

// inflateSource feeds the decompressor the payload of the current
// compressed message, frame after frame, and then the tail that the
// sender left off. It is an io.ByteReader, so flate reads it without a
// bufio.Reader of its own.
type inflateSource struct {
	c    *Conn
	tail []byte
	one  [1]byte // ReadByte's slow path reads here: a local would escape
}

func (s *inflateSource) Read(p []byte) (int, error) {
	c := s.c
	for c.remain == 0 {
		if !c.frame.fin {
			if _, err := c.nextDataFrame(); err != nil {
				return 0, err
			}
			continue
		}
		if len(s.tail) == 0 {
			return 0, io.EOF
		}
		n := copy(p, s.tail)
		s.tail = s.tail[n:]
		return n, nil
	}
	return c.readPayload(p)
}

func (s *inflateSource) ReadByte() (byte, error) {
	c := s.c
	if c.remain > 0 && c.rpos < c.rend {
		b := c.rbuf[c.rpos]
		if c.frame.masked {
			b ^= byte(c.frame.key >> (8 * (c.maskPos & 3)))
			c.maskPos++
		}
		c.remain--
		c.consume(1)
		return b, nil
	}
	for {
		n, err := s.Read(s.one[:])
		if n == 1 {
			return s.one[0], nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// inflateStart prepares the decompressor for a new compressed message.
func (c *Conn) inflateStart() {
	d := c.deflate
	d.src.c = c
	d.out, d.done = 0, false
	if d.readTakeover {
		d.src.tail = deflateTail
	} else {
		d.src.tail = deflateFinal
	}
	var dict []byte
	if d.readTakeover {
		dict = d.dict
	}
	if d.fr == nil {
		if r, ok := flateReaders.Get().(io.ReadCloser); ok {
			d.fr = r
			d.fr.(flate.Resetter).Reset(&d.src, dict)
		} else {
			d.fr = flate.NewReader(&d.src)
			if dict != nil {
				d.fr.(flate.Resetter).Reset(&d.src, dict)
			}
		}
	} else {
		d.fr.(flate.Resetter).Reset(&d.src, dict)
	}
}

// inflateRead decompresses into p. It reports done when the message has
// been decompressed to its end.
func (c *Conn) inflateRead(p []byte) (n int, done bool, err error) {
	d := c.deflate
	if d.done {
		return 0, true, nil
	}
	n, err = d.fr.Read(p)
	if err == io.ErrUnexpectedEOF && d.readTakeover && c.remain == 0 && c.frame.fin && len(d.src.tail) == 0 {
		// With context takeover the stream goes on in the next
		// message: its end here is the message's end.
		err = io.EOF
	}
	if n > 0 {
		d.out += int64(n)
		if limit := c.readLimit.Load(); d.out > limit {
			return 0, false, c.fail(StatusMessageTooBig, fmt.Sprintf("message larger than the limit of %d bytes once decompressed", limit))
		}
		if c.msgOp == opText && !c.utf8.write(p[:n]) {
			return 0, false, c.fail(StatusInvalidFramePayloadData, "invalid UTF-8 in text message")
		}
		if d.readTakeover {
			d.keepWindow(p[:n])
		}
	}
	switch {
	case err == io.EOF:
		// A block with BFINAL set ends the stream before the payload
		// ends: RFC 7692 section 7.2.3.3 leaves a 0x00 byte after it.
		// What follows is not part of the stream; skip it, or it would
		// be read as the next frame.
		if err := c.skipPayload(); err != nil {
			return n, false, err
		}
		d.done = true
		return n, true, nil
	case err != nil:
		if c.readErr != nil {
			return n, false, c.readErr
		}
		code := StatusProtocolError
		if c.msgOp == opText {
			code = StatusInvalidFramePayloadData
		}
		return n, false, c.fail(code, "invalid compressed data: "+err.Error())
	}
	return n, false, nil
}

// skipPayload discards the rest of the current message's payload, to the
// end of its last frame.
func (c *Conn) skipPayload() error {
	if c.remain == 0 && c.frame.fin {
		return nil // the usual case: nothing after the stream
	}
	var tmp [128]byte // escapes: only here, off the usual path
	for {
		for c.remain > 0 {
			if _, err := c.readPayload(tmp[:]); err != nil {
				return err
			}
		}
		if c.frame.fin {
			return nil
		}
		if _, err := c.nextDataFrame(); err != nil {
			return err
		}
	}
}

// keepWindow remembers the last window of output for the next message.
func (d *deflateState) keepWindow(p []byte) {
	if len(p) >= windowSize {
		d.dict = append(d.dict[:0], p[len(p)-windowSize:]...)
		return
	}
	if over := len(d.dict) + len(p) - windowSize; over > 0 {
		d.dict = d.dict[:copy(d.dict, d.dict[over:])]
	}
	d.dict = append(d.dict, p...)
}

// inflateAll appends the whole decompressed message to buf.
func (c *Conn) inflateAll(buf []byte) ([]byte, error) {
	for {
		buf = grow(buf, bufSize)
		n, done, err := c.inflateRead(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil || done {
			return buf, err
		}
	}
}

// inflateEnd releases the decompressor at the end of a message, unless
// context takeover keeps it for the next one.
func (c *Conn) inflateEnd() error {
	d := c.deflate
	if !d.done {
		// The frames ended but the deflate stream did not.
		code := StatusProtocolError
		if c.msgOp == opText {
			code = StatusInvalidFramePayloadData
		}
		return c.fail(code, "compressed message ends inside the deflate stream")
	}
	if !d.readTakeover {
		flateReaders.Put(d.fr)
		d.fr = nil
	}
	return nil
}
