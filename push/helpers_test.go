package push

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/superchat"
)

func newEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e
}

// client drives one session the way a transport would, without one.
type client struct {
	t     testing.TB
	s     *Session
	after uint64
}

func connect(t testing.TB, e *Engine, p Protocol, user string) *client {
	t.Helper()
	s, err := e.Connect(context.Background(), ConnectRequest{
		Identity:  auth.Identity{UserID: user, Name: "Name " + user},
		Protocol:  p,
		Transport: "websocket",
	})
	if err != nil {
		t.Fatalf("connect %s: %v", user, err)
	}
	return &client{t: t, s: s}
}

func connectAs(t testing.TB, e *Engine, p Protocol, id auth.Identity) *client {
	t.Helper()
	s, err := e.Connect(context.Background(), ConnectRequest{Identity: id, Protocol: p, Transport: "websocket"})
	if err != nil {
		t.Fatalf("connect %s: %v", id.UserID, err)
	}
	return &client{t: t, s: s}
}

func (c *client) send(msg string) {
	c.t.Helper()
	if err := c.s.Handle(context.Background(), []byte(msg)); err != nil {
		c.t.Fatalf("handle %s: %v", msg, err)
	}
}

// raw returns and acks everything queued so far.
func (c *client) raw() []string {
	var out []string
	for _, o := range c.s.Pending(c.after, nil) {
		out = append(out, string(o.Data))
		c.after = o.Seq
	}
	c.s.Ack(c.after)
	return out
}

// msgs decodes everything queued so far as superchat envelopes.
func (c *client) msgs() []superchat.ServerMessage {
	c.t.Helper()
	var out []superchat.ServerMessage
	for _, r := range c.raw() {
		var m superchat.ServerMessage
		if err := json.Unmarshal([]byte(r), &m); err != nil {
			c.t.Fatalf("decode %s: %v", r, err)
		}
		out = append(out, m)
	}
	return out
}

// request sends msg and returns its reply (and any pushes before it).
// Join and leave pushes queued along with the reply (such as the client's
// own join after a subscribe) are skipped; anything else fails the test.
func (c *client) request(msg string) superchat.ServerMessage {
	c.t.Helper()
	c.send(msg)
	var reply *superchat.ServerMessage
	for _, m := range c.msgs() {
		if m.Push != nil && (m.Push.Join != nil || m.Push.Leave != nil) {
			continue
		}
		if reply != nil || m.Push != nil {
			c.t.Fatalf("unexpected message %+v", m)
		}
		reply = &m
	}
	if reply == nil {
		c.t.Fatalf("no reply to %s", msg)
		return superchat.ServerMessage{}
	}
	return *reply
}

type subResult struct {
	Epoch        string           `json:"epoch"`
	Offset       uint64           `json:"offset"`
	Recovered    *bool            `json:"recovered"`
	Reason       string           `json:"reason"`
	Publications []superchat.Push `json:"publications"`
}

func result[T any](t testing.TB, m superchat.ServerMessage) T {
	t.Helper()
	var v T
	if m.Error != nil {
		t.Fatalf("error reply: %+v", m.Error)
	}
	if err := json.Unmarshal(m.Result, &v); err != nil {
		t.Fatalf("decode result %s: %v", m.Result, err)
	}
	return v
}
