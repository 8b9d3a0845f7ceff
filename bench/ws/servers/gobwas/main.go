// Command gobwas is the benchmark server for github.com/gobwas/ws, in its
// low-level, zero-copy style: a plain net.Listener, the handshake read by
// ws.Upgrader straight from the connection (OnRequest picks the path), a
// goroutine per connection reading frames with ws.ReadHeader from a 4 KiB
// bufio.Reader and unmasking with ws.Cipher into a reused buffer.
//
//	/echo       each message written back as one frame (header and payload in one Write).
//	/broadcast  every message is compiled once with ws.CompileFrame and queued on every
//	            connection of the hub, whose writer goroutine writes the frame.
//
// Messages are single frames (the load generator never fragments); a
// fragmented one closes the connection. Configured: the read limit.
// Compression: not offered (gobwas has it as the separate wsflate
// package, which this server does not wire).
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/gobwas/ws"

	"github.com/hotline-rt/hotline/bench/ws/internal/wsserve"
)

func main() {
	cfg := wsserve.Flags()
	ln := wsserve.Listen(cfg)
	hub := wsserve.NewHub[[]byte](cfg.Queue)
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go serve(nc, cfg.ReadLimit, hub)
	}
}

func serve(nc net.Conn, limit int64, hub *wsserve.Hub[[]byte]) {
	defer nc.Close()
	var path string
	u := ws.Upgrader{OnRequest: func(uri []byte) error {
		path = string(uri)
		if path != "/echo" && path != "/broadcast" {
			return ws.RejectConnectionError(ws.RejectionStatus(404))
		}
		return nil
	}}
	if _, err := u.Upgrade(nc); err != nil {
		return
	}
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, 4096), limit: limit}
	if path == "/echo" {
		for {
			op, p, err := c.read()
			if err != nil {
				return
			}
			if err := c.write(op, p); err != nil {
				return
			}
		}
	}
	cl := hub.Join()
	defer hub.Leave(cl)
	go func() {
		for frame := range cl.C {
			c.mu.Lock()
			_, err := nc.Write(frame)
			c.mu.Unlock()
			if err != nil {
				nc.Close()
			}
		}
		nc.Close()
	}()
	for {
		op, p, err := c.read()
		if err != nil {
			return
		}
		frame, err := ws.CompileFrame(ws.NewFrame(op, true, p))
		if err != nil {
			return
		}
		hub.Send(frame)
	}
}

type conn struct {
	nc    net.Conn
	br    *bufio.Reader
	limit int64
	buf   []byte // payload read, reused

	mu  sync.Mutex // one writer at a time: the echo or pong and the hub's writer
	out []byte     // frame written, reused
}

// read returns the next data message, answering pings and echoing a close.
func (c *conn) read() (ws.OpCode, []byte, error) {
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return 0, nil, err
		}
		if !h.Masked || h.Length > c.limit || !h.Fin {
			return 0, nil, fmt.Errorf("refused frame: masked %v, length %d, fin %v", h.Masked, h.Length, h.Fin)
		}
		n := int(h.Length)
		if cap(c.buf) < n {
			c.buf = make([]byte, n)
		}
		p := c.buf[:n]
		if _, err := io.ReadFull(c.br, p); err != nil {
			return 0, nil, err
		}
		ws.Cipher(p, h.Mask, 0)
		switch h.OpCode {
		case ws.OpText, ws.OpBinary:
			return h.OpCode, p, nil
		case ws.OpPing:
			if err := c.write(ws.OpPong, p); err != nil {
				return 0, nil, err
			}
		case ws.OpClose:
			_ = c.write(ws.OpClose, p)
			return 0, nil, io.EOF
		}
	}
}

// write sends one frame with one Write.
func (c *conn) write(op ws.OpCode, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := appender{c.out[:0]}
	_ = ws.WriteHeader(&w, ws.Header{Fin: true, OpCode: op, Length: int64(len(p))})
	c.out = append(w.b, p...)
	_, err := c.nc.Write(c.out)
	return err
}

type appender struct{ b []byte }

func (a *appender) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}
