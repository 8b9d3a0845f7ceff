package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hotline-rt/hotline/ws"
)

// pos is a position in a channel's stream.
type pos struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

func (p pos) String() string { return p.Epoch + ":" + strconv.FormatUint(p.Offset, 10) }

// envelope is any superchat envelope the server sends. The test decodes
// into its own types so that it reads the wire, not the server's structs.
type envelope struct {
	ID     uint64          `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Push       *wirePush `json:"push"`
	Gap        *wireGap  `json:"gap"`
	Disconnect *struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	} `json:"disconnect"`
}

type wirePush struct {
	Channel string          `json:"channel"`
	Epoch   string          `json:"epoch"`
	Offset  uint64          `json:"offset"`
	Data    json.RawMessage `json:"data"`
}

type wireGap struct {
	Channel string `json:"channel"`
	Epoch   string `json:"epoch"`
	Offset  uint64 `json:"offset"`
	Reason  string `json:"reason"`
}

// subscribeResult holds both shapes of a subscribe reply: replayed
// publications in "publications", or none there and the replay streamed as
// pushes after the reply (SEAMS §3).
type subscribeResult struct {
	Epoch        string     `json:"epoch"`
	Offset       uint64     `json:"offset"`
	Recovered    *bool      `json:"recovered"`
	Reason       string     `json:"reason"`
	Publications []wirePush `json:"publications"`
}

// payload is the data of every publication of the test.
type payload struct {
	Seq int64 `json:"seq"`
}

// conn is one client connection over some transport: it sends request
// envelopes and yields the server's envelopes in order, in batches.
type conn interface {
	send(ctx context.Context, env []byte) error
	// batches is closed when the connection is over; err says why.
	batches() <-chan [][]byte
	err() error
	// close ends the connection and waits for its goroutines.
	close()
}

// Transports of the subscribers.
const (
	tWebSocket = "websocket"
	tLongPoll  = "longpoll"
	tAjaxPoll  = "poll"
)

var transports = []string{tWebSocket, tLongPoll, tAjaxPoll}

// sendTimeout bounds one request write (a WebSocket message or a POST).
const sendTimeout = 5 * time.Second

// wsConn is a superchat WebSocket connection. Its reader goroutine is
// owned by it: close waits for it.
type wsConn struct {
	c    *ws.Conn
	ch   chan [][]byte
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
	e    error // set before ch is closed
}

func dialWS(ctx context.Context, base string) (*wsConn, error) {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	u := "ws" + strings.TrimPrefix(base, "http") + "/chat"
	c, _, err := ws.Dial(ctx, u, &ws.DialOptions{Subprotocols: []string{"superchat"}})
	if err != nil {
		return nil, err
	}
	if c.Subprotocol() != "superchat" {
		c.CloseNow()
		return nil, fmt.Errorf("server chose subprotocol %q, not superchat", c.Subprotocol())
	}
	w := &wsConn{c: c, ch: make(chan [][]byte, 64), done: make(chan struct{})}
	w.wg.Go(w.read)
	return w, nil
}

func (w *wsConn) read() {
	defer close(w.ch)
	for {
		_, b, err := w.c.ReadMessage(context.Background(), nil)
		if err != nil {
			w.e = err
			return
		}
		select {
		case w.ch <- [][]byte{b}:
		case <-w.done:
			w.e = errors.New("closed")
			return
		}
	}
}

func (w *wsConn) send(ctx context.Context, env []byte) error {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	return w.c.WriteMessage(ctx, ws.MessageText, env)
}

func (w *wsConn) batches() <-chan [][]byte { return w.ch }
func (w *wsConn) err() error               { return w.e }

func (w *wsConn) close() {
	w.once.Do(func() {
		close(w.done)
		w.c.CloseNow()
	})
	w.wg.Wait()
}

// pollConn is a polling session (long polling or ajax polling, see
// docs/transports.md). Its poll goroutine is owned by it.
type pollConn struct {
	hc       *http.Client
	base     string
	sid      string
	hold     bool
	interval time.Duration // ajax polling: pause after an empty poll

	ch     chan [][]byte
	ctx    context.Context // ends at close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	e      error // set before ch is closed
}

// pollTries is how many polls in a row may fail (network error, 5xx)
// before the client gives the session up and opens another.
const pollTries = 3

func openPoll(ctx context.Context, hc *http.Client, base, transport string, interval time.Duration) (*pollConn, error) {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	body := `{"transport":"` + transport + `"}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/poll/open", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("poll open: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var r struct {
		Session string `json:"session"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Session == "" {
		return nil, fmt.Errorf("poll open: bad answer %q", b)
	}
	p := &pollConn{hc: hc, base: base, sid: r.Session, hold: transport == tLongPoll, interval: interval,
		ch: make(chan [][]byte, 16)}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Go(p.loop)
	return p, nil
}

type pollAnswer struct {
	Messages []struct {
		Seq  uint64          `json:"seq"`
		Data json.RawMessage `json:"data"`
	} `json:"messages"`
	Disconnect json.RawMessage `json:"disconnect"`
}

func (p *pollConn) loop() {
	defer close(p.ch)
	var ack uint64
	fails := 0
	for {
		if p.ctx.Err() != nil {
			p.e = errors.New("closed")
			return
		}
		wait := "0"
		if p.hold {
			wait = "1"
		}
		a, status, err := p.poll(ack, wait)
		switch {
		case err == nil && status == http.StatusOK:
			fails = 0
		case status == http.StatusNotFound:
			p.e = errors.New("session gone (404)")
			return
		default:
			fails++
			if fails >= pollTries {
				if err == nil {
					err = fmt.Errorf("poll: status %d", status)
				}
				p.e = err
				return
			}
			if !p.sleep(200 * time.Millisecond) {
				p.e = errors.New("closed")
				return
			}
			continue
		}
		var batch [][]byte
		for _, m := range a.Messages {
			if m.Seq <= ack {
				continue // sent again after a lost answer: seen
			}
			ack = m.Seq
			batch = append(batch, m.Data)
		}
		if len(a.Disconnect) > 0 && string(a.Disconnect) != "null" {
			batch = append(batch, append(append([]byte(`{"disconnect":`), a.Disconnect...), '}'))
		}
		if len(batch) > 0 {
			select {
			case p.ch <- batch:
			case <-p.ctx.Done():
				p.e = errors.New("closed")
				return
			}
		}
		if len(a.Disconnect) > 0 && string(a.Disconnect) != "null" {
			p.e = fmt.Errorf("session ended: %s", a.Disconnect)
			return
		}
		if !p.hold && len(a.Messages) == 0 && !p.sleep(p.interval) {
			p.e = errors.New("closed")
			return
		}
	}
}

func (p *pollConn) sleep(d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-p.ctx.Done():
		return false
	}
}

func (p *pollConn) poll(ack uint64, wait string) (pollAnswer, int, error) {
	var a pollAnswer
	u := p.base + "/poll/" + p.sid + "?ack=" + strconv.FormatUint(ack, 10) + "&wait=" + wait
	req, _ := http.NewRequestWithContext(p.ctx, http.MethodGet, u, nil)
	resp, err := p.hc.Do(req)
	if err != nil {
		return a, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return a, resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return a, 0, fmt.Errorf("poll: decode: %w", err)
	}
	return a, resp.StatusCode, nil
}

func (p *pollConn) send(ctx context.Context, env []byte) error {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/poll/"+p.sid, bytes.NewReader(env))
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("poll send: %s", resp.Status)
	}
	return nil
}

func (p *pollConn) batches() <-chan [][]byte { return p.ch }
func (p *pollConn) err() error               { return p.e }

func (p *pollConn) close() {
	p.cancel()
	p.wg.Wait()
	// Best effort: end the session rather than leave it to its grace
	// period.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, p.base+"/poll/"+p.sid, nil)
	if resp, err := p.hc.Do(req); err == nil {
		resp.Body.Close()
	}
}

// Kinds of what a subscriber saw, in the order it saw them.
type evKind uint8

const (
	evStart      evKind = iota // first subscribe reply: top = where counting starts
	evPush                     // a publication: pos, seq
	evGap                      // a gap notice: pos = the last position it names
	evLost                     // subscribe with since answered recovered:false: pos = since, top
	evRecovered                // subscribe with since answered recovered:true: pos = since, top
	evDiscard                  // a push dropped while recovering after a gap notice
	evDisconnect               // the connection ended: reason
)

type event struct {
	kind   evKind
	pos    pos
	top    pos
	seq    int64         // evPush: the publisher's sequence number, -1 if unreadable
	at     time.Duration // since the run started
	reason string
}

// Subscriber states on one connection.
const (
	stSubscribing = iota // subscribe sent, no reply yet
	stLive
	stRecovering // unsubscribe sent after a gap notice; subscribe since follows
)

// reqTimeout is how long a subscriber waits for a reply before it gives
// the connection up. It is longer than the Redis stalls the test makes, so
// that the server's own answer is what the subscriber sees.
const reqTimeout = 20 * time.Second

// subscriber is one client of one channel that keeps its subscription up:
// when its connection ends it connects again (to the same node or the
// other) and subscribes with since = the last position it got. On a gap
// notice it recovers the same way on the same connection (unsubscribe, then
// subscribe since). It never repairs a jump in positions on its own.
type subscriber struct {
	id           int
	transport    string
	channel      string
	urls         []string
	hc           *http.Client
	rng          *rand.Rand // owned by run
	t0           time.Time
	recoverOnGap bool
	pollInterval time.Duration

	mu       sync.Mutex
	events   []event
	last     pos
	started  bool
	connects int
	node     int // node of the current or last connection
}

func (s *subscriber) record(e event) {
	e.at = time.Since(s.t0)
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
}

// position returns the last position and whether the first subscribe was
// answered.
func (s *subscriber) position() (pos, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.started
}

func (s *subscriber) dial(ctx context.Context, node int) (conn, error) {
	switch s.transport {
	case tWebSocket:
		return dialWS(ctx, s.urls[node])
	default:
		return openPoll(ctx, s.hc, s.urls[node], s.transport, s.pollInterval)
	}
}

// run keeps the subscription up until ctx ends.
func (s *subscriber) run(ctx context.Context, node int) {
	for ctx.Err() == nil {
		s.mu.Lock()
		s.node = node
		s.connects++
		s.mu.Unlock()
		c, err := s.dial(ctx, node)
		if err == nil {
			err = s.session(ctx, c)
			c.close()
		} else {
			err = fmt.Errorf("connect: %w", err)
		}
		if ctx.Err() != nil {
			return
		}
		s.record(event{kind: evDisconnect, reason: err.Error()})
		select {
		case <-time.After(time.Duration(100+s.rng.IntN(500)) * time.Millisecond):
		case <-ctx.Done():
			return
		}
		node = s.rng.IntN(len(s.urls))
	}
}

// session runs one connection: subscribe, then handle what arrives until
// the connection ends.
func (s *subscriber) session(ctx context.Context, c conn) error {
	var (
		nextID   uint64
		pendID   uint64 // the request awaiting a reply, 0 if none
		pendOp   string
		pendAt   time.Time
		pendFrom pos  // since of the pending subscribe
		pendHas  bool // the pending subscribe had since
		state    = stSubscribing
	)
	request := func(op string) error {
		nextID++
		req := map[string]any{"id": nextID, "op": op, "channel": s.channel}
		pendHas = false
		if op == "subscribe" {
			last, started := s.position()
			if started {
				req["since"] = last
				pendFrom, pendHas = last, true
			}
		}
		pendID, pendOp, pendAt = nextID, op, time.Now()
		b, _ := json.Marshal(req)
		return c.send(ctx, b)
	}
	push := func(p *wirePush, replay bool) {
		if p.Channel != s.channel || p.Offset == 0 {
			return // join/leave, or not ours
		}
		at := pos{p.Epoch, p.Offset}
		if state == stRecovering && !replay {
			s.record(event{kind: evDiscard, pos: at})
			return
		}
		seq := int64(-1)
		var d payload
		if json.Unmarshal(p.Data, &d) == nil {
			seq = d.Seq
		}
		s.record(event{kind: evPush, pos: at, seq: seq})
		s.mu.Lock()
		if at.Epoch != s.last.Epoch || at.Offset > s.last.Offset {
			s.last = at
		}
		s.mu.Unlock()
	}
	reply := func(m *envelope) error {
		if m.ID != pendID {
			return nil // a reply to an abandoned request
		}
		op := pendOp
		pendID = 0
		switch op {
		case "unsubscribe":
			// Whatever the answer, subscribe again from the last
			// position held.
			state = stSubscribing
			return request("subscribe")
		case "subscribe":
		default:
			return nil
		}
		if m.Error != nil {
			return fmt.Errorf("subscribe: %d %s", m.Error.Code, m.Error.Message)
		}
		var r subscribeResult
		if err := json.Unmarshal(m.Result, &r); err != nil {
			return fmt.Errorf("subscribe: bad result %s", m.Result)
		}
		top := pos{r.Epoch, r.Offset}
		state = stLive
		switch {
		case !pendHas:
			s.mu.Lock()
			first := !s.started
			if first {
				s.started, s.last = true, top
			}
			s.mu.Unlock()
			if first {
				s.record(event{kind: evStart, top: top})
			}
		case r.Recovered != nil && !*r.Recovered:
			s.record(event{kind: evLost, pos: pendFrom, top: top, reason: r.Reason})
			s.mu.Lock()
			s.last = top
			s.mu.Unlock()
		default:
			s.record(event{kind: evRecovered, pos: pendFrom, top: top})
		}
		for i := range r.Publications {
			push(&r.Publications[i], true)
		}
		return nil
	}

	if err := request("subscribe"); err != nil {
		return fmt.Errorf("send subscribe: %w", err)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var told string // the reason of a disconnect notice
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-tick.C:
			if pendID != 0 && now.Sub(pendAt) > reqTimeout {
				return fmt.Errorf("no reply to %s in %v", pendOp, reqTimeout)
			}
		case batch, ok := <-c.batches():
			if !ok {
				err := c.err()
				if told != "" {
					err = fmt.Errorf("%s (%v)", told, err)
				}
				return err
			}
			for _, raw := range batch {
				var m envelope
				if err := json.Unmarshal(raw, &m); err != nil {
					return fmt.Errorf("bad envelope %q: %v", raw, err)
				}
				switch {
				case m.Push != nil:
					push(m.Push, false)
				case m.Gap != nil:
					if m.Gap.Channel != s.channel {
						continue
					}
					s.record(event{kind: evGap, pos: pos{m.Gap.Epoch, m.Gap.Offset}, reason: m.Gap.Reason})
					if s.recoverOnGap && state == stLive {
						state = stRecovering
						if err := request("unsubscribe"); err != nil {
							return fmt.Errorf("send unsubscribe: %w", err)
						}
					}
				case m.Disconnect != nil:
					told = fmt.Sprintf("disconnect %d %s", m.Disconnect.Code, m.Disconnect.Reason)
				case m.ID != 0:
					if err := reply(&m); err != nil {
						return err
					}
				}
			}
		}
	}
}
