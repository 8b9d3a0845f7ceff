package wsserve

import (
	"fmt"
	"os"
	"sync"
)

// Hub is the broadcast hub of the servers that keep a queue per
// connection, in the manner of gorilla's chat example: every message is
// encoded once (T is the library's prepared form of it) and queued on
// every connection, whose own goroutine writes it. A connection whose
// queue is full is dropped, and said so on stderr, never skipped
// silently: the harness counts every delivery.
type Hub[T any] struct {
	mu      sync.Mutex
	clients map[*Client[T]]struct{}
	queue   int
}

// Client is one connection's queue. C is closed when the connection
// leaves or is dropped; its writer then closes the connection.
type Client[T any] struct {
	C chan T
}

// NewHub returns a hub whose queues hold queue messages each.
func NewHub[T any](queue int) *Hub[T] {
	return &Hub[T]{clients: map[*Client[T]]struct{}{}, queue: queue}
}

// Join adds a connection.
func (h *Hub[T]) Join() *Client[T] {
	c := &Client[T]{C: make(chan T, h.queue)}
	h.mu.Lock()
	h.clients[c] = struct{}{}
	h.mu.Unlock()
	return c
}

// Leave removes a connection and closes its queue; it may be called
// after the hub dropped it.
func (h *Hub[T]) Leave(c *Client[T]) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		close(c.C)
	}
}

// Send queues m on every connection. It never blocks on the network.
func (h *Hub[T]) Send(m T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		select {
		case c.C <- m:
		default:
			delete(h.clients, c)
			close(c.C)
			fmt.Fprintln(os.Stderr, "broadcast: queue full, connection dropped")
		}
	}
}
