package transport

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/ws"
)

// newWSServer serves wst (given its Engine and Verifier here) on /chat and
// /chat/{room} over loopback.
func newWSServer(t *testing.T, wst *WebSocket) (*httptest.Server, *push.Engine) {
	t.Helper()
	e, err := push.New(push.Config{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.New(auth.Config{Secret: pollSecret})
	if err != nil {
		t.Fatal(err)
	}
	wst.Engine, wst.Verifier = e, v
	mux := http.NewServeMux()
	mux.Handle("GET /chat", wst)
	mux.Handle("GET /chat/{room}", wst)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := wst.Wait(ctx); err != nil {
			t.Error(err)
		}
	})
	return srv, e
}

func dialWS(t *testing.T, srv *httptest.Server, path, user string, opts *ws.DialOptions) *ws.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	c, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+path+sep+"token="+pollToken(t, user), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// TestSilentClientOutlivesWriteTimeout: a receive-only chat client that
// never writes a frame of its own (it answers pings, as browsers do) in a
// quiet room stays connected for 15 keepalive periods, 7 write timeouts,
// and then receives a message. The transport's write bound used to be a
// socket deadline set per batch and never cleared: the first keepalive
// ping after it had passed failed and the client was dropped.
func TestSilentClientOutlivesWriteTimeout(t *testing.T) {
	const keepAlive, writeTimeout = 100 * time.Millisecond, 200 * time.Millisecond
	srv, _ := newWSServer(t, &WebSocket{
		Accept:       ws.AcceptOptions{KeepAlive: keepAlive},
		WriteTimeout: writeTimeout,
	})
	silent := dialWS(t, srv, "/chat/quiet", "silent", nil)
	msgs := make(chan string, 64)
	readErr := make(chan error, 1)
	go func() {
		for {
			_, msg, err := silent.ReadMessage(context.Background(), nil)
			if err != nil {
				readErr <- err
				return
			}
			msgs <- string(msg)
		}
	}()
	talker := dialWS(t, srv, "/chat/quiet", "talker", nil)
	go func() { // answers the keepalive pings
		for {
			if _, _, err := talker.ReadMessage(context.Background(), nil); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	await := func(text string) {
		t.Helper()
		if err := talker.WriteMessage(ctx, ws.MessageText, []byte(text)); err != nil {
			t.Fatal(err)
		}
		for {
			select {
			case m := <-msgs:
				if strings.Contains(m, text) {
					return
				}
			case err := <-readErr:
				t.Fatalf("silent client dropped: %v", err)
			case <-ctx.Done():
				t.Fatalf("%q did not reach the silent client", text)
			}
		}
	}
	await("hello") // a batch written to the silent client, then silence
	select {
	case err := <-readErr:
		t.Fatalf("silent client dropped while idle: %v", err)
	case <-time.After(15 * keepAlive):
	}
	await("still there?")
}
