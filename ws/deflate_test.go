package ws

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
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

func TestNegotiateDeflate(t *testing.T) {
	const noCtx = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	for _, tc := range []struct {
		name     string
		headers  []string
		takeover bool
		want     string // the response element; "" means declined
	}{
		{"plain offer, no takeover", []string{"permessage-deflate"}, false, noCtx},
		{"plain offer, takeover", []string{"permessage-deflate"}, true, "permessage-deflate"},
		{"chromium", []string{"permessage-deflate; client_max_window_bits"}, true, "permessage-deflate"},
		{"client bits with value echoed", []string{"permessage-deflate; client_max_window_bits=10"}, true, "permessage-deflate; client_max_window_bits=10"},
		{"server bits below 15 accepted", []string{"permessage-deflate; server_max_window_bits=10"}, true, "permessage-deflate; server_max_window_bits=10"},
		{"server bits 15", []string{"permessage-deflate; server_max_window_bits=15"}, true, "permessage-deflate; server_max_window_bits=15"},
		{"client asks no server context", []string{"permessage-deflate; server_no_context_takeover"}, true, "permessage-deflate; server_no_context_takeover"},
		{"client drops its own context", []string{"permessage-deflate; client_no_context_takeover"}, true, "permessage-deflate; client_no_context_takeover"},
		{"quoted value", []string{`permessage-deflate; client_max_window_bits="10"`}, true, "permessage-deflate; client_max_window_bits=10"},
		{"case and spaces", []string{"Permessage-Deflate ;  Server_No_Context_Takeover"}, true, "permessage-deflate; server_no_context_takeover"},
		{"several offers, first good", []string{"permessage-deflate; client_max_window_bits=12, permessage-deflate"}, true, "permessage-deflate; client_max_window_bits=12"},
		{"several offers, first unknown param", []string{"permessage-deflate; foo, permessage-deflate; client_no_context_takeover"}, true, "permessage-deflate; client_no_context_takeover"},
		{"across headers", []string{"x-webkit-deflate-frame", "permessage-deflate; server_max_window_bits=9"}, true, "permessage-deflate; server_max_window_bits=9"},
		{"across headers, first bad", []string{"permessage-deflate; server_max_window_bits=16", "permessage-deflate"}, false, noCtx},
		{"empty list elements", []string{", , permessage-deflate ,"}, true, "permessage-deflate"},
		{"unknown param", []string{"permessage-deflate; foo"}, true, ""},
		{"unknown param with value", []string{"permessage-deflate; foo=bar"}, true, ""},
		{"window bits 16", []string{"permessage-deflate; server_max_window_bits=16"}, true, ""},
		{"window bits 7", []string{"permessage-deflate; client_max_window_bits=7"}, true, ""},
		{"window bits leading zero", []string{"permessage-deflate; server_max_window_bits=09"}, true, ""},
		{"window bits with a sign", []string{"permessage-deflate; server_max_window_bits=+10"}, true, ""},
		{"client window bits with a sign", []string{`permessage-deflate; client_max_window_bits="+9"`}, true, ""},
		{"window bits not a number", []string{"permessage-deflate; server_max_window_bits=x"}, true, ""},
		{"window bits empty quoted", []string{`permessage-deflate; server_max_window_bits=""`}, true, ""},
		{"server bits without value", []string{"permessage-deflate; server_max_window_bits"}, true, ""},
		{"no_context_takeover with value", []string{"permessage-deflate; server_no_context_takeover=1"}, true, ""},
		{"parameter twice", []string{"permessage-deflate; client_no_context_takeover; client_no_context_takeover"}, true, ""},
		{"other extension only", []string{"x-webkit-deflate-frame"}, true, ""},
		{"malformed list", []string{"permessage-deflate;; x"}, true, ""},
		{"unterminated quote", []string{`permessage-deflate; client_max_window_bits="10`}, true, ""},
		{"none", nil, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if exts, err := parseExtensions(tc.headers); err == nil {
				if p, ok := negotiateDeflate(exts, tc.takeover); ok {
					got = p.String()
				}
			}
			if got != tc.want {
				t.Fatalf("response %q, want %q", got, tc.want)
			}
			if got == "" {
				return
			}
			// The response must parse back as a valid response, and
			// never claim client_max_window_bits unless offered with a
			// value.
			exts, err := parseExtensions([]string{got})
			if err != nil || len(exts) != 1 {
				t.Fatalf("response does not parse: %v", err)
			}
			if _, err := parseDeflateParams(exts[0].params, false); err != nil {
				t.Fatalf("response is not valid: %v", err)
			}
			if strings.Contains(got, "client_max_window_bits") && !strings.Contains(strings.Join(tc.headers, ","), "client_max_window_bits=") {
				t.Fatalf("response claims client_max_window_bits the client did not offer")
			}
		})
	}
}

// TestDeflateHandshake runs the negotiation end to end with Dial.
func TestDeflateHandshake(t *testing.T) {
	for _, tc := range []struct {
		name           string
		server, client *CompressionOptions
		want           string
	}{
		{"both without takeover", &CompressionOptions{}, &CompressionOptions{}, "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		{"both with takeover", &CompressionOptions{ContextTakeover: true}, &CompressionOptions{ContextTakeover: true}, "permessage-deflate"},
		{"server refuses takeover", &CompressionOptions{}, &CompressionOptions{ContextTakeover: true}, "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		{"client refuses takeover", &CompressionOptions{ContextTakeover: true}, &CompressionOptions{}, "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		{"server off", nil, &CompressionOptions{}, ""},
		{"client off", &CompressionOptions{}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := echoServer(t, &AcceptOptions{Compression: tc.server})
			c, _, err := Dial(context.Background(), wsURL(srv), &DialOptions{Compression: tc.client})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if c.Extensions() != tc.want {
				t.Fatalf("Extensions() = %q, want %q", c.Extensions(), tc.want)
			}
		})
	}
}

// chatLine is a JSON-like chat message, similar from one call to the next.
func chatLine(i int) []byte {
	return fmt.Appendf(nil, `{"type":"message","channel":"general","user":{"id":%d,"name":"user-%d"},"text":"hello everyone, this is message number %d of the test","ts":%d}`,
		i%7, i%7, i, 1700000000+i)
}

func TestDeflateContextTakeover(t *testing.T) {
	for _, tc := range []struct {
		name           string
		server, client *CompressionOptions
	}{
		{"takeover both ways", &CompressionOptions{ContextTakeover: true}, &CompressionOptions{ContextTakeover: true}},
		{"no takeover", &CompressionOptions{}, &CompressionOptions{}},
		{"level 9, no threshold", &CompressionOptions{ContextTakeover: true, Level: 9, Threshold: 1}, &CompressionOptions{ContextTakeover: true, Level: 9, Threshold: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := echoServer(t, &AcceptOptions{Compression: tc.server})
			ctx := context.Background()
			c, _, err := Dial(ctx, wsURL(srv), &DialOptions{Compression: tc.client})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			big := bytes.Repeat([]byte("0123456789abcdef"), 5000) // past the 32 KiB window
			for i := range 200 {
				msg := chatLine(i)
				switch i % 50 {
				case 10:
					msg = big
				case 20:
					msg = []byte("short")
				}
				if err := c.WriteMessage(ctx, MessageText, msg); err != nil {
					t.Fatal(err)
				}
				_, got, err := c.ReadMessage(ctx, nil)
				if err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("message %d: %d bytes, %v", i, len(got), err)
				}
			}
			// Streamed messages keep the context too.
			for i := range 5 {
				w, _ := c.NextWriter(ctx, MessageText)
				w.Write(chatLine(i))
				w.Write(chatLine(i + 1))
				w.Close()
				_, got, err := c.ReadMessage(ctx, nil)
				if want := append(chatLine(i), chatLine(i+1)...); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("streamed %d: %q, %v", i, got, err)
				}
			}
		})
	}
}

// recordConn is a net.Conn that keeps what is written to it and reads
// nothing (Read blocks until Close): for looking at a writer's frames.
type recordConn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	closed chan struct{}
	once   sync.Once
}

func newRecordConn() *recordConn { return &recordConn{closed: make(chan struct{})} }

func (r *recordConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

func (r *recordConn) take() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := bytes.Clone(r.buf.Bytes())
	r.buf.Reset()
	return b
}

func (r *recordConn) Read([]byte) (int, error) { <-r.closed; return 0, net.ErrClosed }
func (r *recordConn) Close() error {
	r.once.Do(func() { close(r.closed) })
	return nil
}
func (r *recordConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (r *recordConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (r *recordConn) SetDeadline(time.Time) error        { return nil }
func (r *recordConn) SetReadDeadline(time.Time) error    { return nil }
func (r *recordConn) SetWriteDeadline(time.Time) error   { return nil }
func (r *recordConn) String() string                     { return "recordConn" }
func (r *recordConn) frames(t *testing.T) []frameOnWire  { return splitFrames(t, r.take()) }
func (r *recordConn) lastFrame(t *testing.T) frameOnWire { f := r.frames(t); return f[len(f)-1] }

type frameOnWire struct {
	h       header
	payload []byte // unmasked
}

func splitFrames(t *testing.T, b []byte) []frameOnWire {
	t.Helper()
	var out []frameOnWire
	for len(b) > 0 {
		h, n, err := parseHeader(b)
		if err != nil {
			t.Fatalf("bad frame on the wire: %v", err)
		}
		p := bytes.Clone(b[n : n+int(h.length)])
		if h.masked {
			mask(h.key, 0, p)
		}
		out = append(out, frameOnWire{h, p})
		b = b[n+int(h.length):]
	}
	return out
}

// deflateConn returns a server Conn over a recordConn with negotiated
// parameters ext.
func deflateConn(t *testing.T, server bool, ext string, opts *CompressionOptions) (*Conn, *recordConn) {
	t.Helper()
	exts, err := parseExtensions([]string{ext})
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseDeflateParams(exts[0].params, false)
	if err != nil {
		t.Fatal(err)
	}
	rc := newRecordConn()
	c := newConn(rc, server, 0)
	c.deflate = newDeflateState(p, server, opts)
	c.rsvAllowed = bitRsv1
	return c, rc
}

func TestDeflateTakeoverShrinksRepeats(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, ext string
		server    bool
		smaller   bool
	}{
		{"server with takeover", "permessage-deflate", true, true},
		{"client with takeover", "permessage-deflate", false, true},
		{"server without takeover", "permessage-deflate; server_no_context_takeover", true, false},
		{"client without takeover", "permessage-deflate; client_no_context_takeover", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, rc := deflateConn(t, tc.server, tc.ext, &CompressionOptions{ContextTakeover: true})
			msg := chatLine(1)
			var sizes []int
			for range 3 {
				if err := c.WriteMessage(ctx, MessageText, msg); err != nil {
					t.Fatal(err)
				}
				f := rc.lastFrame(t)
				if f.h.rsv != bitRsv1 {
					t.Fatalf("frame without RSV1")
				}
				sizes = append(sizes, len(f.payload))
			}
			if tc.smaller && !(sizes[1] < sizes[0]/2 && sizes[2] <= sizes[1]) {
				t.Errorf("sizes %v: with takeover a repeat should compress to far less", sizes)
			}
			if !tc.smaller && (sizes[1] != sizes[0] || sizes[2] != sizes[0]) {
				t.Errorf("sizes %v: without takeover every message should compress alike", sizes)
			}
		})
	}
}

// TestDeflateSmallWindow: a peer that limits this side's window to less
// than 32 KiB gets uncompressed messages, which RFC 7692 allows.
func TestDeflateSmallWindow(t *testing.T) {
	for _, tc := range []struct {
		ext    string
		server bool
	}{
		{"permessage-deflate; server_max_window_bits=10", true},
		{"permessage-deflate; client_max_window_bits=9", false},
	} {
		c, rc := deflateConn(t, tc.server, tc.ext, nil)
		if err := c.WriteMessage(context.Background(), MessageText, bytes.Repeat([]byte("abc"), 1000)); err != nil {
			t.Fatal(err)
		}
		if f := rc.lastFrame(t); f.h.rsv != 0 || len(f.payload) != 3000 {
			t.Errorf("%s: rsv %x, %d bytes: want an uncompressed frame", tc.ext, f.h.rsv, len(f.payload))
		}
		w, _ := c.NextWriter(context.Background(), MessageText)
		w.Write([]byte(strings.Repeat("x", 500)))
		w.Close()
		if f := rc.lastFrame(t); f.h.rsv != 0 {
			t.Errorf("%s: streamed message compressed", tc.ext)
		}
	}
}

// TestDeflateSmallWindowEcho: the server accepts server_max_window_bits=10
// and the messages still round trip.
func TestDeflateSmallWindowEcho(t *testing.T) {
	srv := echoServer(t, &AcceptOptions{Compression: &CompressionOptions{}})
	nc, br := rawClientHeader(t, srv, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n")
	msg := bytes.Repeat([]byte("abcdefgh"), 100)
	nc.Write(clientFrame(bitFin|bitRsv1|byte(opText), deflateRaw(t, msg)))
	h, p := readServerFrame(t, br)
	if h.rsv != 0 || !bytes.Equal(p, msg) {
		t.Fatalf("rsv %x, %d bytes: want the message back uncompressed", h.rsv, len(p))
	}
}

// rawClientHeader is rawClient with extra request header lines; it fails
// unless the handshake succeeds.
func rawClientHeader(t *testing.T, srv *httptest.Server, extra string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n"+extra+"\r\n")
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return nc, br
}

// deflateRaw compresses p as one permessage-deflate message without
// context: a sync flush with the tail removed.
func deflateRaw(t testing.TB, p []byte) []byte {
	var b bytes.Buffer
	fw, _ := flate.NewWriter(&b, flate.BestSpeed)
	fw.Write(p)
	fw.Flush()
	out := b.Bytes()
	if !bytes.HasSuffix(out, deflateTail) {
		t.Fatal("no sync flush tail")
	}
	return out[:len(out)-4]
}

func inflateRaw(t *testing.T, p []byte) []byte {
	t.Helper()
	out, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader(deflateFinal))))
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return out
}

const deflateOffer = "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n"

func TestDeflateThreshold(t *testing.T) {
	for _, tc := range []struct {
		threshold, size int
		compressed      bool
	}{
		{0, 127, false},
		{0, 128, true},
		{0, 5000, true},
		{1000, 999, false},
		{1000, 1000, true},
		{1, 1, true},
	} {
		t.Run(fmt.Sprintf("%d/%d", tc.threshold, tc.size), func(t *testing.T) {
			t.Parallel()
			srv := echoServer(t, &AcceptOptions{Compression: &CompressionOptions{Threshold: tc.threshold}})
			nc, br := rawClientHeader(t, srv, deflateOffer)
			msg := bytes.Repeat([]byte("z"), tc.size)
			// Sent uncompressed: a peer may choose per message.
			nc.Write(clientFrame(bitFin|byte(opBinary), msg))
			h, p := readServerFrame(t, br)
			if got := h.rsv == bitRsv1; got != tc.compressed {
				t.Fatalf("RSV1 %v, want %v", got, tc.compressed)
			}
			if h.rsv != 0 {
				p = inflateRaw(t, p)
			}
			if !bytes.Equal(p, msg) {
				t.Fatalf("payload differs")
			}
		})
	}
}

func TestDeflateControlFramesUncompressed(t *testing.T) {
	srv := serverFunc(t, &AcceptOptions{Compression: &CompressionOptions{Threshold: 1}}, func(c *Conn) {
		for {
			op, msg, err := c.ReadMessage(context.Background(), nil)
			if err != nil {
				return
			}
			c.Ping(context.Background(), []byte(strings.Repeat("p", 125)))
			c.WriteMessage(context.Background(), op, msg)
			c.Close(StatusGoingAway, strings.Repeat("r", 123))
		}
	})
	nc, br := rawClientHeader(t, srv, deflateOffer)
	nc.Write(clientFrame(bitFin|byte(opPing), []byte(strings.Repeat("a", 125))))
	nc.Write(clientFrame(bitFin|bitRsv1|byte(opText), deflateRaw(t, []byte("hello"))))
	want := []opcode{opPong, opPing, opText, opClose}
	for _, op := range want {
		h, _ := readServerFrame(t, br)
		if h.op != op {
			t.Fatalf("got %v, want %v", h.op, op)
		}
		if h.op.IsControl() && h.rsv != 0 {
			t.Fatalf("%v frame with RSV bits %x", h.op, h.rsv)
		}
		if h.op == opText && h.rsv != bitRsv1 {
			t.Fatalf("text not compressed")
		}
	}
}

func TestDeflateFragmented(t *testing.T) {
	srv := echoServer(t, &AcceptOptions{Compression: &CompressionOptions{}})
	nc, br := rawClientHeader(t, srv, deflateOffer)
	msg := []byte(strings.Repeat("fragmented and compressed, ", 200))
	z := deflateRaw(t, msg)
	third := len(z) / 3
	nc.Write(clientFrame(bitRsv1|byte(opText), z[:third]))
	nc.Write(clientFrame(bitFin|byte(opPing), []byte("mid")))
	nc.Write(clientFrame(byte(opContinuation), z[third:2*third]))
	nc.Write(clientFrame(byte(opContinuation), nil))
	nc.Write(clientFrame(bitFin|byte(opContinuation), z[2*third:]))
	if h, p := readServerFrame(t, br); h.op != opPong || string(p) != "mid" {
		t.Fatalf("got %v %q, want the pong", h.op, p)
	}
	h, p := readServerFrame(t, br)
	if h.op != opText || h.rsv != bitRsv1 || !bytes.Equal(inflateRaw(t, p), msg) {
		t.Fatalf("echo: %v rsv %x", h.op, h.rsv)
	}
}

// TestDeflateStreamedFrames: a large compressed NextWriter message goes
// out in several frames, RSV1 on the first only, and reads back.
func TestDeflateStreamedFrames(t *testing.T) {
	c, rc := deflateConn(t, true, "permessage-deflate; server_no_context_takeover", nil)
	var want bytes.Buffer
	w, _ := c.NextWriter(context.Background(), MessageBinary)
	x := uint32(1)
	for range 20000 {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		fmt.Fprintf(io.MultiWriter(w, &want), "%08x ", x) // compresses to about half
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	frames := rc.frames(t)
	if len(frames) < 3 {
		t.Fatalf("%d frames, want several", len(frames))
	}
	var z []byte
	for i, f := range frames {
		wantRsv := byte(0)
		if i == 0 {
			wantRsv = bitRsv1
		}
		if f.h.rsv != wantRsv || f.h.fin != (i == len(frames)-1) {
			t.Fatalf("frame %d: rsv %x fin %v", i, f.h.rsv, f.h.fin)
		}
		z = append(z, f.payload...)
	}
	if !bytes.Equal(inflateRaw(t, z), want.Bytes()) {
		t.Fatal("streamed message does not inflate to what was written")
	}
}

func TestDeflateZipBomb(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			got := make(chan error, 1)
			srv := serverFunc(t, &AcceptOptions{ReadLimit: 1 << 20, Compression: &CompressionOptions{}}, func(c *Conn) {
				var err error
				if stream {
					var r io.Reader
					if _, r, err = c.NextReader(context.Background()); err == nil {
						_, err = io.Copy(io.Discard, r)
					}
				} else {
					_, _, err = c.ReadMessage(context.Background(), nil)
				}
				got <- err
			})
			nc, br := rawClientHeader(t, srv, deflateOffer)
			z := deflateRaw(t, make([]byte, 64<<20)) // 64 MiB of zeros, about 64 KiB compressed
			nc.Write(clientFrame(bitFin|bitRsv1|byte(opBinary), z))
			h, p := readServerFrame(t, br)
			if code, _, _ := parseClosePayload(p); h.op != opClose || code != StatusMessageTooBig {
				t.Fatalf("got %v %q, want close 1009", h.op, p)
			}
			if err := <-got; CloseStatus(err) != StatusMessageTooBig {
				t.Fatalf("server read %v", err)
			}
		})
	}
}

// TestDeflateZipBombMemory: the decompressed message must not be buffered
// far past the limit before it is refused.
func TestDeflateZipBombMemory(t *testing.T) {
	rc := newRecordConn()
	c := newConn(rc, false, 1<<20)
	c.deflate = newDeflateState(deflateParams{serverNoContextTakeover: true, clientNoContextTakeover: true}, false, nil)
	c.rsvAllowed = bitRsv1
	z := deflateRaw(t, make([]byte, 64<<20))
	frame := appendHeader(nil, header{fin: true, rsv: bitRsv1, op: opBinary, length: int64(len(z))})
	c.rbuf = nil
	c.nc = &readConn{recordConn: rc, r: bytes.NewReader(append(frame, z...))}
	_, buf, err := c.readMessage(nil)
	if CloseStatus(err) != StatusMessageTooBig {
		t.Fatalf("got %v, want 1009", err)
	}
	if cap(buf) > 2<<20+64<<10 {
		t.Errorf("buffer grew to %d bytes for a limit of 1 MiB", cap(buf))
	}
}

// readConn is a recordConn that reads from r.
type readConn struct {
	*recordConn
	r io.Reader
}

func (c *readConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestDeflateCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		op      opcode
		payload []byte
		want    StatusCode
	}{
		{"reserved block type, text", opText, []byte{0xff, 0xff, 0xff, 0xff}, StatusInvalidFramePayloadData},
		{"reserved block type, binary", opBinary, []byte{0xff, 0xff, 0xff, 0xff}, StatusProtocolError},
		{"bad stored length, text", opText, []byte{0x00, 0x05, 0x00, 0x00, 0x00}, StatusInvalidFramePayloadData},
		{"bad stored length, binary", opBinary, []byte{0x00, 0x05, 0x00, 0x00, 0x00}, StatusProtocolError},
		{"compressed invalid utf8", opText, nil, StatusInvalidFramePayloadData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := echoServer(t, &AcceptOptions{Compression: &CompressionOptions{}})
			nc, br := rawClientHeader(t, srv, deflateOffer)
			p := tc.payload
			if p == nil {
				p = deflateRaw(t, []byte("valid then \xff invalid"))
			}
			nc.Write(clientFrame(bitFin|bitRsv1|byte(tc.op), p))
			h, cp := readServerFrame(t, br)
			code, reason, _ := parseClosePayload(cp)
			if h.op != opClose || code != tc.want {
				t.Fatalf("got %v %d %q, want close %d", h.op, code, reason, tc.want)
			}
		})
	}
}

// TestDeflateRSV1OnContinuation: only a message's first frame carries
// RSV1.
func TestDeflateRSV1OnContinuation(t *testing.T) {
	srv := echoServer(t, &AcceptOptions{Compression: &CompressionOptions{}})
	nc, br := rawClientHeader(t, srv, deflateOffer)
	z := deflateRaw(t, []byte("hello hello hello"))
	nc.Write(clientFrame(bitRsv1|byte(opText), z[:2]))
	nc.Write(clientFrame(bitFin|bitRsv1|byte(opContinuation), z[2:]))
	h, p := readServerFrame(t, br)
	if code, _, _ := parseClosePayload(p); h.op != opClose || code != StatusProtocolError {
		t.Fatalf("got %v %x, want close 1002", h.op, p)
	}
}

func TestPreparedMessage(t *testing.T) {
	big := []byte(strings.Repeat("broadcast to everyone ", 50))
	for _, tc := range []struct {
		name   string
		server *CompressionOptions
		client *CompressionOptions
	}{
		{"plain", nil, nil},
		{"deflate without takeover", &CompressionOptions{}, &CompressionOptions{}},
		{"deflate with takeover", &CompressionOptions{ContextTakeover: true}, &CompressionOptions{ContextTakeover: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pms := []*PreparedMessage{NewPreparedMessage(MessageText, []byte("small")), NewPreparedMessage(MessageBinary, big)}
			srv := serverFunc(t, &AcceptOptions{Compression: tc.server}, func(c *Conn) {
				for range 3 {
					for _, pm := range pms {
						if err := c.WritePrepared(context.Background(), pm); err != nil {
							return
						}
					}
				}
				c.Close(StatusNormalClosure, "")
			})
			var clients []*Conn
			for range 3 {
				c, _, err := Dial(context.Background(), wsURL(srv), &DialOptions{Compression: tc.client})
				if err != nil {
					t.Fatal(err)
				}
				defer c.CloseNow()
				clients = append(clients, c)
			}
			for _, c := range clients {
				for range 3 {
					for _, pm := range pms {
						op, got, err := c.ReadMessage(context.Background(), nil)
						if err != nil || op != pm.typ || !bytes.Equal(got, pm.Data()) {
							t.Fatalf("got %v %d bytes, %v", op, len(got), err)
						}
					}
				}
			}
			// Clients write prepared messages too (masked each time).
			c := clients[0]
			if err := c.WritePrepared(context.Background(), pms[1]); err != nil && err != ErrClosed {
				t.Fatal(err)
			}
		})
	}
}

// TestDeflateEchoAllocatesNothing locks in a compressed round trip over
// loopback with no allocation in steady state, with and without context
// takeover: compressors, decompressors and sinks come from pools or stay
// with the connection, and the inflater's byte reads use no temporary.
func TestDeflateEchoAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	for _, takeover := range []bool{false, true} {
		t.Run(fmt.Sprintf("takeover=%v", takeover), func(t *testing.T) {
			copts := &CompressionOptions{ContextTakeover: takeover}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			accepted := make(chan *Conn, 1)
			go func() {
				defer close(accepted)
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				if c, err := AcceptConn(nc, &AcceptOptions{Compression: copts}); err == nil {
					accepted <- c
				}
			}()
			cli, _, err := Dial(context.Background(), "ws://"+ln.Addr().String(), &DialOptions{Compression: copts})
			if err != nil {
				t.Fatal(err)
			}
			defer cli.CloseNow()
			srv := <-accepted
			if srv == nil {
				t.Fatal("accept failed")
			}
			defer srv.CloseNow()
			ctx := context.Background()
			p := jsonText(1 << 10)
			var sbuf, cbuf []byte
			round := func() {
				if err := cli.WriteMessage(ctx, MessageText, p); err != nil {
					t.Fatal(err)
				}
				var err error
				if _, sbuf, err = srv.ReadMessage(ctx, sbuf[:0]); err != nil {
					t.Fatal(err)
				}
				if err := srv.WriteMessage(ctx, MessageText, sbuf); err != nil {
					t.Fatal(err)
				}
				if _, cbuf, err = cli.ReadMessage(ctx, cbuf[:0]); err != nil {
					t.Fatal(err)
				}
			}
			for range 10 {
				round() // fill the pools, grow the buffers and windows
			}
			if !bytes.Equal(cbuf, p) {
				t.Fatal("echo differs")
			}
			if n := testing.AllocsPerRun(200, round); n != 0 {
				t.Fatalf("compressed round trip allocates %v times, want 0", n)
			}
		})
	}
}

// TestDeflateFinalBlock reads the example of RFC 7692 section 7.2.3.3: a
// message compressed into a block with BFINAL set, which leaves a 0x00
// byte after the end of the deflate stream. That byte belongs to the
// message; read as the start of the next frame, it used to break the
// stream.
func TestDeflateFinalBlock(t *testing.T) {
	final := []byte{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00}
	for _, takeover := range []bool{false, true} {
		var stream []byte
		stream = append(stream, clientFrame(bitFin|bitRsv1|byte(opText), final)...)
		// The same again, cut into two frames after the end of the
		// stream, with junk past it.
		stream = append(stream, clientFrame(bitRsv1|byte(opText), final[:7])...)
		stream = append(stream, clientFrame(byte(opContinuation), final[7:])...)
		stream = append(stream, clientFrame(bitFin|byte(opContinuation), []byte{0xff, 0x12})...)
		stream = append(stream, clientFrame(bitFin|byte(opText), []byte("next"))...)
		nc := &replayConn{r: bytes.NewReader(stream)}
		c := newConn(nc, true, 1<<10)
		p := deflateParams{serverNoContextTakeover: !takeover, clientNoContextTakeover: !takeover}
		c.deflate = newDeflateState(p, true, nil)
		c.rsvAllowed = bitRsv1
		for _, want := range []string{"Hello", "Hello", "next"} {
			op, msg, err := c.ReadMessage(context.Background(), nil)
			if err != nil || op != MessageText || string(msg) != want {
				t.Fatalf("takeover %v: read %v %q, %v; want %q", takeover, op, msg, err, want)
			}
		}
		c.CloseNow()
	}
}
