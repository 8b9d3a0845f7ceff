//go:build linux

package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/transport"
	"github.com/hotline-rt/hotline/ws"
	_ "github.com/hotline-rt/hotline/ws/xconnect" // extended CONNECT on the h2c server
)

// TestEventLoopTakeoverAcrossTransports: with -event-loop, GET /chat is
// served by the event loop and an HTTP/2 CONNECT by the goroutine
// WebSocket transport. A resume on either takes the session over from a
// connection of the other: the old one gets close 4000 and the new one the
// publications, so the queue never has two writers.
func TestEventLoopTakeoverAcrossTransports(t *testing.T) {
	for _, tc := range []struct {
		name          string
		first, second ws.HTTP2Mode
	}{
		{"EventLoopToH2", ws.HTTP2Off, ws.HTTP2Only},
		{"H2ToEventLoop", ws.HTTP2Only, ws.HTTP2Off},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, Config{EventLoop: true, H2C: true, SessionGrace: time.Minute})
			hs := httptest.NewUnstartedServer(srv.Handler())
			hs.Config = srv.HTTPServer()
			hs.Start()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(ctx)
				hs.Close()
			})
			base := "ws" + strings.TrimPrefix(hs.URL, "http")
			tok := token(t, "u", "U", time.Hour)
			h2opts := &ws.DialOptions{HTTP2: ws.HTTP2Only} // one pool for the test's h2c dials
			dialMode := func(path string, mode ws.HTTP2Mode) *client {
				t.Helper()
				opts := &ws.DialOptions{HTTP2: ws.HTTP2Off}
				if mode == ws.HTTP2Only {
					opts = h2opts
				}
				opts.Subprotocols = []string{"superchat"}
				opts.Header = http.Header{"Authorization": {"Bearer " + tok}}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				c, _, err := ws.Dial(ctx, base+path, opts)
				if err != nil {
					t.Fatalf("dial %s (%v): %v", path, mode, err)
				}
				t.Cleanup(func() { c.CloseNow() })
				return &client{t, c}
			}

			a := dialMode("/chat", tc.first)
			a.send(`{"id":1,"op":"connect"}`)
			var res struct{ Session string }
			if err := json.Unmarshal(a.next(reply(1)).Result, &res); err != nil || res.Session == "" {
				t.Fatalf("connect result: %v", err)
			}
			a.send(`{"id":2,"op":"subscribe","channel":"chat:r"}`)
			a.next(reply(2))

			b := dialMode("/chat?session="+res.Session, tc.second)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for {
				_, msg, err := a.c.ReadMessage(ctx, nil)
				if err != nil {
					if ws.CloseStatus(err) != transport.StatusSessionMoved {
						t.Fatalf("first connection: %v, want close 4000", err)
					}
					break
				}
				if strings.Contains(string(msg), `"after"`) {
					t.Fatal("the first connection still got the session's publication")
				}
			}
			if _, err := srv.Engine().Publish(ctx, push.PublishRequest{Channel: "chat:r", Data: []byte(`"after"`)}); err != nil {
				t.Fatal(err)
			}
			if m := b.next(publication); string(m.Push.Data) != `"after"` {
				t.Fatalf("second connection got %s", m.Push.Data)
			}
		})
	}
}
