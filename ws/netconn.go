package ws

import (
	"context"
	"io"
	"net"
	"sync"
	"time"
)

// NetConn returns a net.Conn that carries a byte stream over c: each Write
// is sent as one message of type op, and Read returns the payloads of
// incoming messages one after another (of either type). Close closes c
// with status 1000. For code that speaks a stream protocol over
// WebSocket.
func NetConn(c *Conn, op Opcode) net.Conn {
	return &netConn{c: c, op: op}
}

type netConn struct {
	c  *Conn
	op Opcode

	readMu sync.Mutex
	r      io.Reader // the message being read, nil between messages
	eof    bool      // the peer closed normally
}

func (nc *netConn) Read(p []byte) (int, error) {
	nc.readMu.Lock()
	defer nc.readMu.Unlock()
	for {
		if nc.eof {
			return 0, io.EOF
		}
		if nc.r == nil {
			_, r, err := nc.c.NextReader(context.Background())
			if err != nil {
				if s := CloseStatus(err); s == StatusNormalClosure || s == StatusGoingAway {
					nc.eof = true
					return 0, io.EOF
				}
				return 0, err
			}
			nc.r = r
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
	if err := nc.c.WriteMessage(context.Background(), nc.op, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (nc *netConn) Close() error                       { return nc.c.Close(StatusNormalClosure, "") }
func (nc *netConn) LocalAddr() net.Addr                { return nc.c.LocalAddr() }
func (nc *netConn) RemoteAddr() net.Addr               { return nc.c.RemoteAddr() }
func (nc *netConn) SetReadDeadline(t time.Time) error  { return nc.c.SetReadDeadline(t) }
func (nc *netConn) SetWriteDeadline(t time.Time) error { return nc.c.SetWriteDeadline(t) }
func (nc *netConn) SetDeadline(t time.Time) error {
	return nc.c.nc.SetDeadline(t)
}
