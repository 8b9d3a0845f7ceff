package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	coder "github.com/coder/websocket"
	gobwas "github.com/gobwas/ws"
	gorilla "github.com/gorilla/websocket"
	"github.com/lxzan/gws"

	"github.com/hotline-rt/hotline/ws"
)

// library adapts one WebSocket library to the benchmarks. Every adapter
// is the server side of a connection and uses the library as its
// documentation suggests for speed: reused buffers, prepared messages
// where the library has them. All messages are binary, so that no
// library pays for a UTF-8 check the others skip.
type library struct {
	name string

	// echo is an HTTP handler that upgrades and sends every message
	// back until the connection ends.
	echo http.HandlerFunc

	// open upgrades on nc (a memConn) and returns a server connection.
	open func(nc net.Conn) (conn, error)

	// broadcast writes one message, prepared once, to every connection,
	// all opened by open on memConns that count their writes in g. It
	// returns when every write is done.
	broadcast func(conns []conn, msg []byte, g *writeGroup) error
}

// conn is a library's server connection.
type conn interface {
	// write writes one binary message.
	write(p []byte) error
	// read reads one message and returns its payload, valid until the
	// next read.
	read() ([]byte, error)
	close() error
}

// memUpgrade runs a library's net/http upgrader on nc.
func memUpgrade(nc net.Conn) (http.ResponseWriter, *http.Request) {
	return &hijacker{nc: nc, header: http.Header{}}, upgradeRequest("/")
}

var libraries = []library{hotline, gorillaLib, coderLib, gwsLib, gobwasLib}

// echoWith is an echo handler over a library's upgrade: read a whole
// message into the connection's buffer, write it back as one frame.
func echoWith(upgrade func(http.ResponseWriter, *http.Request) (conn, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrade(w, r)
		if err != nil {
			return
		}
		defer c.close()
		for {
			p, err := c.read()
			if err != nil {
				return
			}
			if err := c.write(p); err != nil {
				return
			}
		}
	}
}

// openWith opens a connection on a memConn with a library's upgrade.
func openWith(upgrade func(http.ResponseWriter, *http.Request) (conn, error)) func(net.Conn) (conn, error) {
	return func(nc net.Conn) (conn, error) {
		w, r := memUpgrade(nc)
		return upgrade(w, r)
	}
}

// hotline: github.com/hotline-rt/hotline/ws.

var hotline = library{
	name: "hotline",
	echo: echoWith(hotlineUpgrade),
	open: openWith(hotlineUpgrade),
	broadcast: func(conns []conn, msg []byte, _ *writeGroup) error {
		pm := ws.NewPreparedMessage(ws.MessageBinary, msg)
		for _, c := range conns {
			if err := c.(*hotlineConn).c.WritePrepared(context.Background(), pm); err != nil {
				return err
			}
		}
		return nil
	},
}

func hotlineUpgrade(w http.ResponseWriter, r *http.Request) (conn, error) {
	c, err := ws.Upgrade(w, r, nil)
	if err != nil {
		return nil, err
	}
	return &hotlineConn{c: c}, nil
}

type hotlineConn struct {
	c   *ws.Conn
	buf []byte
}

func (c *hotlineConn) write(p []byte) error {
	return c.c.WriteMessage(context.Background(), ws.MessageBinary, p)
}

func (c *hotlineConn) read() ([]byte, error) {
	_, p, err := c.c.ReadMessage(context.Background(), c.buf[:0])
	c.buf = p
	return p, err
}

func (c *hotlineConn) close() error { return c.c.CloseNow() }

// gorilla: github.com/gorilla/websocket, NextReader into a reused buffer
// (ReadMessage allocates every payload), WriteMessage, and
// PreparedMessage for broadcast.

var gorillaUpgrader = gorilla.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096}

var gorillaLib = library{
	name: "gorilla",
	echo: echoWith(gorillaUpgrade),
	open: openWith(gorillaUpgrade),
	broadcast: func(conns []conn, msg []byte, _ *writeGroup) error {
		pm, err := gorilla.NewPreparedMessage(gorilla.BinaryMessage, msg)
		if err != nil {
			return err
		}
		for _, c := range conns {
			if err := c.(*gorillaConn).c.WritePreparedMessage(pm); err != nil {
				return err
			}
		}
		return nil
	},
}

func gorillaUpgrade(w http.ResponseWriter, r *http.Request) (conn, error) {
	c, err := gorillaUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil, err
	}
	return &gorillaConn{c: c}, nil
}

type gorillaConn struct {
	c   *gorilla.Conn
	buf []byte
}

func (c *gorillaConn) write(p []byte) error { return c.c.WriteMessage(gorilla.BinaryMessage, p) }

// read uses NextReader into a reused buffer: ReadMessage allocates the
// payload every time.
func (c *gorillaConn) read() ([]byte, error) {
	_, r, err := c.c.NextReader()
	if err != nil {
		return nil, err
	}
	c.buf, err = readAll(r, c.buf[:0])
	return c.buf, err
}

func (c *gorillaConn) close() error { return c.c.Close() }

// readAll is io.ReadAll into buf.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// coder: github.com/coder/websocket, Reader into a reused buffer (Read
// allocates every payload) and Write: its streaming Writer would send a
// message as two frames. It has no prepared message: broadcast writes the
// message to each connection.

var coderOptions = &coder.AcceptOptions{CompressionMode: coder.CompressionDisabled}

var coderLib = library{
	name: "coder",
	echo: echoWith(coderUpgrade),
	open: openWith(coderUpgrade),
	broadcast: func(conns []conn, msg []byte, _ *writeGroup) error {
		for _, c := range conns {
			if err := c.(*coderConn).c.Write(context.Background(), coder.MessageBinary, msg); err != nil {
				return err
			}
		}
		return nil
	},
}

func coderUpgrade(w http.ResponseWriter, r *http.Request) (conn, error) {
	c, err := coder.Accept(w, r, coderOptions)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(-1)
	return &coderConn{c: c}, nil
}

type coderConn struct {
	c   *coder.Conn
	buf []byte
}

func (c *coderConn) write(p []byte) error {
	return c.c.Write(context.Background(), coder.MessageBinary, p)
}

func (c *coderConn) read() ([]byte, error) {
	_, r, err := c.c.Reader(context.Background())
	if err != nil {
		return nil, err
	}
	c.buf, err = readAll(r, c.buf[:0])
	return c.buf, err
}

func (c *coderConn) close() error { return c.c.CloseNow() }

// gws: github.com/lxzan/gws. Reading is event driven: ReadLoop calls
// OnMessage, which here hands the payload to read through a buffered
// channel (a cost the pull APIs do not have). Broadcast uses
// gws.Broadcaster, which queues the frame on each connection's writer
// goroutine; it returns when every write is done.

var gwsOption = &gws.ServerOption{ReadMaxPayloadSize: 64 << 20}

type gwsEcho struct{ gws.BuiltinEventHandler }

func (gwsEcho) OnMessage(s *gws.Conn, m *gws.Message) {
	_ = s.WriteMessage(m.Opcode, m.Bytes())
	m.Close()
}

var gwsEchoUpgrader = gws.NewUpgrader(gwsEcho{}, gwsOption)

var gwsLib = library{
	name: "gws",
	echo: func(w http.ResponseWriter, r *http.Request) {
		s, err := gwsEchoUpgrader.Upgrade(w, r)
		if err != nil {
			return
		}
		s.ReadLoop()
	},
	open: func(nc net.Conn) (conn, error) {
		h := &gwsReader{
			msgs: make(chan *gws.Message, 64),
			stop: make(chan struct{}),
			done: make(chan struct{}),
		}
		w, r := memUpgrade(nc)
		s, err := gws.NewUpgrader(h, gwsOption).Upgrade(w, r)
		if err != nil {
			return nil, err
		}
		go func() {
			defer close(h.done)
			s.ReadLoop()
		}()
		return &gwsConn{s: s, h: h}, nil
	},
	broadcast: func(conns []conn, msg []byte, g *writeGroup) error {
		g.expect(len(conns))
		b := gws.NewBroadcaster(gws.OpcodeBinary, msg)
		for _, c := range conns {
			if err := b.Broadcast(c.(*gwsConn).s); err != nil {
				return err
			}
		}
		if err := b.Close(); err != nil {
			return err
		}
		g.wait()
		return nil
	},
}

type gwsReader struct {
	gws.BuiltinEventHandler
	msgs chan *gws.Message
	stop chan struct{} // closed by close: OnMessage stops handing over
	done chan struct{} // closed when ReadLoop has returned
}

func (h *gwsReader) OnMessage(_ *gws.Conn, m *gws.Message) {
	select {
	case h.msgs <- m:
	case <-h.stop:
		m.Close()
	}
}

type gwsConn struct {
	s    *gws.Conn
	h    *gwsReader
	last *gws.Message
}

func (c *gwsConn) write(p []byte) error { return c.s.WriteMessage(gws.OpcodeBinary, p) }

func (c *gwsConn) read() ([]byte, error) {
	if c.last != nil {
		c.last.Close()
		c.last = nil
	}
	select {
	case m := <-c.h.msgs:
		c.last = m
		return m.Bytes(), nil
	case <-c.h.done:
		return nil, net.ErrClosed
	}
}

// close ends the connection and waits for ReadLoop to return.
func (c *gwsConn) close() error {
	close(c.h.stop)
	err := c.s.NetConn().Close()
	<-c.h.done
	return err
}

// gobwas: github.com/gobwas/ws, the low-level API as its zero-copy users
// drive it: ReadHeader and an unmask into a reused buffer; header and
// payload written with one Write; for broadcast one frame compiled with
// CompileFrame.

var gobwasLib = library{
	name: "gobwas",
	echo: echoWith(gobwasUpgrade),
	open: openWith(gobwasUpgrade),
	broadcast: func(conns []conn, msg []byte, _ *writeGroup) error {
		frame, err := gobwas.CompileFrame(gobwas.NewBinaryFrame(msg))
		if err != nil {
			return err
		}
		for _, c := range conns {
			if _, err := c.(*gobwasConn).nc.Write(frame); err != nil {
				return err
			}
		}
		return nil
	},
}

func gobwasUpgrade(w http.ResponseWriter, r *http.Request) (conn, error) {
	nc, _, _, err := gobwas.UpgradeHTTP(r, w)
	if err != nil {
		return nil, err
	}
	return newGobwasConn(nc), nil
}

type gobwasConn struct {
	nc  net.Conn
	br  *bufio.Reader
	buf []byte      // payload read
	out fixedWriter // frame written
}

func newGobwasConn(nc net.Conn) *gobwasConn {
	return &gobwasConn{nc: nc, br: bufio.NewReaderSize(nc, 4096)}
}

// readMessage reads a single-frame data message, answering pings and
// returning io.EOF on a close.
func (c *gobwasConn) readMessage() (gobwas.OpCode, []byte, error) {
	for {
		h, err := gobwas.ReadHeader(c.br)
		if err != nil {
			return 0, nil, err
		}
		if !h.Masked {
			return 0, nil, errors.New("gobwas: unmasked client frame")
		}
		if h.Length > 64<<20 {
			return 0, nil, fmt.Errorf("gobwas: frame of %d bytes", h.Length)
		}
		n := int(h.Length)
		if cap(c.buf) < n {
			c.buf = make([]byte, n)
		}
		p := c.buf[:n]
		if _, err := io.ReadFull(c.br, p); err != nil {
			return 0, nil, err
		}
		gobwas.Cipher(p, h.Mask, 0)
		switch {
		case h.OpCode == gobwas.OpClose:
			_ = c.writeMessage(gobwas.OpClose, p)
			return 0, nil, io.EOF
		case h.OpCode == gobwas.OpPing:
			if err := c.writeMessage(gobwas.OpPong, p); err != nil {
				return 0, nil, err
			}
		case h.OpCode.IsData() && h.Fin:
			return h.OpCode, p, nil
		default:
			return 0, nil, fmt.Errorf("gobwas: unexpected frame %v fin=%v", h.OpCode, h.Fin)
		}
	}
}

func (c *gobwasConn) writeMessage(op gobwas.OpCode, p []byte) error {
	c.out.b = c.out.b[:0]
	// WriteHeader into the connection's own buffer, then the payload:
	// one Write per message.
	_ = gobwas.WriteHeader(&c.out, gobwas.Header{Fin: true, OpCode: op, Length: int64(len(p))})
	c.out.b = append(c.out.b, p...)
	_, err := c.nc.Write(c.out.b)
	return err
}

// fixedWriter appends to b; it never fails.
type fixedWriter struct{ b []byte }

func (w *fixedWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (c *gobwasConn) write(p []byte) error { return c.writeMessage(gobwas.OpBinary, p) }

func (c *gobwasConn) read() ([]byte, error) {
	_, p, err := c.readMessage()
	return p, err
}

func (c *gobwasConn) close() error { return c.nc.Close() }
