package ws

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoHandler upgrades and echoes every message back with its opcode.
func echoHandler(opts *AcceptOptions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	})
}

// echoServer starts an httptest server that echoes every message back.
func echoServer(t testing.TB, opts *AcceptOptions) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(echoHandler(opts))
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
				for _, op := range []MessageType{MessageText, MessageBinary} {
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
			w, err := c.NextWriter(ctx, MessageText)
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
	h := header{fin: b0&bitFin != 0, rsv: b0 & 0x70, op: opcode(b0 & 0xf), masked: true, key: 0x12345678, length: int64(len(payload))}
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

// protocolViolations are frames a server must refuse, with the close
// status it answers: run over HTTP/1.1 here and over an HTTP/2 stream in
// TestH2ProtocolViolations.
func protocolViolations() []protocolViolation {
	long := bytes.Repeat([]byte("a"), 126)
	unmasked := appendHeader(nil, header{fin: true, op: opText, length: 2})
	unmasked = append(unmasked, "hi"...)
	return []protocolViolation{
		{"unmasked client frame", [][]byte{unmasked}, StatusProtocolError},
		{"reserved opcode", [][]byte{clientFrame(bitFin|0x3, nil)}, StatusProtocolError},
		{"reserved control opcode", [][]byte{clientFrame(bitFin|0xb, nil)}, StatusProtocolError},
		{"rsv1 without extension", [][]byte{clientFrame(bitFin|bitRsv1|byte(opText), []byte("x"))}, StatusProtocolError},
		{"rsv3", [][]byte{clientFrame(bitFin|bitRsv3|byte(opBinary), nil)}, StatusProtocolError},
		{"fragmented ping", [][]byte{clientFrame(byte(opPing), nil)}, StatusProtocolError},
		{"long ping", [][]byte{clientFrame(bitFin|byte(opPing), long)}, StatusProtocolError},
		{"continuation first", [][]byte{clientFrame(bitFin|byte(opContinuation), []byte("x"))}, StatusProtocolError},
		{"text inside text", [][]byte{clientFrame(byte(opText), []byte("a")), clientFrame(bitFin|byte(opText), []byte("b"))}, StatusProtocolError},
		{"invalid utf8", [][]byte{clientFrame(bitFin|byte(opText), []byte{0xff})}, StatusInvalidFramePayloadData},
		{"utf8 cut across frames and then invalid", [][]byte{clientFrame(byte(opText), []byte{0xe2, 0x82}), clientFrame(bitFin|byte(opContinuation), []byte{0x41})}, StatusInvalidFramePayloadData},
		{"utf8 ends inside a sequence", [][]byte{clientFrame(bitFin|byte(opText), []byte{0xe2, 0x82})}, StatusInvalidFramePayloadData},
		{"surrogate", [][]byte{clientFrame(bitFin|byte(opText), []byte{0xed, 0xa0, 0x80})}, StatusInvalidFramePayloadData},
		{"close code 1005", [][]byte{clientFrame(bitFin|byte(opClose), []byte{0x03, 0xed})}, StatusProtocolError},
		{"close code 999", [][]byte{clientFrame(bitFin|byte(opClose), []byte{0x03, 0xe7})}, StatusProtocolError},
		{"close payload 1 byte", [][]byte{clientFrame(bitFin|byte(opClose), []byte{0x03})}, StatusProtocolError},
		{"close reason invalid utf8", [][]byte{clientFrame(bitFin|byte(opClose), []byte{0x03, 0xe8, 0xff})}, StatusInvalidFramePayloadData},
		{"too big", [][]byte{clientFrame(bitFin|byte(opBinary), make([]byte, 2000))}, StatusMessageTooBig},
	}
}

type protocolViolation struct {
	name   string
	frames [][]byte
	want   StatusCode
}

func TestProtocolViolations(t *testing.T) {
	for _, tc := range protocolViolations() {
		t.Run(tc.name, func(t *testing.T) {
			srv := echoServer(t, &AcceptOptions{ReadLimit: 1000})
			nc, br := rawClient(t, srv)
			checkViolation(t, tc, nc, br)
		})
	}
}

// checkViolation sends tc's frames on a raw connection (or stream) and
// checks the server's close and the end of the stream after it.
func checkViolation(t *testing.T, tc protocolViolation, nc io.Writer, br *bufio.Reader) {
	t.Helper()
	for _, f := range tc.frames {
		nc.Write(f)
	}
	h, p := readServerFrame(t, br)
	if h.op != opClose {
		t.Fatalf("got %v frame, want close", h.op)
	}
	code, reason, err := parseClosePayload(p)
	if err != nil || code != tc.want {
		t.Fatalf("close %d %q (%v), want %d", code, reason, err, tc.want)
	}
	if reason == "" {
		t.Errorf("close %d without a reason", code)
	}
	// The server then ends the TCP connection (the stream over HTTP/2).
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after close: %v, want EOF", err)
	}
}

func TestPingInsideFragmentedMessage(t *testing.T) {
	srv := echoServer(t, nil)
	nc, br := rawClient(t, srv)
	checkPingInsideFragmented(t, nc, br)
}

func checkPingInsideFragmented(t *testing.T, nc io.Writer, br *bufio.Reader) {
	t.Helper()
	nc.Write(clientFrame(byte(opText), []byte("hel")))
	nc.Write(clientFrame(bitFin|byte(opPing), []byte("p1")))
	nc.Write(clientFrame(byte(opContinuation), []byte("lo ")))
	nc.Write(clientFrame(bitFin|byte(opContinuation), []byte("world")))
	h, p := readServerFrame(t, br)
	if h.op != opPong || string(p) != "p1" {
		t.Fatalf("got %v %q, want pong p1", h.op, p)
	}
	h, p = readServerFrame(t, br)
	if h.op != opText || string(p) != "hello world" {
		t.Fatalf("got %v %q", h.op, p)
	}
	// The close handshake: the server echoes the status, then closes.
	nc.Write(clientFrame(bitFin|byte(opClose), []byte{0x0f, 0xa0, 'b', 'y', 'e'}))
	h, p = readServerFrame(t, br)
	if h.op != opClose || string(p) != "\x0f\xa0bye" {
		t.Fatalf("got %v %q, want the close echoed", h.op, p)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after close: %v, want EOF", err)
	}
}

func TestLargeMessage(t *testing.T) {
	for _, compress := range []bool{false, true} {
		name := "plain"
		var copts *CompressionOptions
		if compress {
			name, copts = "deflate", &CompressionOptions{}
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := echoServer(t, &AcceptOptions{Compression: copts})
			ctx := context.Background()
			c, _, err := Dial(ctx, wsURL(srv), &DialOptions{Compression: copts})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			msg := make([]byte, 16<<20)
			for i := range msg {
				msg[i] = 'a' + byte(i*7%26)
			}
			for _, op := range []MessageType{MessageText, MessageBinary} {
				if err := c.WriteMessage(ctx, op, msg); err != nil {
					t.Fatal(err)
				}
				gop, got, err := c.ReadMessage(ctx, nil)
				if err != nil || gop != op || !bytes.Equal(got, msg) {
					t.Fatalf("%v: got %v, %d bytes, %v", op, gop, len(got), err)
				}
			}
		})
	}
}

func TestReadLimitBoundary(t *testing.T) {
	srv := echoServer(t, &AcceptOptions{ReadLimit: 1000})
	ctx := context.Background()
	c, _, err := Dial(ctx, wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.WriteMessage(ctx, MessageBinary, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.ReadMessage(ctx, nil); err != nil || len(got) != 1000 {
		t.Fatalf("a message at the limit: %d bytes, %v", len(got), err)
	}
	// Over the limit in fragments: each frame is small, the sum is not.
	w, _ := c.NextWriter(ctx, MessageBinary)
	for range 3 {
		w.Write(make([]byte, 400))
		w.(*messageWriter).flush(false)
	}
	w.Close()
	if _, _, err := c.ReadMessage(ctx, nil); CloseStatus(err) != StatusMessageTooBig {
		t.Fatalf("got %v, want 1009", err)
	}
}

func TestNextReaderStale(t *testing.T) {
	srv := echoServer(t, nil)
	ctx := context.Background()
	c, _, err := Dial(ctx, wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.WriteMessage(ctx, MessageText, []byte("first message"))
	c.WriteMessage(ctx, MessageBinary, []byte("second"))
	_, r1, err := c.NextReader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b [5]byte
	if n, err := r1.Read(b[:]); err != nil || string(b[:n]) != "first" {
		t.Fatalf("first read %q, %v", b[:n], err)
	}
	// The next NextReader skips the rest of the first message.
	op, r2, err := c.NextReader(ctx)
	if err != nil || op != MessageBinary {
		t.Fatalf("NextReader: %v %v", op, err)
	}
	if _, err := r1.Read(b[:]); !errors.Is(err, errStaleReader) {
		t.Fatalf("stale read: %v, want errStaleReader", err)
	}
	got, err := io.ReadAll(r2)
	if err != nil || string(got) != "second" {
		t.Fatalf("second: %q, %v", got, err)
	}
	if n, err := r2.Read(b[:]); n != 0 || err != io.EOF {
		t.Fatalf("read after EOF: %d, %v", n, err)
	}
}

// TestConcurrentWriters: many goroutines write at once; each message must
// arrive whole. Every message is filled with one byte and starts with its
// length, so a torn or interleaved message shows.
func TestConcurrentWriters(t *testing.T) {
	for _, compress := range []bool{false, true} {
		var copts *CompressionOptions
		if compress {
			copts = &CompressionOptions{Threshold: 64}
		}
		for _, side := range []string{"client", "server"} {
			name := side
			if compress {
				name += "/deflate"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				testConcurrentWriters(t, side == "server", copts)
			})
		}
	}
}

func testConcurrentWriters(t *testing.T, serverWrites bool, copts *CompressionOptions) {
	const writers, perWriter = 16, 50
	write := func(c *Conn) error {
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for g := range writers {
			wg.Go(func() {
				for i := range perWriter {
					size := 5 + (g*perWriter+i)*97%20000
					msg := bytes.Repeat([]byte{byte('A' + g)}, size)
					binary.BigEndian.PutUint32(msg, uint32(size))
					var err error
					switch i % 3 {
					case 0:
						err = c.WriteMessage(context.Background(), MessageBinary, msg)
					case 1:
						err = c.WritePrepared(context.Background(), NewPreparedMessage(MessageBinary, msg))
					case 2:
						var w io.WriteCloser
						if w, err = c.NextWriter(context.Background(), MessageBinary); err == nil {
							for p := msg; len(p) > 0 && err == nil; {
								n := min(len(p), 1000)
								_, err = w.Write(p[:n])
								p = p[n:]
							}
							if cerr := w.Close(); err == nil {
								err = cerr
							}
						}
					}
					if err == nil && i%10 == 0 {
						err = c.Ping(context.Background(), []byte("p"))
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
	check := func(c *Conn) error {
		seen := map[byte]int{}
		buf := []byte(nil)
		for range writers * perWriter {
			_, msg, err := c.ReadMessage(context.Background(), buf[:0])
			if err != nil {
				return err
			}
			buf = msg
			if len(msg) < 4 || int(binary.BigEndian.Uint32(msg)) != len(msg) {
				return fmt.Errorf("message of %d bytes with a wrong length prefix", len(msg))
			}
			for _, b := range msg[4:] {
				if b != msg[len(msg)-1] {
					return fmt.Errorf("message of %d bytes mixes writers", len(msg))
				}
			}
			seen[msg[len(msg)-1]]++
		}
		for g := range writers {
			if seen[byte('A'+g)] != perWriter {
				return fmt.Errorf("writer %d: %d messages, want %d", g, seen[byte('A'+g)], perWriter)
			}
		}
		return nil
	}
	result := make(chan error, 1)
	srv := serverFunc(t, &AcceptOptions{Compression: copts}, func(c *Conn) {
		if serverWrites {
			go c.ReadMessage(context.Background(), nil) // answers the client's pongs
			result <- write(c)
			c.Close(StatusNormalClosure, "")
		} else {
			result <- check(c)
		}
	})
	c, _, err := Dial(context.Background(), wsURL(srv), &DialOptions{Compression: copts})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	var local error
	if serverWrites {
		local = check(c)
	} else {
		go func() {
			for {
				if _, _, err := c.ReadMessage(context.Background(), nil); err != nil {
					return
				}
			}
		}()
		local = write(c)
	}
	if local != nil {
		t.Fatal(local)
	}
	if err := <-result; err != nil {
		t.Fatal(err)
	}
}

func TestNetConnCopy(t *testing.T) {
	served := make(chan error, 1)
	srv := serverFunc(t, nil, func(c *Conn) {
		nc := NetConn(c, MessageBinary)
		_, err := io.Copy(nc, nc)
		served <- err
	})
	ctx := context.Background()
	c, _, err := Dial(ctx, wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	nc := NetConn(c, MessageBinary)
	if nc.LocalAddr() == nil || nc.RemoteAddr() == nil {
		t.Error("no addresses")
	}
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 31)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := io.Copy(nc, bytes.NewReader(data))
		wrote <- err
	}()
	got := make([]byte, len(data))
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(nc, got); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("data differs")
	}
	if err := nc.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("server io.Copy: %v, want nil at a normal close", err)
	}
	if _, err := nc.Read(got); err == nil {
		t.Error("read after Close succeeded")
	}
}

func TestUTF8CutAfterLeadByte(t *testing.T) {
	// A multi-byte sequence cut right after its first byte, at the end
	// of one read, must be carried into the next.
	var v utf8Validator
	if !v.write([]byte("abc\xe2")) || !v.write([]byte("\x82\xac")) || !v.done() {
		t.Fatal("valid € split after its lead byte was refused")
	}
	if v.write([]byte("\xe2")) && v.write([]byte("A")) {
		t.Fatal("lead byte followed by ASCII accepted")
	}
}

func TestCloseReasonMadeValidUTF8(t *testing.T) {
	p := appendClosePayload(nil, StatusNormalClosure, "bad \xff reason")
	code, reason, err := parseClosePayload(p)
	if err != nil || code != StatusNormalClosure || reason != "bad \uFFFD reason" {
		t.Fatalf("got %d %q %v", code, reason, err)
	}
}
