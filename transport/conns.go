package transport

import (
	"context"
	"fmt"
	"sync"
)

// openConns counts the connections a WebSocket transport serves: each is
// counted in before it is served and out when it has finished, and wait
// waits for idle to close. Not a sync.WaitGroup: ServeHTTP may still be
// adding connections while wait waits (hijacked connections outlive
// http.Server.Shutdown), which a WaitGroup forbids at zero.
type openConns struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0
}

func (o *openConns) add() {
	o.mu.Lock()
	o.n++
	if o.n == 1 {
		o.idle = make(chan struct{})
	}
	o.mu.Unlock()
}

func (o *openConns) done() {
	o.mu.Lock()
	o.n--
	if o.n == 0 {
		close(o.idle)
	}
	o.mu.Unlock()
}

// Len returns the number of connections being served.
func (o *openConns) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n
}

// wait blocks until no connection is left, or ctx ends; what names the
// connections in the error.
func (o *openConns) wait(ctx context.Context, what string) error {
	o.mu.Lock()
	idle, n := o.idle, o.n
	o.mu.Unlock()
	if n == 0 {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("transport: %d %s still open: %w", o.Len(), what, ctx.Err())
	}
}
