package interop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/hotline-rt/hotline/ws"
)

// A conversation is one case seen from both ends: the peer script runs its
// half (see opening in testdata/peer.py and node/peer.js: it sends what the
// case asks, then echoes every message and reports it) while hotline runs
// its half on the same connection, whichever side dialed.
type conversation struct {
	name string
	// serverProtocols are hotline's AcceptOptions.Subprotocols; the peer
	// servers always support "chat", "superchat".
	serverProtocols []string
	// clientProtocols are hotline's DialOptions.Subprotocols; the peer
	// clients offer "chat", "superchat" in the subprotocol cases.
	clientProtocols []string
	// hotlineServerOnly marks cases about the server's choice.
	hotlineServerOnly bool
	// hotline runs hotline's half of the conversation.
	hotline func(ctx context.Context, c *ws.Conn) error
	// check reports what is wrong with the peer's events.
	check func(p peer, evs []event) error
}

var conversations = []conversation{
	{
		name: "text",
		hotline: func(ctx context.Context, c *ws.Conn) error {
			if err := expectMessage(ctx, c, ws.MessageText, []byte("peer: héllo ✓")); err != nil {
				return err
			}
			return echoThenClose(ctx, c, ws.MessageText, []byte("hotline: wörld ✓"))
		},
		check: func(_ peer, evs []event) error {
			return checkPeer(evs, messages(textEvent("hotline: wörld ✓")), closed(1000, ""))
		},
	},
	{
		name: "binary",
		hotline: func(ctx context.Context, c *ws.Conn) error {
			if err := expectMessage(ctx, c, ws.MessageBinary, ascending(256)); err != nil {
				return err
			}
			return echoThenClose(ctx, c, ws.MessageBinary, descending(256))
		},
		check: func(_ peer, evs []event) error {
			return checkPeer(evs, messages(binaryEvent(descending(256))), closed(1000, ""))
		},
	},
	{
		name: "fragmented",
		hotline: func(ctx context.Context, c *ws.Conn) error {
			if err := expectMessage(ctx, c, ws.MessageText, []byte("fragmented héllo")); err != nil {
				return err
			}
			if err := expectMessage(ctx, c, ws.MessageBinary, []byte{0, 1, 2, 3}); err != nil {
				return err
			}
			// Three frames; the second ends inside the three bytes of "✓".
			w, err := c.NextWriter(ctx, ws.MessageText)
			if err != nil {
				return fmt.Errorf("NextWriter: %w", err)
			}
			for _, frag := range []string{"our frag", "ments \xe2\x9c", "\x93"} {
				if _, err := w.Write([]byte(frag)); err != nil {
					return fmt.Errorf("write fragment: %w", err)
				}
			}
			if err := w.Close(); err != nil {
				return fmt.Errorf("close message writer: %w", err)
			}
			if err := expectMessage(ctx, c, ws.MessageText, []byte("our fragments ✓")); err != nil {
				return fmt.Errorf("echo: %w", err)
			}
			return closeNormal(c)
		},
		check: func(_ peer, evs []event) error {
			return checkPeer(evs, messages(textEvent("our fragments ✓")), closed(1000, ""))
		},
	},
	{
		name: "big",
		hotline: func(ctx context.Context, c *ws.Conn) error {
			if err := expectMessage(ctx, c, ws.MessageBinary, peerPattern(bigSize)); err != nil {
				return err
			}
			return echoThenClose(ctx, c, ws.MessageText, bigText())
		},
		check: func(_ peer, evs []event) error {
			return checkPeer(evs, messages(textEvent(string(bigText()))), closed(1000, ""))
		},
	},
	{
		name: "ping",
		hotline: func(ctx context.Context, c *ws.Conn) error {
			// The peer pings first and sends "pinged" once our read has
			// answered with a pong.
			if err := expectMessage(ctx, c, ws.MessageText, []byte("pinged")); err != nil {
				return err
			}
			// Our ping's pong arrives through a read, so keep one running;
			// it ends with the echo of "ping done".
			echo := make(chan error, 1)
			go func() {
				defer func() {
					if r := recover(); r != nil {
						echo <- fmt.Errorf("panic in read: %v", r)
					}
				}()
				echo <- expectMessage(ctx, c, ws.MessageText, []byte("ping done"))
			}()
			pingErr := c.Ping(ctx, []byte("go-ping"))
			if pingErr != nil {
				pingErr = fmt.Errorf("Ping: %w", pingErr)
				_ = c.CloseNow() // ends the read
			} else if err := c.WriteMessage(ctx, ws.MessageText, []byte("ping done")); err != nil {
				pingErr = fmt.Errorf("write: %w", err)
				_ = c.CloseNow()
			}
			if err := errors.Join(pingErr, <-echo); err != nil {
				return err
			}
			return closeNormal(c)
		},
		check: func(p peer, evs []event) error {
			want := []func([]event) error{
				has(event{Event: "pong", Data: "peer-ping"}),
				messages(textEvent("ping done")),
				closed(1000, ""),
			}
			if p.reportsPings {
				want = append(want, has(event{Event: "ping", Data: "go-ping"}))
			}
			return checkPeer(evs, want...)
		},
	},
	{
		name: "close-peer",
		hotline: func(ctx context.Context, c *ws.Conn) error {
			_, p, err := c.ReadMessage(ctx, nil)
			if err == nil {
				return fmt.Errorf("read a %d-byte message, want the peer's close 4000 \"bye\"", len(p))
			}
			var ce *ws.CloseError
			if !errors.As(err, &ce) {
				return fmt.Errorf("read error %v is not a *ws.CloseError", err)
			}
			if ce.Code != 4000 || ce.Reason != "bye" || ws.CloseStatus(err) != 4000 {
				return fmt.Errorf("read error %v: got code %d reason %q, CloseStatus %d; want 4000 \"bye\"",
					err, ce.Code, ce.Reason, ws.CloseStatus(err))
			}
			return nil
		},
		check: func(_ peer, evs []event) error {
			// The peer sees the code we echo (RFC 6455, section 5.5.1).
			return checkPeer(evs, messages(), closedCode(4000))
		},
	},
	{
		name: "close-hotline",
		hotline: func(ctx context.Context, c *ws.Conn) error {
			if err := c.Close(4000, "bye"); err != nil {
				return fmt.Errorf("Close(4000, \"bye\"): %w", err)
			}
			return nil
		},
		check: func(_ peer, evs []event) error {
			return checkPeer(evs, messages(), closed(4000, "bye"))
		},
	},
	{
		name:            "subprotocol",
		serverProtocols: []string{"chat", "superchat"},
		clientProtocols: []string{"chat", "superchat"},
		hotline:         expectSubprotocol("chat"),
		check: func(_ peer, evs []event) error {
			return checkPeer(evs, has(event{Event: "open", Subprotocol: "chat"}), closed(1000, ""))
		},
	},
	{
		// The server takes the client's first supported choice, whatever
		// its own order (issue 3).
		name:              "subprotocol-client-order",
		serverProtocols:   []string{"superchat", "chat"},
		hotlineServerOnly: true,
		hotline:           expectSubprotocol("chat"),
		check: func(_ peer, evs []event) error {
			return checkPeer(evs, has(event{Event: "open", Subprotocol: "chat"}), closed(1000, ""))
		},
	},
	{
		name: "invalid-utf8",
		hotline: func(ctx context.Context, c *ws.Conn) error {
			op, p, err := c.ReadMessage(ctx, nil)
			if err == nil {
				return fmt.Errorf("read %v %q, want an error for invalid UTF-8", op, p)
			}
			return nil
		},
		check: func(_ peer, evs []event) error {
			return checkPeer(evs, messages(), closedCode(1007))
		},
	},
}

const bigSize = 16 << 20

// peerPattern is what the peers send in the big case.
func peerPattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i % 251)
	}
	return p
}

// bigText is 16 MiB of text, ASCII and multi-byte runes mixed.
func bigText() []byte {
	const unit = "héllo wörld✓" // 16 bytes
	return bytes.Repeat([]byte(unit), bigSize/len(unit))
}

func ascending(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i)
	}
	return p
}

func descending(n int) []byte {
	p := ascending(n)
	for i, j := 0, len(p)-1; i < j; i, j = i+1, j-1 {
		p[i], p[j] = p[j], p[i]
	}
	return p
}

func expectMessage(ctx context.Context, c *ws.Conn, wantOp ws.MessageType, want []byte) error {
	op, p, err := c.ReadMessage(ctx, nil)
	if err != nil {
		return fmt.Errorf("read, want %v message of %d bytes: %w", wantOp, len(want), err)
	}
	if op != wantOp || !bytes.Equal(p, want) {
		return fmt.Errorf("read %v message %s, want %v message %s", op, summary(p), wantOp, summary(want))
	}
	return nil
}

// echoThenClose sends p, expects the peer's echo and closes normally.
func echoThenClose(ctx context.Context, c *ws.Conn, op ws.MessageType, p []byte) error {
	if err := c.WriteMessage(ctx, op, p); err != nil {
		return fmt.Errorf("write %v message of %d bytes: %w", op, len(p), err)
	}
	if err := expectMessage(ctx, c, op, p); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	return closeNormal(c)
}

func closeNormal(c *ws.Conn) error {
	if err := c.Close(ws.StatusNormalClosure, ""); err != nil {
		return fmt.Errorf("Close(1000): %w", err)
	}
	return nil
}

func expectSubprotocol(want string) func(context.Context, *ws.Conn) error {
	return func(_ context.Context, c *ws.Conn) error {
		if got := c.Subprotocol(); got != want {
			_ = closeNormal(c)
			return fmt.Errorf("Subprotocol() = %q, want %q", got, want)
		}
		return closeNormal(c)
	}
}

func summary(p []byte) string {
	if len(p) <= 64 {
		return fmt.Sprintf("%q", p)
	}
	sum := sha256.Sum256(p)
	return fmt.Sprintf("of %d bytes, sha256 %x, starting %q", len(p), sum[:8], p[:32])
}

// Expectations on a peer's events.

func textEvent(s string) event   { return dataEvent("text", []byte(s)) }
func binaryEvent(p []byte) event { return dataEvent("binary", p) }

func dataEvent(typ string, p []byte) event {
	sum := sha256.Sum256(p)
	return event{Event: "message", Type: typ, Len: len(p), SHA256: hex.EncodeToString(sum[:])}
}

// messages wants exactly these messages, in order, compared by type,
// length and SHA-256.
func messages(want ...event) func([]event) error {
	return func(evs []event) error {
		var got []event
		for _, e := range evs {
			if e.Event == "message" {
				got = append(got, event{Event: e.Event, Type: e.Type, Len: e.Len, SHA256: e.SHA256})
			}
		}
		if len(got) != len(want) {
			return fmt.Errorf("peer received %d messages, want %d", len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				return fmt.Errorf("peer message %d = %v, want %v", i, got[i], want[i])
			}
		}
		return nil
	}
}

// has wants an event equal to want.
func has(want event) func([]event) error {
	return func(evs []event) error {
		for _, e := range evs {
			if e == want {
				return nil
			}
		}
		return fmt.Errorf("peer did not report %v", want)
	}
}

func closed(code int, reason string) func([]event) error {
	return func(evs []event) error {
		for _, e := range evs {
			if e.Event == "close" {
				if e.Code != code || e.Reason != reason {
					return fmt.Errorf("peer closed with %d %q, want %d %q", e.Code, e.Reason, code, reason)
				}
				return nil
			}
		}
		return fmt.Errorf("peer reported no close, want %d %q", code, reason)
	}
}

func closedCode(code int) func([]event) error {
	return func(evs []event) error {
		for _, e := range evs {
			if e.Event == "close" {
				if e.Code != code {
					return fmt.Errorf("peer closed with %d %q, want code %d", e.Code, e.Reason, code)
				}
				return nil
			}
		}
		return fmt.Errorf("peer reported no close, want code %d", code)
	}
}

// checkPeer joins the failed expectations and the peer's own errors.
func checkPeer(evs []event, want ...func([]event) error) error {
	var errs []error
	for _, e := range evs {
		if e.Event == "error" {
			errs = append(errs, fmt.Errorf("peer error: %s", e.Error))
		}
	}
	for _, w := range want {
		if err := w(evs); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "\t%v\n", e)
	}
	return fmt.Errorf("%w\npeer events:\n%s", errors.Join(errs...), b.String())
}
