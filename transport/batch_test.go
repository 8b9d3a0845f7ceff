package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/ws"
)

// countListener counts the writes to the connections it accepts.
type countListener struct {
	net.Listener
	writes atomic.Int64
}

func (l *countListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countConn{Conn: nc, writes: &l.writes}, nil
}

type countConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestWriterOneWritePerBurst: the messages queued for a connection go out
// in one write, each a frame of its own, not one write per message. A
// session subscribes and gets a burst of publications while no transport
// is attached; a WebSocket client then resumes it, and the writer finds
// the whole burst queued: one write for the 101 response, one for the
// burst.
func TestWriterOneWritePerBurst(t *testing.T) {
	const burst = 60
	e, err := push.New(push.Config{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.New(auth.Config{Secret: pollSecret})
	if err != nil {
		t.Fatal(err)
	}
	wst := &WebSocket{Engine: e, Verifier: v}
	mux := http.NewServeMux()
	mux.Handle("GET /chat", wst)
	srv := httptest.NewUnstartedServer(mux)
	ln := &countListener{Listener: srv.Listener}
	srv.Listener = ln
	srv.Start()
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

	ctx := context.Background()
	s, err := e.Connect(ctx, push.ConnectRequest{Identity: auth.Identity{UserID: "ann", Name: "ANN"}, Protocol: push.ProtocolSuperchat, Transport: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Handle(ctx, []byte(`{"id":1,"op":"subscribe","channel":"news"}`)); err != nil {
		t.Fatal(err)
	}
	for i := range burst {
		data, _ := json.Marshal(fmt.Sprintf("line %d", i))
		if _, err := e.Publish(ctx, push.PublishRequest{Channel: "news", Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := s.QueueSize(); n != burst+1 {
		t.Fatalf("%d items queued, want %d", n, burst+1)
	}
	s.Detach()

	c := dialWS(t, srv, "/chat?session="+s.ID(), "ann", &ws.DialOptions{Subprotocols: []string{"superchat"}})
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for i := range burst + 1 {
		_, msg, err := c.ReadMessage(rctx, nil)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if i == 0 {
			if !strings.Contains(string(msg), `"id":1`) {
				t.Fatalf("first message %s, want the subscribe reply", msg)
			}
			continue
		}
		if want := fmt.Sprintf(`"line %d"`, i-1); !strings.Contains(string(msg), want) {
			t.Fatalf("message %d = %s, want the publication %s", i, msg, want)
		}
	}
	if w := ln.writes.Load(); w != 2 {
		t.Errorf("%d writes to the connection (101 response and %d queued messages), want 2", w, burst+1)
	}
}

// TestWriterWakeups: the writer goroutine runs only while something is
// queued, and an item queued just as it goes idle (the wake finds it still
// running and starts nothing) must start it again. A test hook publishes
// while the writer has drained the queue and not yet gone idle; the client
// must get that publication. Without the writer's check for work after it
// has gone idle, it stays queued (checked by removing the check).
func TestWriterWakeups(t *testing.T) {
	// Cleanups run last first: the hook is reset after the server's
	// cleanup has waited for every connection (and its writer) to end.
	t.Cleanup(func() { beforeIdle = nil })
	var e *push.Engine
	var fired atomic.Int32
	beforeIdle = func(*wsWriter) {
		// The first idle after the subscribe reply went out.
		if fired.Load() == 1 && fired.CompareAndSwap(1, 2) {
			if _, err := e.Publish(context.Background(), push.PublishRequest{Channel: "news", Data: []byte(`"late"`)}); err != nil {
				t.Error(err)
			}
		}
	}
	srv, eng := newWSServer(t, &WebSocket{})
	e = eng
	c, _ := superchatSession(t, srv, e, "ann")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fired.Store(1)
	if err := c.WriteMessage(ctx, ws.MessageText, []byte(`{"id":2,"op":"subscribe","channel":"news"}`)); err != nil {
		t.Fatal(err)
	}
	for {
		rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
		_, msg, err := c.ReadMessage(rctx, nil)
		rcancel()
		if err != nil {
			t.Fatalf("no publication after the subscribe reply: %v (hook fired: %v)", err, fired.Load() == 2)
		}
		if strings.Contains(string(msg), `"data":"late"`) {
			break
		}
	}

	// And publications back to back while the client reads.
	const n = 500 // within the queue bound (1024): the client may lag
	errc := make(chan error, 1)
	go func() {
		for i := range n {
			data, _ := json.Marshal(strconv.Itoa(i))
			if _, err := e.Publish(ctx, push.PublishRequest{Channel: "news", Data: data}); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := range n {
		_, msg, err := c.ReadMessage(ctx, nil)
		if err != nil {
			t.Fatalf("publication %d of %d: %v", i, n, err)
		}
		if want := fmt.Sprintf(`"data":"%d"`, i); !strings.Contains(string(msg), want) {
			t.Fatalf("message %s, want publication %d", msg, i)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
