// Command gorilla is the benchmark server for github.com/gorilla/websocket.
//
//	/echo       NextReader read into a reused buffer, WriteMessage back with the same type.
//	/broadcast  the hub of gorilla's chat example: every message is made a
//	            PreparedMessage once and queued on every connection, whose write pump
//	            goroutine writes it with WritePreparedMessage.
//
// With -fresh, /echo runs on a goroutine of its own after the upgrade, as
// gorilla's chat example runs its pumps. Configured: SetReadLimit, and Upgrader.EnableCompression with -deflate
// (gorilla negotiates no context takeover only). The Upgrader is otherwise
// its zero value: default buffers, same-origin check.
package main

import (
	"io"
	"net/http"

	"github.com/gorilla/websocket"

	"github.com/hotline-rt/hotline/bench/ws/internal/wsserve"
)

func main() {
	cfg := wsserve.Flags()
	up := websocket.Upgrader{EnableCompression: cfg.Deflate}
	hub := wsserve.NewHub[*websocket.PreparedMessage](cfg.Queue)

	mux := http.NewServeMux()
	echo := func(c *websocket.Conn) {
		defer c.Close()
		var buf []byte
		for {
			typ, rd, err := c.NextReader()
			if err != nil {
				return
			}
			if buf, err = readAll(rd, buf[:0]); err != nil {
				return
			}
			if err := c.WriteMessage(typ, buf); err != nil {
				return
			}
		}
	}
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c.SetReadLimit(cfg.ReadLimit)
		wsserve.Go(cfg, echo, c)
	})
	mux.HandleFunc("/broadcast", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.SetReadLimit(cfg.ReadLimit)
		cl := hub.Join()
		defer hub.Leave(cl)
		go func() {
			for pm := range cl.C {
				if err := c.WritePreparedMessage(pm); err != nil {
					c.Close()
				}
			}
			c.Close()
		}()
		for {
			typ, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			pm, err := websocket.NewPreparedMessage(typ, p)
			if err != nil {
				return
			}
			hub.Send(pm)
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
