package ws

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestLostConnectionError: a TCP connection that ends without a close
// frame reads as a local 1006, said once ("ws: ws:" is gone) and not as
// the peer's close.
func TestLostConnectionError(t *testing.T) {
	a, b := net.Pipe()
	c := newConn(a, true, 0)
	b.Close()
	_, _, err := c.ReadMessage(context.Background(), nil)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != StatusAbnormalClosure || !ce.Local {
		t.Fatalf("read: %v, want a local 1006", err)
	}
	s := err.Error()
	if strings.Count(s, "ws: ") != 1 || strings.Contains(s, "peer closed") || !strings.HasPrefix(s, "ws: connection lost: 1006") {
		t.Errorf("error reads %q", s)
	}
	peer := (&CloseError{Code: StatusGoingAway, Reason: "bye"}).Error()
	if peer != "ws: peer closed: 1001 (going away): bye" {
		t.Errorf("peer's close reads %q", peer)
	}
}

// TestPreparedMessageRefusesControl: a control opcode cannot be prepared
// (before MessageType, an OpPing prepared a data-sized ping).
func TestPreparedMessageRefusesControl(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewPreparedMessage accepted a ping")
		}
	}()
	NewPreparedMessage(MessageType(opPing), make([]byte, 1000))
}

// TestNetConnDeadlines: a deadline already passed fails Read at once and
// leaves the connection open; one passing during a blocked Read ends it
// with a timeout and closes the connection.
func TestNetConnDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		c := newConn(a, true, 0)
		nc := NetConn(c, MessageBinary)
		nc.SetReadDeadline(time.Now().Add(-time.Second))
		if _, err := nc.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read past deadline: %v", err)
		}
		select {
		case <-c.Done():
			t.Fatal("a deadline that had passed before Read closed the connection")
		default:
		}
		go func() { // a peer message, then silence
			b.Write(clientFrame(bitFin|byte(opBinary), []byte("abc")))
		}()
		nc.SetReadDeadline(time.Now().Add(time.Second))
		got, err := io.ReadAtLeast(nc, make([]byte, 3), 3)
		if err != nil || got != 3 {
			t.Fatalf("read: %d %v", got, err)
		}
		start := time.Now()
		_, err = nc.Read(make([]byte, 10))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("blocked read: %v, want a timeout", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("timed out after %v", d)
		}
		<-c.Done()
	})
}
