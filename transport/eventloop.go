//go:build linux

package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/internal/netpoll"
	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/ws"
)

// EventLoop serves push sessions over WebSocket as WebSocket does (same
// endpoints, subprotocols, token check, resume with ?session=), but an idle
// connection costs no goroutine and no buffer: the socket is taken from
// net/http after the upgrade and registered with epoll; a read worker
// reads it into a pooled buffer when it is readable, decodes the frames
// (ws.Decoder) and hands the messages to the session; a write worker
// writes the session's queue when something is queued, and a write that
// would block waits for EPOLLOUT without a goroutine. Keepalive pings,
// write timeouts and the wait for the peer's close frame are checked by
// one sweeper over all connections.
//
// Plain TCP only (terminate TLS at a proxy), Linux only, and no
// permessage-deflate: an offer of it is declined at the upgrade.
type EventLoop struct {
	Engine   *push.Engine
	Verifier auth.Verifier
	// Accept holds the WebSocket options (origins, read limit,
	// keepalive); Subprotocols and Compression are ignored.
	Accept ws.AcceptOptions
	Log    *slog.Logger
	// WriteTimeout: a client whose socket takes no bytes for this long
	// while output waits is dropped. 0 means 10s.
	WriteTimeout time.Duration
	// OnDeliver is as WebSocket's.
	OnDeliver func(transport string, published time.Time)
	// TakeoverOther, if set, is called with a session that a connection
	// here resumes: the other WebSocket transport's Takeover (the server
	// serves HTTP/2 CONNECT with it), so that a queue never has two
	// writers.
	TakeoverOther func(*push.Session)
	// ReadWorkers handle client messages (which may wait on the broker);
	// 0 means 32. WriteWorkers write queued output (never blocking); 0
	// means 2 per CPU.
	ReadWorkers  int
	WriteWorkers int

	poller    *netpoll.Poller
	readers   *netpoll.Pool
	writers   *netpoll.Pool
	stop      chan struct{}
	swept     sync.WaitGroup
	closeOnce sync.Once

	openConns // counted from the upgrade until the fd is closed

	mu   sync.Mutex
	live map[*push.Session]*elConn // the connection serving each session

	echo echoCounts // ServeEcho's connections (eventloop_echo.go)
}

// closeWait bounds the wait for the peer's close frame after ours, as
// ws.Conn.Close does.
const closeWait = 5 * time.Second

// Start makes the poller, the worker pools and the sweeper.
func (t *EventLoop) Start() error {
	p, err := netpoll.New()
	if err != nil {
		return fmt.Errorf("transport: event loop: %w", err)
	}
	t.poller = p
	t.readers = netpoll.NewPool(cmpOr(t.ReadWorkers, 32))
	t.writers = netpoll.NewPool(cmpOr(t.WriteWorkers, 2*runtime.GOMAXPROCS(0)))
	t.stop = make(chan struct{})
	t.swept.Go(t.sweeper)
	return nil
}

func cmpOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// Close drops every connection left and stops the poller, the workers
// and the sweeper. Call it after Wait.
func (t *EventLoop) Close() {
	if t.poller == nil {
		return
	}
	t.closeOnce.Do(t.close)
}

func (t *EventLoop) close() {
	close(t.stop)
	t.swept.Wait()
	t.poller.Each(func(h netpoll.Handler) {
		c := h.(*elConn)
		c.mu.Lock()
		f := c.shutLocked()
		c.mu.Unlock()
		f()
	})
	t.readers.Close()
	t.writers.Close()
	t.poller.Close()
}

func (t *EventLoop) writeTimeout() time.Duration {
	if t.WriteTimeout <= 0 {
		return 10 * time.Second
	}
	return t.WriteTimeout
}

func (t *EventLoop) log() *slog.Logger {
	if t.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return t.Log
}

func (t *EventLoop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS != nil {
		http.Error(w, "the event-loop WebSocket transport serves plain TCP only", http.StatusInternalServerError)
		return
	}
	proto, ok := pickProtocol(r)
	if !ok {
		http.Error(w, "unsupported subprotocol: this endpoint speaks chat and superchat", http.StatusBadRequest)
		return
	}
	ident, ok := Authenticate(w, r, t.Verifier)
	if !ok {
		return
	}
	s, resumed := resumeSession(t.Engine, t.Verifier, r, ident, proto)
	if resumed && t.TakeoverOther != nil {
		t.TakeoverOther(s)
	}
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
	c := &elConn{t: t, s: s, fd: -1, dec: ws.NewDecoder(opts.ReadLimit)}
	t.add()
	nc, _, err := ws.UpgradeDetached(w, r, &opts, &c.dec)
	if err == nil {
		var fd int
		fd, err = detachFD(nc)
		c.fd = int32(fd)
	}
	if err != nil {
		c.dec.Release()
		t.done()
		if resumed {
			s.Detach()
		} else {
			s.Close(push.CodeNormal, "upgrade failed")
		}
		t.log().Debug("websocket (event loop): upgrade refused", "err", err, "remote", r.RemoteAddr)
		return
	}
	c.lastSeen.Store(time.Now().UnixNano())
	// Read before Add: from then on the Decoder is the reader's.
	behind := c.dec.Buffered() > 0
	t.mu.Lock()
	if t.live == nil {
		t.live = make(map[*push.Session]*elConn)
	}
	old := t.live[s]
	t.live[s] = c
	c.wakeFn = new(func())
	*c.wakeFn = c.wake
	s.SetWake(c.wakeFn)
	t.mu.Unlock()
	if old != nil {
		old.moved("session moved to another connection")
	}
	if err := t.poller.Add(int(c.fd), c); err != nil {
		t.forget(c)
		syscall.Close(int(c.fd))
		c.dec.Release()
		t.done()
		s.Detach()
		t.log().Warn("websocket (event loop): epoll", "err", err)
		return
	}
	// Bytes that came behind the handshake wait in the Decoder, and a
	// resumed session may have output queued: go over both once.
	if behind {
		c.Ready(netpoll.Readable)
	}
	c.wake()
}

// resumeSession is WebSocket.resume: the session named by ?session= if it
// is live, the same protocol and the same user's (any user's in
// development mode); ?ack=N acknowledges the items up to seq N.
func resumeSession(e *push.Engine, v auth.Verifier, r *http.Request, ident auth.Identity, proto push.Protocol) (*push.Session, bool) {
	q := r.URL.Query()
	id := q.Get("session")
	if id == "" {
		return nil, false
	}
	s, ok := e.Session(id)
	if !ok || s.Protocol() != proto || (!v.Dev() && s.Identity().UserID != ident.UserID) {
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

// Takeover ends the connection serving s here, if there is one, so that
// another transport serves the session (Polling.Takeover): what is being
// written is finished, then the close frame (4000) goes out; what is
// still queued stays in the session.
func (t *EventLoop) Takeover(s *push.Session) {
	t.mu.Lock()
	c := t.live[s]
	if c != nil {
		delete(t.live, s)
		s.ClearWake(c.wakeFn)
	}
	t.mu.Unlock()
	if c != nil {
		c.moved("session moved to another transport")
	}
}

// forget drops c from live if it still serves its session, and its
// session's callback with it.
func (t *EventLoop) forget(c *elConn) {
	t.mu.Lock()
	if t.live[c.s] == c {
		delete(t.live, c.s)
		c.s.ClearWake(c.wakeFn)
	}
	t.mu.Unlock()
}

// moved closes c with 4000 after what it is writing; it writes no more of
// the session's queue.
func (c *elConn) moved(reason string) {
	c.queueCtrl(ws.AppendClose(nil, StatusSessionMoved, reason), true, true)
}

// detachFD takes the socket out of nc: a duplicate of its descriptor
// (non-blocking, close-on-exec), and nc closed, which unregisters it from
// the runtime's poller and lets net/http's state of it go.
func detachFD(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		nc.Close()
		return -1, errors.New("connection is not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		nc.Close()
		return -1, err
	}
	fd := -1
	var derr error
	err = rc.Control(func(s uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
			return
		}
		fd = int(r)
	})
	nc.Close()
	if err == nil {
		err = derr
	}
	if err != nil {
		return -1, err
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// Wait blocks until every connection has closed, or ctx ends.
func (t *EventLoop) Wait(ctx context.Context) error {
	return t.wait(ctx, "WebSocket connections (event loop)")
}

// sweeper checks every connection a few times per keepalive period: it
// pings a silent client and drops one that stays silent, drops a client
// whose socket has taken nothing for WriteTimeout, and closes a
// connection whose peer has not answered our close frame in closeWait.
func (t *EventLoop) sweeper() {
	period := min(t.writeTimeout(), closeWait)
	if ka := t.Accept.KeepAlive; ka > 0 {
		period = min(period, ka)
	}
	tick := time.NewTicker(min(max(period/4, 100*time.Millisecond), 2*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
		now := time.Now().UnixNano()
		t.poller.Each(func(h netpoll.Handler) { h.(*elConn).sweep(now) })
	}
}

// elConn is one connection. Two roles work on it, each on its pool and
// each at most once at a time: the reader (decoder, session.Handle) and
// the writer (the session's queue, control frames). The flags under mu
// say which role runs or must run again; the socket is closed when it is
// shut and neither runs, so no role ever uses a descriptor number that
// has been reused.
type elConn struct {
	t        *EventLoop
	s        *push.Session // nil: an echo connection (ServeEcho)
	lastSeen atomic.Int64  // UnixNano of the last bytes read
	fd       int32         // int32: with the flags it fills 16 bytes

	cleanClose bool // the peer closed with 1000 or 1001
	rRun       bool // the reader is submitted or running
	rPend      bool // readable again since the reader started
	wRun       bool
	wPend      bool // output queued since the writer started
	wBlocked   bool // a write would block: EPOLLOUT resumes it
	closeSent  bool // our close frame is queued or out: no more data
	flushShut  bool // shut once ctrl and pend are written
	shut       bool // no more work; the socket closes when no role runs
	fdClosed   bool
	pinged     bool
	handleOff  bool    // the session has ended: client messages are dropped
	readOff    bool    // the reading is over (close frame in or a broken stream)
	ctrl       []byte  // control frames to write before more data
	at         int64   // closeSent: when our close frame was queued; else pinged: when the ping was
	wakeFn     *func() // the session's wake function (SetWake), c.wake
	blockedAt  int64

	mu  sync.Mutex
	dec ws.Decoder // the reader's

	last uint64 // the writer's: last Seq written and acknowledged
	pend []byte // the writer's: bytes a write could not take yet
}

type readRole elConn
type writeRole elConn

func (r *readRole) Run()  { (*elConn)(r).runRead() }
func (w *writeRole) Run() { (*elConn)(w).runWrite() }

// Ready is the poller's report.
func (c *elConn) Ready(events int) {
	c.mu.Lock()
	if c.shut {
		c.mu.Unlock()
		return
	}
	var rd, wr bool
	if events&netpoll.Readable != 0 && !c.readOff {
		if c.rRun {
			c.rPend = true
		} else {
			c.rRun, rd = true, true
		}
	}
	if events&netpoll.Writable != 0 {
		// A writer that is running may have just met EAGAIN and not yet
		// said so: it must look again, as this edge will not recur.
		if c.wRun {
			c.wPend = true
		} else if c.wBlocked {
			c.wBlocked = false
			c.wRun, wr = true, true
		}
	}
	c.mu.Unlock()
	if rd {
		c.t.readers.Submit((*readRole)(c))
	}
	if wr {
		c.t.writers.Submit((*writeRole)(c))
	}
}

// wake is the session's wake function (SetWake): output to write.
func (c *elConn) wake() {
	c.mu.Lock()
	if c.shut || c.wBlocked {
		c.mu.Unlock()
		return
	}
	if c.wRun {
		c.wPend = true
		c.mu.Unlock()
		return
	}
	c.wRun = true
	c.mu.Unlock()
	c.t.writers.Submit((*writeRole)(c))
}

// queueCtrl queues a control frame; closing marks our close frame, after
// which nothing else is sent, and shut closes the socket once it is out.
// mu is held. It reports whether the writer must be submitted.
func (c *elConn) queueCtrlLocked(frame []byte, closing, shut bool) bool {
	if c.shut || c.closeSent {
		return false
	}
	c.ctrl = append(c.ctrl, frame...)
	if closing {
		c.closeSent = true
		c.at = time.Now().UnixNano()
	}
	if shut {
		c.flushShut = true
	}
	if c.wBlocked {
		return false
	}
	if c.wRun {
		c.wPend = true
		return false
	}
	c.wRun = true
	return true
}

func (c *elConn) queueCtrl(frame []byte, closing, shut bool) {
	c.mu.Lock()
	sub := c.queueCtrlLocked(frame, closing, shut)
	c.mu.Unlock()
	if sub {
		c.t.writers.Submit((*writeRole)(c))
	}
}

// shutLocked marks the connection shut and, if no role runs, returns the
// function that closes it (to call without mu); else the last role to
// finish does.
func (c *elConn) shutLocked() func() {
	c.shut = true
	if c.rRun || c.wRun || c.fdClosed {
		return func() {}
	}
	c.fdClosed = true
	return c.closeFD
}

// finishLocked is shutLocked's check at the end of a role.
func (c *elConn) finishLocked() func() {
	if c.shut {
		return c.shutLocked()
	}
	return func() {}
}

func (c *elConn) closeFD() {
	c.t.poller.Remove(int(c.fd))
	syscall.Close(int(c.fd))
	c.t.forget(c)
	c.dec.Release()
	c.pend = nil
	if c.s == nil {
		// An echo connection (ServeEcho): no session.
		c.t.done()
		return
	}
	if c.cleanClose {
		// The client said goodbye: nothing to resume.
		c.s.Close(push.CodeNormal, "closed by the client")
	}
	c.s.Detach()
	c.t.done()
}

const maxReadsPerTurn = 16

func (c *elConn) runRead() {
	for {
		c.mu.Lock()
		c.rPend = false
		c.mu.Unlock()
		more, stop := c.readSome()
		c.mu.Lock()
		if stop {
			c.rRun = false
			f := c.shutLocked()
			c.mu.Unlock()
			f()
			return
		}
		if c.shut {
			c.rRun = false
			f := c.finishLocked()
			c.mu.Unlock()
			f()
			return
		}
		if more {
			// Not drained yet: take a turn at the back of the queue.
			c.mu.Unlock()
			c.t.readers.Submit((*readRole)(c))
			return
		}
		if c.rPend && !c.readOff {
			// Readable again while reading. Once the reading is over
			// (a close frame or a broken stream), what follows is not
			// decoded: an error event is sticky and would be acted on
			// again, and frames after a close are to be ignored.
			c.mu.Unlock()
			continue
		}
		c.rRun = false
		c.mu.Unlock()
		return
	}
}

// readSome reads until the socket would block (or maxReadsPerTurn reads:
// more) and acts on what it decodes. stop means: close the socket now.
func (c *elConn) readSome() (more, stop bool) {
	defer c.dec.Release()
	if c.dec.Buffered() > 0 {
		// Bytes that came behind the handshake.
		if done, stop := c.decode(); done {
			return false, stop
		}
	}
	for range maxReadsPerTurn {
		sp := c.dec.Space()
		n, err := syscall.Read(int(c.fd), sp)
		for err == syscall.EINTR {
			n, err = syscall.Read(int(c.fd), sp)
		}
		if err == syscall.EAGAIN {
			return false, false
		}
		if n <= 0 || err != nil {
			// The client is gone without a close handshake: the
			// session keeps its grace period.
			return false, true
		}
		c.dec.Advance(n)
		c.lastSeen.Store(time.Now().UnixNano())
		if done, stop := c.decode(); done {
			return false, stop
		}
	}
	return true, false
}

// decode acts on the events in the buffered bytes.
func (c *elConn) decode() (done, stop bool) {
	for {
		ev := c.dec.Next()
		if ev.Kind == ws.EventMore {
			return false, false
		}
		if done, stop := c.event(ev); done {
			c.mu.Lock()
			c.readOff = true
			c.mu.Unlock()
			return true, stop
		}
	}
}

// event acts on one decoded event; done means the reading is over.
func (c *elConn) event(ev ws.Event) (done, stop bool) {
	if c.s == nil {
		c.t.echo.event(ev.Kind)
	}
	switch ev.Kind {
	case ws.EventMessage:
		c.mu.Lock()
		off := c.handleOff || c.closeSent
		c.mu.Unlock()
		if off {
			return false, false
		}
		if c.s == nil {
			c.echoMessage(ev)
			return false, false
		}
		if ev.Type != ws.MessageText {
			c.queueCtrl(ws.AppendClose(nil, ws.StatusUnsupportedData, "binary messages are not part of chat or superchat"), true, false)
			return false, false
		}
		if err := c.s.Handle(context.Background(), ev.Data); err != nil {
			var d *push.Disconnect
			if errors.As(err, &d) {
				// The writer sends the notice and the close.
				c.mu.Lock()
				c.handleOff = true
				c.mu.Unlock()
				c.s.Close(d.Code, d.Reason)
			}
		}
	case ws.EventPing:
		c.queueCtrl(ws.AppendPong(nil, ev.Data), false, false)
	case ws.EventPong:
	case ws.EventClose:
		c.mu.Lock()
		ours := c.closeSent
		if !ours {
			c.cleanClose = ev.Code == ws.StatusNormalClosure || ev.Code == ws.StatusGoingAway
		}
		sub := c.queueCtrlLocked(ws.AppendClose(nil, ev.Code, ev.Reason), true, true)
		c.mu.Unlock()
		if sub {
			c.t.writers.Submit((*writeRole)(c))
		}
		// Our close was out already: this is the answer, close now.
		return true, ours
	case ws.EventError:
		c.queueCtrl(ws.AppendClose(nil, ev.Code, ev.Reason), true, true)
		return true, false
	}
	return false, false
}

// writeScratch is a write worker's buffer, lent per turn.
type writeScratch struct {
	buf   []byte
	batch []push.Outbound
}

var scratchPool = sync.Pool{New: func() any { return &writeScratch{buf: make([]byte, 0, writeChunk)} }}

// writeChunk is how much one write gathers: messages are copied into it
// and go out in one system call.
const writeChunk = 64 << 10

// maxChunksPerTurn bounds one flush, so that a busy connection leaves the
// worker to the others between chunks.
const maxChunksPerTurn = 4

func (c *elConn) runWrite() {
	sc := scratchPool.Get().(*writeScratch)
	defer scratchPool.Put(sc)
	for turn := 0; ; turn++ {
		c.mu.Lock()
		c.wPend = false
		ctrl := c.ctrl
		c.ctrl = nil
		noData := c.closeSent
		c.mu.Unlock()
		blocked, more, err := c.flush(sc, ctrl, noData)
		c.mu.Lock()
		if more {
			c.wPend = true
		}
		if err != nil {
			c.wRun = false
			f := c.shutLocked()
			c.mu.Unlock()
			f()
			return
		}
		if c.shut {
			c.wRun = false
			f := c.finishLocked()
			c.mu.Unlock()
			f()
			return
		}
		if c.wPend {
			c.mu.Unlock()
			if turn < 2 {
				continue
			}
			// Still busy: take a turn at the back of the queue, so that
			// a connection that keeps getting messages does not keep a
			// worker from the others (wRun stays set).
			c.t.writers.Submit((*writeRole)(c))
			return
		}
		if blocked {
			c.wBlocked = true
			c.blockedAt = time.Now().UnixNano()
			c.wRun = false
			c.mu.Unlock()
			return
		}
		c.wRun = false
		var f func()
		if c.flushShut && len(c.ctrl) == 0 {
			f = c.shutLocked()
		}
		c.mu.Unlock()
		if f != nil {
			f()
		}
		return
	}
}

// write writes p, reporting how much went out; blocked means the socket
// took less than all of it and would block.
func (c *elConn) write(p []byte) (n int, blocked bool, err error) {
	for n < len(p) {
		m, err := syscall.Write(int(c.fd), p[n:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
		n += m
	}
	return n, false, nil
}

// flush writes, in order: what an earlier write left (pend), the control
// frames ctrl, then the session's queue (unless noData), or once the
// session has ended its disconnect notice and the close frame.
// more means it stopped after maxChunksPerTurn with output left.
func (c *elConn) flush(sc *writeScratch, ctrl []byte, noData bool) (blocked, more bool, err error) {
	if len(c.pend) > 0 {
		n, blocked, err := c.write(c.pend)
		if err != nil {
			return false, false, err
		}
		if blocked {
			c.pend = append(c.pend[n:], ctrl...)
			return true, false, nil
		}
		c.pend = nil
	}
	b := append(sc.buf[:0], ctrl...)
	for chunk := 1; ; chunk++ {
		var lastSeq uint64
		batch := sc.batch[:0]
		if !noData && c.s != nil { // an echo connection (no session) writes ctrl only
			if d, ok := c.s.Err().(*push.Disconnect); ok && d != nil {
				b = c.closeEnded(b, d, batch)
				noData = true
			} else {
				batch = c.s.Pending(c.last, batch)
				k := 0
				for i := range batch {
					o := &batch[i]
					if len(b) > 0 && len(b)+len(o.Data)+10 > writeChunk {
						break
					}
					b = ws.AppendHeader(b, ws.MessageText, len(o.Data))
					b = append(b, o.Data...)
					lastSeq = o.Seq
					k++
				}
				batch = batch[:k]
			}
		}
		if len(b) == 0 {
			sc.batch = batch[:0]
			return false, false, nil
		}
		n, blocked, err := c.write(b)
		if err != nil {
			clear(batch)
			return false, false, err
		}
		if blocked {
			c.pend = append([]byte(nil), b[n:]...)
		}
		if lastSeq > 0 {
			// Written or held in pend: the queue's bound counts the
			// rest, and pend holds at most one chunk beside it.
			c.last = lastSeq
			c.s.Ack(lastSeq)
			if c.t.OnDeliver != nil {
				for i := range batch {
					if !batch[i].Time.IsZero() {
						c.t.OnDeliver("websocket", batch[i].Time)
					}
				}
			}
		}
		clear(batch)
		sc.batch = batch[:0]
		if cap(b) > writeChunk {
			b = nil // a big message: do not keep its buffer
		}
		sc.buf = b[:0]
		if blocked || noData || lastSeq == 0 {
			return blocked, false, nil
		}
		if chunk == maxChunksPerTurn {
			return false, true, nil
		}
		b = sc.buf[:0]
	}
}

// closeEnded appends the close of an ended session: the superchat
// disconnect notice if it is still queued (it is the last item), then
// the close frame with the session's code. The client's close answer
// ends the connection (or closeWait does).
func (c *elConn) closeEnded(b []byte, d *push.Disconnect, buf []push.Outbound) []byte {
	if c.s.Protocol() == push.ProtocolSuperchat {
		if rest := c.s.Pending(c.last, buf); len(rest) > 0 {
			b = ws.AppendFrame(b, ws.MessageText, rest[len(rest)-1].Data)
			clear(rest)
		}
	}
	b = ws.AppendClose(b, ws.StatusCode(d.Code), d.Reason)
	c.mu.Lock()
	if !c.closeSent {
		c.closeSent = true
		c.at = time.Now().UnixNano()
	}
	c.mu.Unlock()
	return b
}

// sweep is the sweeper's check of one connection at now (UnixNano).
func (c *elConn) sweep(now int64) {
	t := c.t
	c.mu.Lock()
	if c.shut {
		c.mu.Unlock()
		return
	}
	var f func()
	sub := false
	switch {
	case c.closeSent && now-c.at > int64(closeWait):
		f = c.shutLocked()
	case c.wBlocked && now-c.blockedAt > int64(t.writeTimeout()):
		f = c.shutLocked()
	case t.Accept.KeepAlive > 0 && !c.closeSent:
		ka := int64(t.Accept.KeepAlive)
		seen := c.lastSeen.Load()
		if c.pinged && seen > c.at {
			c.pinged = false
		}
		switch {
		case !c.pinged && now-seen > ka:
			c.pinged, c.at = true, now
			sub = c.queueCtrlLocked(ws.AppendPing(nil), false, false)
		case c.pinged && now-c.at > ka:
			sub = c.queueCtrlLocked(ws.AppendClose(nil, ws.StatusPolicyViolation, "keepalive: no pong"), true, true)
		}
	}
	c.mu.Unlock()
	if f != nil {
		f()
	}
	if sub {
		t.writers.Submit((*writeRole)(c))
	}
}
