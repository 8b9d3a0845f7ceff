package ws

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// DialOptions configures the client side of a connection. The zero value
// (or nil) dials without subprotocols or compression, through the proxy
// that the environment names (HTTP_PROXY, HTTPS_PROXY, NO_PROXY).
type DialOptions struct {
	// Header holds extra request headers, such as Origin, Cookie or
	// Authorization.
	Header http.Header

	// Subprotocols to offer, in order of preference.
	Subprotocols []string

	// TLSConfig for wss:// URLs; nil means the defaults, with ServerName
	// taken from the URL.
	TLSConfig *tls.Config

	// Proxy returns the HTTP proxy for a request (tunneled with
	// CONNECT), or nil for none. nil means http.ProxyFromEnvironment.
	Proxy func(*http.Request) (*url.URL, error)

	// NetDialContext dials TCP connections; nil means a net.Dialer.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// ReadLimit is the largest message accepted, in bytes; 0 means
	// DefaultReadLimit.
	ReadLimit int64

	// KeepAlive: see AcceptOptions.KeepAlive.
	KeepAlive time.Duration

	// WriteTimeout: see AcceptOptions.WriteTimeout.
	WriteTimeout time.Duration

	// Compression offers permessage-deflate; nil offers nothing.
	Compression *CompressionOptions

	// HTTP2 says whether the WebSocket may go over HTTP/2 (RFC 8441):
	// HTTP2Auto (the default) for wss:// URLs when the server offers it.
	// Dials made with the same *DialOptions share their HTTP/2
	// connections: WebSockets to one server are streams of one TCP/TLS
	// connection (see HTTP2Mode).
	HTTP2 HTTP2Mode
}

// Dial opens a WebSocket connection to a ws:// or wss:// URL (http:// and
// https:// are taken as their WebSocket equivalents). ctx bounds the whole
// handshake. The response is returned for its headers; on a refused
// handshake the error is a *HandshakeError with the server's status and
// the start of its body.
func Dial(ctx context.Context, rawURL string, opts *DialOptions) (*Conn, *http.Response, error) {
	if opts == nil {
		opts = &defaultDialOptions
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, fmt.Errorf("ws: dial: %w", err)
	}
	var secure bool
	switch u.Scheme {
	case "ws", "http":
	case "wss", "https":
		secure = true
	default:
		return nil, nil, fmt.Errorf("ws: dial %s: scheme must be ws or wss", rawURL)
	}
	if u.Host == "" {
		return nil, nil, fmt.Errorf("ws: dial %s: no host", rawURL)
	}
	req := &http.Request{
		Method:     http.MethodGet,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header),
		Host:       u.Host,
	}
	for k, vs := range opts.Header {
		req.Header[http.CanonicalHeaderKey(k)] = vs
	}
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
		req.Header.Del("Host")
	}
	var keyBytes [16]byte
	rand.Read(keyBytes[:])
	key := base64.StdEncoding.EncodeToString(keyBytes[:])
	req.Header.Set("Sec-WebSocket-Version", "13")
	if len(opts.Subprotocols) > 0 {
		req.Header.Set("Sec-WebSocket-Protocol", strings.Join(opts.Subprotocols, ", "))
	}
	if opts.Compression != nil {
		offer := deflateParams{clientMaxWindowBits: -1}
		if !opts.Compression.ContextTakeover {
			offer.serverNoContextTakeover = true
			offer.clientNoContextTakeover = true
		}
		req.Header.Set("Sec-WebSocket-Extensions", offer.String())
	}

	var nc net.Conn
	if useH2(opts.HTTP2, secure) {
		c, resp, err := dialH2(ctx, u, secure, req, opts)
		nc = takeNoH2Conn(err)
		if !errors.Is(err, errNoH2) || opts.HTTP2 == HTTP2Only {
			if nc != nil {
				nc.Close()
			}
			var he *HandshakeError
			if err != nil && !errors.As(err, &he) {
				err = fmt.Errorf("ws: dial %s: %w", rawURL, err)
			}
			return c, resp, err
		}
		// The server does not do WebSocket over HTTP/2: HTTP/1.1 then,
		// on the connection it chose HTTP/1.1 on if there is one.
	}
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", key)
	if nc == nil {
		var err error
		if nc, err = dialTransport(ctx, u, secure, opts); err != nil {
			return nil, nil, err
		}
	}
	// ctx bounds the handshake as it bounds a call on a Conn: its end
	// closes the connection. Nothing is left on the socket afterwards.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	c, resp, err := clientHandshake(nc, req, key, opts)
	if !stop() {
		err = fmt.Errorf("ws: dial %s: %w", rawURL, ctx.Err())
	}
	if err != nil {
		nc.Close()
		return nil, resp, err
	}
	c.setWriteTimeout(opts.WriteTimeout)
	c.startKeepAlive(opts.KeepAlive)
	return c, resp, nil
}

// dialTransport opens the TCP (and TLS) connection, through a proxy if
// one applies.
func dialTransport(ctx context.Context, u *url.URL, secure bool, opts *DialOptions) (net.Conn, error) {
	nc, addr, err := dialTCP(ctx, u, secure, opts)
	if err != nil || !secure {
		return nc, err
	}
	cfg := opts.TLSConfig.Clone()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	cfg.NextProtos = []string{"http/1.1"}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("ws: TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}

// dialTCP opens the TCP connection to u's host, through a proxy if one
// applies, and returns it with the address dialed.
func dialTCP(ctx context.Context, u *url.URL, secure bool, opts *DialOptions) (net.Conn, string, error) {
	dial := opts.NetDialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	addr := u.Host
	if u.Port() == "" {
		if secure {
			addr = net.JoinHostPort(u.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	proxyFn := opts.Proxy
	if proxyFn == nil {
		proxyFn = http.ProxyFromEnvironment
	}
	// ProxyFromEnvironment looks at the scheme: give it the HTTP one.
	pu := *u
	pu.Scheme = map[bool]string{false: "http", true: "https"}[secure]
	proxyURL, err := proxyFn(&http.Request{URL: &pu})
	if err != nil {
		return nil, addr, fmt.Errorf("ws: proxy: %w", err)
	}
	var nc net.Conn
	if proxyURL != nil {
		nc, err = dialProxy(ctx, dial, proxyURL, addr)
	} else {
		nc, err = dial(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, addr, fmt.Errorf("ws: dial %s: %w", addr, err)
	}
	return nc, addr, nil
}

// dialProxy opens a tunnel to addr through an HTTP proxy with CONNECT.
func dialProxy(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), proxy *url.URL, addr string) (tunnel net.Conn, err error) {
	if proxy.Scheme != "http" && proxy.Scheme != "" {
		return nil, fmt.Errorf("proxy scheme %q is not supported (only http)", proxy.Scheme)
	}
	paddr := proxy.Host
	if proxy.Port() == "" {
		paddr = net.JoinHostPort(proxy.Hostname(), "80")
	}
	nc, err := dial(ctx, "tcp", paddr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer func() {
		if !stop() {
			nc.Close()
			tunnel, err = nil, ctx.Err()
		}
	}()
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: addr}, Host: addr, Header: make(http.Header)}
	if u := proxy.User; u != nil {
		pw, _ := u.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pw)))
	}
	if err := req.Write(nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("CONNECT via %s: %w", paddr, err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("CONNECT via %s: %w", paddr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		nc.Close()
		return nil, fmt.Errorf("CONNECT via %s: proxy answered %s", paddr, resp.Status)
	}
	if br.Buffered() > 0 {
		nc.Close()
		return nil, fmt.Errorf("CONNECT via %s: proxy sent data before the tunnel was used", paddr)
	}
	return nc, nil
}

// clientHandshake sends the request and checks the server's answer
// (RFC 6455 section 4.1).
func clientHandshake(nc net.Conn, req *http.Request, key string, opts *DialOptions) (*Conn, *http.Response, error) {
	if err := req.Write(nc); err != nil {
		return nil, nil, fmt.Errorf("ws: write handshake: %w", err)
	}
	br := bufio.NewReaderSize(nc, bufSize)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, nil, fmt.Errorf("ws: read handshake response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, resp, &HandshakeError{StatusCode: resp.StatusCode, Reason: strings.TrimSpace(string(body))}
	}
	fail := func(format string, args ...any) (*Conn, *http.Response, error) {
		return nil, resp, fmt.Errorf("ws: bad handshake response: "+format, args...)
	}
	if !headerContainsToken(resp.Header, "Upgrade", "websocket") {
		return fail("no Upgrade: websocket")
	}
	if !headerContainsToken(resp.Header, "Connection", "Upgrade") {
		return fail("no Connection: Upgrade")
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != AcceptKey(key) {
		return fail("Sec-WebSocket-Accept is %q, want %q", got, AcceptKey(key))
	}
	proto, deflate, err := checkAgreement(resp.Header, opts)
	if err != nil {
		return nil, resp, err
	}
	c := newClientConn(nc, proto, deflate, opts)
	if err := c.adoptBuffered(br); err != nil {
		return nil, resp, err
	}
	return c, resp, nil
}

// checkAgreement checks the subprotocol and extensions that the server's
// handshake response chose (over HTTP/1.1 and HTTP/2 alike) against what
// the client offered.
func checkAgreement(h http.Header, opts *DialOptions) (string, *deflateParams, error) {
	fail := func(format string, args ...any) (string, *deflateParams, error) {
		return "", nil, fmt.Errorf("ws: bad handshake response: "+format, args...)
	}
	proto := h.Get("Sec-WebSocket-Protocol")
	if proto != "" && !slices.Contains(opts.Subprotocols, proto) {
		return fail("server chose subprotocol %q, which was not offered", proto)
	}
	exts, err := parseExtensions(h.Values("Sec-WebSocket-Extensions"))
	if err != nil {
		return fail("%v", err)
	}
	var deflate *deflateParams
	for _, e := range exts {
		if !strings.EqualFold(e.name, deflateName) || opts.Compression == nil {
			return fail("server chose extension %q, which was not offered", e.name)
		}
		if deflate != nil {
			return fail("permessage-deflate accepted twice")
		}
		p, err := parseDeflateParams(e.params, false)
		if err != nil {
			return fail("%v", err)
		}
		if !opts.Compression.ContextTakeover && !p.serverNoContextTakeover {
			return fail("server kept its compression context, which was not allowed")
		}
		deflate = &p
	}
	return proto, deflate, nil
}

// newClientConn makes the client's Conn on nc with what the handshake
// agreed.
func newClientConn(nc net.Conn, proto string, deflate *deflateParams, opts *DialOptions) *Conn {
	c := newConn(nc, false, opts.ReadLimit)
	c.subprotocol = proto
	if deflate != nil {
		c.extensions = deflate.String()
		c.deflate = newDeflateState(*deflate, false, opts.Compression)
		c.rsvAllowed = bitRsv1
	}
	return c
}
