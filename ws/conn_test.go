package ws

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// echoServer starts an httptest server that echoes every message back.
func echoServer(t testing.TB, opts *AcceptOptions) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, opts)
		if err != nil {
			return
		}
		defer c.CloseNow()
		var buf []byte
		for {
			op, msg, err := c.ReadMessage(context.Background(), buf[:0])
			if err != nil {
				return
			}
			if err := c.WriteMessage(context.Background(), op, msg); err != nil {
				return
			}
			buf = msg
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func wsURL(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") }

func TestSeedHandshake(t *testing.T) {
	srv := echoServer(t, &AcceptOptions{Subprotocols: []string{"chat", "superchat"}, AllowedOrigins: []string{"http://example.com"}})
	nc, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := "GET /chat HTTP/1.1\r\n" +
		"Host: server.example.com\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n" +
		"Sec-WebSocket-Protocol: chat, superchat\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Origin: http://example.com\r\n\r\n"
	want := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\n" +
		"Sec-WebSocket-Protocol: chat\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(nc, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("response:\n%q\nwant:\n%q", got, want)
	}
	// Nothing more follows the response.
	nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _ := nc.Read(got[:1]); n != 0 {
		t.Fatalf("extra bytes after the response")
	}
}

func TestEcho(t *testing.T) {
	for _, compress := range []bool{false, true} {
		name := "plain"
		var copts *CompressionOptions
		if compress {
			name, copts = "deflate", &CompressionOptions{}
		}
		t.Run(name, func(t *testing.T) {
			srv := echoServer(t, &AcceptOptions{Compression: copts})
			ctx := context.Background()
			c, _, err := Dial(ctx, wsURL(srv), &DialOptions{Compression: copts})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if compress && !strings.HasPrefix(c.Extensions(), "permessage-deflate") {
				t.Fatalf("extensions = %q", c.Extensions())
			}
			for _, size := range []int{0, 1, 125, 126, 1000, 65535, 65536, 1 << 20} {
				msg := bytes.Repeat([]byte("hello, world! "), size/14+1)[:size]
				for _, op := range []Opcode{OpText, OpBinary} {
					if err := c.WriteMessage(ctx, op, msg); err != nil {
						t.Fatal(err)
					}
					gop, got, err := c.ReadMessage(ctx, nil)
					if err != nil {
						t.Fatalf("size %d: %v", size, err)
					}
					if gop != op || !bytes.Equal(got, msg) {
						t.Fatalf("size %d: got %v %d bytes", size, gop, len(got))
					}
				}
			}
			// A streamed message, in several frames.
			w, err := c.NextWriter(ctx, OpText)
			if err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			for i := range 3000 {
				line := strings.Repeat("x", i%50) + "\n"
				want.WriteString(line)
				io.WriteString(w, line)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			_, r, err := c.NextReader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("streamed: %v, %d bytes, want %d", err, len(got), want.Len())
			}
			if err := c.Close(StatusNormalClosure, "done"); err != nil {
				t.Fatalf("close: %v", err)
			}
		})
	}
}

// rawClient does the handshake by hand and returns the connection, for
// tests that send frames a well-behaved client would not.
func rawClient(t *testing.T, srv *httptest.Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return nc, br
}

// clientFrame encodes a masked client frame with the given first byte.
func clientFrame(b0 byte, payload []byte) []byte {
	h := header{fin: b0&bitFin != 0, rsv: b0 & 0x70, op: Opcode(b0 & 0xf), masked: true, key: 0x12345678, length: int64(len(payload))}
	out := appendHeader(nil, h)
	p := append([]byte(nil), payload...)
	mask(h.key, 0, p)
	return append(out, p...)
}

// readServerFrame reads one unmasked frame.
func readServerFrame(t *testing.T, br *bufio.Reader) (header, []byte) {
	t.Helper()
	var hb [maxHeaderSize]byte
	if _, err := io.ReadFull(br, hb[:2]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	n := headerLen(hb[1])
	io.ReadFull(br, hb[2:n])
	h, _, err := parseHeader(hb[:n])
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, h.length)
	io.ReadFull(br, p)
	return h, p
}

func TestProtocolViolations(t *testing.T) {
	long := bytes.Repeat([]byte("a"), 126)
	unmasked := appendHeader(nil, header{fin: true, op: OpText, length: 2})
	unmasked = append(unmasked, "hi"...)
	for _, tc := range []struct {
		name   string
		frames [][]byte
		want   StatusCode
	}{
		{"unmasked client frame", [][]byte{unmasked}, StatusProtocolError},
		{"reserved opcode", [][]byte{clientFrame(bitFin|0x3, nil)}, StatusProtocolError},
		{"reserved control opcode", [][]byte{clientFrame(bitFin|0xb, nil)}, StatusProtocolError},
		{"rsv1 without extension", [][]byte{clientFrame(bitFin|bitRsv1|byte(OpText), []byte("x"))}, StatusProtocolError},
		{"rsv3", [][]byte{clientFrame(bitFin|bitRsv3|byte(OpBinary), nil)}, StatusProtocolError},
		{"fragmented ping", [][]byte{clientFrame(byte(OpPing), nil)}, StatusProtocolError},
		{"long ping", [][]byte{clientFrame(bitFin|byte(OpPing), long)}, StatusProtocolError},
		{"continuation first", [][]byte{clientFrame(bitFin|byte(OpContinuation), []byte("x"))}, StatusProtocolError},
		{"text inside text", [][]byte{clientFrame(byte(OpText), []byte("a")), clientFrame(bitFin|byte(OpText), []byte("b"))}, StatusProtocolError},
		{"invalid utf8", [][]byte{clientFrame(bitFin|byte(OpText), []byte{0xff})}, StatusInvalidFramePayloadData},
		{"utf8 cut across frames and then invalid", [][]byte{clientFrame(byte(OpText), []byte{0xe2, 0x82}), clientFrame(bitFin|byte(OpContinuation), []byte{0x41})}, StatusInvalidFramePayloadData},
		{"utf8 ends inside a sequence", [][]byte{clientFrame(bitFin|byte(OpText), []byte{0xe2, 0x82})}, StatusInvalidFramePayloadData},
		{"surrogate", [][]byte{clientFrame(bitFin|byte(OpText), []byte{0xed, 0xa0, 0x80})}, StatusInvalidFramePayloadData},
		{"close code 1005", [][]byte{clientFrame(bitFin|byte(OpClose), []byte{0x03, 0xed})}, StatusProtocolError},
		{"close code 999", [][]byte{clientFrame(bitFin|byte(OpClose), []byte{0x03, 0xe7})}, StatusProtocolError},
		{"close payload 1 byte", [][]byte{clientFrame(bitFin|byte(OpClose), []byte{0x03})}, StatusProtocolError},
		{"close reason invalid utf8", [][]byte{clientFrame(bitFin|byte(OpClose), []byte{0x03, 0xe8, 0xff})}, StatusInvalidFramePayloadData},
		{"too big", [][]byte{clientFrame(bitFin|byte(OpBinary), make([]byte, 2000))}, StatusMessageTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := echoServer(t, &AcceptOptions{ReadLimit: 1000})
			nc, br := rawClient(t, srv)
			for _, f := range tc.frames {
				nc.Write(f)
			}
			h, p := readServerFrame(t, br)
			if h.op != OpClose {
				t.Fatalf("got %v frame, want close", h.op)
			}
			code, reason, err := parseClosePayload(p)
			if err != nil || code != tc.want {
				t.Fatalf("close %d %q (%v), want %d", code, reason, err, tc.want)
			}
			if reason == "" {
				t.Errorf("close %d without a reason", code)
			}
			// The server then ends the TCP connection.
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("after close: %v, want EOF", err)
			}
		})
	}
}

func TestPingInsideFragmentedMessage(t *testing.T) {
	srv := echoServer(t, nil)
	nc, br := rawClient(t, srv)
	nc.Write(clientFrame(byte(OpText), []byte("hel")))
	nc.Write(clientFrame(bitFin|byte(OpPing), []byte("p1")))
	nc.Write(clientFrame(byte(OpContinuation), []byte("lo ")))
	nc.Write(clientFrame(bitFin|byte(OpContinuation), []byte("world")))
	h, p := readServerFrame(t, br)
	if h.op != OpPong || string(p) != "p1" {
		t.Fatalf("got %v %q, want pong p1", h.op, p)
	}
	h, p = readServerFrame(t, br)
	if h.op != OpText || string(p) != "hello world" {
		t.Fatalf("got %v %q", h.op, p)
	}
	// The close handshake: the server echoes the status, then closes.
	nc.Write(clientFrame(bitFin|byte(OpClose), []byte{0x0f, 0xa0, 'b', 'y', 'e'}))
	h, p = readServerFrame(t, br)
	if h.op != OpClose || string(p) != "\x0f\xa0bye" {
		t.Fatalf("got %v %q, want the close echoed", h.op, p)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after close: %v, want EOF", err)
	}
}
