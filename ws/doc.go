// Package ws implements the WebSocket protocol (RFC 6455) with
// permessage-deflate compression (RFC 7692), for servers and clients.
//
// A server upgrades a net/http request with Upgrade, or runs the
// handshake on a raw net.Conn with AcceptConn. A client connects with
// Dial.
// Either way the result is a *Conn:
//
//	c, err := ws.Upgrade(w, r, &ws.AcceptOptions{Subprotocols: []string{"chat"}})
//	if err != nil {
//		return // Upgrade has answered the request with the reason
//	}
//	defer c.CloseNow()
//	for {
//		typ, msg, err := c.ReadMessage(ctx, buf[:0])
//		...
//	}
//
// # HTTP/2 (RFC 8441)
//
// Upgrade also accepts a WebSocket over HTTP/2: an extended CONNECT with
// :protocol websocket, answered 200, the stream carrying the frames. The
// options and checks are those of HTTP/1.1. The stream belongs to the
// handler, which waits for <-c.Done() before it returns (c.HTTP2 says
// whether it must). Go's HTTP/2 server offers this only with
// GODEBUG=http2xconnect=1: import ws/xconnect in package main to set it.
// Dial uses HTTP/2 for wss:// URLs when the server offers it (see
// DialOptions.HTTP2), and dials that share a *DialOptions share their
// connections: many WebSockets on one TCP/TLS connection.
//
// # Messages
//
// ReadMessage and WriteMessage move whole messages; NextReader and
// NextWriter stream one message as an io.Reader or io.WriteCloser. A
// message is MessageText or MessageBinary; control frames are not
// messages (the connection answers pings and echoes the close itself,
// Ping sends one).
// ReadMessage appends to a caller's buffer, so a loop that reuses it reads
// without allocating. A PreparedMessage is encoded (and compressed) once
// and written to many connections, for broadcast. NetConn adapts a
// connection to net.Conn.
//
// # Concurrency
//
// One goroutine may read while any number write: whole messages are
// written one at a time, and control frames (pongs, pings, close) may go
// out between the frames of a fragmented message. Pings are answered and
// the peer's close frame is echoed by the reading goroutine, so keep one
// reading.
//
// # Time limits
//
// Every blocking call takes a ctx, the only time limit of a Conn: it
// bounds that call and nothing after it. A ctx that ends during a call
// closes the connection (a frame may be half written or half read) and
// the call returns ctx.Err() (a ctx that had ended before the call fails
// it at once, without closing anything); a call that returns nil leaves
// the connection as it was, whatever its ctx does afterwards. There are no
// socket deadlines to set or to forget (NetConn keeps net.Conn's, mapped
// onto the same rule). Frames that the connection writes on its own
// (pong replies, keepalive pings, the close frame and its echo) are
// bounded by 5 s each, never by a caller's ctx. A server that writes to
// many clients may set AcceptOptions.WriteTimeout, a per-write bound
// with the same rule that costs no allocation.
//
// # Errors and closing
//
// The peer's close frame reaches the reader as a *CloseError ("ws: peer
// closed: 1000 (normal closure): bye"); CloseStatus extracts its code. A
// frame that breaks the protocol closes the connection with the matching
// status (1002 protocol error, 1007 invalid UTF-8 or deflate data in
// text, 1009 message too big) and a reason, and the reader gets a
// *CloseError with Local set ("ws: closed by this side: 1002 ..."). A TCP
// connection that ends without a close frame gives a local 1006 ("ws:
// connection lost: 1006 (abnormal closure): ..."). Close runs the closing
// handshake with a bounded wait (5 s) and returns nil when the peer
// answered, a local 1006 *CloseError when it did not; the server closes
// the TCP connection first, as RFC 6455 section 7.1.1 asks. Calls after
// the connection is closed return ErrClosed.
//
// # Origins
//
// By default a server accepts requests without an Origin header and those
// whose Origin host equals the Host header. AcceptOptions.AllowedOrigins
// adds patterns, matched with path.Match against the whole origin
// ("https://*.example.com") or its host ("*.example.com").
//
// # Compression
//
// AcceptOptions.Compression and DialOptions.Compression turn on
// permessage-deflate. Messages below CompressionOptions.Threshold (128
// bytes by default) go out uncompressed; the read limit applies to the
// decompressed size, counted while inflating, so a zip bomb is closed with
// 1009 before it fills memory. Invalid deflate data closes with 1007 for
// text and 1002 for binary. A PreparedMessage is compressed once for every
// connection without context takeover.
//
// The deflate implementation is github.com/klauspost/compress/flate,
// chosen by measurement against compress/flate at BestSpeed, one message
// at a time (2 CPUs, go1.26): compressing 16 KiB of JSON-like text took
// 13.1 µs against 26.4 µs (ratio 0.090 for both), 1 KiB 3.9 µs against
// 6.6 µs; decompressing 16 KiB 12.4 µs against 17.2 µs, with 1 allocation
// against 8.
//
// Context takeover costs memory for the life of a connection: measured
// as heap in use per idle client/server pair after one 16 KiB message,
// 3.8 KiB without takeover and 1,737 KiB with it (a compressor and a
// 32 KiB window on each side). So servers refuse takeover by default
// (they answer server_no_context_takeover and client_no_context_takeover);
// set CompressionOptions.ContextTakeover only for few, long-lived,
// chatty connections.
//
// # Memory
//
// A connection borrows a 4 KiB buffer from a pool only while a frame is
// being read or a message written, and (on a plain socket) gives it back
// before it waits for the next frame, so an idle connection holds its
// small Conn struct and nothing else. Without context takeover, the
// compressor and decompressor are likewise pooled per message. Measured
// with ../shared/wsbench, an idle connection of hotline serve's /echo
// (one goroutine each) costs 8.6 KiB of RSS: about 2 KiB of heap, a 2-4
// KiB goroutine stack, and garbage from net/http's hijack that the
// runtime has not yet returned to the system.
package ws
