// Command coder is the benchmark server for github.com/coder/websocket.
//
//	/echo       Reader read into a reused buffer, Write back with the same type.
//	/broadcast  every message is queued on every connection of the hub, whose writer
//	            goroutine writes it with Write (coder has no prepared message, so each
//	            connection encodes it), as coder's chat example does.
//
// With -fresh, /echo runs on a goroutine of its own after the upgrade.
// Configured: SetReadLimit, and CompressionMode: CompressionNoContextTakeover
// with -deflate, CompressionDisabled without. AcceptOptions are otherwise
// zero: same-origin check.
package main

import (
	"context"
	"io"
	"net/http"

	"github.com/coder/websocket"

	"github.com/hotline-rt/hotline/bench/ws/internal/wsserve"
)

type message struct {
	typ websocket.MessageType
	p   []byte
}

func main() {
	cfg := wsserve.Flags()
	opts := &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled}
	if cfg.Deflate {
		opts.CompressionMode = websocket.CompressionNoContextTakeover
	}
	hub := wsserve.NewHub[message](cfg.Queue)
	ctx := context.Background()

	mux := http.NewServeMux()
	echo := func(c *websocket.Conn) {
		defer c.CloseNow()
		var buf []byte
		for {
			typ, rd, err := c.Reader(ctx)
			if err != nil {
				return
			}
			if buf, err = readAll(rd, buf[:0]); err != nil {
				return
			}
			if err := c.Write(ctx, typ, buf); err != nil {
				return
			}
		}
	}
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, opts)
		if err != nil {
			return
		}
		c.SetReadLimit(cfg.ReadLimit)
		wsserve.Go(cfg, echo, c)
	})
	mux.HandleFunc("/broadcast", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, opts)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(cfg.ReadLimit)
		cl := hub.Join()
		defer hub.Leave(cl)
		go func() {
			for m := range cl.C {
				if err := c.Write(ctx, m.typ, m.p); err != nil {
					c.CloseNow()
				}
			}
			c.CloseNow()
		}()
		for {
			typ, p, err := c.Read(ctx)
			if err != nil {
				return
			}
			hub.Send(message{typ, p})
		}
	})
	wsserve.ServeHTTP(cfg, mux)
}

// readAll is io.ReadAll into buf, so that a connection reuses one buffer.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
