package interop

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/hotline-rt/hotline/transport"
	"github.com/hotline-rt/hotline/ws"
)

// The event-loop mode (hotline serve -event-loop) reads and writes
// WebSocket frames with its own machinery: ws.UpgradeDetached, an epoll
// poller, read and write worker pools, ws.Decoder and non-blocking writes
// (transport.EventLoop). Its conversations here are with
// EventLoop.ServeEcho, that machinery without a push session: each peer
// client runs a case's opening (the "echo-" cases of peer.py and peer.js),
// the event loop echoes every message, and the peer closes once it has its
// echoes. The server side counts what its Decoders gave, so that a case
// that never reached the event loop fails.
//
// Not run against the event loop, and why:
//   - the peers' servers (TestPythonServer, TestNodeServer): the event loop
//     is a server only;
//   - permessage-deflate (deflate_test.go): the event loop declines it;
//     deflate-declined checks that the peers then talk without it;
//   - Chromium (chromium_test.go, chromium_h2_test.go): about the
//     browser's deflate offer and HTTP/2, neither served by the event loop;
//   - hotline's own ping (the "go-ping" of the ping case) and fragmented
//     writes: ws.Conn's sending side; the event loop pings from its
//     keepalive sweeper (server/eventloop_test.go) and writes each message
//     in one frame.

// echoCase is one conversation with the event loop's echo.
type echoCase struct {
	name string
	// peerCase is the case the peer runs, "echo-" + name if empty.
	peerCase string
	// deflate is the peer's permessage-deflate offer (a DEFLATE argument).
	deflate         string
	serverProtocols []string
	// subprotocol is what the server must have chosen.
	subprotocol string
	// closeCode, if set, is the server's close frame right after the
	// upgrade, with closeReason.
	closeCode   ws.StatusCode
	closeReason string
	// decoded is how many events of each kind the event loop's Decoder
	// must have given (kinds not named: none).
	decoded map[ws.EventKind]int64
	check   func(p peer, evs []event) error
}

var echoCases = []echoCase{
	{
		name:    "text",
		decoded: map[ws.EventKind]int64{ws.EventMessage: 1, ws.EventClose: 1},
		check: func(_ peer, evs []event) error {
			return checkPeer(evs, messages(textEvent("peer: héllo ✓")), closed(1000, ""))
		},
	},
	{
		name:    "binary",
		decoded: map[ws.EventKind]int64{ws.EventMessage: 1, ws.EventClose: 1},
		check: func(_ peer, evs []event) error {
			return checkPeer(evs, messages(binaryEvent(ascending(256))), closed(1000, ""))
		},
	},
	{
		// Two messages in three frames each; the text's frames split "é".
		name:    "fragmented",
		decoded: map[ws.EventKind]int64{ws.EventMessage: 2, ws.EventClose: 1},
		check: func(_ peer, evs []event) error {
			return checkPeer(evs,
				messages(textEvent("fragmented héllo"), binaryEvent([]byte{0, 1, 2, 3})),
				closed(1000, ""))
		},
	},
	{
		// 16 MiB each way: the echo cannot go out in one write, so the
		// writer meets EAGAIN and resumes on EPOLLOUT.
		name:    "big",
		decoded: map[ws.EventKind]int64{ws.EventMessage: 1, ws.EventClose: 1},
		check: func(_ peer, evs []event) error {
			return checkPeer(evs, messages(binaryEvent(peerPattern(bigSize))), closed(1000, ""))
		},
	},
	{
		name:    "ping",
		decoded: map[ws.EventKind]int64{ws.EventPing: 1, ws.EventMessage: 1, ws.EventClose: 1},
		check: func(_ peer, evs []event) error {
			return checkPeer(evs,
				has(event{Event: "pong", Data: "peer-ping"}),
				messages(textEvent("pinged")),
				closed(1000, ""))
		},
	},
	{
		name:    "close-peer",
		decoded: map[ws.EventKind]int64{ws.EventClose: 1},
		check: func(_ peer, evs []event) error {
			// The event loop echoes the peer's code (RFC 6455, 5.5.1).
			return checkPeer(evs, messages(), closedCode(4000))
		},
	},
	{
		// The server closes first; the peer's answer ends the connection.
		name:        "close-hotline",
		closeCode:   4000,
		closeReason: "bye",
		decoded:     map[ws.EventKind]int64{ws.EventClose: 1},
		check: func(_ peer, evs []event) error {
			return checkPeer(evs, messages(), closed(4000, "bye"))
		},
	},
	{
		name:            "subprotocol",
		serverProtocols: []string{"chat", "superchat"},
		subprotocol:     "chat",
		decoded:         map[ws.EventKind]int64{ws.EventClose: 1},
		check: func(_ peer, evs []event) error {
			return checkPeer(evs, has(event{Event: "open", Subprotocol: "chat"}), closed(1000, ""))
		},
	},
	{
		// The client's first supported choice, whatever the server's order.
		name:            "subprotocol-client-order",
		serverProtocols: []string{"superchat", "chat"},
		subprotocol:     "chat",
		decoded:         map[ws.EventKind]int64{ws.EventClose: 1},
		check: func(_ peer, evs []event) error {
			return checkPeer(evs, has(event{Event: "open", Subprotocol: "chat"}), closed(1000, ""))
		},
	},
	{
		name:    "invalid-utf8",
		decoded: map[ws.EventKind]int64{ws.EventError: 1},
		check: func(_ peer, evs []event) error {
			return checkPeer(evs, messages(), closedCode(1007))
		},
	},
	{
		// The peer offers permessage-deflate; the event loop declines, and
		// the deflate case's messages (text and binary, up to 1 MiB, one
		// in three frames) go both ways uncompressed.
		name:     "deflate-declined",
		peerCase: "echo-deflate",
		deflate:  "{}",
		decoded:  map[ws.EventKind]int64{ws.EventMessage: 4, ws.EventClose: 1},
		check: func(_ peer, evs []event) error {
			var want []event
			for _, m := range peerDeflateMessages() {
				if m.op == ws.MessageText {
					want = append(want, textEvent(string(m.data)))
				} else {
					want = append(want, binaryEvent(m.data))
				}
			}
			return checkPeer(evs,
				has(event{Event: "open", Extensions: ""}),
				messages(want...),
				closed(1000, ""))
		},
	},
}

func TestEventLoopPythonClient(t *testing.T) { testEventLoopClient(t, pythonPeer) }
func TestEventLoopNodeClient(t *testing.T)   { testEventLoopClient(t, nodePeer) }

// testEventLoopClient runs every echo case with the peer's client dialing
// an event loop of its own.
func testEventLoopClient(t *testing.T, p peer) {
	if runtime.GOOS != "linux" {
		t.Skip("the event loop needs Linux (epoll)")
	}
	requirePeer(t, p)
	for _, ec := range echoCases {
		t.Run(ec.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), caseTimeout)
			defer cancel()

			el := &transport.EventLoop{ReadWorkers: 2, WriteWorkers: 2}
			if err := el.Start(); err != nil {
				t.Fatal(err)
			}
			defer el.Close()
			opts := &transport.EchoOptions{
				Accept: ws.AcceptOptions{
					Subprotocols: ec.serverProtocols,
					ReadLimit:    2 * bigSize,
				},
				CloseCode:   ec.closeCode,
				CloseReason: ec.closeReason,
			}
			ups := make(chan echoUpgrade, 4)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sub, err := el.ServeEcho(w, r, opts)
				select {
				case ups <- echoUpgrade{sub, err}:
				default:
				}
			}))
			defer srv.Close()
			url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/" + ec.name

			peerCase := ec.peerCase
			if peerCase == "" {
				peerCase = "echo-" + ec.name
			}
			args := []string{"client", url, peerCase}
			if ec.deflate != "" {
				args = append(args, ec.deflate)
			}
			pr := startPeer(t, p, args...)
			evs, err := pr.wait(ctx)
			if err != nil {
				t.Errorf("%s: %v", p.name, err)
			}
			if err := ec.check(p, evs); err != nil {
				t.Errorf("%s side: %v", p.name, err)
			}
			// The event loop must have closed its side too.
			if err := el.Wait(ctx); err != nil {
				t.Errorf("event loop: %v", err)
			}
			if err := checkEventLoop(ctx, el, ec, ups); err != nil {
				t.Errorf("event loop side: %v", err)
			}
		})
	}
}

// echoUpgrade is what ServeEcho returned.
type echoUpgrade struct {
	sub string
	err error
}

// checkEventLoop reports what is wrong with the server side of a finished
// echo case: one upgrade, the subprotocol, what its Decoder gave, and no
// connection left.
func checkEventLoop(ctx context.Context, el *transport.EventLoop, ec echoCase, ups chan echoUpgrade) error {
	var errs []string
	check := func(u echoUpgrade) {
		if u.err != nil {
			errs = append(errs, fmt.Sprintf("ServeEcho: %v", u.err))
		} else if u.sub != ec.subprotocol {
			errs = append(errs, fmt.Sprintf("subprotocol %q, want %q", u.sub, ec.subprotocol))
		}
	}
	// The handler may return after the conversation is over: net/http
	// does not wait for the handler of a hijacked connection.
	select {
	case u := <-ups:
		check(u)
	case <-ctx.Done():
		errs = append(errs, "ServeEcho did not return")
	}
	select {
	case u := <-ups:
		check(u)
		errs = append(errs, "a second upgrade")
	default:
	}
	if got := el.EchoConns(); got != 1 {
		errs = append(errs, fmt.Sprintf("%d connections given to the poller, want 1", got))
	}
	kinds := []struct {
		k    ws.EventKind
		name string
	}{
		{ws.EventMessage, "messages"},
		{ws.EventPing, "pings"},
		{ws.EventPong, "pongs"},
		{ws.EventClose, "close frames"},
		{ws.EventError, "protocol errors"},
	}
	for _, k := range kinds {
		if got, want := el.EchoEvents(k.k), ec.decoded[k.k]; got != want {
			errs = append(errs, fmt.Sprintf("the Decoder gave %d %s, want %d", got, k.name, want))
		}
	}
	if l := el.Len(); l != 0 {
		errs = append(errs, fmt.Sprintf("%d connections left open", l))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(errs, "; "))
}
