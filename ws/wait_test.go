package ws

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestWaitReadable: WaitReadable returns when a message arrives, at once
// when one is already buffered (two frames that came in one read: waiting
// on the socket then would hold the second until the client sends again),
// and when the peer goes.
func TestWaitReadable(t *testing.T) {
	type step struct {
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
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			err := c.WaitReadable(ctx)
			cancel()
			if err != nil {
				steps <- step{err: err}
				return
			}
			_, msg, err := c.ReadMessage(context.Background(), nil)
			steps <- step{string(msg), err}
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	nc, _ := rawClient(t, srv)
	next := func(want string) {
		t.Helper()
		select {
		case s := <-steps:
			if s.err != nil || s.msg != want {
				t.Fatalf("got %q, %v; want %q", s.msg, s.err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no message %q", want)
		}
	}
	select {
	case s := <-steps:
		t.Fatalf("WaitReadable returned before the client sent anything: %+v", s)
	case <-time.After(50 * time.Millisecond):
	}
	nc.Write(clientFrame(0x81, []byte("one")))
	next("one")
	// Two frames in one write: the second is buffered after the first.
	nc.Write(append(clientFrame(0x81, []byte("two")), clientFrame(0x81, []byte("three"))...))
	next("two")
	next("three")
	nc.Close()
	select {
	case s := <-steps:
		if s.err == nil || errors.Is(s.err, context.DeadlineExceeded) {
			t.Fatalf("after the client went: %+v, want a read error", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitReadable did not return when the client went")
	}
}

// TestWaitReadableAllocs: waiting allocates nothing.
func TestWaitReadableAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	got := make(chan float64, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := context.Background()
		var buf []byte
		got <- testing.AllocsPerRun(20, func() {
			if err := c.WaitReadable(ctx); err != nil {
				t.Error(err)
			}
			_, buf, _ = c.ReadMessage(ctx, buf[:0])
		})
	}))
	defer srv.Close()
	nc, _ := rawClient(t, srv)
	tick := clientFrame(0x81, []byte("tick"))
	go func() { // allocates nothing either: AllocsPerRun counts the process
		for range 21 {
			time.Sleep(time.Millisecond)
			nc.Write(tick)
		}
	}()
	select {
	case a := <-got:
		if a > 0 {
			t.Errorf("%v allocations per wait and read", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timeout")
	}
}
