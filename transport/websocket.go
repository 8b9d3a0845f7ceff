package transport

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"sync"
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
	// WriteTimeout bounds one write to a client: a message, or a batch
	// of queued messages of up to 64 KiB sent in one write; past it the
	// client is dropped. 0 means 10s.
	WriteTimeout time.Duration
	// OnDeliver, if set, is called for each publication written, with
	// the time the broker accepted it (for latency metrics).
	OnDeliver func(transport string, published time.Time)
	// TakeoverOther, if set, is called with a session that a connection
	// here resumes, before it is served here: the other WebSocket
	// transport's Takeover (the server sets the event loop's, when
	// -event-loop serves GET /chat and this transport HTTP/2 CONNECT),
	// so that the session's queue never has two writers.
	TakeoverOther func(*push.Session)

	openConns // each connection's goroutines, counted until they return

	mu sync.Mutex
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
	if t.TakeoverOther != nil {
		t.TakeoverOther(s)
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

// serve runs one connection. Between the client's messages it keeps one
// goroutine, parked in WaitReadable on a fresh 2 KiB stack: each message
// is read and handled on a goroutine of its own, which hands over to a
// new waiter when done, so that the stack a message grew (JSON, the
// broker) goes with it instead of staying with the idle connection (the
// runtime shrinks an idle stack only down to 4 KiB). The writer runs
// only while the session has something to write: the session wakes it
// (SetWake) when an item is queued; it drains the queue and ends.
func (t *WebSocket) serve(c *ws.Conn, s *push.Session) {
	w := &wsWriter{t: t, c: c, s: s}
	w.wake, w.runFn = w.kick, w.run
	s.SetWake(&w.wake)
	w.kick() // what was queued before the wake was set
	w.waitRead()
}

// waitRead waits until the client sends something and hands over to
// readOne on a new goroutine.
func (w *wsWriter) waitRead() {
	if err := w.c.WaitReadable(context.Background()); err != nil {
		w.end(err)
		return
	}
	go w.readOne()
}

// readOne reads and handles one message (or only control frames), then
// hands over to waitRead on a new goroutine.
func (w *wsWriter) readOne() {
	c, s := w.c, w.s
	ctx := context.Background()
	op, msg, err := c.ReadMessageReady(ctx, w.rbuf[:0])
	if err != nil {
		w.end(err)
		return
	}
	if op == 0 {
		// Only control frames (a keepalive pong, a ping answered): the
		// connection has been quiet. Give back the read buffer and the
		// queue's spare array, and wait again on a fresh goroutine
		// rather than inside the read on this one's grown stack.
		w.rbuf = nil
		s.Compact()
		go w.waitRead()
		return
	}
	if op != ws.MessageText {
		c.Close(ws.StatusUnsupportedData, "binary messages are not part of chat or superchat")
		w.end(nil)
		return
	}
	if err := s.Handle(ctx, msg); err != nil {
		w.end(err)
		return
	}
	// Keep a small buffer for the next message; a large one goes.
	w.rbuf = nil
	if cap(msg) <= maxKeptReadBuf {
		w.rbuf = msg
	}
	go w.waitRead()
}

// maxKeptReadBuf is the largest read buffer an idle connection keeps for
// its next message.
const maxKeptReadBuf = 512

// end ends the connection after its reading ended with err.
func (w *wsWriter) end(err error) {
	t, c, s := w.t, w.c, w.s
	defer t.done()
	defer func() {
		t.mu.Lock()
		if t.live[s] == c {
			delete(t.live, s)
		}
		t.mu.Unlock()
	}()
	var d *push.Disconnect
	switch {
	case errors.As(err, &d):
		// The engine ended the session: the writer sends the close.
		s.Close(d.Code, d.Reason)
		w.stop(false)
	case closedCleanly(err):
		// The client said goodbye: nothing to resume, so the session
		// ends now instead of holding its place (and a -max-conns
		// slot) for the grace period.
		s.Close(push.CodeNormal, "closed by the client")
		w.stop(false)
	default:
		// The client dropped: keep the session for its grace period,
		// so that it can resume.
		w.stop(true)
	}
	s.ClearWake(&w.wake)
	s.Detach()
	c.CloseNow()
}

// The states of a wsWriter.
const (
	writerIdle    int32 = iota // no writer goroutine; a wake starts one
	writerRunning              // a writer goroutine is draining the queue
	writerStopped              // the connection is done: no writer starts
)

// wsWriter writes a session's queue to its connection, on a goroutine
// that runs only while there is something to write.
type wsWriter struct {
	t     *WebSocket
	c     *ws.Conn
	s     *push.Session
	state atomic.Int32
	halt  atomic.Bool // the client dropped: write no further batch
	// busy is held by a writer goroutine while it runs, so that stop can
	// wait for it (a mutex rather than a channel: nothing to allocate).
	busy  sync.Mutex
	wake  func() // w.kick, bound once: the session's wake function
	runFn func() // w.run, bound once: go w.runFn() does not allocate
	rbuf  []byte // the read buffer, kept between messages if small

	// Written by the running writer goroutine only. Atomic because a
	// writer that has just gone idle reads them (more) while a new one
	// may have started.
	last  atomic.Uint64 // Seq of the last item written
	ended atomic.Bool   // the session's close went out, or a write failed
}

// kick starts the writer unless it runs (or the connection is done). It
// runs on the goroutine that queued an item, maybe under an engine lock:
// it only starts a goroutine.
func (w *wsWriter) kick() {
	if w.state.CompareAndSwap(writerIdle, writerRunning) {
		go w.runFn()
	}
}

// run drains the queue, goes idle, and runs again if something arrived
// meanwhile (a wake that found it running did not start another).
func (w *wsWriter) run() {
	w.busy.Lock()
	defer w.busy.Unlock()
	for {
		w.drain()
		if beforeIdle != nil {
			beforeIdle(w)
		}
		w.state.Store(writerIdle)
		if !w.more() || !w.state.CompareAndSwap(writerIdle, writerRunning) {
			return
		}
	}
}

// beforeIdle, if set (by tests), runs after a writer has drained the
// queue and before it goes idle: what it queues must still go out.
var beforeIdle func(*wsWriter)

// more reports whether the writer has work: queued items, or the close of
// an ended session.
func (w *wsWriter) more() bool {
	if w.ended.Load() || w.halt.Load() {
		return false
	}
	return w.s.HasPending(w.last.Load()) || w.s.Err() != nil
}

// stop waits until no writer runs and makes sure none starts again. With
// halt (the client dropped), a running writer ends after its current
// batch.
func (w *wsWriter) stop(halt bool) {
	if halt {
		w.halt.Store(true)
	}
	for {
		// busy waits for a running writer; a writer just started that
		// has not taken busy yet leaves the state running: give it the
		// processor and try again.
		w.busy.Lock()
		stopped := w.state.CompareAndSwap(writerIdle, writerStopped)
		w.busy.Unlock()
		if stopped {
			return
		}
		runtime.Gosched()
	}
}

// drain sends the session's queue in order and acknowledges what was
// written, until nothing is left. When the session ends, the queued data
// not yet written is dropped and the close goes next: the superchat
// disconnect notice (the queue's last item) and the close frame with the
// session's code, so that a slow consumer learns why it is cut instead of
// waiting behind the queue it is cut for. A batch already being written
// when the session ends is finished first (a frame cannot be cut); ws
// bounds it by WriteTimeout, and the close frame by 5 s.
func (w *wsWriter) drain() {
	t, c, s := w.t, w.c, w.s
	batch := getOutbound()
	defer putOutbound(batch)
	last := w.last.Load()
	defer func() { w.last.Store(last) }()
	for !w.ended.Load() && !w.halt.Load() {
		*batch = s.Pending(last, (*batch)[:0])
		if len(*batch) > 0 {
			// Each write is bounded by the connection's WriteTimeout,
			// which ends with the write and leaves nothing behind for
			// the keepalive pings and pong replies that come after. Not
			// a ctx per batch: context.WithTimeout and its watch cost
			// about 9 allocations per message per recipient, and the
			// fan-out must allocate nothing.
			werr := t.writeBatch(context.Background(), c, s, *batch, &last)
			if last > 0 {
				s.Ack(last)
			}
			clear(*batch) // drop references to shared payloads
			if werr == nil {
				continue
			}
			if werr != errSessionEnded {
				w.ended.Store(true)
				c.CloseNow()
				return
			}
		}
		if err := s.Err(); err != nil {
			w.ended.Store(true)
			var d *push.Disconnect // escapes: only once, at the end
			if errors.As(err, &d) {
				t.closeEnded(c, s, d, last, (*batch)[:0])
				clear(*batch)
			}
		}
		return
	}
}

// outboundPool holds the batches writers take from their queues, so that
// a writer holds one only while it runs.
var outboundPool = sync.Pool{New: func() any { return new([]push.Outbound) }}

func getOutbound() *[]push.Outbound  { return outboundPool.Get().(*[]push.Outbound) }
func putOutbound(b *[]push.Outbound) { outboundPool.Put(b) }

// closedCleanly reports whether err is the client's own close frame with
// 1000 (normal closure) or 1001 (going away, as a browser leaving the
// page sends).
func closedCleanly(err error) bool {
	var ce *ws.CloseError
	return errors.As(err, &ce) && !ce.Local &&
		(ce.Code == ws.StatusNormalClosure || ce.Code == ws.StatusGoingAway)
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

// maxWriteBytes bounds what one write batch gathers (a larger message
// goes alone): the WriteTimeout bounds each batch, and the disconnect of
// an ended session waits for at most one batch.
const maxWriteBytes = 64 << 10

// writeBatch writes batch in order, moving *last to each message written.
// It gathers the messages into batches of up to maxWriteBytes, each sent
// with one ws.Conn.WriteMessages (one write system call for a burst of
// small messages, each still a frame of its own). It stops with
// errSessionEnded before a batch if the session has ended meanwhile.
func (t *WebSocket) writeBatch(ctx context.Context, c *ws.Conn, s *push.Session, batch []push.Outbound, last *uint64) error {
	done := s.Done()
	msgs := getMsgs()
	defer putMsgs(msgs)
	for len(batch) > 0 {
		select {
		case <-done:
			return errSessionEnded
		default:
		}
		k, size := 0, 0
		for k < len(batch) && (k == 0 || size+len(batch[k].Data) <= maxWriteBytes) {
			size += len(batch[k].Data)
			k++
		}
		*msgs = (*msgs)[:0]
		for i := range batch[:k] {
			*msgs = append(*msgs, batch[i].Data)
		}
		n, err := c.WriteMessages(ctx, ws.MessageText, *msgs)
		clear(*msgs)
		for i := range batch[:n] {
			o := &batch[i]
			*last = o.Seq
			if t.OnDeliver != nil && !o.Time.IsZero() {
				t.OnDeliver("websocket", o.Time)
			}
		}
		if err != nil {
			return err
		}
		batch = batch[k:]
	}
	return nil
}

// msgsPool holds the payload lists of write batches, so that a writer
// holds one only while it writes.
var msgsPool = sync.Pool{New: func() any { return new([][]byte) }}

func getMsgs() *[][]byte  { return msgsPool.Get().(*[][]byte) }
func putMsgs(m *[][]byte) { msgsPool.Put(m) }

// Wait blocks until every connection has finished (its goroutines have
// returned), or ctx ends. It is for shutdown, after the engine has ended
// the sessions.
func (t *WebSocket) Wait(ctx context.Context) error {
	return t.wait(ctx, "WebSocket connections")
}
