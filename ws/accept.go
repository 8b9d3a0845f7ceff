package ws

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// AcceptOptions configures the server side of a connection. The zero
// value (or nil) accepts same-origin connections without a subprotocol or
// compression, with DefaultReadLimit.
type AcceptOptions struct {
	// Subprotocols the server supports. The first one that the client
	// offers and that is listed here is chosen; with none in common the
	// connection has no subprotocol (the application may refuse it).
	Subprotocols []string

	// AllowedOrigins lists origin patterns that may connect besides the
	// same origin (see the package documentation). "*" allows any: only
	// for endpoints that use no cookies or other ambient credentials.
	AllowedOrigins []string

	// ReadLimit is the largest message accepted, in bytes (after
	// decompression); 0 means DefaultReadLimit.
	ReadLimit int64

	// Header holds extra response headers, such as Set-Cookie.
	Header http.Header

	// KeepAlive, if positive, sends a ping after each such period in
	// which nothing arrived, and closes the connection when another
	// period passes in silence. Reading must be under way for pongs to
	// be seen.
	KeepAlive time.Duration

	// WriteTimeout, if positive, bounds every data write (each
	// WriteMessage and WritePrepared, each frame of a NextWriter) on top
	// of its ctx: a write that takes longer closes the connection, as an
	// ended ctx does. It costs no allocation per write, where a ctx with
	// a deadline per write costs several: servers that write to many
	// clients use it instead.
	WriteTimeout time.Duration

	// Compression enables permessage-deflate (RFC 7692) when the client
	// offers it; nil disables it.
	Compression *CompressionOptions

	// MaxHeaderBytes bounds the request head that AcceptConn reads (the
	// request line and headers); a larger one gets 431. 0 means 16 KiB.
	// Upgrade leaves this to http.Server.MaxHeaderBytes.
	MaxHeaderBytes int
}

// defaultMaxHeaderBytes bounds AcceptConn's request head by default: a
// browser's handshake with cookies fits well within it.
const defaultMaxHeaderBytes = 16 << 10

// CompressionOptions configures permessage-deflate.
type CompressionOptions struct {
	// ContextTakeover lets both sides keep their compression window
	// across messages: better ratios for many small similar messages,
	// at a cost of compressor and decompressor state (hundreds of KiB
	// with compress/flate) held by every connection for its life. Off,
	// the state comes from a pool for one message at a time.
	ContextTakeover bool

	// Level is the compress/flate level; 0 means flate.BestSpeed.
	Level int

	// Threshold is the smallest message worth compressing, in bytes;
	// shorter ones go out uncompressed. 0 means 128.
	Threshold int
}

// Upgrade turns an HTTP request into a WebSocket connection. Over
// HTTP/1.1 it hijacks the connection after answering 101. Over HTTP/2 it
// accepts an extended CONNECT with :protocol websocket (RFC 8441): it
// answers 200 and the request's stream becomes the connection, its body
// what the client sends and the response what the server sends. The
// checks (origin, version, subprotocol, permessage-deflate) and the
// options are the same for both.
//
// Over HTTP/2 the stream belongs to the handler: the handler must not
// return before the connection is closed (wait for <-c.Done(); see
// Conn.HTTP2), as net/http ends the stream when it returns.
//
// If the request is not an acceptable handshake, Upgrade answers it
// with the proper status (400, 403, 405 or 426 with
// Sec-WebSocket-Version: 13) and a plain-text reason, and returns a
// *HandshakeError.
func Upgrade(w http.ResponseWriter, r *http.Request, opts *AcceptOptions) (*Conn, error) {
	if opts == nil {
		opts = &AcceptOptions{}
	}
	resp, herr := prepareResponse(r, opts)
	if herr != nil {
		if herr.StatusCode == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		if herr.StatusCode == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", http.MethodGet)
		}
		http.Error(w, herr.Reason, herr.StatusCode)
		return nil, herr
	}
	if resp.h2 {
		return acceptH2(w, r, resp)
	}
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot take over the connection for WebSocket", http.StatusInternalServerError)
		return nil, fmt.Errorf("ws: hijack: %w", err)
	}
	// net/http may have set a deadline from the server's timeouts.
	nc.SetDeadline(time.Time{})
	return finishAccept(nc, brw.Reader, resp)
}

// AcceptConn runs the server side of the opening handshake on a raw
// connection, for servers that do not use net/http (Upgrade is the
// net/http way; the name says Conn so that nobody takes it for
// coder/websocket's Accept, which is the net/http one there). It reads
// the request itself; set a deadline on nc first to bound it, and clear
// it once the handshake is done. On a refused handshake it writes the
// HTTP error, closes nc and returns a *HandshakeError.
func AcceptConn(nc net.Conn, opts *AcceptOptions) (*Conn, error) {
	if opts == nil {
		opts = &AcceptOptions{}
	}
	limit := opts.MaxHeaderBytes
	if limit <= 0 {
		limit = defaultMaxHeaderBytes
	}
	// The limit covers what the handshake reads; frames that follow it
	// are read from nc itself (adoptBuffered takes what br holds).
	lr := &io.LimitedReader{R: nc, N: int64(limit)}
	br := bufio.NewReaderSize(lr, bufSize)
	r, err := http.ReadRequest(br)
	if err != nil {
		status, reason := http.StatusBadRequest, "malformed HTTP request"
		if lr.N == 0 {
			status, reason = http.StatusRequestHeaderFieldsTooLarge, "request head larger than "+itoa(limit)+" bytes"
		}
		writeHTTPError(nc, status, reason)
		nc.Close()
		return nil, fmt.Errorf("ws: read handshake request: %w", err)
	}
	resp, herr := prepareResponse(r, opts)
	if herr != nil {
		writeHTTPError(nc, herr.StatusCode, herr.Reason)
		nc.Close()
		return nil, herr
	}
	return finishAccept(nc, br, resp)
}

// acceptResponse is a handshake that passed the checks, ready to answer.
type acceptResponse struct {
	opts        *AcceptOptions
	h2          bool   // an extended CONNECT over HTTP/2 (RFC 8441)
	accept      string // Sec-WebSocket-Accept, over HTTP/1.1
	subprotocol string
	deflate     *deflateParams
}

func prepareResponse(r *http.Request, opts *AcceptOptions) (*acceptResponse, *HandshakeError) {
	h2 := isExtendedConnect(r)
	check := checkRequest
	if h2 {
		check = checkRequestH2
	}
	if status, reason := check(r); status != 0 {
		return nil, &HandshakeError{StatusCode: status, Reason: reason}
	}
	if !OriginAllowed(r, opts.AllowedOrigins) {
		return nil, &HandshakeError{StatusCode: http.StatusForbidden, Reason: "origin " + r.Header.Get("Origin") + " is not allowed"}
	}
	resp := &acceptResponse{
		opts:        opts,
		h2:          h2,
		subprotocol: SelectSubprotocol(r, opts.Subprotocols),
	}
	if !h2 {
		resp.accept = AcceptKey(r.Header.Get("Sec-WebSocket-Key"))
	}
	if opts.Compression != nil {
		// A malformed extension list only means no compression.
		if exts, err := parseExtensions(r.Header.Values("Sec-WebSocket-Extensions")); err == nil {
			if p, ok := negotiateDeflate(exts, opts.Compression.ContextTakeover); ok {
				resp.deflate = &p
			}
		}
	}
	return resp, nil
}

func finishAccept(nc net.Conn, br *bufio.Reader, resp *acceptResponse) (*Conn, error) {
	var b strings.Builder
	b.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ")
	b.WriteString(resp.accept)
	b.WriteString("\r\n")
	if resp.subprotocol != "" {
		b.WriteString("Sec-WebSocket-Protocol: " + resp.subprotocol + "\r\n")
	}
	if resp.deflate != nil {
		b.WriteString("Sec-WebSocket-Extensions: " + resp.deflate.String() + "\r\n")
	}
	for k, vs := range resp.opts.Header {
		for _, v := range vs {
			if !headerSafe(k, v) {
				continue
			}
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	if _, err := nc.Write([]byte(b.String())); err != nil {
		nc.Close()
		return nil, fmt.Errorf("ws: write handshake response: %w", err)
	}
	c := resp.newConn(nc)
	if err := c.adoptBuffered(br); err != nil {
		nc.Close()
		return nil, err
	}
	c.setWriteTimeout(resp.opts.WriteTimeout)
	c.startKeepAlive(resp.opts.KeepAlive)
	return c, nil
}

// newConn makes the server's Conn on nc with what the handshake agreed:
// one code path for HTTP/1.1 and HTTP/2.
func (resp *acceptResponse) newConn(nc net.Conn) *Conn {
	c := newConn(nc, true, resp.opts.ReadLimit)
	c.subprotocol = resp.subprotocol
	if resp.deflate != nil {
		c.extensions = resp.deflate.String()
		c.deflate = newDeflateState(*resp.deflate, true, resp.opts.Compression)
		c.rsvAllowed = bitRsv1
	}
	return c
}

// headerSafe reports whether a header line may be written as it is: no
// CR or LF that would split it.
func headerSafe(k, v string) bool { return !strings.ContainsAny(k+v, "\r\n") }

// adoptBuffered takes over bytes that the handshake's reader read past the
// handshake (a peer may send its first frames right behind it).
func (c *Conn) adoptBuffered(br *bufio.Reader) error {
	n := br.Buffered()
	if n == 0 {
		return nil
	}
	if n > bufSize {
		return errors.New("ws: too much data behind the handshake")
	}
	c.rbuf = getBuf()
	p, _ := br.Peek(n)
	c.rend = copy(c.rbuf[:], p)
	return nil
}

// writeHTTPError answers a raw connection with a plain-text HTTP error.
func writeHTTPError(nc net.Conn, status int, reason string) {
	extra := ""
	if status == http.StatusUpgradeRequired {
		extra = "Sec-WebSocket-Version: 13\r\n"
	}
	if status == http.StatusMethodNotAllowed {
		extra = "Allow: GET\r\n"
	}
	body := reason + "\n"
	fmt.Fprintf(nc, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n%sConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), extra, len(body), body)
}
