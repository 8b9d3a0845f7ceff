package ws

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestReadMessageReady: after WaitReadable, a read that finds only control
// frames answers them and returns MessageType 0 instead of waiting for a
// data message; a data frame behind a control frame (same write) or split
// across writes is read whole; the peer's close ends it as ReadMessage.
func TestReadMessageReady(t *testing.T) {
	type step struct {
		op  MessageType
		msg string
		err error
	}
	steps := make(chan step, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := c.WaitReadable(ctx)
			cancel()
			if err != nil {
				steps <- step{err: err}
				return
			}
			op, msg, err := c.ReadMessageReady(context.Background(), nil)
			steps <- step{op, string(msg), err}
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	nc, br := rawClient(t, srv)
	next := func(op MessageType, want string) {
		t.Helper()
		select {
		case s := <-steps:
			if s.err != nil || s.op != op || s.msg != want {
				t.Fatalf("got %v %q, %v; want %v %q", s.op, s.msg, s.err, op, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no step %v %q", op, want)
		}
	}

	// A ping alone: answered, and the read returns without a message.
	nc.Write(clientFrame(0x89, []byte("p1")))
	next(0, "")
	if h, p := readServerFrame(t, br); h.op != opPong || string(p) != "p1" {
		t.Fatalf("got op %v %q, want the pong", h.op, p)
	}
	// A pong alone (as after a keepalive ping): the same.
	nc.Write(clientFrame(0x8a, nil))
	next(0, "")
	// A ping with a message behind it in the same write: the message.
	nc.Write(append(clientFrame(0x89, []byte("p2")), clientFrame(0x81, []byte("one"))...))
	next(MessageText, "one")
	readServerFrame(t, br)
	// A message split across writes, a ping between its frames: whole.
	nc.Write(clientFrame(0x01, []byte("tw")))
	time.Sleep(20 * time.Millisecond)
	nc.Write(clientFrame(0x89, nil))
	time.Sleep(20 * time.Millisecond)
	nc.Write(clientFrame(0x80, []byte("o")))
	next(MessageText, "two")
	// The peer's close: a *CloseError, as from ReadMessage.
	nc.Write(clientFrame(0x88, []byte{0x03, 0xe8}))
	select {
	case s := <-steps:
		if CloseStatus(s.err) != StatusNormalClosure {
			t.Fatalf("after the close frame: %+v, want close 1000", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no end after the close frame")
	}
}
