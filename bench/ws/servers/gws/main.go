// Command gws is the benchmark server for github.com/lxzan/gws.
//
//	/echo       OnMessage writes the payload back with WriteMessage.
//	/broadcast  OnMessage makes a gws.Broadcaster once and Broadcasts it to every
//	            connection: gws queues it on each connection's own writer (its
//	            asynchronous write queue) and encodes it once.
//
// Configured: ReadMaxPayloadSize, and PermessageDeflate {Enabled, no server
// or client context takeover} with -deflate. One ReadLoop goroutine per
// connection, as gws's README starts it; everything else is gws's default
// (ParallelEnabled off, no UTF-8 check).
package main

import (
	"net/http"
	"sync"

	"github.com/lxzan/gws"

	"github.com/hotline-rt/hotline/bench/ws/internal/wsserve"
)

type echo struct{ gws.BuiltinEventHandler }

func (echo) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	_ = c.WriteMessage(m.Opcode, m.Bytes())
}

type broadcast struct {
	gws.BuiltinEventHandler
	mu    sync.Mutex
	conns map[*gws.Conn]struct{}
}

func (b *broadcast) OnOpen(c *gws.Conn) {
	b.mu.Lock()
	b.conns[c] = struct{}{}
	b.mu.Unlock()
}

func (b *broadcast) OnClose(c *gws.Conn, _ error) {
	b.mu.Lock()
	delete(b.conns, c)
	b.mu.Unlock()
}

func (b *broadcast) OnMessage(_ *gws.Conn, m *gws.Message) {
	// The Broadcaster outlives the message's pooled buffer: copy it.
	p := append([]byte(nil), m.Bytes()...)
	op := m.Opcode
	m.Close()
	bc := gws.NewBroadcaster(op, p)
	b.mu.Lock()
	for c := range b.conns {
		_ = bc.Broadcast(c)
	}
	b.mu.Unlock()
	_ = bc.Close()
}

func main() {
	cfg := wsserve.Flags()
	opt := &gws.ServerOption{ReadMaxPayloadSize: int(cfg.ReadLimit)}
	if cfg.Deflate {
		opt.PermessageDeflate = gws.PermessageDeflate{Enabled: true}
	}
	echoUp := gws.NewUpgrader(echo{}, opt)
	bcastUp := gws.NewUpgrader(&broadcast{conns: map[*gws.Conn]struct{}{}}, opt)

	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		c, err := echoUp.Upgrade(w, r)
		if err != nil {
			return
		}
		go c.ReadLoop()
	})
	mux.HandleFunc("/broadcast", func(w http.ResponseWriter, r *http.Request) {
		c, err := bcastUp.Upgrade(w, r)
		if err != nil {
			return
		}
		go c.ReadLoop()
	})
	wsserve.ServeHTTP(cfg, mux)
}
