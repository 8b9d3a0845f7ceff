// Package transport adapts client connections to the push engine: one
// http.Handler per transport (WebSocket, long polling, ajax polling), each
// binding a client to a push session. It also holds the diagnostic
// endpoints /echo and /broadcast, which exercise the ws library alone.
package transport
