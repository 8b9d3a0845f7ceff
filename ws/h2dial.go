//lint:file-ignore SA1019 x/net/http2.Transport is deprecated for net/http's, but net/http's client in Go 1.26 refuses the :protocol pseudo-header of an extended CONNECT (see h2Pool).

package ws

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"
	"weak"

	"golang.org/x/net/http2"
)

// HTTP2Mode says whether Dial carries a WebSocket over HTTP/2 (RFC 8441):
// as one stream of an HTTP/2 connection, which many WebSockets (and other
// requests) to the same server share, instead of a TCP connection of its
// own.
type HTTP2Mode int

const (
	// HTTP2Auto uses HTTP/2 for wss:// URLs when the server offers it:
	// it picks h2 in the TLS handshake (ALPN) and sends
	// SETTINGS_ENABLE_CONNECT_PROTOCOL. Otherwise the WebSocket goes
	// over HTTP/1.1, on a new connection, and the server is not asked
	// again for a minute. ws:// URLs use HTTP/1.1.
	HTTP2Auto HTTP2Mode = iota
	// HTTP2Off always uses HTTP/1.1.
	HTTP2Off
	// HTTP2Only uses HTTP/2 or fails. For ws:// URLs it speaks
	// cleartext HTTP/2 with prior knowledge (h2c), which the server must
	// accept.
	HTTP2Only
)

// noH2Retry is how long HTTP2Auto keeps to HTTP/1.1 for a server that did
// not offer WebSocket over HTTP/2.
const noH2Retry = time.Minute

// errNoH2 wraps the errors that mean the server does not do WebSocket
// over HTTP/2, after which HTTP2Auto falls back to HTTP/1.1.
var errNoH2 = errors.New("server does not offer WebSocket over HTTP/2")

// defaultDialOptions stands for nil options, so that dials with nil share
// one pool of HTTP/2 connections.
var defaultDialOptions DialOptions

func useH2(mode HTTP2Mode, secure bool) bool {
	return mode == HTTP2Only || (mode == HTTP2Auto && secure)
}

// h2Pool holds the HTTP/2 connections of the dials made with one
// *DialOptions: a golang.org/x/net/http2 Transport, which opens one
// connection per server and multiplexes the streams on it (a new
// connection once the server's SETTINGS_MAX_CONCURRENT_STREAMS is
// reached).
//
// Why x/net: net/http's client in Go 1.26 carries extended CONNECT in its
// HTTP/2 code, but http.Transport.RoundTrip and http.ClientConn.RoundTrip
// refuse the request first: their header check takes ":protocol" for an
// invalid header name ("net/http: invalid header field name"). x/net's
// Transport (its own implementation up to Go 1.26; from Go 1.27 it wraps
// net/http's) sends it.
type h2Pool struct {
	tls, clear *http2.Transport

	mu      sync.Mutex
	refused map[string]time.Time // host:port -> until when Auto skips HTTP/2
}

// pools maps a *DialOptions, weakly, to its pool; the pool's idle
// connections are closed when the options are collected.
var pools sync.Map // weak.Pointer[DialOptions] -> *h2Pool

func poolFor(opts *DialOptions) *h2Pool {
	key := weak.Make(opts)
	if p, ok := pools.Load(key); ok {
		return p.(*h2Pool)
	}
	p := newH2Pool(opts)
	if old, loaded := pools.LoadOrStore(key, p); loaded {
		return old.(*h2Pool)
	}
	if opts != &defaultDialOptions {
		runtime.AddCleanup(opts, func(key weak.Pointer[DialOptions]) {
			if p, ok := pools.LoadAndDelete(key); ok {
				p.(*h2Pool).tls.CloseIdleConnections()
				p.(*h2Pool).clear.CloseIdleConnections()
			}
		}, key)
	}
	return p
}

// newH2Pool takes TLSConfig, Proxy and NetDialContext from opts as they
// are at the first HTTP/2 dial with them.
func newH2Pool(opts *DialOptions) *h2Pool {
	// A copy, so that the dial functions do not keep opts alive (the
	// pool goes when opts goes).
	o := &DialOptions{Proxy: opts.Proxy, NetDialContext: opts.NetDialContext}
	dialTLS := func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
		u := &url.URL{Scheme: "https", Host: addr}
		nc, _, err := dialTCP(ctx, u, true, o)
		if err != nil {
			return nil, err
		}
		// Offer HTTP/1.1 too, so that a server without HTTP/2 says so
		// by its choice instead of refusing the handshake.
		cfg = cfg.Clone()
		cfg.NextProtos = []string{"h2", "http/1.1"}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("ws: TLS handshake with %s: %w", addr, err)
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			// Handed back to Dial, which does its HTTP/1.1 handshake on
			// it rather than dial again.
			return nil, &noH2Conn{proto: p, nc: tc}
		}
		return tc, nil
	}
	dialClear := func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		nc, _, err := dialTCP(ctx, &url.URL{Scheme: "http", Host: addr}, false, o)
		return nc, err
	}
	return &h2Pool{
		tls:     &http2.Transport{TLSClientConfig: opts.TLSConfig.Clone(), DialTLSContext: dialTLS},
		clear:   &http2.Transport{AllowHTTP: true, DialTLSContext: dialClear},
		refused: make(map[string]time.Time),
	}
}

// noH2Conn is the dial error of a server that chose HTTP/1.1 in the TLS
// handshake. It holds that connection for Dial to use. x/net's Transport
// returns a dial error as it is, to every request that waited for that
// dial: the first to take the connection has it, the others dial anew.
type noH2Conn struct {
	proto string
	mu    sync.Mutex
	nc    net.Conn
}

func (e *noH2Conn) Error() string {
	return fmt.Sprintf("%v: the server chose %q, not h2, in the TLS handshake", errNoH2, e.proto)
}

func (e *noH2Conn) Unwrap() error { return errNoH2 }

// take returns the connection once, then nil.
func (e *noH2Conn) take() net.Conn {
	e.mu.Lock()
	defer e.mu.Unlock()
	nc := e.nc
	e.nc = nil
	return nc
}

// takeNoH2Conn returns the TLS connection that err holds, if any is left.
func takeNoH2Conn(err error) net.Conn {
	var e *noH2Conn
	if errors.As(err, &e) {
		return e.take()
	}
	return nil
}

func (p *h2Pool) skip(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	until, ok := p.refused[addr]
	if ok && time.Now().After(until) {
		delete(p.refused, addr)
		return false
	}
	return ok
}

func (p *h2Pool) refuse(addr string) {
	p.mu.Lock()
	p.refused[addr] = time.Now().Add(noH2Retry)
	p.mu.Unlock()
}

// dialH2 opens a WebSocket as an extended CONNECT stream. req is the
// handshake request as built for HTTP/1.1, without its Upgrade,
// Connection and Sec-WebSocket-Key (HTTP/2 has none of them). An error
// wrapping errNoH2 means the server does not offer it.
func dialH2(ctx context.Context, u *url.URL, secure bool, req *http.Request, opts *DialOptions) (*Conn, *http.Response, error) {
	pool := poolFor(opts)
	t := pool.clear
	hu := *u
	hu.Scheme = "http"
	if secure {
		t = pool.tls
		hu.Scheme = "https"
	}
	if opts.HTTP2 != HTTP2Only && pool.skip(hu.Host) {
		return nil, nil, errNoH2
	}
	// The stream outlives Dial's ctx, which bounds only the handshake:
	// its own ctx is canceled when the connection is closed.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var laddr, raddr net.Addr
	sctx = httptrace.WithClientTrace(sctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		laddr, raddr = i.Conn.LocalAddr(), i.Conn.RemoteAddr()
	}})
	pr, pw := io.Pipe()
	h2req := &http.Request{
		Method:        http.MethodConnect,
		URL:           &hu,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        req.Header.Clone(),
		Host:          req.Host,
		Body:          pr,
		ContentLength: -1,
	}
	h2req.Header.Set(":protocol", "websocket")
	h2req = h2req.WithContext(sctx)
	stop := context.AfterFunc(ctx, cancel)
	resp, err := t.RoundTrip(h2req)
	if !stop() {
		if resp != nil {
			resp.Body.Close()
		}
		resp, err = nil, ctx.Err()
	}
	fail := func(err error) (*Conn, *http.Response, error) {
		pw.Close()
		cancel()
		return nil, resp, err
	}
	if err != nil {
		if notOffered(err) {
			pool.refuse(hu.Host)
			if !errors.Is(err, errNoH2) {
				err = fmt.Errorf("%w: %v", errNoH2, err)
			}
		}
		return fail(err)
	}
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return fail(&HandshakeError{StatusCode: resp.StatusCode, Reason: strings.TrimSpace(string(body))})
	}
	proto, deflate, err := checkAgreement(resp.Header, opts)
	if err != nil {
		resp.Body.Close()
		return fail(err)
	}
	s := &h2Stream{
		r:      resp.Body,
		w:      pw,
		abort:  func() { pw.CloseWithError(net.ErrClosed) },
		finish: func() { pw.Close(); cancel() },
		laddr:  laddr,
		raddr:  raddr,
	}
	c := newClientConn(s, proto, deflate, opts)
	c.setWriteTimeout(opts.WriteTimeout)
	c.startKeepAlive(opts.KeepAlive)
	return c, resp, nil
}

// notOffered reports whether a RoundTrip error means that the server does
// not speak HTTP/2 or does not allow extended CONNECT. net/http exports
// neither error, so they are told by their text.
func notOffered(err error) bool {
	s := err.Error()
	return errors.Is(err, errNoH2) ||
		strings.Contains(s, "extended connect not supported by peer") ||
		strings.Contains(s, "does not support HTTP/2") ||
		strings.Contains(s, "unexpected ALPN protocol")
}
