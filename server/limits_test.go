package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/ws"
)

// serveReal runs a server behind its own HTTPServer (the limits of
// hotline serve) on a loopback port and returns the address.
func serveReal(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	srv := newServer(t, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer()
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		hs.Close()
		<-done
	})
	return srv, ln.Addr().String()
}

// rawConn dials addr and sets a deadline that bounds the whole test
// exchange.
func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(15 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reads from c until the server closes it and reports the
// first line it sent ("" if none). It fails if the test's deadline passes
// first.
func closedByServer(t *testing.T, c net.Conn) string {
	t.Helper()
	br := bufio.NewReader(c)
	first, _ := br.ReadString('\n')
	_, err := io.Copy(io.Discard, br)
	if err == nil || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
		return strings.TrimSpace(first)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the server kept the connection open (first line %q)", first)
	}
	return strings.TrimSpace(first)
}

// TestSlowBodyIsCut: a request body sent at one byte per 50 ms is cut off
// past ReadTimeout, on the polling endpoint (its own body deadline) and on
// the API (the server's ReadTimeout).
func TestSlowBodyIsCut(t *testing.T) {
	_, addr := serveReal(t, Config{ReadTimeout: 300 * time.Millisecond, APIKey: "k"})
	tok := token(t, "ann", "", time.Hour)
	for _, tc := range []struct{ name, head string }{
		{"poll open", "POST /poll/open HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\nContent-Length: 200\r\n\r\n"},
		{"api publish", "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: apikey k\r\nContent-Length: 200\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawConn(t, addr)
			if _, err := io.WriteString(c, tc.head); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			sent := 0
			wg.Go(func() { // one byte per 50 ms, 10 s at most
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for range 199 { // the body stays one byte short
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					if _, err := c.Write([]byte{' '}); err != nil {
						return
					}
					sent++
				}
			})
			first := closedByServer(t, c)
			close(stop)
			wg.Wait()
			if sent == 199 {
				t.Fatal("the whole slow body was taken")
			}
			if first != "" && !strings.Contains(first, "408") && !strings.Contains(first, "400") {
				t.Fatalf("answer %q, want 408, 400 or a closed connection", first)
			}
		})
	}
}

// TestIdleKeepAliveClosed: a keep-alive connection left idle is closed
// after IdleTimeout.
func TestIdleKeepAliveClosed(t *testing.T) {
	_, addr := serveReal(t, Config{IdleTimeout: 200 * time.Millisecond})
	c := rawConn(t, addr)
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("healthz: %d close=%v", resp.StatusCode, resp.Close)
	}
	// Go's default would be ReadTimeout (10s).
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle keep-alive connection still open: %v", err)
	}
}

// TestHugeHandshakeHeaders: a handshake whose headers exceed
// MaxHeaderBytes (16 KiB by default, not Go's 1 MiB) gets 431.
func TestHugeHandshakeHeaders(t *testing.T) {
	_, addr := serveReal(t, Config{})
	c := rawConn(t, addr)
	req := "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n" +
		"X-Pad: " + strings.Repeat("a", 32<<10) + "\r\n\r\n"
	go io.WriteString(c, req) // the server may answer before reading it all
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
}

// TestLongPollOutlivesReadTimeout: a long poll is held on purpose, past
// the server's ReadTimeout, and answered normally. (net/http clears the
// read deadline once a request without a body has been read; this test
// keeps that true for the long poll.)
func TestLongPollOutlivesReadTimeout(t *testing.T) {
	_, addr := serveReal(t, Config{ReadTimeout: 100 * time.Millisecond, LongPollTimeout: time.Second})
	tok := token(t, "ann", "", time.Hour)
	base := "http://" + addr
	req, _ := http.NewRequest("POST", base+"/poll/open", strings.NewReader(`{"transport":"longpoll"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	var opened struct{ Session string }
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&opened)
	resp.Body.Close()
	req, _ = http.NewRequest("GET", base+"/poll/"+opened.Session+"?ack=0", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	start := time.Now()
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct{ Messages []json.RawMessage }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 || r.Messages == nil {
		t.Fatalf("held poll: %d %v %+v", resp.StatusCode, err, r)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("held only %v: cut by the read timeout", d)
	}
}

// dialStatus dials a WebSocket endpoint and returns the HTTP status of a
// refused handshake (101 if it succeeded; the connection is then kept
// until the test ends).
func dialStatus(t *testing.T, base, path string, hdr http.Header) (int, *ws.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+path, &ws.DialOptions{Header: hdr})
	if err == nil {
		t.Cleanup(func() { c.CloseNow() })
		return 101, c
	}
	var he *ws.HandshakeError
	if errors.As(err, &he) {
		return he.StatusCode, nil
	}
	t.Fatalf("dial %s: %v", path, err)
	return 0, nil
}

// TestMaxConnsCountsEveryConnection: /echo and /broadcast count against
// MaxConns with the sessions, and sessions against them.
func TestMaxConnsCountsEveryConnection(t *testing.T) {
	srv, base := start(t, Config{MaxConns: 3, Diagnostics: DiagnosticsOn})
	bearer := http.Header{"Authorization": {"Bearer " + token(t, "ann", "", time.Hour)}}
	var echoes []*ws.Conn
	for range 2 {
		code, c := dialStatus(t, base, "/echo", nil)
		if code != 101 {
			t.Fatalf("echo under the limit: %d", code)
		}
		echoes = append(echoes, c)
	}
	if code, _ := dialStatus(t, base, "/chat", bearer); code != 101 {
		t.Fatalf("chat under the limit: %d", code)
	}
	for _, path := range []string{"/echo", "/broadcast"} {
		if code, _ := dialStatus(t, base, path, nil); code != 503 {
			t.Fatalf("%s past the limit: %d, want 503", path, code)
		}
	}
	if code, _ := dialStatus(t, base, "/chat", bearer); code != 503 {
		t.Fatalf("chat past the limit: %d, want 503", code)
	}
	req, _ := http.NewRequest("POST", base+"/poll/open", strings.NewReader(`{"transport":"poll"}`))
	req.Header = bearer.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("poll open past the limit: %d, want 503 with Retry-After", resp.StatusCode)
	}
	// An echo connection that ends gives its place back.
	echoes[0].Close(ws.StatusNormalClosure, "")
	deadline := time.Now().Add(5 * time.Second)
	for srv.echo.Len() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("closed echo connection still counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code, _ := dialStatus(t, base, "/chat", bearer); code != 101 {
		t.Fatalf("chat after a place was freed: %d", code)
	}
}

// TestDiagnosticsSwitch: /echo and /broadcast are off by default when
// tokens are verified, on in development mode, and follow the switch.
func TestDiagnosticsSwitch(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want int
	}{
		{"jwt auto", Config{}, 404},
		{"jwt on", Config{Diagnostics: DiagnosticsOn}, 101},
		{"dev auto", Config{Auth: auth.Anonymous()}, 101},
		{"dev off", Config{Auth: auth.Anonymous(), Diagnostics: DiagnosticsOff}, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, base := start(t, tc.cfg)
			for _, path := range []string{"/echo", "/broadcast"} {
				if code, _ := dialStatus(t, base, path, nil); code != tc.want {
					t.Fatalf("%s: %d, want %d", path, code, tc.want)
				}
			}
		})
	}
}

// TestShutdownTwiceAtOnce: Shutdown may be called from two goroutines at
// once (it used to close a channel twice and panic); both calls wait for
// the same shutdown, which closes the diagnostic clients with 1001.
func TestShutdownTwiceAtOnce(t *testing.T) {
	for i := range 20 {
		srv, err := New(Config{Auth: auth.Anonymous(), StatsInterval: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hs := srv.HTTPServer()
		served := make(chan struct{})
		go func() {
			defer close(served)
			hs.Serve(ln)
		}()
		base := "http://" + ln.Addr().String()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var closed []chan error // what the diagnostic clients read
		if i == 0 {
			for _, path := range []string{"/echo", "/broadcast"} {
				code, c := dialStatus(t, base, path, nil)
				if code != 101 {
					t.Fatalf("%s: %d", path, code)
				}
				ch := make(chan error, 1)
				go func() {
					_, _, err := c.ReadMessage(ctx, nil)
					ch <- err
				}()
				closed = append(closed, ch)
			}
		}
		start := make(chan struct{})
		errs := make(chan error, 2)
		for range 2 {
			go func() {
				<-start
				errs <- srv.Shutdown(ctx)
			}()
		}
		close(start)
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
		for _, ch := range closed {
			if err := <-ch; ws.CloseStatus(err) != ws.StatusGoingAway {
				t.Fatalf("diagnostic client got %v, want 1001", err)
			}
		}
		hs.Shutdown(ctx)
		<-served
		cancel()
	}
}
