package ws

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

// hookConn runs afterWrite once a write has reached the peer, before the
// write returns to the Conn.
type hookConn struct {
	net.Conn
	afterWrite func()
}

func (h *hookConn) Write(p []byte) (int, error) {
	n, err := h.Conn.Write(p)
	if f := h.afterWrite; f != nil {
		h.afterWrite = nil
		f()
	}
	return n, err
}

// TestCtxEndAfterWrite: a write's ctx that ends once the frame is out
// must not break the next, unrelated write. The race is made
// deterministic: the ctx is cancelled, and every goroutine that its end
// starts has run, between the socket write and the return of
// WriteMessage, or after WriteMessage has returned. Either the call
// reports the ctx's end and the connection is closed, or the call
// succeeds and the connection stays fully usable; never a success
// followed by a failure of the next write.
func TestCtxEndAfterWrite(t *testing.T) {
	for _, when := range []string{"during the call", "after the call"} {
		t.Run(when, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, b := net.Pipe()
				defer b.Close()
				go io.Copy(io.Discard, b)
				hc := &hookConn{Conn: a}
				c := newConn(hc, true, 0)
				ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
				end := func() {
					cancel()
					synctest.Wait()
				}
				if when == "during the call" {
					hc.afterWrite = end
				}
				err := c.WriteMessage(ctx, MessageText, []byte("first"))
				if when == "after the call" {
					end()
				}
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("first write: %v, want nil or the ctx's error", err)
					}
					select {
					case <-c.Done():
					default:
						t.Fatal("the first write failed with its ctx's error but the connection is open")
					}
					return
				}
				if err := c.WriteMessage(context.Background(), MessageText, []byte("second")); err != nil {
					t.Fatalf("the first write succeeded, then its ctx ended and the next write failed: %v", err)
				}
				select {
				case <-c.Done():
					t.Fatal("connection closed by the ctx of a write that succeeded")
				default:
				}
				c.CloseNow()
			})
		})
	}
}

// TestCtxEndMidWriteCloses: a ctx that ends while the write is blocked
// (the peer does not read) closes the connection and fails the call with
// the ctx's error, after exactly the ctx's time.
func TestCtxEndMidWriteCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe() // b never reads
		defer b.Close()
		c := newConn(a, true, 0)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		err := c.WriteMessage(ctx, MessageBinary, make([]byte, 1<<16))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("write: %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("write returned after %v, want 3s", d)
		}
		select {
		case <-c.Done():
		default:
			t.Fatal("connection open after a ctx cut a write")
		}
		if err := c.WriteMessage(context.Background(), MessageText, []byte("x")); !errors.Is(err, ErrClosed) {
			t.Errorf("next write: %v, want ErrClosed", err)
		}
	})
}

// TestCtxEndMidReadCloses: the same for a read waiting for a message.
func TestCtxEndMidReadCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		c := newConn(a, true, 0)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, _, err := c.ReadMessage(ctx, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("read: %v, want DeadlineExceeded", err)
		}
		<-c.Done()
	})
}

// TestControlFrameOwnBound: a pong reply that cannot go out (a data frame
// to a peer that stopped reading holds the writer, with no ctx bound)
// closes the connection after controlTimeout, not never. Real time: the
// pong waits on a sync.Mutex, which synctest does not count as blocked.
func TestControlFrameOwnBound(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := newConn(a, true, 0)
	wrote := make(chan error, 1)
	go func() { wrote <- c.WriteMessage(context.Background(), MessageBinary, make([]byte, 1<<16)) }()
	read := make(chan error, 1)
	go func() {
		_, _, err := c.ReadMessage(context.Background(), nil)
		read <- err
	}()
	start := time.Now()
	if _, err := b.Write(clientFrame(bitFin|byte(opPing), []byte("hi"))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(3 * controlTimeout):
		t.Fatal("connection still open: the pong reply waits forever")
	}
	if d := time.Since(start); d < controlTimeout {
		t.Errorf("closed after %v, before the control timeout of %v", d, controlTimeout)
	}
	if err := <-read; err == nil {
		t.Error("reader got no error")
	}
	if err := <-wrote; err == nil {
		t.Error("blocked write got no error")
	}
}

// TestWriteTimeout: the connection's WriteTimeout closes it when a write
// is stuck, and leaves it alone after writes that finished in time.
func TestWriteTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		c := newConn(a, true, 0)
		c.setWriteTimeout(time.Second)
		done := make(chan struct{})
		go func() { // reads one frame, then stops reading
			var hdr [2]byte
			io.ReadFull(b, hdr[:])
			io.ReadFull(b, make([]byte, hdr[1]&0x7f))
			close(done)
		}()
		if err := c.WriteMessage(context.Background(), MessageText, []byte("in time")); err != nil {
			t.Fatal(err)
		}
		<-done
		time.Sleep(time.Hour) // the bound of the finished write is gone
		select {
		case <-c.Done():
			t.Fatal("closed by the bound of a write that had finished")
		default:
		}
		start := time.Now()
		err := c.WriteMessage(context.Background(), MessageText, []byte("stuck"))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("stuck write: %v, want a timeout", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("stuck write returned after %v, want 1s", d)
		}
		<-c.Done()
	})
}

// TestCtxEndedBeforeCall: a ctx that has already ended fails the call
// before it does anything; the connection, whose state is known, stays
// open.
func TestCtxEndedBeforeCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		go io.Copy(io.Discard, b)
		c := newConn(a, true, 0)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := c.WriteMessage(ctx, MessageText, []byte("x")); !errors.Is(err, context.Canceled) {
			t.Errorf("write: %v", err)
		}
		if _, _, err := c.ReadMessage(ctx, nil); !errors.Is(err, context.Canceled) {
			t.Errorf("read: %v", err)
		}
		synctest.Wait()
		select {
		case <-c.Done():
			t.Fatal("a ctx that had ended before the call closed the connection")
		default:
		}
		if err := c.WriteMessage(context.Background(), MessageText, []byte("y")); err != nil {
			t.Fatal(err)
		}
		c.CloseNow()
	})
}
