package push

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/hotline-rt/hotline/superchat"
)

func TestDecodeRequest(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     superchat.Request
		bad      bool
	}{
		{"connect", `{"id":1,"op":"connect"}`, superchat.Request{ID: 1, Op: "connect"}, false},
		{"subscribe since", ` {"id":2,"op":"subscribe","channel":"chat:lobby","since":{"epoch":"e","offset":5}}`,
			superchat.Request{ID: 2, Op: "subscribe", Channel: "chat:lobby", Since: &positionE5}, false},
		{"publish", `{"id":3,"op":"publish","channel":"c","data":{"a":[1,2]}}`,
			superchat.Request{ID: 3, Op: "publish", Channel: "c", Data: json.RawMessage(`{"a":[1,2]}`)}, false},
		{"unknown fields ignored", `{"id":4,"op":"x","future":true}`, superchat.Request{ID: 4, Op: "x"}, false},
		{"publish with key", `{"id":9,"op":"publish","channel":"c","data":1,"idempotency_key":"k-1"}`,
			superchat.Request{ID: 9, Op: "publish", Channel: "c", Data: json.RawMessage(`1`), IdempotencyKey: "k-1"}, false},
		{"refresh", `{"id":10,"op":"refresh","token":"a.b.c"}`, superchat.Request{ID: 10, Op: "refresh", Token: "a.b.c"}, false},
		{"key not a string", `{"id":11,"op":"publish","idempotency_key":5}`, superchat.Request{ID: 11}, true},
		{"array", `[]`, superchat.Request{}, true},
		{"string", `"x"`, superchat.Request{}, true},
		{"empty", ``, superchat.Request{}, true},
		{"truncated", `{"id":5,"op":"x"`, superchat.Request{}, true},
		{"negative id", `{"id":-1,"op":"x"}`, superchat.Request{}, true},
		{"float id", `{"id":1.5,"op":"x"}`, superchat.Request{}, true},
		{"huge id", `{"id":9007199254740992,"op":"x"}`, superchat.Request{}, true},
		{"no op", `{"id":6}`, superchat.Request{ID: 6}, true},
		{"bad since keeps id", `{"id":7,"op":"subscribe","since":"x"}`, superchat.Request{ID: 7}, true},
		{"trailing garbage", `{"id":8,"op":"x"} {}`, superchat.Request{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeRequest([]byte(tc.in))
			if tc.bad != (err != nil) {
				t.Fatalf("err = %v", err)
			}
			if err != nil && !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error %v does not wrap ErrBadRequest", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

var positionE5 = superchat.Position{Epoch: "e", Offset: 5}

// FuzzDecodeRequest checks that decoding never panics, that whatever is
// accepted is valid JSON (agreeing with encoding/json's own validator),
// and that an accepted request survives a round trip.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"op":"connect"}`,
		`{"id":2,"op":"subscribe","channel":"chat:lobby","since":{"epoch":"ab","offset":5}}`,
		`{"id":3,"op":"publish","channel":"chat:lobby","data":"hi"}`,
		`{"id":4,"op":"history","channel":"c","limit":10,"reverse":true}`,
		`{"id":"1","op":1}`, `[]`, `{`, `{"id":1e3,"op":"x"}`, `{"ID":1,"OP":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeRequest(b)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error %v does not wrap ErrBadRequest", err)
			}
			if req.ID > superchat.MaxID {
				t.Fatalf("error reply id %d out of range", req.ID)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if req.Op == "" || req.ID > superchat.MaxID {
			t.Fatalf("accepted %+v", req)
		}
		enc, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("marshal %+v: %v", req, err)
		}
		again, err := DecodeRequest(enc)
		if err != nil {
			t.Fatalf("round trip of %s: %v", enc, err)
		}
		// Data may come back re-encoded (json.Marshal compacts raw
		// JSON and escapes <, > and & as \u003c...): compare values.
		var v1, v2 any
		if len(req.Data) > 0 {
			if json.Unmarshal(req.Data, &v1) != nil || json.Unmarshal(again.Data, &v2) != nil || !reflect.DeepEqual(v1, v2) {
				t.Fatalf("data %s came back as %s", req.Data, again.Data)
			}
		}
		req.Data, again.Data = nil, nil
		if !reflect.DeepEqual(req, again) {
			t.Fatalf("round trip: %+v became %+v", req, again)
		}
	})
}
