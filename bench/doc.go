// Package bench compares hotline's ws package with other Go WebSocket
// libraries in one benchmark run: gorilla/websocket, coder/websocket,
// lxzan/gws and gobwas/ws. It is a module of its own so that the peers
// stay out of hotline's go.mod; it has tests and benchmarks only. See
// README.md.
package bench
