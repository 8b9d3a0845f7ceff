package ws

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"encoding/base64"
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
		// A header whose length used the shortest encoding comes back
		// byte for byte.
		l7 := b[1] & 0x7f
		if l7 < 126 || l7 == 126 && h.length > 125 || l7 == 127 && h.length > 0xffff {
			if out := appendHeader(nil, h); !bytes.Equal(out, b[:n]) {
				t.Fatalf("re-encoded %x, input %x", out, b[:n])
			}
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
		if len(p) > 64 {
			// Every cut into three is quadratic: take a few.
			n := len(p)
			for _, ij := range [][2]int{{1, n - 1}, {n / 3, 2 * n / 3}, {n/2 - 1, n/2 + 1}, {n - 3, n - 1}} {
				check(p[:ij[0]], p[ij[0]:ij[1]], p[ij[1]:])
			}
			return
		}
		for i := 0; i <= len(p); i++ {
			for j := i; j <= len(p); j++ {
				check(p[:i], p[i:j], p[j:])
			}
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
		server, client := net.Pipe()
		defer client.Close()
		deadline := time.Now().Add(2 * time.Second)
		server.SetDeadline(deadline)
		client.SetDeadline(deadline)
		var out bytes.Buffer
		wrote, read := make(chan struct{}), make(chan error, 1)
		go func() {
			defer close(wrote)
			client.Write(req)
			// The whole request is in: a read for more must end now,
			// as at the end of a stream.
			server.SetReadDeadline(time.Now())
		}()
		go func() {
			_, err := io.Copy(&out, client)
			read <- err
		}()
		c, err := AcceptConn(server, &AcceptOptions{
			Subprotocols:   []string{"chat"},
			AllowedOrigins: []string{"*"},
			Compression:    &CompressionOptions{},
		})
		if c != nil {
			c.CloseNow()
		}
		// Accept closes server when it refuses, so both goroutines end.
		copyErr := <-read
		client.Close()
		<-wrote
		if err != nil {
			if copyErr != nil {
				t.Fatalf("a refused handshake left the connection open: %v", copyErr)
			}
			return
		}
		if !bytes.HasPrefix(out.Bytes(), []byte("HTTP/1.1 101 Switching Protocols\r\n")) {
			t.Fatalf("accepted, but answered %q", out.Bytes())
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(req)))
		if err != nil {
			t.Fatalf("accepted a request that does not parse: %q", req)
		}
		if !validHandshake(r) {
			t.Fatalf("accepted an invalid handshake: %q", req)
		}
		resp, err := http.ReadResponse(bufio.NewReader(&out), r)
		if err != nil || resp.Header.Get("Sec-WebSocket-Accept") != AcceptKey(r.Header.Get("Sec-WebSocket-Key")) {
			t.Fatalf("response does not parse or has the wrong accept value: %v", err)
		}
		if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "" && p != "chat" {
			t.Fatalf("chose subprotocol %q", p)
		}
		if e := resp.Header.Values("Sec-WebSocket-Extensions"); len(e) > 0 {
			exts, err := parseExtensions(e)
			if err != nil || len(exts) != 1 || exts[0].name != deflateName {
				t.Fatalf("answered extensions %q (%v)", e, err)
			}
			if _, err := parseDeflateParams(exts[0].params, false); err != nil {
				t.Fatalf("answered extensions %q: %v", e, err)
			}
		}
	})
}

// validHandshake is a second reading of RFC 6455 section 4.2.1, written
// apart from checkRequest, for FuzzHandshake to compare against.
func validHandshake(r *http.Request) bool {
	hasToken := func(name, tok string) bool {
		for _, v := range r.Header[name] {
			for _, e := range strings.Split(v, ",") {
				if strings.EqualFold(strings.Trim(e, " \t"), tok) {
					return true
				}
			}
		}
		return false
	}
	key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-WebSocket-Key"))
	return r.Method == "GET" && (r.ProtoMajor > 1 || r.ProtoMajor == 1 && r.ProtoMinor >= 1) &&
		hasToken("Upgrade", "websocket") && hasToken("Connection", "upgrade") &&
		r.Header.Get("Sec-WebSocket-Version") == "13" && err == nil && len(key) == 16 &&
		len(r.Header["Sec-Websocket-Key"]) == 1
}

// FuzzReadFrames: arbitrary bytes after the handshake, read as a server
// reads client frames, with and without permessage-deflate, never panic
// and never yield a message over the read limit.
func FuzzReadFrames(f *testing.F) {
	f.Add(clientFrame(bitFin|byte(opText), []byte("hello")), false)
	f.Add(append(clientFrame(byte(opText), []byte("hel")), clientFrame(bitFin|byte(opContinuation), []byte("lo"))...), false)
	f.Add(clientFrame(bitFin|byte(opPing), []byte("p")), false)
	f.Add(clientFrame(bitFin|byte(opClose), []byte{0x03, 0xe8, 'o', 'k'}), false)
	f.Add(clientFrame(bitFin|bitRsv1|byte(opText), []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}), true)
	f.Add(clientFrame(bitFin|bitRsv1|byte(opBinary), []byte{0x00, 0x00, 0xff, 0xff}), true)
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

// FuzzReadMessages drives the read path in the modes FuzzReadFrames
// leaves out: the client side (unmasked frames), decompression with
// context takeover (a window kept from message to message), and
// NextReader streaming. It checks that no message passes the read limit,
// that ReadMessage's buffer stays near it, and that what the connection
// writes back (pongs, close frames) is well formed.
func FuzzReadMessages(f *testing.F) {
	z := func(p string) []byte {
		var b bytes.Buffer
		fw, _ := flate.NewWriter(&b, flate.BestSpeed)
		fw.Write([]byte(p))
		fw.Flush()
		return bytes.TrimSuffix(b.Bytes(), deflateTail)
	}
	server := func(b0 byte, p []byte) []byte {
		return append(appendHeader(nil, header{fin: b0&bitFin != 0, rsv: b0 & 0x70, op: opcode(b0 & 0xf), length: int64(len(p))}), p...)
	}
	// Two messages from one compressor with takeover: the second refers
	// back into the first.
	var takeover bytes.Buffer
	fw, _ := flate.NewWriter(&takeover, flate.BestSpeed)
	fw.Write([]byte("hello takeover hello takeover"))
	fw.Flush()
	first := bytes.TrimSuffix(bytes.Clone(takeover.Bytes()), deflateTail)
	takeover.Reset()
	fw.Write([]byte("hello takeover again"))
	fw.Flush()
	second := bytes.TrimSuffix(takeover.Bytes(), deflateTail)
	f.Add(append(clientFrame(bitFin|bitRsv1|byte(opText), first), clientFrame(bitFin|bitRsv1|byte(opText), second)...), false, true, false)
	f.Add(append(clientFrame(bitFin|bitRsv1|byte(opText), first), clientFrame(bitFin|bitRsv1|byte(opText), second)...), false, true, true)
	f.Add(append(server(bitFin|bitRsv1|byte(opText), first), server(bitFin|bitRsv1|byte(opText), second)...), true, true, false)
	f.Add(server(bitFin|byte(opText), []byte("plain")), true, false, true)
	f.Add(append(server(bitRsv1|byte(opBinary), z(strings.Repeat("ab", 3000))[:5]), server(bitFin|byte(opContinuation), z(strings.Repeat("ab", 3000))[5:])...), true, false, true)
	f.Add(server(bitFin|byte(opClose), []byte{0x03, 0xe9}), true, false, false)
	f.Add(clientFrame(bitFin|bitRsv1|byte(opBinary), z(strings.Repeat("\x00", 1<<16))), false, true, true)
	const limit = 1 << 12
	f.Fuzz(func(t *testing.T, stream []byte, client, takeover, streaming bool) {
		nc := &replayConn{r: bytes.NewReader(stream)}
		c := newConn(nc, !client, limit)
		p := deflateParams{serverNoContextTakeover: !takeover, clientNoContextTakeover: !takeover}
		c.deflate = newDeflateState(p, !client, nil)
		c.rsvAllowed = bitRsv1
		defer c.CloseNow()
		var buf []byte
		var tmp [512]byte
		for range 100 {
			if !streaming {
				_, msg, err := c.ReadMessage(context.Background(), buf[:0])
				if len(msg) > limit {
					t.Fatalf("message of %d bytes past the limit of %d", len(msg), limit)
				}
				if cap(msg) > 4*limit+bufSize {
					t.Fatalf("buffer grew to %d bytes for a limit of %d", cap(msg), limit)
				}
				if err != nil {
					break
				}
				buf = msg
				continue
			}
			_, r, err := c.NextReader(context.Background())
			if err != nil {
				break
			}
			total := 0
			for {
				n, err := r.Read(tmp[:])
				total += n
				if total > limit {
					t.Fatalf("streamed %d bytes past the limit of %d", total, limit)
				}
				if err != nil {
					break
				}
			}
		}
		// What the connection wrote must parse as frames, masked as its
		// side masks them.
		out := nc.w.Bytes()
		for len(out) > 0 {
			h, n, err := parseHeader(out)
			if err != nil || h.masked != client || int64(len(out)-n) < h.length {
				t.Fatalf("wrote a bad frame %x (%v)", out, err)
			}
			out = out[n+int(h.length):]
		}
	})
}
