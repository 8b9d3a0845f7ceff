package transport

import "github.com/hotline-rt/hotline/ws"

// holdStream keeps a handler in its call while c runs on an HTTP/2
// stream (RFC 8441): net/http ends the stream when the handler returns,
// so a handler that serves c on another goroutine waits here for c to
// close. Over HTTP/1.1 the connection was hijacked and it returns at once.
func holdStream(c *ws.Conn) {
	if c.HTTP2() {
		<-c.Done()
	}
}
