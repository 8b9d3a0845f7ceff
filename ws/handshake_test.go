package ws

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// handshakeRequest builds a raw opening handshake: the valid seed request
// with the headers in edit replaced ("" deletes one).
func handshakeRequest(method, proto string, edit map[string]string) string {
	hdr := [][2]string{
		{"Host", "server.example.com"},
		{"Upgrade", "websocket"},
		{"Connection", "Upgrade"},
		{"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
		{"Sec-WebSocket-Version", "13"},
	}
	var b strings.Builder
	b.WriteString(method + " /chat " + proto + "\r\n")
	for _, kv := range hdr {
		v, ok := edit[kv[0]]
		if !ok {
			v = kv[1]
		}
		if v != "" {
			b.WriteString(kv[0] + ": " + v + "\r\n")
		}
	}
	for k, v := range edit {
		switch k {
		case "Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version":
		default:
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.String()
}

// roundTrip sends a raw request to addr and reads the response head.
func roundTrip(t *testing.T, addr, req string) *http.Response {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return resp
}

// rawAcceptServer serves Accept on a plain listener, closing each
// accepted connection at once.
func rawAcceptServer(t *testing.T, opts *AcceptOptions) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			if c, err := AcceptConn(nc, opts); err == nil {
				c.Close(StatusGoingAway, "")
			}
		}
	}()
	return ln.Addr().String()
}

func TestHandshakeRefusals(t *testing.T) {
	opts := &AcceptOptions{AllowedOrigins: []string{"*.friend.example"}}
	for _, tc := range []struct {
		name   string
		method string
		proto  string
		edit   map[string]string
		status int
		header string // a header the response must carry, "Name: value"
	}{
		{"valid", "GET", "HTTP/1.1", nil, 101, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
		{"connection token list any case", "GET", "HTTP/1.1", map[string]string{"Connection": "keep-alive, upgrade"}, 101, ""},
		{"upgrade any case", "GET", "HTTP/1.1", map[string]string{"Upgrade": "WebSocket"}, 101, ""},
		{"same origin", "GET", "HTTP/1.1", map[string]string{"Origin": "https://server.example.com"}, 101, ""},
		{"origin allowed by pattern", "GET", "HTTP/1.1", map[string]string{"Origin": "https://app.friend.example"}, 101, ""},
		{"POST", "POST", "HTTP/1.1", nil, 405, "Allow: GET"},
		{"version 8", "GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Version": "8"}, 426, "Sec-WebSocket-Version: 13"},
		{"no version", "GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Version": ""}, 426, "Sec-WebSocket-Version: 13"},
		{"HTTP/1.0", "GET", "HTTP/1.0", nil, 400, ""},
		{"no Upgrade", "GET", "HTTP/1.1", map[string]string{"Upgrade": ""}, 400, ""},
		{"Upgrade not websocket", "GET", "HTTP/1.1", map[string]string{"Upgrade": "h2c"}, 400, ""},
		{"Upgrade with a no-break space", "GET", "HTTP/1.1", map[string]string{"Upgrade": "websocket\u00a0"}, 400, ""},
		{"Connection with a next line", "GET", "HTTP/1.1", map[string]string{"Connection": "\u0085upgrade"}, 400, ""},
		{"no Connection", "GET", "HTTP/1.1", map[string]string{"Connection": ""}, 400, ""},
		{"Connection without upgrade", "GET", "HTTP/1.1", map[string]string{"Connection": "keep-alive, upgrades"}, 400, ""},
		{"no key", "GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Key": ""}, 400, ""},
		{"key of 15 bytes", "GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAA"}, 400, ""},
		{"key of 17 bytes", "GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAAA="}, 400, ""},
		{"key not base64", "GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Key": "!!!!!!!!!!!!!!!!!!!!!!=="}, 400, ""},
		// A second header line (the edit value carries it).
		{"key twice", "GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="}, 400, ""},
		{"two keys", "GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="}, 400, ""},
		{"foreign origin", "GET", "HTTP/1.1", map[string]string{"Origin": "https://evil.example"}, 403, ""},
		{"origin pattern is not a suffix match", "GET", "HTTP/1.1", map[string]string{"Origin": "https://friend.example.evil"}, 403, ""},
		{"origin null", "GET", "HTTP/1.1", map[string]string{"Origin": "null"}, 403, ""},
	} {
		req := handshakeRequest(tc.method, tc.proto, tc.edit)
		check := func(t *testing.T, resp *http.Response) {
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.header != "" {
				name, value, _ := strings.Cut(tc.header, ": ")
				if got := resp.Header.Get(name); got != value {
					t.Errorf("%s: %q, want %q", name, got, value)
				}
			}
			if tc.status != 101 {
				body, _ := io.ReadAll(resp.Body)
				if len(strings.TrimSpace(string(body))) == 0 {
					t.Errorf("refusal without a reason in the body")
				}
			}
		}
		t.Run(tc.name+"/Upgrade", func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := Upgrade(w, r, opts)
				if err != nil {
					var he *HandshakeError
					if !errors.As(err, &he) || he.StatusCode != tc.status {
						t.Errorf("Upgrade error %v, want a HandshakeError with %d", err, tc.status)
					}
					return
				}
				c.Close(StatusGoingAway, "")
			}))
			defer srv.Close()
			check(t, roundTrip(t, srv.Listener.Addr().String(), req))
		})
		t.Run(tc.name+"/Accept", func(t *testing.T) {
			t.Parallel()
			check(t, roundTrip(t, rawAcceptServer(t, opts), req))
		})
	}
}

func TestAcceptMalformedRequest(t *testing.T) {
	addr := rawAcceptServer(t, nil)
	resp := roundTrip(t, addr, "NOT HTTP AT ALL\r\n\r\n")
	if resp.StatusCode != 400 {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
}

func TestAcceptRawConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		c, err := AcceptConn(nc, &AcceptOptions{Subprotocols: []string{"chat"}})
		if err != nil {
			errc <- err
			return
		}
		defer c.CloseNow()
		op, msg, err := c.ReadMessage(context.Background(), nil)
		if err == nil {
			err = c.WriteMessage(context.Background(), op, append(msg, '!'))
		}
		if err == nil {
			_, _, err = c.ReadMessage(context.Background(), nil)
			if CloseStatus(err) == StatusNormalClosure {
				err = nil
			}
		}
		errc <- err
	}()
	ctx := context.Background()
	c, _, err := Dial(ctx, "ws://"+ln.Addr().String()+"/", &DialOptions{Subprotocols: []string{"chat"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if c.Subprotocol() != "chat" {
		t.Errorf("subprotocol %q", c.Subprotocol())
	}
	if err := c.WriteMessage(ctx, MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.ReadMessage(ctx, nil); err != nil || string(msg) != "hi!" {
		t.Fatalf("read %q, %v", msg, err)
	}
	if err := c.Close(StatusNormalClosure, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server: %v", err)
	}
}

// TestAcceptFramesBehindHandshake sends the first frame in the same write
// as the request: Accept must keep the bytes its reader read past it.
func TestAcceptFramesBehindHandshake(t *testing.T) {
	srv := echoServer(t, nil)
	nc, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	req := handshakeRequest("GET", "HTTP/1.1", nil)
	nc.Write(append([]byte(req), clientFrame(bitFin|byte(opText), []byte("early"))...))
	br := bufio.NewReader(nc)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v", err)
	}
	if h, p := readServerFrame(t, br); h.op != opText || string(p) != "early" {
		t.Fatalf("got %v %q", h.op, p)
	}
}

func TestSubprotocols(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server []string
		client []string
		want   string
	}{
		{"first client offer that the server supports", []string{"superchat", "chat"}, []string{"chat", "superchat"}, "chat"},
		{"server supports one", []string{"superchat"}, []string{"chat", "superchat"}, "superchat"},
		{"none in common", []string{"mqtt"}, []string{"chat", "superchat"}, ""},
		{"client offers none", []string{"chat"}, nil, ""},
		{"server supports none", nil, []string{"chat"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := echoServer(t, &AcceptOptions{Subprotocols: tc.server})
			c, resp, err := Dial(context.Background(), wsURL(srv), &DialOptions{Subprotocols: tc.client})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if c.Subprotocol() != tc.want {
				t.Errorf("Subprotocol() = %q, want %q", c.Subprotocol(), tc.want)
			}
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != tc.want {
				t.Errorf("response header %q, want %q", got, tc.want)
			}
		})
	}
}

// fakeServer answers every handshake with a 101 carrying the right accept
// value and the extra header lines, then holds the connection open: for
// testing what a client makes of a misbehaving server.
func fakeServer(t *testing.T, extra string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				nc.SetDeadline(time.Now().Add(10 * time.Second))
				r, err := http.ReadRequest(bufio.NewReader(nc))
				if err != nil {
					return
				}
				io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
					AcceptKey(r.Header.Get("Sec-WebSocket-Key"))+"\r\n"+extra+"\r\n")
				io.Copy(io.Discard, nc)
			}()
		}
	}()
	return "ws://" + ln.Addr().String() + "/"
}

func TestDialRejectsBadResponses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra string
		opts  *DialOptions
	}{
		{"subprotocol not offered", "Sec-WebSocket-Protocol: evil\r\n", &DialOptions{Subprotocols: []string{"chat"}}},
		{"subprotocol when none offered", "Sec-WebSocket-Protocol: chat\r\n", nil},
		{"extension not offered", "Sec-WebSocket-Extensions: permessage-deflate\r\n", nil},
		{"unknown extension", "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n", &DialOptions{Compression: &CompressionOptions{ContextTakeover: true}}},
		{"deflate twice", "Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate\r\n", &DialOptions{Compression: &CompressionOptions{ContextTakeover: true}}},
		{"unknown deflate parameter", "Sec-WebSocket-Extensions: permessage-deflate; foo=1\r\n", &DialOptions{Compression: &CompressionOptions{ContextTakeover: true}}},
		{"window bits out of range", "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16\r\n", &DialOptions{Compression: &CompressionOptions{ContextTakeover: true}}},
		{"client window bits without value", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n", &DialOptions{Compression: &CompressionOptions{ContextTakeover: true}}},
		{"server keeps context against the offer", "Sec-WebSocket-Extensions: permessage-deflate\r\n", &DialOptions{Compression: &CompressionOptions{}}},
		{"malformed extension list", "Sec-WebSocket-Extensions: permessage-deflate;;\r\n", &DialOptions{Compression: &CompressionOptions{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, _, err := Dial(context.Background(), fakeServer(t, tc.extra), tc.opts)
			if err == nil {
				c.CloseNow()
				t.Fatal("Dial succeeded")
			}
			if !strings.HasPrefix(err.Error(), "ws: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestDialBadAccept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		http.ReadRequest(bufio.NewReader(nc))
		io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
		io.Copy(io.Discard, nc)
	}()
	if c, _, err := Dial(context.Background(), "ws://"+ln.Addr().String(), nil); err == nil {
		c.CloseNow()
		t.Fatal("Dial accepted a wrong Sec-WebSocket-Accept")
	}
}

func TestDialRefused(t *testing.T) {
	srv := echoServer(t, nil)
	_, resp, err := Dial(context.Background(), wsURL(srv), &DialOptions{Header: http.Header{"Origin": {"https://evil.example"}}})
	var he *HandshakeError
	if !errors.As(err, &he) || he.StatusCode != 403 || he.Reason == "" {
		t.Fatalf("err = %v, want a 403 HandshakeError with a reason", err)
	}
	if resp == nil || resp.StatusCode != 403 {
		t.Errorf("resp = %v", resp)
	}
}

func TestDialContextTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		// Accept and say nothing.
		nc, err := ln.Accept()
		if err == nil {
			defer nc.Close()
			io.Copy(io.Discard, nc)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err = Dial(ctx, "ws://"+ln.Addr().String(), nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
}

func TestDialHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	hosts := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		hosts <- r.Host
		c, err := Upgrade(w, r, &AcceptOptions{AllowedOrigins: []string{"app.example"}, Header: http.Header{"Set-Cookie": {"s=1"}}})
		if err != nil {
			return
		}
		c.Close(StatusNormalClosure, "")
	}))
	defer srv.Close()
	h := http.Header{}
	h.Set("Authorization", "Bearer token")
	h.Add("Cookie", "a=b")
	h.Set("Origin", "https://app.example")
	h.Set("X-Custom", "1")
	c, resp, err := Dial(context.Background(), wsURL(srv), &DialOptions{Header: h})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	rh := <-got
	for _, k := range []string{"Authorization", "Cookie", "Origin", "X-Custom"} {
		if rh.Get(k) != h.Get(k) {
			t.Errorf("%s = %q, want %q", k, rh.Get(k), h.Get(k))
		}
	}
	if host := <-hosts; host != srv.Listener.Addr().String() {
		t.Errorf("Host %q", host)
	}
	if resp.Header.Get("Set-Cookie") != "s=1" {
		t.Errorf("response headers %v", resp.Header)
	}
}

// connectProxy is a minimal HTTP CONNECT proxy on 127.0.0.1 that counts
// tunnels and records the last Proxy-Authorization.
type connectProxy struct {
	ln      net.Listener
	tunnels atomic.Int32
	auth    atomic.Value
}

func newConnectProxy(t *testing.T) *connectProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{ln: ln}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(nc)
		}
	}()
	return p
}

func (p *connectProxy) serve(nc net.Conn) {
	defer nc.Close()
	br := bufio.NewReader(nc)
	r, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if r.Method != http.MethodConnect {
		io.WriteString(nc, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	p.auth.Store(r.Header.Get("Proxy-Authorization"))
	up, err := net.Dial("tcp", r.Host)
	if err != nil {
		io.WriteString(nc, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	p.tunnels.Add(1)
	io.WriteString(nc, "HTTP/1.1 200 Connection established\r\n\r\n")
	go func() {
		io.Copy(up, br)
		up.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(nc, up)
}

func TestDialProxy(t *testing.T) {
	plain := echoServer(t, nil)
	tlsSrv := httptest.NewTLSServer(echoHandler(nil))
	defer tlsSrv.Close()
	for _, tc := range []struct {
		name string
		url  string
		tls  *tls.Config
	}{
		{"ws", wsURL(plain), nil},
		{"wss", "wss" + strings.TrimPrefix(tlsSrv.URL, "https"), tlsClientConfig(tlsSrv)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newConnectProxy(t)
			pu := &url.URL{Scheme: "http", Host: p.ln.Addr().String(), User: url.UserPassword("u", "pw")}
			ctx := context.Background()
			c, _, err := Dial(ctx, tc.url, &DialOptions{Proxy: http.ProxyURL(pu), TLSConfig: tc.tls})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if err := c.WriteMessage(ctx, MessageText, []byte("via proxy")); err != nil {
				t.Fatal(err)
			}
			if _, msg, err := c.ReadMessage(ctx, nil); err != nil || string(msg) != "via proxy" {
				t.Fatalf("read %q, %v", msg, err)
			}
			if n := p.tunnels.Load(); n != 1 {
				t.Errorf("%d tunnels, want 1", n)
			}
			if a, _ := p.auth.Load().(string); a != "Basic dTpwdw==" {
				t.Errorf("Proxy-Authorization %q", a)
			}
			if err := c.Close(StatusNormalClosure, ""); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
}

func TestDialProxyRefuses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		http.ReadRequest(bufio.NewReader(nc))
		io.WriteString(nc, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
	}()
	pu := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	_, _, err = Dial(context.Background(), "ws://127.0.0.1:1/", &DialOptions{Proxy: http.ProxyURL(pu)})
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("err = %v, want the proxy's 403", err)
	}
}

func tlsClientConfig(srv *httptest.Server) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return &tls.Config{RootCAs: pool}
}

func TestDialTLS(t *testing.T) {
	srv := httptest.NewTLSServer(echoHandler(&AcceptOptions{Compression: &CompressionOptions{}}))
	defer srv.Close()
	ctx := context.Background()
	u := "wss" + strings.TrimPrefix(srv.URL, "https")
	if _, _, err := Dial(ctx, u, nil); err == nil {
		t.Fatal("Dial trusted an unknown certificate")
	}
	c, _, err := Dial(ctx, u, &DialOptions{TLSConfig: tlsClientConfig(srv), Compression: &CompressionOptions{}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	msg := []byte(strings.Repeat("over TLS, compressed ", 100))
	for range 3 {
		if err := c.WriteMessage(ctx, MessageText, msg); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.ReadMessage(ctx, nil); err != nil || string(got) != string(msg) {
			t.Fatalf("read %d bytes, %v", len(got), err)
		}
	}
	if err := c.Close(StatusNormalClosure, ""); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestDialBadURL(t *testing.T) {
	for _, u := range []string{"ftp://x/", "ws:///path", "::"} {
		if _, _, err := Dial(context.Background(), u, nil); err == nil {
			t.Errorf("Dial(%q) succeeded", u)
		}
	}
}
