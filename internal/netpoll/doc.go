// Package netpoll is the readiness side of hotline's event-loop mode: one
// epoll instance, edge-triggered, that tells a Handler when its socket may
// be read or written, and a small pool of workers that runs the work a
// readiness calls for. A registered socket costs a slot in a table indexed
// by its descriptor and nothing else: no goroutine, no buffer.
//
// It runs on Linux; elsewhere New fails.
package netpoll
