package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Fake connections for the benchmarks that measure framing alone, and a
// raw client for the echo benchmark, written here so that every library
// is driven by the same code.

// memConn is a net.Conn whose reads replay src over and over (nothing, if
// src is empty: reads then wait until Close) and whose writes are
// discarded, or kept in out when it is set. A write also counts down
// group, when set, for libraries that write from goroutines of their own.
type memConn struct {
	src []byte
	off int

	out   *bytes.Buffer // nil: discard
	group *writeGroup

	closeOnce sync.Once
	closed    chan struct{}
}

func newMemConn(src []byte) *memConn {
	return &memConn{src: src, closed: make(chan struct{})}
}

// writeGroup waits for a number of writes on several memConns.
type writeGroup struct {
	pending atomic.Int64
	done    chan struct{}
}

func newWriteGroup() *writeGroup { return &writeGroup{done: make(chan struct{}, 1)} }

// expect arms g for n writes; wait returns when they are done.
func (g *writeGroup) expect(n int) { g.pending.Store(int64(n)) }
func (g *writeGroup) wait()        { <-g.done }

// wrote counts one write; writes outside expect take pending below zero
// and are ignored.
func (g *writeGroup) wrote() {
	if g.pending.Add(-1) == 0 {
		g.done <- struct{}{}
	}
}

func (c *memConn) Read(p []byte) (int, error) {
	if len(c.src) == 0 {
		<-c.closed
		return 0, net.ErrClosed
	}
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	n := 0
	for n < len(p) {
		m := copy(p[n:], c.src[c.off:])
		n += m
		c.off = (c.off + m) % len(c.src)
	}
	return n, nil
}

func (c *memConn) Write(p []byte) (int, error) {
	if c.out != nil {
		c.out.Write(p)
	}
	if c.group != nil {
		c.group.wrote()
	}
	return len(p), nil
}

func (c *memConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *memConn) LocalAddr() net.Addr                { return memAddr{} }
func (c *memConn) RemoteAddr() net.Addr               { return memAddr{} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "mem" }

// hijacker is the http.ResponseWriter of a handshake on a memConn: the
// libraries' net/http upgraders hijack it and get the memConn.
type hijacker struct {
	nc     net.Conn
	header http.Header
}

func (h *hijacker) Header() http.Header         { return h.header }
func (h *hijacker) Write(p []byte) (int, error) { return h.nc.Write(p) }
func (h *hijacker) WriteHeader(status int) {
	fmt.Fprintf(h.nc, "HTTP/1.1 %d %s\r\n\r\n", status, http.StatusText(status))
}
func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.nc, bufio.NewReadWriter(bufio.NewReader(h.nc), bufio.NewWriter(h.nc)), nil
}

// handshakeKey is the sample key of RFC 6455.
const handshakeKey = "dGhlIHNhbXBsZSBub25jZQ=="

// upgradeRequest is a client's opening handshake for path.
func upgradeRequest(path string) *http.Request {
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + path + " HTTP/1.1\r\n" +
		"Host: bench.example\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + handshakeKey + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n\r\n")))
	if err != nil {
		panic(err) // the request above is well formed
	}
	return r
}

// maskKey masks every client frame; a fixed key keeps runs comparable.
var maskKey = [4]byte{0x12, 0x34, 0x56, 0x78}

// appendClientFrame appends a masked single-frame message.
func appendClientFrame(dst []byte, op byte, payload []byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, maskKey[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	for i := range payload {
		dst[start+i] ^= maskKey[i&3]
	}
	return dst
}

// readServerFrame reads one unmasked frame into buf and returns its opcode
// and payload. Servers answer the benchmark's single-frame messages with
// single frames, so continuation frames are an error here.
func readServerFrame(br *bufio.Reader, buf []byte) (byte, []byte, error) {
	var scratch [8]byte
	return readServerFrameScratch(br, buf, &scratch)
}

// readServerFrameScratch is readServerFrame with the header read into h,
// which the caller keeps so that a read does not allocate.
func readServerFrameScratch(br *bufio.Reader, buf []byte, h *[8]byte) (byte, []byte, error) {
	if _, err := io.ReadFull(br, h[:2]); err != nil {
		return 0, nil, err
	}
	if h[0]&0x80 == 0 || h[0]&0x70 != 0 {
		return 0, nil, fmt.Errorf("bench: unexpected frame header %#x", h[0])
	}
	if h[1]&0x80 != 0 {
		return 0, nil, errors.New("bench: masked server frame")
	}
	op, n := h[0]&0x0f, int(h[1]&0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(br, h[:2]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint16(h[:2]))
	case 127:
		if _, err := io.ReadFull(br, h[:8]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint64(h[:8]))
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(br, buf)
	return op, buf, err
}

// rawClient is the one client of the echo benchmark: a plain TCP
// connection that writes pre-built masked frames and parses the answers.
type rawClient struct {
	nc  net.Conn
	br  *bufio.Reader
	buf []byte
	hdr [8]byte
}

func dialRaw(addr, path string) (*rawClient, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + handshakeKey + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("bench: handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil, fmt.Errorf("bench: handshake: %s", resp.Status)
	}
	return &rawClient{nc: nc, br: br}, nil
}

// roundTrip writes frame, a whole masked message, and reads the answer.
func (c *rawClient) roundTrip(frame []byte) (byte, []byte, error) {
	if _, err := c.nc.Write(frame); err != nil {
		return 0, nil, err
	}
	op, p, err := readServerFrameScratch(c.br, c.buf, &c.hdr)
	c.buf = p
	return op, p, err
}

// close sends a close frame and waits for the server to end the
// connection, so that its goroutine is gone when the benchmark ends.
func (c *rawClient) close() error {
	_, err := c.nc.Write(appendClientFrame(nil, 0x8, []byte{0x03, 0xe8}))
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.Copy(io.Discard, c.br)
	return errors.Join(err, c.nc.Close())
}
