package loadtest

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
)

// wire counts what a set of clients sends and receives at the TCP level,
// and the HTTP requests they make. Safe for concurrent use.
type wire struct {
	read, written atomic.Int64
	requests      atomic.Int64
	dialer        net.Dialer
}

// dial is a DialContext for http.Transport and ws.DialOptions whose
// connections count their bytes into w.
func (w *wire) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := w.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, w: w}, nil
}

// bytes returns the bytes moved so far, both directions.
func (w *wire) bytes() int64 { return w.read.Load() + w.written.Load() }

// RoundTrip counts a request and passes it to the transport in
// countingTransport.
type countingTransport struct {
	w    *wire
	next http.RoundTripper
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.w.requests.Add(1)
	return t.next.RoundTrip(r)
}

// countingConn hides the socket's syscall.Conn on purpose: every read
// goes through Read, so it is counted.
type countingConn struct {
	net.Conn
	w *wire
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.w.read.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.w.written.Add(int64(n))
	return n, err
}
