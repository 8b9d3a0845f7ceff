package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/ws"
)

// Subprotocols are the WebSocket subprotocols of the push endpoint, in
// the server's order: chat (plain text lines) and superchat (JSON
// envelopes, docs/protocol.md).
var Subprotocols = []string{"chat", "superchat"}

// WebSocket serves push sessions over WebSocket: GET /chat and
// /chat/{room}. A client that offers no subprotocol speaks chat; one that
// offers only subprotocols other than chat and superchat gets 400. The
// token is checked once, before the upgrade. A client may resume a
// session it lost (within the engine's grace period) with ?session=ID.
type WebSocket struct {
	Engine   *push.Engine
	Verifier auth.Verifier
	// Accept holds the WebSocket options (origins, limits, compression);
	// its Subprotocols are ignored.
	Accept ws.AcceptOptions
	Log    *slog.Logger
	// WriteTimeout bounds the write of one message to a client; past it
	// the client is dropped. 0 means 10s.
	WriteTimeout time.Duration
	// OnDeliver, if set, is called for each publication written, with
	// the time the broker accepted it (for latency metrics).
	OnDeliver func(transport string, published time.Time)

	active atomic.Int64 // connections being served
}

func (t *WebSocket) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	proto, ok := pickProtocol(r)
	if !ok {
		http.Error(w, "unsupported subprotocol: this endpoint speaks chat and superchat", http.StatusBadRequest)
		return
	}
	ident, ok := Authenticate(w, r, t.Verifier)
	if !ok {
		return
	}
	s, resumed := t.resume(r, ident, proto)
	if s == nil {
		var err error
		s, err = t.Engine.Connect(r.Context(), push.ConnectRequest{
			Identity:  ident,
			Protocol:  proto,
			Room:      r.PathValue("room"),
			Transport: "websocket",
		})
		if err != nil {
			connectError(w, err)
			return
		}
	}
	opts := t.Accept
	opts.Subprotocols = Subprotocols
	opts.WriteTimeout = t.writeTimeout()
	c, err := ws.Upgrade(w, r, &opts)
	if err != nil {
		if resumed {
			s.Detach()
		} else {
			s.Close(push.CodeNormal, "upgrade failed")
		}
		t.log().Debug("websocket: upgrade refused", "err", err, "remote", r.RemoteAddr)
		return
	}
	t.active.Add(1)
	go t.serve(c, s)
}

// pickProtocol chooses the push protocol as ws.Upgrade will: the first
// offered subprotocol that the endpoint supports, chat if none is offered.
func pickProtocol(r *http.Request) (push.Protocol, bool) {
	offered := r.Header.Values("Sec-WebSocket-Protocol")
	if len(offered) == 0 {
		return push.ProtocolChat, true
	}
	for _, v := range offered {
		for p := range strings.SplitSeq(v, ",") {
			if proto, ok := push.ParseProtocol(strings.TrimSpace(p)); ok {
				return proto, true
			}
		}
	}
	return 0, false
}

// resume attaches to the session named by ?session= if it is live, the
// same user's and the same protocol.
func (t *WebSocket) resume(r *http.Request, ident auth.Identity, proto push.Protocol) (*push.Session, bool) {
	id := r.URL.Query().Get("session")
	if id == "" {
		return nil, false
	}
	s, ok := t.Engine.Session(id)
	if !ok || s.Identity().UserID != ident.UserID || s.Protocol() != proto {
		return nil, false
	}
	if s.Attach("websocket") != nil {
		return nil, false
	}
	return s, true
}

func (t *WebSocket) log() *slog.Logger {
	if t.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return t.Log
}

// serve runs one connection: the reader here, the writer on its own
// goroutine, which serve waits for.
func (t *WebSocket) serve(c *ws.Conn, s *push.Session) {
	defer t.active.Add(-1)
	ctx, cancel := context.WithCancel(context.Background())
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		t.writeLoop(ctx, c, s)
	}()
	err := t.readLoop(c, s)
	var d *push.Disconnect
	if errors.As(err, &d) {
		// The engine ended the session: the writer flushes what is
		// queued and closes with its code.
		s.Close(d.Code, d.Reason)
	} else {
		// The client went away: keep the session for its grace period.
		cancel()
	}
	<-writerDone
	cancel()
	s.Detach()
	c.CloseNow()
}

func (t *WebSocket) readLoop(c *ws.Conn, s *push.Session) error {
	ctx := context.Background()
	var buf []byte
	for {
		op, msg, err := c.ReadMessage(ctx, buf[:0])
		if err != nil {
			return err
		}
		if op != ws.MessageText {
			c.Close(ws.StatusUnsupportedData, "binary messages are not part of chat or superchat")
			return nil
		}
		if err := s.Handle(ctx, msg); err != nil {
			return err
		}
		if cap(msg) <= 64<<10 {
			buf = msg
		} else {
			buf = nil
		}
	}
}

// writeLoop sends the session's queue in order and acknowledges what was
// written. When the session ends it flushes the rest and closes the
// connection with the session's close code.
func (t *WebSocket) writeLoop(ctx context.Context, c *ws.Conn, s *push.Session) {
	var last uint64
	var batch []push.Outbound
	for {
		err := s.Wait(ctx, last)
		batch = s.Pending(last, batch[:0])
		if len(batch) > 0 {
			// Each write is bounded by the connection's WriteTimeout,
			// which ends with the write and leaves nothing behind for
			// the keepalive pings and pong replies that come after. Not
			// a ctx per batch: context.WithTimeout and its watch cost
			// about 9 allocations per message per recipient, and the
			// fan-out must allocate nothing.
			werr := t.writeBatch(context.Background(), c, batch, &last)
			if last > 0 {
				s.Ack(last)
			}
			clear(batch) // drop references to shared payloads
			if werr != nil {
				c.CloseNow()
				return
			}
		}
		if err != nil {
			var d *push.Disconnect
			if errors.As(err, &d) {
				c.Close(ws.StatusCode(d.Code), d.Reason) // bounded by ws
			}
			return
		}
	}
}

func (t *WebSocket) writeTimeout() time.Duration {
	if t.WriteTimeout <= 0 {
		return 10 * time.Second
	}
	return t.WriteTimeout
}

// writeBatch writes batch in order, moving *last to each message written.
func (t *WebSocket) writeBatch(ctx context.Context, c *ws.Conn, batch []push.Outbound, last *uint64) error {
	for i := range batch {
		o := &batch[i]
		if err := c.WriteMessage(ctx, ws.MessageText, o.Data); err != nil {
			return err
		}
		*last = o.Seq
		if t.OnDeliver != nil && !o.Time.IsZero() {
			t.OnDeliver("websocket", o.Time)
		}
	}
	return nil
}

// Wait blocks until every connection has finished, or ctx ends. It is
// for shutdown, after the engine has ended the sessions, so it polls.
func (t *WebSocket) Wait(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for t.active.Load() > 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("transport: %d WebSocket connections still open: %w", t.active.Load(), ctx.Err())
		}
	}
	return nil
}

// Len returns the number of connections being served.
func (t *WebSocket) Len() int { return int(t.active.Load()) }
