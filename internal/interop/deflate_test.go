package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hotline-rt/hotline/ws"
)

// permessage-deflate (RFC 7692) against each peer, both ways. Every case
// runs the same conversation (deflateConversation) under different
// negotiated parameters, and checks three things: the extension both
// sides agreed on, the messages both sides received, and, from the bytes
// a relay between the two ends counted, which side really compressed.

func TestPythonDeflate(t *testing.T) { testDeflate(t, pythonPeer) }
func TestNodeDeflate(t *testing.T)   { testDeflate(t, nodePeer) }

// deflateCase is one set of parameters, run with the peer's client against
// hotline's server and with hotline's client against the peer's server.
type deflateCase struct {
	name string
	// hotline is hotline's CompressionOptions, for Upgrade or Dial.
	hotline ws.CompressionOptions
	// peer is what the peer's client offers or the peer's server imposes.
	peer peerDeflate
	// want is the outcome with hotline as the server or as the client.
	want func(hotlineServer bool) deflateOutcome
}

// peerDeflate is the DEFLATE argument of the peer scripts: Node ws's
// perMessageDeflate option, which peer.py maps onto websockets' factories.
type peerDeflate struct {
	ServerNoContextTakeover bool `json:"serverNoContextTakeover,omitempty"`
	ClientNoContextTakeover bool `json:"clientNoContextTakeover,omitempty"`
	ServerMaxWindowBits     int  `json:"serverMaxWindowBits,omitempty"`
	ClientMaxWindowBits     int  `json:"clientMaxWindowBits,omitempty"`
	// Threshold is Node's smallest compressed message (with no context
	// takeover only); Python compresses every message.
	Threshold int `json:"threshold"`
}

type deflateOutcome struct {
	// extensions is the negotiated Sec-WebSocket-Extensions, compared
	// parameter by parameter with hotline's Conn.Extensions and with the
	// header the peer sent or received.
	extensions string
	// hotlineCompresses and peerCompresses say whether each side's
	// messages go out compressed (a side whose agreed window is smaller
	// than 32 KiB may send uncompressed).
	hotlineCompresses, peerCompresses bool
}

// same is an outcome that does not depend on which side is the server.
func same(o deflateOutcome) func(bool) deflateOutcome {
	return func(bool) deflateOutcome { return o }
}

var deflateCases = []deflateCase{
	{
		name:    "deflate-takeover",
		hotline: ws.CompressionOptions{ContextTakeover: true},
		want: same(deflateOutcome{
			extensions:        "permessage-deflate",
			hotlineCompresses: true, peerCompresses: true,
		}),
	},
	{
		// hotline's default: as a server it imposes no context takeover,
		// as a client it asks for it.
		name: "deflate-no-takeover",
		want: same(deflateOutcome{
			extensions:        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
			hotlineCompresses: true, peerCompresses: true,
		}),
	},
	{
		name:    "deflate-peer-no-takeover",
		hotline: ws.CompressionOptions{ContextTakeover: true},
		peer:    peerDeflate{ServerNoContextTakeover: true, ClientNoContextTakeover: true},
		want: same(deflateOutcome{
			extensions:        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
			hotlineCompresses: true, peerCompresses: true,
		}),
	},
	{
		// A server window of 2^10: hotline's server, which cannot shrink
		// compress/flate's window, sends uncompressed; a peer server
		// compresses with the small window and hotline's client inflates.
		name:    "deflate-server-window-10",
		hotline: ws.CompressionOptions{ContextTakeover: true},
		peer:    peerDeflate{ServerMaxWindowBits: 10},
		want: func(hotlineServer bool) deflateOutcome {
			return deflateOutcome{
				extensions:        "permessage-deflate; server_max_window_bits=10",
				hotlineCompresses: !hotlineServer, peerCompresses: true,
			}
		},
	},
	{
		// A client window of 2^9: a peer client compresses with it and
		// hotline's server inflates; hotline's client sends uncompressed.
		name:    "deflate-client-window-9",
		hotline: ws.CompressionOptions{ContextTakeover: true},
		peer:    peerDeflate{ClientMaxWindowBits: 9},
		want: func(hotlineServer bool) deflateOutcome {
			return deflateOutcome{
				extensions:        "permessage-deflate; client_max_window_bits=9",
				hotlineCompresses: hotlineServer, peerCompresses: true,
			}
		},
	},
	{
		// Small windows both ways and no context takeover: hotline sends
		// uncompressed in either role, the peer compresses.
		name: "deflate-no-takeover-window-12",
		peer: peerDeflate{ServerMaxWindowBits: 12, ClientMaxWindowBits: 12},
		want: same(deflateOutcome{
			extensions: "permessage-deflate; server_no_context_takeover; client_no_context_takeover; " +
				"server_max_window_bits=12; client_max_window_bits=12",
			hotlineCompresses: false, peerCompresses: true,
		}),
	},
	{
		// Node's default threshold (1 KiB) with no context takeover:
		// its small messages go out uncompressed, among compressed ones.
		name: "deflate-peer-threshold",
		peer: peerDeflate{Threshold: 1024},
		want: same(deflateOutcome{
			extensions:        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
			hotlineCompresses: true, peerCompresses: true,
		}),
	},
}

// The conversation: the peer sends peerDeflateMessages (the last in three
// compressed frames) and echoes what it receives; hotline reads them, then
// sends hotlineDeflateMessages one at a time, each followed by its echo,
// the last through NextWriter in three writes, and closes with 1000.

type wsMessage struct {
	op   ws.MessageType
	data []byte
}

func peerDeflateMessages() []wsMessage {
	return []wsMessage{
		{ws.MessageText, []byte("peer: small ✓")},
		{ws.MessageText, compressible(64 << 10)},
		{ws.MessageBinary, compressible(1 << 20)},
		{ws.MessageText, compressible(3 * 4096)},
	}
}

func hotlineDeflateMessages() []wsMessage {
	return []wsMessage{
		{ws.MessageText, []byte("hotline: small ✓")},
		{ws.MessageBinary, bytes.ToUpper(compressible(64 << 10))},
		{ws.MessageText, bytes.ToUpper(compressible(1 << 20))},
		{ws.MessageText, bytes.ToUpper(compressible(3 * 4096))},
	}
}

// compressible is ASCII text that deflates well, the same bytes as
// compressible in peer.py and peer.js.
func compressible(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %d: the quick brown fox jumps over the lazy dog\n", i)
	}
	return b.Bytes()[:n]
}

// payloadBytes is the payload of msgs: what hotline sends is its own
// messages; what the peer sends is its own plus the echoes of hotline's.
func payloadBytes(msgs ...[]wsMessage) int64 {
	var n int64
	for _, ms := range msgs {
		for _, m := range ms {
			n += int64(len(m.data))
		}
	}
	return n
}

func deflateConversation(ctx context.Context, c *ws.Conn) error {
	for _, m := range peerDeflateMessages() {
		if err := expectMessage(ctx, c, m.op, m.data); err != nil {
			return err
		}
	}
	msgs := hotlineDeflateMessages()
	last := msgs[len(msgs)-1]
	for _, m := range msgs[:len(msgs)-1] {
		if err := c.WriteMessage(ctx, m.op, m.data); err != nil {
			return fmt.Errorf("write %v message of %d bytes: %w", m.op, len(m.data), err)
		}
		if err := expectMessage(ctx, c, m.op, m.data); err != nil {
			return fmt.Errorf("echo: %w", err)
		}
	}
	w, err := c.NextWriter(ctx, last.op)
	if err != nil {
		return fmt.Errorf("NextWriter: %w", err)
	}
	for part := range slices.Chunk(last.data, len(last.data)/3) {
		if _, err := w.Write(part); err != nil {
			return fmt.Errorf("write fragment: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("close message writer: %w", err)
	}
	if err := expectMessage(ctx, c, last.op, last.data); err != nil {
		return fmt.Errorf("echo of the streamed message: %w", err)
	}
	return closeNormal(c)
}

func testDeflate(t *testing.T, p peer) {
	requirePeer(t, p)
	for _, dc := range deflateCases {
		arg, err := json.Marshal(dc.peer)
		if err != nil {
			t.Fatal(err)
		}
		t.Run("client/"+dc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), caseTimeout)
			defer cancel()

			type accepted struct {
				c   *ws.Conn
				err error
			}
			conns := make(chan accepted, 1)
			opts := dc.hotline
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := ws.Upgrade(w, r, &ws.AcceptOptions{Compression: &opts})
				select {
				case conns <- accepted{c, err}:
				default:
					if c != nil {
						_ = c.CloseNow()
					}
				}
			}))
			t.Cleanup(srv.Close)
			rl := startRelay(t, srv.Listener.Addr().String())
			url := "ws://" + rl.addr() + "/" + dc.name

			pr := startPeer(t, p, "client", url, dc.name, string(arg))
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
			// The relay's target is hotline: toTarget is what the peer sent.
			converseDeflate(ctx, t, p, dc.want(true), c, pr, rl, true)
		})
		t.Run("server/"+dc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), caseTimeout)
			defer cancel()

			pr := startPeer(t, p, "server", dc.name, string(arg))
			port, err := pr.port(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rl := startRelay(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			url := "ws://" + rl.addr() + "/" + dc.name
			opts := dc.hotline
			c, resp, err := ws.Dial(ctx, url, &ws.DialOptions{Compression: &opts})
			if err != nil {
				status := "no response"
				if resp != nil {
					status = resp.Status
				}
				t.Fatalf("Dial %s: %v (%s)\n%s", url, err, status, pr.log())
			}
			converseDeflate(ctx, t, p, dc.want(false), c, pr, rl, false)
		})
	}
}

// converseDeflate runs deflateConversation on c and checks the outcome:
// the extension as each side sees it, the messages the peer received and
// the bytes each side put on the wire.
func converseDeflate(ctx context.Context, t *testing.T, p peer, want deflateOutcome,
	c *ws.Conn, pr *proc, rl *relay, hotlineServer bool) {
	t.Helper()
	if got := c.Extensions(); normalizeExtensions(got) != normalizeExtensions(want.extensions) {
		t.Errorf("hotline's Extensions() = %q, want %q", got, want.extensions)
	}
	cv := conversation{
		hotline: deflateConversation,
		check: func(_ peer, evs []event) error {
			var want []event
			for _, m := range hotlineDeflateMessages() {
				if m.op == ws.MessageText {
					want = append(want, textEvent(string(m.data)))
				} else {
					want = append(want, binaryEvent(m.data))
				}
			}
			return checkPeer(evs, messages(want...), closed(1000, ""))
		},
	}
	converse(ctx, t, p, cv, c, pr)

	var peerExt string
	var sawOpen bool
	for _, e := range pr.snapshot() {
		if e.Event == "open" {
			peerExt, sawOpen = e.Extensions, true
			break
		}
	}
	if !sawOpen {
		t.Errorf("%s reported no open event", p.name)
	} else if normalizeExtensions(peerExt) != normalizeExtensions(want.extensions) {
		t.Errorf("%s saw Sec-WebSocket-Extensions %q, want %q", p.name, peerExt, want.extensions)
	}

	toTarget, fromTarget, err := rl.wait(ctx)
	if err != nil {
		t.Errorf("relay: %v", err)
		return
	}
	fromHotline, fromPeer := toTarget, fromTarget
	if hotlineServer {
		fromHotline, fromPeer = fromTarget, toTarget
	}
	hotlineRaw := payloadBytes(hotlineDeflateMessages())
	peerRaw := payloadBytes(peerDeflateMessages(), hotlineDeflateMessages())
	t.Logf("hotline sent %d bytes for %d of payload, %s %d for %d",
		fromHotline, hotlineRaw, p.name, fromPeer, peerRaw)
	if err := checkCompressed("hotline", fromHotline, hotlineRaw, want.hotlineCompresses); err != nil {
		t.Error(err)
	}
	if err := checkCompressed(p.name, fromPeer, peerRaw, want.peerCompresses); err != nil {
		t.Error(err)
	}
}

// checkCompressed tells compressed traffic from plain by its size: the
// test text deflates to a few percent even with a 512-byte window, and
// plain frames are never smaller than their payload.
func checkCompressed(side string, wire, raw int64, compressed bool) error {
	switch {
	case compressed && wire > raw/2:
		return fmt.Errorf("%s sent %d bytes for %d of payload, want it compressed (< %d)", side, wire, raw, raw/2)
	case !compressed && wire < raw:
		return fmt.Errorf("%s sent %d bytes for %d of payload, want it uncompressed (>= %d)", side, wire, raw, raw)
	}
	return nil
}

// normalizeExtensions puts each element's parameters in a fixed order, in
// lower case and without spaces, so that headers written by different
// implementations compare equal when they say the same.
func normalizeExtensions(h string) string {
	var elems []string
	for elem := range strings.SplitSeq(h, ",") {
		var parts []string
		for part := range strings.SplitSeq(elem, ";") {
			part = strings.ToLower(strings.Join(strings.Fields(part), ""))
			if part != "" {
				parts = append(parts, part)
			}
		}
		if len(parts) == 0 {
			continue
		}
		slices.Sort(parts[1:])
		elems = append(elems, strings.Join(parts, "; "))
	}
	return strings.Join(elems, ", ")
}

// relay forwards one TCP connection to target and counts the bytes each
// way, so that a test sees what each end put on the wire without wrapping
// either end's socket (ws reads a plain socket through its own path).
type relay struct {
	ln     net.Listener
	target string
	// done is closed when the forwarded connection has ended both ways,
	// or when no connection came; the goroutines that close it are
	// owned by the relay and ended by the test's cleanup.
	done       chan struct{}
	err        error // set before done is closed
	toTarget   atomic.Int64
	fromTarget atomic.Int64
}

func startRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &relay{ln: ln, target: target, done: make(chan struct{})}
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	go rl.serve(track)
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		<-rl.done
	})
	return rl
}

func (rl *relay) addr() string { return rl.ln.Addr().String() }

func (rl *relay) serve(track func(net.Conn)) {
	defer close(rl.done)
	in, err := rl.ln.Accept()
	_ = rl.ln.Close() // one connection per case
	if err != nil {
		rl.err = fmt.Errorf("accept: %w", err)
		return
	}
	track(in)
	out, err := net.Dial("tcp", rl.target)
	if err != nil {
		_ = in.Close()
		rl.err = fmt.Errorf("dial %s: %w", rl.target, err)
		return
	}
	track(out)
	var wg sync.WaitGroup
	var errTo, errFrom error
	wg.Go(func() { errTo = pipe(out, in, &rl.toTarget) })
	wg.Go(func() { errFrom = pipe(in, out, &rl.fromTarget) })
	wg.Wait()
	_ = in.Close()
	_ = out.Close()
	rl.err = errors.Join(errTo, errFrom)
}

// pipe copies src to dst, counts the bytes, and passes the end of src on
// as a half close, the way the two ends would have seen it directly.
func pipe(dst, src net.Conn, n *atomic.Int64) error {
	copied, err := io.Copy(dst, src)
	n.Add(copied)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// wait waits for the forwarded connection to end and returns the bytes
// sent to and from the target.
func (rl *relay) wait(ctx context.Context) (toTarget, fromTarget int64, err error) {
	select {
	case <-rl.done:
	case <-ctx.Done():
		return 0, 0, fmt.Errorf("connection did not end: %w", ctx.Err())
	}
	return rl.toTarget.Load(), rl.fromTarget.Load(), rl.err
}
