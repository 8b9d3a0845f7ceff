package transport

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/ws"
)

// offsetOf returns the offset of a push envelope on channel, or 0.
func offsetOf(t *testing.T, env []byte, channel string) int {
	t.Helper()
	var m struct {
		Push *struct {
			Channel string `json:"channel"`
			Offset  int    `json:"offset"`
		} `json:"push"`
	}
	if err := json.Unmarshal(env, &m); err != nil {
		t.Fatalf("bad envelope %s: %v", env, err)
	}
	if m.Push == nil || m.Push.Channel != channel {
		return 0
	}
	return m.Push.Offset
}

// superchatWS opens a superchat WebSocket to path (with query) as user.
func superchatWS(t *testing.T, ctx context.Context, base, query, user string) *ws.Conn {
	t.Helper()
	u := "ws" + strings.TrimPrefix(base, "http") + "/chat?token=" + pollToken(t, user) + query
	c, _, err := ws.Dial(ctx, u, &ws.DialOptions{Subprotocols: []string{"superchat"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// request sends a superchat request and reads until its reply, returning
// the offsets of the pushes on channel read meanwhile.
func request(t *testing.T, ctx context.Context, c *ws.Conn, id int, req, channel string) (json.RawMessage, []int) {
	t.Helper()
	if err := c.WriteMessage(ctx, ws.MessageText, []byte(req)); err != nil {
		t.Fatal(err)
	}
	var seen []int
	for {
		_, msg, err := c.ReadMessage(ctx, nil)
		if err != nil {
			t.Fatalf("reply to %s: %v", req, err)
		}
		var r struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
		}
		_ = json.Unmarshal(msg, &r)
		if r.ID == id {
			return r.Result, seen
		}
		if o := offsetOf(t, msg, channel); o > 0 {
			seen = append(seen, o)
		}
	}
}

// TestSessionMovesAcrossTransports: under a steady stream of
// publications, a session moves from WebSocket to long polling and back
// to WebSocket, and the client gets every publication exactly once, in
// order, with no resubscribe. The guards it holds: Polling.Takeover (the
// WebSocket stops writing when polling takes the session; without it
// both write the queue, and the two streams interleave or repeat) and
// ?ack= on the WebSocket resume (without it the last poll's items come
// again).
func TestSessionMovesAcrossTransports(t *testing.T) {
	p := &Polling{LongPollTimeout: 200 * time.Millisecond}
	ps := newPollServer(t, push.Config{}, p)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	const channel, total = "chat:moves", 300

	c := superchatWS(t, ctx, ps.URL, "", "ann")
	res, _ := request(t, ctx, c, 1, `{"id":1,"op":"connect"}`, channel)
	var info struct{ Session string }
	if err := json.Unmarshal(res, &info); err != nil || info.Session == "" {
		t.Fatalf("connect: %s", res)
	}
	id := info.Session
	request(t, ctx, c, 2, `{"id":2,"op":"subscribe","channel":"`+channel+`"}`, channel)

	published := make(chan error, 1)
	go func() {
		for i := range total {
			if _, err := ps.engine.Publish(ctx, push.PublishRequest{Channel: channel, Data: json.RawMessage(strconv.Itoa(i + 1))}); err != nil {
				published <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
		published <- nil
	}()

	// WebSocket until 50 have come, then polling takes the session over;
	// the socket delivers what it was writing, then closes with 4000.
	var got []int
	for len(got) < 50 {
		_, msg, err := c.ReadMessage(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if o := offsetOf(t, msg, channel); o > 0 {
			got = append(got, o)
		}
	}
	tok := pollToken(t, "ann")
	code, body, _ := ps.do(t, "POST", "/poll/open", tok, `{"transport":"longpoll","session":"`+id+`"}`)
	var opened struct {
		Session string
		Resumed bool
	}
	if err := json.Unmarshal([]byte(body), &opened); code != http.StatusOK || err != nil || opened.Session != id || !opened.Resumed {
		t.Fatalf("open with the session: %d %s", code, body)
	}
	for {
		_, msg, err := c.ReadMessage(ctx, nil)
		var ce *ws.CloseError
		if errors.As(err, &ce) && ce.Code == StatusSessionMoved {
			break
		}
		if err != nil {
			t.Fatalf("the WebSocket ended with %v, want close %d", err, StatusSessionMoved)
		}
		if o := offsetOf(t, msg, channel); o > 0 {
			got = append(got, o)
		}
	}
	overWS := len(got)

	// Long polling for a while, acknowledging each batch with the next.
	ps.mu.Lock()
	ps.tokens[id] = tok
	ps.mu.Unlock()
	var ack uint64
	for len(got) < overWS+100 && len(got) < total-20 {
		r := ps.get(t, id, "ack="+itoa(ack))
		for _, m := range r.Messages {
			ack = m.Seq
			if o := offsetOf(t, m.Data, channel); o > 0 {
				got = append(got, o)
			}
		}
	}

	overPoll := len(got) - overWS

	// Back to WebSocket, saying what the last poll brought.
	c2 := superchatWS(t, ctx, ps.URL, "&session="+id+"&ack="+itoa(ack), "ann")
	for len(got) < total && ctx.Err() == nil {
		_, msg, err := c2.ReadMessage(ctx, nil)
		if err != nil {
			t.Fatalf("after %d: %v", len(got), err)
		}
		if o := offsetOf(t, msg, channel); o > 0 {
			got = append(got, o)
		}
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	for i, o := range got {
		if o != i+1 {
			t.Fatalf("publication %d arrived as %d: %v", i+1, o, got)
		}
	}
	if len(got) != total {
		t.Fatalf("got %d of %d", len(got), total)
	}
	t.Logf("%d over WebSocket, %d over long polling, %d over WebSocket again", overWS, overPoll, total-overWS-overPoll)
}

// TestResumeTakesOverOpenWebSocket: a client that found its WebSocket
// silent resumes the session on a new one while the old is still open on
// the server's side (it reads nothing from it). The old connection is
// closed with 4000 and every publication reaches the new one, in order.
// Without the takeover the old connection's writer goes on taking items
// from the queue and writing them where nobody reads.
func TestResumeTakesOverOpenWebSocket(t *testing.T) {
	ps := newPollServer(t, push.Config{}, &Polling{})
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	const channel, total = "chat:silent", 200
	old := superchatWS(t, ctx, ps.URL, "", "ann")
	res, _ := request(t, ctx, old, 1, `{"id":1,"op":"connect"}`, channel)
	var info struct{ Session string }
	if err := json.Unmarshal(res, &info); err != nil || info.Session == "" {
		t.Fatalf("connect: %s", res)
	}
	request(t, ctx, old, 2, `{"id":2,"op":"subscribe","channel":"`+channel+`"}`, channel)

	c := superchatWS(t, ctx, ps.URL, "&session="+info.Session, "ann")
	var got []int
	for i := range total {
		if _, err := ps.engine.Publish(ctx, push.PublishRequest{Channel: channel, Data: json.RawMessage(strconv.Itoa(i + 1))}); err != nil {
			t.Fatal(err)
		}
	}
	for len(got) < total {
		_, msg, err := c.ReadMessage(ctx, nil)
		if err != nil {
			t.Fatalf("after %d of %d: %v", len(got), total, err)
		}
		if o := offsetOf(t, msg, channel); o > 0 {
			got = append(got, o)
		}
	}
	for i, o := range got {
		if o != i+1 {
			t.Fatalf("publication %d arrived as %d", i+1, o)
		}
	}
	for {
		_, _, err := old.ReadMessage(ctx, nil)
		var ce *ws.CloseError
		if errors.As(err, &ce) && ce.Code == StatusSessionMoved {
			break
		}
		if err != nil {
			t.Fatalf("the old connection ended with %v, want %d", err, StatusSessionMoved)
		}
	}
}

// TestResumeOnlyOwnSession: with authentication on, another user naming a
// session gets a session of its own, over polling as over WebSocket; the
// named one is untouched.
func TestResumeOnlyOwnSession(t *testing.T) {
	ps := newPollServer(t, push.Config{}, &Polling{})
	id := ps.open(t, "ann", "longpoll")
	code, body, _ := ps.do(t, "POST", "/poll/open", pollToken(t, "bob"), `{"transport":"longpoll","session":"`+id+`"}`)
	if code != http.StatusOK || strings.Contains(body, id) || strings.Contains(body, "resumed") {
		t.Fatalf("bob opening ann's session: %d %s", code, body)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c := superchatWS(t, ctx, ps.URL, "&session="+id, "bob")
	res, _ := request(t, ctx, c, 1, `{"id":1,"op":"connect"}`, "")
	if strings.Contains(string(res), id) {
		t.Fatalf("bob continued ann's session over WebSocket: %s", res)
	}
	s, ok := ps.engine.Session(id)
	if !ok || s.Identity().UserID != "ann" {
		t.Fatal("ann's session is gone")
	}
	ps.get(t, id, "ack=0&wait=0") // ann still polls it
}
