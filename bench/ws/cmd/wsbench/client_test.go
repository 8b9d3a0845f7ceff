package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hotline-rt/hotline/ws"
)

// serve runs h on a loopback listener until the test ends.
func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// The load generator's compressed frames are read by a real
// permessage-deflate implementation, and it inflates what comes back.
func TestClientDeflateEcho(t *testing.T) {
	addr := serve(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Upgrade(w, r, &ws.AcceptOptions{Compression: &ws.CompressionOptions{}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := context.Background()
		for {
			typ, p, err := c.ReadMessage(ctx, nil)
			if err != nil {
				return
			}
			if err := c.WriteMessage(ctx, typ, p); err != nil {
				return
			}
		}
	})
	c, err := dial(addr, "/echo", false, true, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if !c.deflate {
		t.Fatal("permessage-deflate not negotiated")
	}
	text := payloadOf(16<<10, true)
	frame := c.frame(nil, opText, compress(text), true)
	if len(frame) > len(text)/2 {
		t.Fatalf("16 KiB of JSON text compressed to %d bytes: not compressible", len(frame))
	}
	for i := range 3 {
		if _, err := c.nc.Write(frame); err != nil {
			t.Fatal(err)
		}
		got, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, text) {
			t.Fatalf("echo %d: %d bytes, not the message sent", i, len(got))
		}
	}
}

// A message split into frames, with a ping between them, is read whole.
func TestClientJoinsFragments(t *testing.T) {
	up := websocket.Upgrader{}
	want := []byte(strings.Repeat("fragment ", 1000))
	addr := serve(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for range 2 {
			w, err := c.NextWriter(websocket.BinaryMessage)
			if err != nil {
				return
			}
			// gorilla flushes a frame at each write past its 4 KiB buffer.
			for i := 0; i < len(want); i += 3000 {
				w.Write(want[i:min(i+3000, len(want))])
				if i == 0 {
					c.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(time.Second))
				}
			}
			w.Close()
		}
		c.ReadMessage()
	})
	c, err := dial(addr, "/echo", false, false, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	for i := range 2 {
		got, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("message %d: %d bytes, want %d", i, len(got), len(want))
		}
	}
}
