// Command hotline is the benchmark server for github.com/hotline-rt/hotline/ws.
//
//	/echo       ReadMessage into a reused buffer, WriteMessage back with the same type.
//	/broadcast  every message received is made a PreparedMessage once and queued on
//	            every connection of the hub, whose writer goroutine WritePrepared it.
//
// With -fresh, /echo runs on a goroutine of its own after the upgrade.
// Configured: AcceptOptions.ReadLimit, and Compression (no context
// takeover, the library's default level and threshold) with -deflate.
// Everything else is the library's default.
package main

import (
	"context"
	"net/http"

	"github.com/hotline-rt/hotline/bench/ws/internal/wsserve"
	"github.com/hotline-rt/hotline/ws"
)

func main() {
	cfg := wsserve.Flags()
	opts := &ws.AcceptOptions{ReadLimit: cfg.ReadLimit}
	if cfg.Deflate {
		opts.Compression = &ws.CompressionOptions{}
	}
	hub := wsserve.NewHub[*ws.PreparedMessage](cfg.Queue)
	ctx := context.Background()

	mux := http.NewServeMux()
	echo := func(c *ws.Conn) {
		defer c.CloseNow()
		var buf []byte
		for {
			typ, p, err := c.ReadMessage(ctx, buf[:0])
			if err != nil {
				return
			}
			buf = p
			if err := c.WriteMessage(ctx, typ, p); err != nil {
				return
			}
		}
	}
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Upgrade(w, r, opts)
		if err != nil {
			return
		}
		wsserve.Go(cfg, echo, c)
	})
	mux.HandleFunc("/broadcast", func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Upgrade(w, r, opts)
		if err != nil {
			return
		}
		defer c.CloseNow()
		cl := hub.Join()
		defer hub.Leave(cl)
		go func() {
			for pm := range cl.C {
				if err := c.WritePrepared(ctx, pm); err != nil {
					c.CloseNow()
				}
			}
			c.CloseNow()
		}()
		for {
			// A fresh buffer per message: the prepared message keeps it.
			typ, p, err := c.ReadMessage(ctx, nil)
			if err != nil {
				return
			}
			hub.Send(ws.NewPreparedMessage(typ, p))
		}
	})
	wsserve.ServeHTTP(cfg, mux)
}
