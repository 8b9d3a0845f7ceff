//go:build linux

package transport

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/ws"
)

// TestEchoBacklogBound holds echoBacklog: a client that sends and does not
// read gets a close 1008 behind the echoes that were queued, not every
// echo (which the event loop would keep in memory for it). Without the
// bound in echoMessage all of them come back.
func TestEchoBacklogBound(t *testing.T) {
	el := &EventLoop{ReadWorkers: 1, WriteWorkers: 1, WriteTimeout: time.Minute}
	if err := el.Start(); err != nil {
		t.Fatal(err)
	}
	defer el.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = el.ServeEcho(w, r, nil)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	// A small receive buffer, so that the kernel holds little of the
	// echoes and the rest waits in the event loop.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
		})
		return errors.Join(err, serr)
	}}
	c, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), &ws.DialOptions{
		NetDialContext: d.DialContext,
		ReadLimit:      1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()

	// 24 MiB: more than the server's send buffer (tcp_wmem's 4 MiB at
	// most), one batch in its pending write and echoBacklog together.
	const n, size = 384, 64 << 10
	msg := make([]byte, size)
	for i := range n {
		if err := c.WriteMessage(ctx, ws.MessageBinary, msg); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	echoes := 0
	for {
		_, _, err := c.ReadMessage(ctx, nil)
		if err != nil {
			if ws.CloseStatus(err) != ws.StatusPolicyViolation {
				t.Fatalf("after %d echoes: %v, want the close 1008", echoes, err)
			}
			break
		}
		echoes++
		if echoes == n {
			t.Fatalf("all %d echoes came back to a client that did not read: the backlog is not bounded", n)
		}
	}
	t.Logf("%d of %d echoes (%d KiB) before the close 1008", echoes, n, echoes*size>>10)
	if err := el.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}
