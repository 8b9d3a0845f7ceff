package transport

import (
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/ws"
)

// Polling serves push sessions over HTTP requests, for clients that cannot
// keep a WebSocket open: long polling (the server holds each GET until there
// is something to deliver or LongPollTimeout passes) and ajax polling (it
// answers at once). Both speak superchat envelopes only. Mount it at /poll/;
// it routes these itself (docs/transports.md):
//
//	POST   /poll/open       authenticate, open a session: {"session":ID,"protocol":"superchat"}
//	GET    /poll/{session}  ?ack=N: acknowledge up to N, return everything after it
//	POST   /poll/{session}  one request envelope or an array of them: 202
//	DELETE /poll/{session}  end the session: 204
//
// Only sessions opened or resumed by /poll/open are served here. A client
// resumes a live session, whichever transport it was on, with
// {"transport":...,"session":ID} in the open body: its subscriptions and
// its queue carry over (a WebSocket that died behind a proxy continues on
// polling); the answer says "resumed":true, or opens a new session if the
// named one is gone, another user's (with authentication on) or not a
// superchat session. With authentication on (a
// Verifier that is not in development mode) every request must carry the
// credentials of the user that opened the session (401 without a valid
// token, 403 with another user's); in development mode the session id, an
// unguessable bearer credential, is enough. The session outlives each
// request by the engine's grace period, so a client may also move it onto
// WebSocket with /chat?session=ID.
//
// When a session ends its queue is freed at once; what stays is a
// tombstone of a few hundred bytes with the disconnect notice, so that a
// late poll still learns why, for EndedKeep or until the client was told,
// and at most MaxEnded of them (the oldest go first).
//
// The zero value is not usable: set Engine and Verifier. Fields must not
// change once it serves requests. Close stops its goroutines.
type Polling struct {
	Engine   *push.Engine
	Verifier auth.Verifier
	// AllowedOrigins are origin patterns allowed besides the same origin,
	// with the semantics of ws.AcceptOptions.AllowedOrigins. Cross-origin
	// requests from them get CORS headers; others get 403.
	AllowedOrigins []string
	// LongPollTimeout is how long a long poll is held when there is
	// nothing to deliver. 0 means 25s, below common proxy idle timeouts.
	LongPollTimeout time.Duration
	// MaxWaiting bounds the long polls held at once; past it a long poll
	// gets 503 with Retry-After. 0 means no limit.
	MaxWaiting int
	// MaxBody bounds the body of a POST; past it the answer is 413. 0
	// means 1 MiB.
	MaxBody int64
	// BodyTimeout bounds the reading of a POST body, from the start of the
	// handler: a client that sends it slower is cut off (408). A held
	// long poll is not bound by it, nor by an http.Server's ReadTimeout:
	// once a request without a body is read, net/http reads on with no
	// deadline, only to learn when the client goes away. 0 means 10s.
	BodyTimeout time.Duration
	// MaxEnded bounds the tombstones of ended sessions kept for a late
	// poll; past it the oldest is forgotten (its poll gets 404). About
	// 300 bytes each. 0 means 10,000.
	MaxEnded int
	// EndedKeep is how long a tombstone is kept. 0 means 1 minute.
	EndedKeep time.Duration
	// Takeover, if set, is called when an open resumes a session, before
	// it is served here: WebSocket.Takeover, which ends the session's
	// WebSocket connection, so that one queue never has two writers.
	Takeover func(*push.Session)
	Log      *slog.Logger
	// OnDeliver, if set, is called once for each publication sent to a
	// client, with the time the broker accepted it (for latency metrics).
	OnDeliver func(transport string, published time.Time)

	initOnce sync.Once
	mux      *http.ServeMux
	log      *slog.Logger
	waiting  atomic.Int64
	// release ends when GoingAway is called: held polls answer at once.
	release     context.Context
	stopRelease context.CancelFunc

	// wg counts the goroutines Polling starts: one watcher per live
	// session (it buries the session when it ends) and the sweeper. Close
	// ends them (closing) and waits.
	wg      sync.WaitGroup
	closing chan struct{}

	mu     sync.Mutex
	closed bool                    // Close was called: start no goroutine
	polls  map[string]*pollSession // live sessions opened here
	// namedOrigins are AllowedOrigins without "*": origins that may send
	// credentials cross-origin.
	namedOrigins []string
	tombs        map[string]*tombstone // ended ones, until told, swept or evicted
	order        list.List             // of *tombstone, oldest first
}

// pollSession is what Polling keeps per live session it opened: the
// session, who opened it, the poll it holds now, and how far OnDeliver has
// counted.
type pollSession struct {
	s    *push.Session
	user string      // UserID of the identity that opened it
	hold atomic.Bool // opened (or last resumed) for long polling

	mu     sync.Mutex
	cancel context.CancelFunc // ends the held poll, if any
	holder *int               // identifies the held poll
	sent   uint64             // highest Seq reported to OnDeliver
}

// tombstone is what stays of an ended session: why it ended and the final
// notice (Seq 0 if the client had acknowledged it), not its queue.
type tombstone struct {
	id     string
	user   string
	d      *push.Disconnect
	notice push.Outbound
	at     time.Time     // when it was buried
	elem   *list.Element // in Polling.order
}

// Transport names, as push.Stats counts them.
const (
	transportLongPoll = "longpoll"
	transportPoll     = "poll"
)

func (p *Polling) init() {
	p.initOnce.Do(func() {
		p.log = p.Log
		if p.log == nil {
			p.log = slog.New(slog.DiscardHandler)
		}
		p.release, p.stopRelease = context.WithCancel(context.Background())
		p.closing = make(chan struct{})
		p.polls = make(map[string]*pollSession)
		for _, o := range p.AllowedOrigins {
			if o != "*" {
				p.namedOrigins = append(p.namedOrigins, o)
			}
		}
		p.tombs = make(map[string]*tombstone)
		m := http.NewServeMux()
		m.HandleFunc("POST /poll/open", p.open)
		m.HandleFunc("GET /poll/{session}", p.poll)
		m.HandleFunc("POST /poll/{session}", p.send)
		m.HandleFunc("DELETE /poll/{session}", p.close)
		m.HandleFunc("OPTIONS /poll/", p.preflight)
		p.mux = m
		p.mu.Lock()
		if !p.closed {
			p.wg.Go(p.sweeper)
		}
		p.mu.Unlock()
	})
}

func (p *Polling) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.init()
	if !p.cors(w, r) {
		http.Error(w, "origin "+r.Header.Get("Origin")+" is not allowed", http.StatusForbidden)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	p.mux.ServeHTTP(w, r)
}

// GoingAway answers every held long poll at once and holds no new ones:
// call it when the server shuts down (http.Server.RegisterOnShutdown), as
// net/http waits for the requests in flight. It is safe to call more than
// once.
func (p *Polling) GoingAway() {
	p.init()
	p.stopRelease()
}

// Close answers held polls (as GoingAway), stops the goroutines Polling
// started (the sweeper, the watchers of live sessions) and waits for them.
// Call it at shutdown, before or after the engine's Shutdown; the
// sessions themselves are the engine's. It is safe to call more than once
// and at once from several goroutines.
func (p *Polling) Close() {
	p.GoingAway()
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.closing)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// Sessions reports the polling table: live sessions opened here, and
// tombstones of ended ones. For metrics.
func (p *Polling) Sessions() (live, ended int) {
	p.init()
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.polls), len(p.tombs)
}

// Waiting reports the long polls held now.
func (p *Polling) Waiting() int { return int(p.waiting.Load()) }

// cors checks the request's Origin with ws.OriginAllowed, the rule of the
// WebSocket handshake, and sets the CORS response headers for an allowed
// foreign one. It reports whether the origin is allowed.
func (p *Polling) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if !ws.OriginAllowed(r, p.AllowedOrigins) {
		return false
	}
	if u, err := url.Parse(origin); err == nil && strings.EqualFold(u.Host, r.Host) {
		return true // same origin: no CORS headers needed
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	// An origin allowed only by "*" gets no credentials: "*" is for
	// endpoints without ambient credentials, as for WebSocket.
	if ws.OriginAllowed(r, p.namedOrigins) {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	return true
}

func (p *Polling) preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

func (p *Polling) maxBody() int64 {
	if p.MaxBody <= 0 {
		return 1 << 20
	}
	return p.MaxBody
}

func (p *Polling) bodyTimeout() time.Duration {
	if p.BodyTimeout <= 0 {
		return 10 * time.Second
	}
	return p.BodyTimeout
}

// readBody reads a POST body within MaxBody and BodyTimeout; on failure it
// has answered (413 past MaxBody, 408 past BodyTimeout).
func (p *Polling) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	// Where the ResponseWriter cannot (a recorder in a test), the
	// http.Server's ReadTimeout is the only bound.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(p.bodyTimeout()))
	var buf bytes.Buffer
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, p.maxBody()))
	if err != nil {
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mbe):
			http.Error(w, "body larger than "+strconv.FormatInt(mbe.Limit, 10)+" bytes", http.StatusRequestEntityTooLarge)
		case errors.As(err, &ne) && ne.Timeout():
			w.Header().Set("Connection", "close")
			http.Error(w, "body not received within "+p.bodyTimeout().String(), http.StatusRequestTimeout)
		default:
			http.Error(w, "cannot read body", http.StatusBadRequest)
		}
		return nil, false
	}
	return buf.Bytes(), true
}

// open authenticates the client and opens a superchat session.
func (p *Polling) open(w http.ResponseWriter, r *http.Request) {
	ident, ok := Authenticate(w, r, p.Verifier)
	if !ok {
		return
	}
	body, ok := p.readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		Transport string `json:"transport"`
		Session   string `json:"session"`
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "body must be {\"transport\":\"longpoll\"|\"poll\",\"session\":ID}", http.StatusBadRequest)
			return
		}
	}
	switch req.Transport {
	case "":
		req.Transport = transportLongPoll
	case transportLongPoll, transportPoll:
	default:
		http.Error(w, "unknown transport "+strconv.Quote(req.Transport)+": longpoll or poll", http.StatusBadRequest)
		return
	}
	if req.Session != "" && p.resume(w, r, ident, req.Session, req.Transport) {
		return
	}
	s, err := p.Engine.Connect(r.Context(), push.ConnectRequest{
		Identity:  ident,
		Protocol:  push.ProtocolSuperchat,
		Transport: req.Transport,
	})
	if err != nil {
		connectError(w, err)
		return
	}
	// The session is born attached; between polls it lives on its grace
	// period.
	s.Detach()
	ps := &pollSession{s: s, user: ident.UserID}
	ps.hold.Store(req.Transport == transportLongPoll)
	if !p.add(ps) {
		s.Close(push.CodeGoingAway, push.ReasonShutdown)
		Overloaded(w, "server is shutting down")
		return
	}
	p.log.Debug("poll: session opened", "session", push.LogID(s.ID()), "transport", req.Transport, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"session": s.ID(), "protocol": "superchat"})
}

// add puts a live session into the table with a watcher that buries it as
// soon as it ends, whoever ends it, so that its queue is freed at once. It
// reports false if Polling is closed. A session already in the table
// stays as it is.
func (p *Polling) add(ps *pollSession) bool {
	id := ps.s.ID()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if _, ok := p.polls[id]; ok {
		return true
	}
	p.polls[id] = ps
	p.wg.Go(func() {
		select {
		case <-ps.s.Done():
			p.bury(id, ps)
		case <-p.closing:
		}
	})
	return true
}

// resume serves an open that names a session: if it is live, superchat
// and the user's (any user's in development mode, where the unguessable
// id is the credential, as for every polling request), the session is
// served here from now on, with its subscriptions and queue, and resume
// answers {"session":ID,"resumed":true}. It reports false, having
// answered nothing, if the session cannot be resumed: the caller opens a
// new one.
func (p *Polling) resume(w http.ResponseWriter, r *http.Request, ident auth.Identity, id, transport string) bool {
	s, ok := p.Engine.Session(id)
	if !ok || s.Protocol() != push.ProtocolSuperchat || (!p.Verifier.Dev() && s.Identity().UserID != ident.UserID) {
		return false
	}
	// Attach and Detach: a session in its grace period gets a fresh one
	// (the first poll attaches it), an ended one is refused.
	if s.Attach(transport) != nil {
		return false
	}
	defer s.Detach()
	if p.Takeover != nil {
		p.Takeover(s)
	}
	p.mu.Lock()
	ps := p.polls[id]
	p.mu.Unlock()
	if ps == nil {
		ps = &pollSession{s: s, user: s.Identity().UserID}
	}
	ps.hold.Store(transport == transportLongPoll)
	if !p.add(ps) {
		Overloaded(w, "server is shutting down")
		return true
	}
	p.log.Debug("poll: session resumed", "session", push.LogID(id), "transport", transport, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"session": id, "protocol": "superchat", "resumed": true})
	return true
}

func (p *Polling) maxEnded() int {
	if p.MaxEnded <= 0 {
		return 10000
	}
	return p.MaxEnded
}

func (p *Polling) endedKeep() time.Duration {
	if p.EndedKeep <= 0 {
		return time.Minute
	}
	return p.EndedKeep
}

// bury replaces the ended session ps with a tombstone holding only its
// final notice, and drops the oldest tombstones past MaxEnded. It does
// nothing if ps is no longer in the table (DELETE forgot it).
func (p *Polling) bury(id string, ps *pollSession) {
	d := &push.Disconnect{Code: push.CodeGoingAway, Reason: "session ended"}
	errors.As(ps.s.Err(), &d)
	t := &tombstone{id: id, user: ps.user, d: d, at: time.Now()}
	// The session's last item is its disconnect notice, unless the
	// client has acknowledged it already. A copy: the queue's array is
	// not kept.
	if items := ps.s.Pending(0, nil); len(items) > 0 {
		t.notice = items[len(items)-1]
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.polls[id] != ps {
		return
	}
	delete(p.polls, id)
	p.tombs[id] = t
	t.elem = p.order.PushBack(t)
	p.log.Debug("poll: session ended, queue freed", "session", push.LogID(id), "code", d.Code, "reason", d.Reason)
	for len(p.tombs) > p.maxEnded() {
		p.dropLocked(p.order.Front().Value.(*tombstone))
	}
}

func (p *Polling) dropLocked(t *tombstone) {
	p.order.Remove(t.elem)
	delete(p.tombs, t.id)
}

// sweeper forgets tombstones older than EndedKeep, until Close.
func (p *Polling) sweeper() {
	keep := p.endedKeep()
	tick := time.NewTicker(max(keep/4, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-p.closing:
			return
		case now := <-tick.C:
			p.sweep(now.Add(-keep))
		}
	}
}

// sweep forgets the tombstones buried before cutoff.
func (p *Polling) sweep(cutoff time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for e := p.order.Front(); e != nil; e = p.order.Front() {
		t := e.Value.(*tombstone)
		if !t.at.Before(cutoff) {
			return
		}
		p.dropLocked(t)
	}
}

// lookup finds the request's session, live (ps) or ended (t), and checks
// that the request comes from the user that opened it. On failure it has
// answered (404, 401 or 403).
func (p *Polling) lookup(w http.ResponseWriter, r *http.Request) (ps *pollSession, t *tombstone, ok bool) {
	id := r.PathValue("session")
	p.mu.Lock()
	ps, t = p.polls[id], p.tombs[id]
	p.mu.Unlock()
	user := ""
	switch {
	case ps != nil:
		user = ps.user
	case t != nil:
		user = t.user
	default:
		http.Error(w, "unknown or expired session: open a new one", http.StatusNotFound)
		return nil, nil, false
	}
	if p.Verifier.Dev() {
		return ps, t, true
	}
	ident, ok := Authenticate(w, r, p.Verifier)
	if !ok {
		return nil, nil, false
	}
	if ident.UserID != user {
		http.Error(w, "this session belongs to another user", http.StatusForbidden)
		return nil, nil, false
	}
	return ps, t, true
}

// forget drops the session id from the table, live or ended.
func (p *Polling) forget(id string) {
	p.mu.Lock()
	delete(p.polls, id)
	if t := p.tombs[id]; t != nil {
		p.dropLocked(t)
	}
	p.mu.Unlock()
}

// poll answers GET /poll/{session}?ack=N[&wait=0|1].
func (p *Polling) poll(w http.ResponseWriter, r *http.Request) {
	ps, t, ok := p.lookup(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	var ack uint64
	if v := q.Get("ack"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			http.Error(w, "ack must be the seq of the last message received", http.StatusBadRequest)
			return
		}
		ack = n
	}
	if t != nil {
		// Ended: the notice, until the client says it has it.
		var items []push.Outbound
		if t.notice.Seq > ack {
			items = []push.Outbound{t.notice}
		} else {
			p.forget(t.id)
		}
		writePoll(w, items, t.d)
		return
	}
	s := ps.s
	hold := ps.hold.Load()
	if v := q.Get("wait"); v != "" {
		hold = v == "1" || v == "true"
	}
	name := transportPoll
	if hold {
		name = transportLongPoll
	}
	// The items up to ack reached the client; the rest are sent again.
	s.Ack(ack)
	attached := s.Attach(name) == nil
	if attached {
		defer s.Detach()
	}
	if hold && attached && len(s.Pending(ack, nil)) == 0 {
		if !p.hold(w, r, s, ps, ack) {
			return
		}
	}
	items := s.Pending(ack, nil)
	var d *push.Disconnect
	if err := s.Err(); err != nil {
		errors.As(err, &d)
		if len(items) == 0 {
			// Told: nothing is left to ask for.
			p.forget(s.ID())
		}
	}
	p.delivered(name, ps, items)
	writePoll(w, items, d)
}

// hold waits for something to deliver, the timeout, the session's end or
// GoingAway. It reports false if the request is over (refused or the client
// went away).
func (p *Polling) hold(w http.ResponseWriter, r *http.Request, s *push.Session, ps *pollSession, ack uint64) bool {
	if p.release.Err() != nil {
		return true // shutting down: answer at once
	}
	if n := p.waiting.Add(1); p.MaxWaiting > 0 && n > int64(p.MaxWaiting) {
		p.waiting.Add(-1)
		Overloaded(w, "too many long polls held, retry later")
		return false
	}
	defer p.waiting.Add(-1)
	timeout := p.LongPollTimeout
	if timeout <= 0 {
		timeout = 25 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	stop := context.AfterFunc(p.release, cancel)
	defer stop()
	// A newer poll of the same session replaces this one: a client that
	// lost a response must not wait for the old hold to end.
	me := new(int)
	ps.mu.Lock()
	if ps.cancel != nil {
		ps.cancel()
	}
	ps.cancel, ps.holder = cancel, me
	ps.mu.Unlock()
	defer func() {
		ps.mu.Lock()
		if ps.holder == me {
			ps.cancel, ps.holder = nil, nil
		}
		ps.mu.Unlock()
	}()
	_ = s.Wait(ctx, ack) // whatever ended it, answer with what is queued
	return r.Context().Err() == nil
}

// delivered reports the publications in items not reported before.
func (p *Polling) delivered(name string, ps *pollSession, items []push.Outbound) {
	if p.OnDeliver == nil || len(items) == 0 {
		return
	}
	ps.mu.Lock()
	from := ps.sent
	ps.sent = max(ps.sent, items[len(items)-1].Seq)
	ps.mu.Unlock()
	for _, o := range items {
		if o.Seq > from && !o.Time.IsZero() {
			p.OnDeliver(name, o.Time)
		}
	}
}

// writePoll writes {"messages":[{"seq":N,"data":ENVELOPE},...]} and, if the
// session has ended, "disconnect".
func writePoll(w http.ResponseWriter, items []push.Outbound, d *push.Disconnect) {
	size := 32
	for _, o := range items {
		size += len(o.Data) + 32
	}
	b := make([]byte, 0, size)
	b = append(b, `{"messages":[`...)
	for i, o := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"seq":`...)
		b = strconv.AppendUint(b, o.Seq, 10)
		b = append(b, `,"data":`...)
		b = append(b, o.Data...)
		b = append(b, '}')
	}
	b = append(b, ']')
	if d != nil {
		dj, _ := json.Marshal(d)
		b = append(b, `,"disconnect":`...)
		b = append(b, dj...)
	}
	b = append(b, "}\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// send handles POST /poll/{session}: one request envelope or an array of
// them, handled in order. Replies arrive in the message stream.
func (p *Polling) send(w http.ResponseWriter, r *http.Request) {
	ps, t, ok := p.lookup(w, r)
	if !ok {
		return
	}
	if t != nil {
		http.Error(w, "session ended: "+t.d.Reason, http.StatusGone)
		return
	}
	s := ps.s
	body, ok := p.readBody(w, r)
	if !ok {
		return
	}
	body = bytes.TrimSpace(body)
	msgs := [][]byte{body}
	if len(body) > 0 && body[0] == '[' {
		var raw []json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			http.Error(w, "body must be a request envelope or a JSON array of them", http.StatusBadRequest)
			return
		}
		msgs = msgs[:0]
		for _, m := range raw {
			msgs = append(msgs, m)
		}
	}
	if err := s.Attach(s.Transport()); err != nil {
		http.Error(w, "session ended: "+err.Error(), http.StatusGone)
		return
	}
	defer s.Detach()
	// In order, with no other request of the session between them. An
	// error past the batch check means the session ended or the client
	// went away: the stream says why.
	if err := s.HandleBatch(r.Context(), msgs); errors.Is(err, push.ErrBatchTooLarge) {
		http.Error(w, err.Error()+": send fewer requests per POST", http.StatusRequestEntityTooLarge)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// close handles DELETE /poll/{session}.
func (p *Polling) close(w http.ResponseWriter, r *http.Request) {
	ps, t, ok := p.lookup(w, r)
	if !ok {
		return
	}
	if t != nil {
		p.forget(t.id)
	} else {
		ps.s.Close(push.CodeNormal, "closed by client")
		p.forget(ps.s.ID())
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
