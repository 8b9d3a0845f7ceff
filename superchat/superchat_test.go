package superchat_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/hotline-rt/hotline/superchat"
)

// The envelopes of docs/protocol.md decode into the kind they are.
func TestDecodeServerMessages(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind string
	}{
		{`{"id":2,"result":{"epoch":"Xy3kQ1aB","offset":7,"recovered":true}}`, "reply"},
		{`{"id":3,"error":{"code":403,"message":"not allowed to subscribe to secret:x"}}`, "error"},
		{`{"push":{"channel":"chat:lobby","epoch":"Xy3kQ1aB","offset":8,"data":"hi","info":{"user":"u1","name":"Ann"}}}`, "publication"},
		{`{"push":{"channel":"chat:lobby","join":{"user":"u3","name":"Cy"}}}`, "join"},
		{`{"gap":{"channel":"chat:lobby","epoch":"Xy3kQ1aB","offset":956,"reason":"broker link lost"}}`, "gap"},
		{`{"disconnect":{"code":1008,"reason":"slow consumer: outbound queue full"}}`, "disconnect"},
	} {
		var m superchat.ServerMessage
		if err := json.Unmarshal([]byte(tc.in), &m); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		var kind string
		switch {
		case m.Push != nil && m.Push.Offset > 0:
			kind = "publication"
		case m.Push != nil && m.Push.Join != nil:
			kind = "join"
		case m.Gap != nil:
			kind = "gap"
		case m.Disconnect != nil:
			kind = "disconnect"
		case m.Error != nil:
			kind = "error"
		case m.ID != 0:
			kind = "reply"
		}
		if kind != tc.kind {
			t.Errorf("%s: decoded as %q, want %q", tc.in, kind, tc.kind)
		}
	}

	var m superchat.ServerMessage
	_ = json.Unmarshal([]byte(`{"id":2,"result":{"epoch":"E","offset":7,"recovered":false,"reason":"history trimmed"}}`), &m)
	var r superchat.SubscribeResult
	if err := json.Unmarshal(m.Result, &r); err != nil || r.Top() != (superchat.Position{Epoch: "E", Offset: 7}) || r.Recovered == nil || *r.Recovered || r.Reason != "history trimmed" {
		t.Fatalf("subscribe result %+v, %v", r, err)
	}
	var d error = &superchat.Disconnect{Code: 1001, Reason: "server shutting down"}
	var got *superchat.Disconnect
	if !errors.As(d, &got) || got.Code != 1001 {
		t.Fatal("a disconnect notice is an error a client can return")
	}
}

func TestRequestEncoding(t *testing.T) {
	b, _ := json.Marshal(superchat.Request{ID: 4, Op: superchat.OpPublish, Channel: "chat:lobby", Data: json.RawMessage(`"hi"`)})
	if want := `{"id":4,"op":"publish","channel":"chat:lobby","data":"hi"}`; string(b) != want {
		t.Fatalf("got %s, want %s", b, want)
	}
	b, _ = json.Marshal(superchat.Request{ID: 2, Op: superchat.OpSubscribe, Channel: "c", Since: &superchat.Position{Epoch: "E", Offset: 5}})
	if want := `{"id":2,"op":"subscribe","channel":"c","since":{"epoch":"E","offset":5}}`; string(b) != want {
		t.Fatalf("got %s, want %s", b, want)
	}
}

func TestPositionNext(t *testing.T) {
	for _, tc := range []struct {
		p, q superchat.Position
		next bool
	}{
		{superchat.Position{Epoch: "a", Offset: 1}, superchat.Position{}, true},
		{superchat.Position{Epoch: "a", Offset: 2}, superchat.Position{}, false},
		{superchat.Position{Epoch: "a", Offset: 6}, superchat.Position{Epoch: "a", Offset: 5}, true},
		{superchat.Position{Epoch: "b", Offset: 6}, superchat.Position{Epoch: "a", Offset: 5}, false},
		{superchat.Position{Epoch: "a", Offset: 5}, superchat.Position{Epoch: "a", Offset: 5}, false},
	} {
		if got := tc.p.Next(tc.q); got != tc.next {
			t.Errorf("%v.Next(%v) = %v, want %v", tc.p, tc.q, got, tc.next)
		}
	}
}
