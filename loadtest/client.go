package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hotline-rt/hotline/superchat"
	"github.com/hotline-rt/hotline/ws"
)

// subscriber is one benchmark client. open, receive and close are called
// in that order from one goroutine; stop may be called from another while
// receive runs.
type subscriber interface {
	// open connects and subscribes, returning once the server has
	// confirmed the subscription.
	open(ctx context.Context) error
	// receive records pushes until stop is called, ctx ends or the
	// connection fails; stop and ctx are not errors.
	receive(ctx context.Context) error
	// stop makes receive return soon.
	stop()
}

// subscribeID is the request id of every client's subscribe.
const subscribeID = 1

// receiver turns envelopes into tally entries; both client kinds embed it.
type receiver struct {
	run       string
	tally     *tally
	delivered *atomic.Int64 // distinct deliveries over all clients
	last      *atomic.Int64 // Unix nanoseconds of the latest delivery
}

// handle processes one server envelope. It reports whether env is the
// reply to the subscribe request; a failed subscribe or a disconnect
// notice is an error.
func (r *receiver) handle(env []byte) (subscribed bool, err error) {
	now := time.Now()
	var m superchat.ServerMessage
	if err := json.Unmarshal(env, &m); err != nil {
		return false, fmt.Errorf("loadtest: bad envelope %.80q: %w", env, err)
	}
	switch {
	case m.Disconnect != nil:
		return false, m.Disconnect
	case m.ID == subscribeID && m.Error != nil:
		return false, fmt.Errorf("loadtest: subscribe refused: %d %s", m.Error.Code, m.Error.Message)
	case m.ID == subscribeID:
		return true, nil
	case m.Push != nil && len(m.Push.Data) > 0:
		var p payload
		if json.Unmarshal(m.Push.Data, &p) != nil || p.Run != r.run {
			return false, nil // someone else's message on the channel
		}
		if r.tally.record(p.Seq, time.Unix(0, p.Sent), now) {
			r.delivered.Add(1)
			r.last.Store(now.UnixNano())
		}
	}
	return false, nil
}

func subscribeRequest(channel string) []byte {
	b, _ := json.Marshal(superchat.Request{ID: subscribeID, Op: superchat.OpSubscribe, Channel: channel})
	return b
}

// wsClient subscribes over a superchat WebSocket connection.
type wsClient struct {
	receiver
	url     string // ws:// or wss:// .../chat
	channel string
	opts    *ws.DialOptions
	w       *wire
	c       *ws.Conn
}

func (c *wsClient) open(ctx context.Context) error {
	c.w.requests.Add(1)
	conn, _, err := ws.Dial(ctx, c.url, c.opts)
	if err != nil {
		return err
	}
	c.c = conn
	if p := conn.Subprotocol(); p != "superchat" {
		conn.Close(ws.StatusPolicyViolation, "superchat expected")
		return fmt.Errorf("loadtest: %s: server chose subprotocol %q, not superchat", c.url, p)
	}
	if err := conn.WriteMessage(ctx, ws.MessageText, subscribeRequest(c.channel)); err != nil {
		conn.CloseNow()
		return err
	}
	var buf []byte
	for {
		_, msg, err := conn.ReadMessage(ctx, buf[:0])
		if err != nil {
			conn.CloseNow()
			return fmt.Errorf("loadtest: waiting for the subscribe reply: %w", err)
		}
		ok, err := c.handle(msg)
		if err != nil {
			conn.Close(ws.StatusNormalClosure, "")
			return err
		}
		if ok {
			return nil
		}
		buf = msg
	}
}

func (c *wsClient) receive(ctx context.Context) error {
	var buf []byte
	for {
		_, msg, err := c.c.ReadMessage(ctx, buf[:0])
		if err != nil {
			c.c.CloseNow()
			if ctx.Err() != nil || ws.CloseStatus(err) == ws.StatusNormalClosure || errors.Is(err, ws.ErrClosed) {
				return nil
			}
			return err
		}
		if _, err := c.handle(msg); err != nil {
			c.c.Close(ws.StatusNormalClosure, "")
			return err
		}
		buf = msg
	}
}

// stop starts the close handshake; the reply ends receive's read.
func (c *wsClient) stop() { c.c.Close(ws.StatusNormalClosure, "bench done") }

// pollClient subscribes over long polling or ajax polling.
type pollClient struct {
	receiver
	base      string // http://host[:port], no trailing slash
	transport string // LongPolling or Polling
	channel   string
	token     string
	interval  time.Duration // between ajax polls
	hc        *http.Client

	// stopped ends when stop is called; set by newPollClient.
	stopped context.Context
	stopFn  context.CancelFunc

	session string
	ack     uint64
}

// pollReply is the answer to GET /poll/ID.
type pollReply struct {
	Messages []struct {
		Seq  uint64          `json:"seq"`
		Data json.RawMessage `json:"data"`
	} `json:"messages"`
	Disconnect *superchat.Disconnect `json:"disconnect"`
}

func (c *pollClient) open(ctx context.Context) error {
	body, _ := json.Marshal(map[string]string{"transport": c.transport})
	var opened struct {
		Session  string `json:"session"`
		Protocol string `json:"protocol"`
	}
	if err := c.do(ctx, http.MethodPost, "/poll/open", body, &opened); err != nil {
		return err
	}
	if opened.Session == "" {
		return errors.New("loadtest: POST /poll/open: no session in the reply")
	}
	if opened.Protocol != "" && opened.Protocol != "superchat" {
		return fmt.Errorf("loadtest: POST /poll/open: protocol %q, not superchat", opened.Protocol)
	}
	c.session = opened.Session
	if err := c.do(ctx, http.MethodPost, "/poll/"+c.session, subscribeRequest(c.channel), nil); err != nil {
		return err
	}
	for {
		ok, err := c.poll(ctx)
		if err != nil {
			return fmt.Errorf("loadtest: waiting for the subscribe reply: %w", err)
		}
		if ok {
			return nil
		}
		if c.transport == Polling {
			if err := sleep(ctx, c.interval); err != nil {
				return err
			}
		}
	}
}

func (c *pollClient) receive(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer c.close()
	defer context.AfterFunc(c.stopped, cancel)()
	for {
		if _, err := c.poll(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if c.transport == Polling {
			if sleep(ctx, c.interval) != nil {
				return nil
			}
		}
	}
}

func (c *pollClient) stop() { c.stopFn() }

// close ends the session on the server.
func (c *pollClient) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.do(ctx, http.MethodDelete, "/poll/"+c.session, nil, nil)
	c.hc.CloseIdleConnections()
}

// poll makes one GET and handles what it returns. It reports whether the
// subscribe reply was among the messages.
func (c *pollClient) poll(ctx context.Context) (subscribed bool, err error) {
	var r pollReply
	if err := c.do(ctx, http.MethodGet, fmt.Sprintf("/poll/%s?ack=%d", c.session, c.ack), nil, &r); err != nil {
		return false, err
	}
	for _, m := range r.Messages {
		if m.Seq <= c.ack && m.Seq != 0 {
			continue // resent: we have it
		}
		if m.Seq > c.ack {
			c.ack = m.Seq
		}
		env := []byte(m.Data)
		if len(env) > 0 && env[0] == '"' {
			var s string
			if json.Unmarshal(env, &s) == nil {
				env = []byte(s)
			}
		}
		ok, err := c.handle(env)
		if err != nil {
			return subscribed, err
		}
		subscribed = subscribed || ok
	}
	if r.Disconnect != nil {
		return subscribed, r.Disconnect
	}
	return subscribed, nil
}

// do makes one request and decodes a JSON reply into out, if out is not
// nil; any 2xx status is success.
func (c *pollClient) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fmt.Errorf("loadtest: %s %s: %s: %s", method, strings.SplitN(path, "?", 2)[0], resp.Status, bytes.TrimSpace(msg))
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("loadtest: %s %s: bad reply: %w", method, strings.SplitN(path, "?", 2)[0], err)
	}
	_, err = io.Copy(io.Discard, resp.Body) // so the connection is reused
	return err
}

// sleep waits for d, or returns ctx's error if it ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
