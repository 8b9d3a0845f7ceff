package ws

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzParseHeader: parseHeader never panics, and a header it accepts
// survives a round trip through appendHeader.
func FuzzParseHeader(f *testing.F) {
	for _, seed := range [][]byte{
		{0x81, 0x05}, {0x82, 0xfe, 0x01, 0x00}, {0x02, 0xff, 0, 0, 0, 0, 0, 1, 0, 0},
		{0x89, 0x80, 1, 2, 3, 4}, {0x88}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := parseHeader(b)
		if err != nil {
			return
		}
		if n > len(b) || n > maxHeaderSize {
			t.Fatalf("header size %d of %d bytes", n, len(b))
		}
		h2, n2, err := parseHeader(appendHeader(nil, h))
		if err != nil || h2 != h {
			t.Fatalf("round trip: %+v -> %+v (%v)", h, h2, err)
		}
		if n2 > n {
			t.Fatalf("re-encoded header is longer: %d > %d", n2, n)
		}
	})
}

// FuzzUTF8: the incremental validator agrees with utf8.Valid however the
// text is cut.
func FuzzUTF8(f *testing.F) {
	for _, s := range []string{"hello", "héllo wörld", "✓€𝄞", "\xe2\x82", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\xc0\xafb", "\xef\xbf\xbd"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		want := utf8.Valid(p)
		check := func(pieces ...[]byte) {
			var v utf8Validator
			ok := true
			for _, piece := range pieces {
				if !v.write(piece) {
					ok = false
					break
				}
			}
			if ok {
				ok = v.done()
			}
			if ok != want {
				t.Fatalf("validator says %v, utf8.Valid %v, for %q cut as %q", ok, want, p, pieces)
			}
		}
		check(p)
		for i := 0; i <= len(p); i++ {
			check(p[:i], p[i:])
		}
		for i := 0; i+2 <= len(p) && i < 16; i++ {
			check(p[:i], p[i:i+2], p[i+2:])
		}
	})
}

// FuzzParseExtensions: never panics, and an accepted permessage-deflate
// negotiation survives formatting and parsing again.
func FuzzParseExtensions(f *testing.F) {
	for _, s := range []string{
		"permessage-deflate; client_max_window_bits",
		"permessage-deflate; server_no_context_takeover; client_no_context_takeover, permessage-deflate",
		`permessage-deflate; server_max_window_bits="10"`,
		"x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=9",
		"permessage-deflate; foo=bar", ",,;", `a; b="\"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		exts, err := parseExtensions([]string{s})
		if err != nil {
			return
		}
		for _, takeover := range []bool{false, true} {
			p, ok := negotiateDeflate(exts, takeover)
			if !ok {
				continue
			}
			again, err := parseExtensions([]string{p.String()})
			if err != nil || len(again) != 1 {
				t.Fatalf("response %q does not parse: %v", p.String(), err)
			}
			p2, err := parseDeflateParams(again[0].params, false)
			if err != nil || p2 != p {
				t.Fatalf("response %q parses to %+v, want %+v (%v)", p.String(), p2, p, err)
			}
		}
	})
}

// FuzzHandshake: arbitrary bytes sent to Accept never make it panic, and
// it accepts only what RFC 6455 allows.
func FuzzHandshake(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	f.Add([]byte("GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, req []byte) {
		nc := &replayConn{r: bytes.NewReader(req)}
		c, err := Accept(nc, &AcceptOptions{Subprotocols: []string{"chat"}, AllowedOrigins: []string{"*"}})
		if err != nil {
			if !nc.closed {
				t.Fatal("a refused handshake left the connection open")
			}
			return
		}
		defer c.CloseNow()
		if !bytes.HasPrefix(nc.w.Bytes(), []byte("HTTP/1.1 101 Switching Protocols\r\n")) {
			t.Fatalf("accepted, but answered %q", nc.w.Bytes())
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(req)))
		if err != nil {
			t.Fatalf("accepted a request that does not parse: %q", req)
		}
		if status, reason := checkRequest(r); status != 0 {
			t.Fatalf("accepted a bad handshake (%d %s): %q", status, reason, req)
		}
		if r.Method != "GET" || r.Header.Get("Sec-WebSocket-Version") != "13" || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") && !headerContainsToken(r.Header, "Upgrade", "websocket") {
			t.Fatalf("accepted %q", req)
		}
	})
}

// FuzzReadFrames: arbitrary bytes after the handshake, read as a server
// reads client frames, with and without permessage-deflate, never panic
// and never yield a message over the read limit.
func FuzzReadFrames(f *testing.F) {
	f.Add(clientFrame(bitFin|byte(OpText), []byte("hello")), false)
	f.Add(append(clientFrame(byte(OpText), []byte("hel")), clientFrame(bitFin|byte(OpContinuation), []byte("lo"))...), false)
	f.Add(clientFrame(bitFin|byte(OpPing), []byte("p")), false)
	f.Add(clientFrame(bitFin|byte(OpClose), []byte{0x03, 0xe8, 'o', 'k'}), false)
	f.Add(clientFrame(bitFin|bitRsv1|byte(OpText), []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}), true)
	f.Add(clientFrame(bitFin|bitRsv1|byte(OpBinary), []byte{0x00, 0x00, 0xff, 0xff}), true)
	const limit = 1 << 12
	f.Fuzz(func(t *testing.T, stream []byte, deflate bool) {
		server, client := net.Pipe()
		defer client.Close()
		go func() {
			client.SetDeadline(time.Now().Add(time.Second))
			client.Write(stream)
			client.Close()
		}()
		go io.Copy(io.Discard, client) // whatever the server answers
		server.SetDeadline(time.Now().Add(time.Second))
		c := newConn(server, true, limit)
		if deflate {
			c.deflate = newDeflateState(deflateParams{serverNoContextTakeover: true, clientNoContextTakeover: true}, true, nil)
			c.rsvAllowed = bitRsv1
		}
		defer c.CloseNow()
		var buf []byte
		for range 100 {
			_, msg, err := c.ReadMessage(context.Background(), buf[:0])
			if err != nil {
				return
			}
			if len(msg) > limit {
				t.Fatalf("message of %d bytes past the limit of %d", len(msg), limit)
			}
			buf = msg
		}
	})
}

// replayConn is a net.Conn that reads a fixed input, then EOF, and keeps
// what is written to it.
type replayConn struct {
	net.Conn // nil: only the methods below are used
	r        *bytes.Reader
	w        bytes.Buffer
	closed   bool
}

func (c *replayConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *replayConn) Write(p []byte) (int, error)      { return c.w.Write(p) }
func (c *replayConn) Close() error                     { c.closed = true; return nil }
func (c *replayConn) SetDeadline(time.Time) error      { return nil }
func (c *replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *replayConn) SetWriteDeadline(time.Time) error { return nil }
func (c *replayConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *replayConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
