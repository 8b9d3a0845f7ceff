package interop

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/ws"
)

// Each peer is tested both ways: its client against hotline's server
// (ws.Upgrade) and hotline's client (ws.Dial) against its server.

func TestPythonClient(t *testing.T) { testPeerClient(t, pythonPeer) }
func TestPythonServer(t *testing.T) { testPeerServer(t, pythonPeer) }
func TestNodeClient(t *testing.T)   { testPeerClient(t, nodePeer) }
func TestNodeServer(t *testing.T)   { testPeerServer(t, nodePeer) }

// testPeerClient runs every conversation with the peer's client dialing a
// hotline server.
func testPeerClient(t *testing.T, p peer) {
	requirePeer(t, p)
	for _, cv := range conversations {
		t.Run(cv.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), caseTimeout)
			defer cancel()

			type accepted struct {
				c   *ws.Conn
				err error
			}
			conns := make(chan accepted, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := ws.Upgrade(w, r, &ws.AcceptOptions{Subprotocols: cv.serverProtocols})
				select {
				case conns <- accepted{c, err}:
				default: // a second connection: not part of any case
					if c != nil {
						_ = c.CloseNow()
					}
				}
			}))
			t.Cleanup(srv.Close)
			url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/" + cv.name

			pr := startPeer(t, p, "client", url, cv.name)
			var c *ws.Conn
			select {
			case a := <-conns:
				if a.err != nil {
					t.Fatalf("Upgrade: %v", a.err)
				}
				c = a.c
			case <-pr.done:
				_, err := pr.wait(ctx)
				t.Fatalf("peer exited before the upgrade: %v\n%s", err, pr.log())
			case <-ctx.Done():
				t.Fatalf("no upgrade: %v\n%s", ctx.Err(), pr.log())
			}
			converse(ctx, t, p, cv, c, pr)
		})
	}
}

// testPeerServer runs every conversation with hotline's client dialing the
// peer's server.
func testPeerServer(t *testing.T, p peer) {
	requirePeer(t, p)
	for _, cv := range conversations {
		if cv.hotlineServerOnly {
			continue
		}
		t.Run(cv.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), caseTimeout)
			defer cancel()

			pr := startPeer(t, p, "server", cv.name)
			port, err := pr.port(ctx)
			if err != nil {
				t.Fatal(err)
			}
			url := fmt.Sprintf("ws://127.0.0.1:%d/%s", port, cv.name)
			c, resp, err := ws.Dial(ctx, url, &ws.DialOptions{Subprotocols: cv.clientProtocols})
			if err != nil {
				status := "no response"
				if resp != nil {
					status = resp.Status
				}
				t.Fatalf("Dial %s: %v (%s)\n%s", url, err, status, pr.log())
			}
			converse(ctx, t, p, cv, c, pr)
		})
	}
}

// converse runs hotline's half of cv on c, waits for the peer to exit and
// checks what it reported.
func converse(ctx context.Context, t *testing.T, p peer, cv conversation, c *ws.Conn, pr *proc) {
	t.Helper()
	// CloseNow only after the peer is done: a close frame hotline sends on
	// its own (1007, the echo of the peer's close) must not be cut off.
	defer func() { _ = c.CloseNow() }()
	if err := runHotline(ctx, cv, c); err != nil {
		t.Errorf("hotline side: %v", err)
		// The conversation is off script; the peer ends on the closed
		// connection. After a panic c may hold a lock for good, so do not
		// wait for CloseNow forever.
		closed := make(chan struct{})
		go func() { _ = c.CloseNow(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Errorf("CloseNow did not return within 5s")
		}
	}
	evs, err := pr.wait(ctx)
	if err != nil {
		t.Errorf("%s: %v", p.name, err)
	}
	if err := cv.check(p, evs); err != nil {
		t.Errorf("%s side: %v", p.name, err)
	}
}

// runHotline runs hotline's half of cv and turns a panic in ws into an
// error, so that one case's panic does not hide the results of the others.
func runHotline(ctx context.Context, cv conversation, c *ws.Conn) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return cv.hotline(ctx, c)
}
