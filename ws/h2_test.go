//lint:file-ignore SA1019 x/net/http2.Transport: see h2dial.go.

package ws

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/hotline-rt/hotline/ws/xconnect" // extended CONNECT on in this test binary's servers
)

// h2Server is a TLS server with HTTP/2 that runs h and records the
// protocol of each request it sees and the client connection it came on.
type h2Server struct {
	*httptest.Server
	mu      sync.Mutex
	protos  []int
	remotes map[string]int
}

func newH2Server(t testing.TB, h http.Handler) *h2Server {
	t.Helper()
	s := &h2Server{remotes: make(map[string]int)}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.protos = append(s.protos, r.ProtoMajor)
		s.remotes[r.RemoteAddr]++
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	s.EnableHTTP2 = true
	s.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1000}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *h2Server) url() string { return "wss" + strings.TrimPrefix(s.URL, "https") }

// tlsConfig trusts the test server's certificate.
func (s *h2Server) tlsConfig() *tls.Config {
	return s.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
}

func (s *h2Server) seen() (protos []int, conns int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.protos...), len(s.remotes)
}

func TestH2Echo(t *testing.T) {
	for _, compress := range []bool{false, true} {
		name := "plain"
		var copts *CompressionOptions
		if compress {
			name, copts = "deflate", &CompressionOptions{}
		}
		t.Run(name, func(t *testing.T) {
			srv := newH2Server(t, echoHandler(&AcceptOptions{Compression: copts, Subprotocols: []string{"chat"}}))
			ctx := context.Background()
			c, resp, err := Dial(ctx, srv.url(), &DialOptions{Compression: copts, TLSConfig: srv.tlsConfig(), Subprotocols: []string{"superchat", "chat"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if !c.HTTP2() || resp.ProtoMajor != 2 || resp.StatusCode != 200 {
				t.Fatalf("HTTP2() = %v, response %s %d: want an HTTP/2 200 (HTTP2Auto over TLS)", c.HTTP2(), resp.Proto, resp.StatusCode)
			}
			if protos, _ := srv.seen(); len(protos) != 1 || protos[0] != 2 {
				t.Fatalf("server saw protocols %v, want [2]", protos)
			}
			if c.LocalAddr().String() == "" || c.RemoteAddr().String() != srv.Listener.Addr().String() {
				t.Fatalf("addresses %v -> %v, want the connection's, to %v", c.LocalAddr(), c.RemoteAddr(), srv.Listener.Addr())
			}
			if c.Subprotocol() != "chat" {
				t.Fatalf("subprotocol %q", c.Subprotocol())
			}
			if compress != strings.HasPrefix(c.Extensions(), "permessage-deflate") {
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
			if err := c.Close(StatusNormalClosure, "done"); err != nil {
				t.Fatalf("close: %v", err)
			}
		})
	}
}

// TestH2Multiplex opens many WebSockets with one *DialOptions: they are
// streams of one TCP/TLS connection, and each echoes its own messages.
func TestH2Multiplex(t *testing.T) {
	srv := newH2Server(t, echoHandler(nil))
	opts := &DialOptions{TLSConfig: srv.tlsConfig(), HTTP2: HTTP2Only}
	ctx := context.Background()
	const n = 50
	conns := make([]*Conn, n)
	for i := range conns {
		c, _, err := Dial(ctx, srv.url(), opts)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		conns[i] = c
	}
	var wg sync.WaitGroup
	var bad atomic.Int32
	for i, c := range conns {
		wg.Go(func() {
			for j := range 20 {
				msg := []byte(strings.Repeat("m", i) + "/" + string(rune('a'+j)))
				if c.WriteMessage(ctx, MessageText, msg) != nil {
					bad.Add(1)
					return
				}
				_, got, err := c.ReadMessage(ctx, nil)
				if err != nil || !bytes.Equal(got, msg) {
					bad.Add(1)
					return
				}
			}
		})
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d WebSockets failed their echo", bad.Load())
	}
	if _, nconns := srv.seen(); nconns != 1 {
		t.Fatalf("%d WebSockets came on %d connections, want 1", n, nconns)
	}
	for _, c := range conns {
		if err := c.Close(StatusNormalClosure, ""); err != nil {
			t.Fatal(err)
		}
	}
}

// TestH2CloseCodes: a close started by either side reaches the other with
// its code and reason, and ends the stream cleanly.
func TestH2CloseCodes(t *testing.T) {
	serverErr := make(chan error, 1)
	srv := newH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		_, msg, err := c.ReadMessage(context.Background(), nil)
		if err != nil {
			serverErr <- err
			return
		}
		if string(msg) == "close please" {
			serverErr <- c.Close(4001, "bye")
			return
		}
		_, _, err = c.ReadMessage(context.Background(), nil)
		serverErr <- err
	}))
	opts := &DialOptions{TLSConfig: srv.tlsConfig(), HTTP2: HTTP2Only}
	ctx := context.Background()

	c, _, err := Dial(ctx, srv.url(), opts)
	if err != nil {
		t.Fatal(err)
	}
	c.WriteMessage(ctx, MessageText, []byte("close please"))
	_, _, err = c.ReadMessage(ctx, nil)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "bye" {
		t.Fatalf("client read %v, want close 4001 bye", err)
	}
	if err := <-serverErr; err != nil {
		t.Fatalf("server's Close: %v, want nil (the client answered)", err)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("client connection not closed after the close handshake")
	}

	c, _, err = Dial(ctx, srv.url(), opts)
	if err != nil {
		t.Fatal(err)
	}
	c.WriteMessage(ctx, MessageText, []byte("hello"))
	if err := c.Close(StatusGoingAway, "leaving"); err != nil {
		t.Fatalf("client's Close: %v, want nil", err)
	}
	err = <-serverErr
	if !errors.As(err, &ce) || ce.Code != StatusGoingAway || ce.Reason != "leaving" {
		t.Fatalf("server read %v, want close 1001 leaving", err)
	}
}

// TestH2Limits: the read limit, the origin check and the version check
// apply over HTTP/2 as over HTTP/1.1.
func TestH2Limits(t *testing.T) {
	srv := newH2Server(t, echoHandler(&AcceptOptions{ReadLimit: 1000}))
	ctx := context.Background()
	opts := &DialOptions{TLSConfig: srv.tlsConfig(), HTTP2: HTTP2Only}
	c, _, err := Dial(ctx, srv.url(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.WriteMessage(ctx, MessageBinary, make([]byte, 1001)); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.ReadMessage(ctx, nil)
	if CloseStatus(err) != StatusMessageTooBig {
		t.Fatalf("read %v, want close 1009", err)
	}

	hdr := http.Header{"Origin": {"https://evil.example"}}
	_, resp, err := Dial(ctx, srv.url(), &DialOptions{TLSConfig: srv.tlsConfig(), HTTP2: HTTP2Only, Header: hdr})
	var he *HandshakeError
	if !errors.As(err, &he) || he.StatusCode != http.StatusForbidden || resp == nil || resp.ProtoMajor != 2 {
		t.Fatalf("foreign origin over HTTP/2: %v, want 403", err)
	}

	// Dial always says version 13: ask by hand for 8.
	u, _ := url.Parse(srv.URL)
	req := &http.Request{Method: http.MethodConnect, URL: u, Host: u.Host, Header: http.Header{
		":protocol": {"websocket"}, "Sec-Websocket-Version": {"8"},
	}}
	resp, err = poolFor(opts).tls.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Sec-WebSocket-Version") != "13" {
		t.Fatalf("version 8 over HTTP/2: %s, want 426 with Sec-WebSocket-Version: 13", resp.Status)
	}
}

// TestH2CtxEndsStream: a read whose ctx ends closes the WebSocket, which
// resets the stream; the server's read fails and its handler returns.
func TestH2CtxEndsStream(t *testing.T) {
	done := make(chan error, 1)
	srv := newH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		_, _, err = c.ReadMessage(context.Background(), nil)
		done <- err
	}))
	c, _, err := Dial(context.Background(), srv.url(), &DialOptions{TLSConfig: srv.tlsConfig(), HTTP2: HTTP2Only})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := c.ReadMessage(ctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read: %v", err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("server read nil after the client reset the stream")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server still reading 10 s after the client closed")
	}
}

// TestH2AutoFallsBack: HTTP2Auto against a TLS server without HTTP/2
// speaks HTTP/1.1; HTTP2Only fails.
func TestH2AutoFallsBack(t *testing.T) {
	srv := httptest.NewTLSServer(echoHandler(nil))
	defer srv.Close()
	u := "wss" + strings.TrimPrefix(srv.URL, "https")
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig
	ctx := context.Background()
	c, _, err := Dial(ctx, u, &DialOptions{TLSConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP2() {
		t.Fatal("HTTP/2 against a server without it")
	}
	c.WriteMessage(ctx, MessageText, []byte("x"))
	if _, m, err := c.ReadMessage(ctx, nil); err != nil || string(m) != "x" {
		t.Fatalf("echo over the fallback: %q %v", m, err)
	}
	c.Close(StatusNormalClosure, "")
	if _, _, err := Dial(ctx, u, &DialOptions{TLSConfig: cfg, HTTP2: HTTP2Only}); !errors.Is(err, errNoH2) {
		t.Fatalf("HTTP2Only against a server without HTTP/2: %v, want errNoH2", err)
	}
}

// TestH2AutoWithoutXConnect: against an HTTP/2 server that does not allow
// extended CONNECT (Go's default), HTTP2Auto falls back to HTTP/1.1 and
// HTTP2Only fails with errNoH2. The setting is process-wide, so this runs
// in a child process with GODEBUG=http2xconnect=0.
func TestH2AutoWithoutXConnect(t *testing.T) {
	if os.Getenv("WS_TEST_NO_XCONNECT") == "1" {
		srv := newH2Server(t, echoHandler(nil))
		ctx := context.Background()
		c, _, err := Dial(ctx, srv.url(), &DialOptions{TLSConfig: srv.tlsConfig()})
		if err != nil {
			t.Fatal(err)
		}
		if c.HTTP2() {
			t.Fatal("HTTP/2 against a server without extended CONNECT")
		}
		c.Close(StatusNormalClosure, "")
		if _, _, err := Dial(ctx, srv.url(), &DialOptions{TLSConfig: srv.tlsConfig(), HTTP2: HTTP2Only}); !errors.Is(err, errNoH2) {
			t.Fatalf("HTTP2Only: %v, want errNoH2", err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestH2AutoWithoutXConnect$", "-test.v")
	cmd.Env = append(os.Environ(), "WS_TEST_NO_XCONNECT=1", "GODEBUG=http2xconnect=0")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// rawH2Client opens an extended CONNECT stream by hand and returns its two
// directions, for writing frames byte by byte.
func rawH2Client(t *testing.T, srv *h2Server) (io.WriteCloser, *bufio.Reader) {
	t.Helper()
	pr, pw := io.Pipe()
	u, _ := url.Parse(srv.URL)
	req := &http.Request{Method: http.MethodConnect, URL: u, Host: u.Host, Body: pr, ContentLength: -1, Header: http.Header{
		":protocol": {"websocket"}, "Sec-Websocket-Version": {"13"},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	resp, err := poolFor(&DialOptions{TLSConfig: srv.tlsConfig()}).tls.RoundTrip(req.WithContext(ctx))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	t.Cleanup(func() { pw.Close(); resp.Body.Close() })
	return pw, bufio.NewReader(resp.Body)
}

// TestH2ProtocolViolations: the frame-level cases of TestProtocolViolations
// over an HTTP/2 stream. The codec is the same; this shows it.
func TestH2ProtocolViolations(t *testing.T) {
	srv := newH2Server(t, echoHandler(&AcceptOptions{ReadLimit: 1000}))
	for _, tc := range protocolViolations() {
		t.Run(tc.name, func(t *testing.T) {
			w, br := rawH2Client(t, srv)
			checkViolation(t, tc, w, br)
		})
	}
}

func TestH2PingInsideFragmentedMessage(t *testing.T) {
	srv := newH2Server(t, echoHandler(nil))
	w, br := rawH2Client(t, srv)
	checkPingInsideFragmented(t, w, br)
}

// TestH2CloseUnblocksWrite: a server write stuck on HTTP/2 flow control
// (the client reads nothing) ends when its ctx does: Close resets the
// stream so that the write returns, and only then is Done closed. Without
// the reset, Close would wait for the write forever.
func TestH2CloseUnblocksWrite(t *testing.T) {
	type result struct {
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	srv := newH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, nil)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err = c.WriteMessage(ctx, MessageBinary, make([]byte, 64<<20))
		// On a loaded machine the ctx may end before the write begins,
		// which fails it and leaves the connection open: close it so
		// that Done follows. A write that stays stuck never gets here.
		c.CloseNow()
		<-c.Done()
		done <- result{err, time.Since(start)}
	}))
	c, _, err := Dial(context.Background(), srv.url(), &DialOptions{TLSConfig: srv.tlsConfig(), HTTP2: HTTP2Only})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	select {
	case r := <-done:
		if !errors.Is(r.err, context.DeadlineExceeded) {
			t.Fatalf("write: %v, want its ctx's deadline", r.err)
		}
		t.Logf("the write ended %v after it started", r.took)
	case <-time.After(20 * time.Second):
		t.Fatal("a write stuck on flow control outlived its ctx by 20 s")
	}
}

// TestH2UpgradeDetachedRefuses: the event loop's UpgradeDetached needs a
// socket of its own, which an HTTP/2 stream is not: 505, not a failed
// hijack.
func TestH2UpgradeDetachedRefuses(t *testing.T) {
	srv := newH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var d Decoder
		if nc, _, err := UpgradeDetached(w, r, nil, &d); err == nil {
			nc.Close()
		}
	}))
	_, resp, err := Dial(context.Background(), srv.url(), &DialOptions{TLSConfig: srv.tlsConfig(), HTTP2: HTTP2Only})
	var he *HandshakeError
	if !errors.As(err, &he) || he.StatusCode != http.StatusHTTPVersionNotSupported || resp.ProtoMajor != 2 {
		t.Fatalf("UpgradeDetached over HTTP/2: %v, want 505", err)
	}
}

// TestH2PoolGoesWithOptions: the HTTP/2 connections kept for a
// *DialOptions are dropped (and closed when idle) once the options are
// collected: dials that each make their own options do not pile up pools.
func TestH2PoolGoesWithOptions(t *testing.T) {
	srv := newH2Server(t, echoHandler(nil))
	countPools := func() int {
		n := 0
		pools.Range(func(any, any) bool { n++; return true })
		return n
	}
	before := countPools()
	for range 5 {
		c, _, err := Dial(context.Background(), srv.url(), &DialOptions{TLSConfig: srv.tlsConfig(), HTTP2: HTTP2Only})
		if err != nil {
			t.Fatal(err)
		}
		c.Close(StatusNormalClosure, "")
	}
	if n := countPools(); n < before+5 {
		t.Fatalf("%d pools after 5 dials with their own options, want %d", n, before+5)
	}
	for i := 0; countPools() > before; i++ {
		if i == 200 {
			t.Fatalf("%d pools left after the options were collected, want %d", countPools(), before)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
