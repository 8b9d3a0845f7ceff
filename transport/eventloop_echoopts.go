package transport

import "github.com/hotline-rt/hotline/ws"

// EchoOptions configures EventLoop.ServeEcho.
type EchoOptions struct {
	// Accept holds the WebSocket options of the upgrade: origins,
	// subprotocols, read limit. Compression is ignored (the event loop
	// declines permessage-deflate); keepalive is the EventLoop's own
	// (EventLoop.Accept.KeepAlive), as on /chat.
	Accept ws.AcceptOptions
	// CloseCode, if not 0, is sent in a close frame with CloseReason
	// right after the upgrade: the server begins the close handshake.
	CloseCode   ws.StatusCode
	CloseReason string
}
