package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
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

	// The connections being served: each one's goroutine is counted in
	// before it starts and out when it has finished, and Wait waits for
	// idle to close. Not a sync.WaitGroup: ServeHTTP may still be adding
	// connections while Wait waits (hijacked connections outlive
	// http.Server.Shutdown), which a WaitGroup forbids at zero.
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0
	// live is the connection serving each session now, so that a resume
	// takes the session over from a connection that is still open on
	// this side (a client that found it silent): two writers of one
	// queue would each take items, and what the old one writes is lost.
	live map[*push.Session]*ws.Conn
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
	// Counted before the 101 goes out, so that Wait never misses a
	// connection whose client already believes it is open.
	t.add()
	c, err := ws.Upgrade(w, r, &opts)
	if err != nil {
		t.done()
		if resumed {
			s.Detach()
		} else {
			s.Close(push.CodeNormal, "upgrade failed")
		}
		t.log().Debug("websocket: upgrade refused", "err", err, "remote", r.RemoteAddr)
		return
	}
	t.mu.Lock()
	if t.live == nil {
		t.live = make(map[*push.Session]*ws.Conn)
	}
	old := t.live[s]
	t.live[s] = c
	t.mu.Unlock()
	if old != nil {
		go old.Close(StatusSessionMoved, "session moved to another connection")
	}
	go t.serve(c, s)
	holdStream(c)
}

// StatusSessionMoved is the close code of a connection whose session
// another connection took over (a resume over WebSocket or polling).
const StatusSessionMoved ws.StatusCode = 4000

// Takeover ends the WebSocket connection serving s, if there is one, so
// that another transport serves the session from now on: the message
// being written is finished, then the close frame (4000) goes out; what
// is still queued stays in the session for the next transport. The
// session lives on. Polling calls it when a client moves a session off a
// WebSocket (Polling.Takeover), so that the queue never has two writers.
func (t *WebSocket) Takeover(s *push.Session) {
	t.mu.Lock()
	c := t.live[s]
	delete(t.live, s)
	t.mu.Unlock()
	if c != nil {
		go c.Close(StatusSessionMoved, "session moved to another transport")
	}
}

func (t *WebSocket) add() {
	t.mu.Lock()
	t.n++
	if t.n == 1 {
		t.idle = make(chan struct{})
	}
	t.mu.Unlock()
}

func (t *WebSocket) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 {
		close(t.idle)
	}
	t.mu.Unlock()
}

// pickProtocol chooses the push protocol with ws.SelectSubprotocol, the
// choice ws.Upgrade makes, so that the session and the connection agree:
// chat if the client offers no subprotocol, refused if it offers only
// others.
func pickProtocol(r *http.Request) (push.Protocol, bool) {
	if len(r.Header.Values("Sec-WebSocket-Protocol")) == 0 {
		return push.ProtocolChat, true
	}
	return push.ParseProtocol(ws.SelectSubprotocol(r, Subprotocols))
}

// resume attaches to the session named by ?session= if it is live, the
// same protocol and the same user's (any user's in development mode,
// where the unguessable id is the credential, as for polling). ?ack=N
// says the client has the session's items up to seq N (the last one a
// poll brought): they are not sent again.
func (t *WebSocket) resume(r *http.Request, ident auth.Identity, proto push.Protocol) (*push.Session, bool) {
	q := r.URL.Query()
	id := q.Get("session")
	if id == "" {
		return nil, false
	}
	s, ok := t.Engine.Session(id)
	if !ok || s.Protocol() != proto || (!t.Verifier.Dev() && s.Identity().UserID != ident.UserID) {
		return nil, false
	}
	if s.Attach("websocket") != nil {
		return nil, false
	}
	if ack, err := strconv.ParseUint(q.Get("ack"), 10, 64); err == nil {
		s.Ack(ack)
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
	defer t.done()
	defer func() {
		t.mu.Lock()
		if t.live[s] == c {
			delete(t.live, s)
		}
		t.mu.Unlock()
	}()
	ctx, cancel := context.WithCancel(context.Background())
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		t.writeLoop(ctx, c, s)
	}()
	err := t.readLoop(c, s)
	var d *push.Disconnect
	switch {
	case errors.As(err, &d):
		// The engine ended the session: the writer sends the close.
		s.Close(d.Code, d.Reason)
	case closedCleanly(err):
		// The client said goodbye: nothing to resume, so the session
		// ends now instead of holding its place (and a -max-conns
		// slot) for the grace period.
		s.Close(push.CodeNormal, "closed by the client")
	default:
		// The client dropped: keep the session for its grace period,
		// so that it can resume.
		cancel()
	}
	<-writerDone
	cancel()
	s.Detach()
	c.CloseNow()
}

// closedCleanly reports whether err is the client's own close frame with
// 1000 (normal closure) or 1001 (going away, as a browser leaving the
// page sends).
func closedCleanly(err error) bool {
	var ce *ws.CloseError
	return errors.As(err, &ce) && !ce.Local &&
		(ce.Code == ws.StatusNormalClosure || ce.Code == ws.StatusGoingAway)
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
// written. When the session ends, the queued data not yet written is
// dropped and the close goes next: the superchat disconnect notice (the
// queue's last item) and the close frame with the session's code, so that
// a slow consumer learns why it is cut instead of waiting behind the
// queue it is cut for. A message already being written when the session
// ends is finished first (a frame cannot be cut); ws bounds it by
// WriteTimeout, and the close frame by 5 s.
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
			werr := t.writeBatch(context.Background(), c, s, batch, &last)
			if last > 0 {
				s.Ack(last)
			}
			clear(batch) // drop references to shared payloads
			if werr == errSessionEnded {
				err = s.Err()
			} else if werr != nil {
				c.CloseNow()
				return
			}
		}
		if err != nil {
			var d *push.Disconnect
			if errors.As(err, &d) {
				t.closeEnded(c, s, d, last, batch[:0])
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

// errSessionEnded stops a batch whose session has ended.
var errSessionEnded = errors.New("session ended")

// closeEnded closes the connection of an ended session: the superchat
// disconnect notice if it is still queued (it is the last item), then
// the close frame.
func (t *WebSocket) closeEnded(c *ws.Conn, s *push.Session, d *push.Disconnect, last uint64, buf []push.Outbound) {
	if s.Protocol() == push.ProtocolSuperchat {
		if rest := s.Pending(last, buf); len(rest) > 0 {
			c.WriteMessage(context.Background(), ws.MessageText, rest[len(rest)-1].Data)
			clear(rest)
		}
	}
	c.Close(ws.StatusCode(d.Code), d.Reason) // bounded by ws
}

// writeBatch writes batch in order, moving *last to each message written.
// It stops with errSessionEnded before a message if the session has
// ended meanwhile.
func (t *WebSocket) writeBatch(ctx context.Context, c *ws.Conn, s *push.Session, batch []push.Outbound, last *uint64) error {
	done := s.Done()
	for i := range batch {
		select {
		case <-done:
			return errSessionEnded
		default:
		}
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

// Wait blocks until every connection has finished (its goroutines have
// returned), or ctx ends. It is for shutdown, after the engine has ended
// the sessions.
func (t *WebSocket) Wait(ctx context.Context) error {
	t.mu.Lock()
	idle := t.idle
	n := t.n
	t.mu.Unlock()
	if n == 0 {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("transport: %d WebSocket connections still open: %w", t.Len(), ctx.Err())
	}
}

// Len returns the number of connections being served.
func (t *WebSocket) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}
