package transport

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/ws"
)

var pollSecret = []byte("poll-test-secret-0123456789abcdef")

type pollServer struct {
	*httptest.Server
	engine *push.Engine
	poll   *Polling

	mu     sync.Mutex
	tokens map[string]string // session id -> token of its user
}

// newPollServer serves /poll/ and /chat from one engine over loopback.
func newPollServer(t *testing.T, pcfg push.Config, p *Polling) *pollServer {
	t.Helper()
	e, err := push.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.New(auth.Config{Secret: pollSecret})
	if err != nil {
		t.Fatal(err)
	}
	p.Engine = e
	if p.Verifier == nil {
		p.Verifier = v
	}
	wst := &WebSocket{Engine: e, Verifier: v}
	if p.Takeover == nil {
		p.Takeover = wst.Takeover // as server.New wires them
	}
	mux := http.NewServeMux()
	mux.Handle("/poll/", p)
	mux.Handle("GET /chat", wst)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		p.Close()
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := wst.Wait(ctx); err != nil {
			t.Error(err)
		}
	})
	return &pollServer{Server: srv, engine: e, poll: p, tokens: make(map[string]string)}
}

func pollToken(t *testing.T, user string) string {
	t.Helper()
	tok, err := auth.Sign(pollSecret, auth.Identity{UserID: user, Name: strings.ToUpper(user)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// do sends a request and returns the status and body.
func (ps *pollServer) do(t *testing.T, method, path, token, body string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, ps.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := ps.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// token returns the token a session was opened with.
func (ps *pollServer) token(id string) string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.tokens[id]
}

func (ps *pollServer) open(t *testing.T, user, transport string) string {
	t.Helper()
	tok := pollToken(t, user)
	code, body, _ := ps.do(t, "POST", "/poll/open", tok, `{"transport":"`+transport+`"}`)
	if code != http.StatusOK {
		t.Fatalf("open: %d %s", code, body)
	}
	var r struct{ Session, Protocol string }
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Session == "" || r.Protocol != "superchat" {
		t.Fatalf("open: %s (%v)", body, err)
	}
	ps.mu.Lock()
	ps.tokens[r.Session] = tok
	ps.mu.Unlock()
	return r.Session
}

func (ps *pollServer) send(t *testing.T, id, body string) {
	t.Helper()
	if code, b, _ := ps.do(t, "POST", "/poll/"+id, ps.token(id), body); code != http.StatusAccepted {
		t.Fatalf("send: %d %s", code, b)
	}
}

type pollResponse struct {
	Messages []struct {
		Seq  uint64          `json:"seq"`
		Data json.RawMessage `json:"data"`
	} `json:"messages"`
	Disconnect *push.Disconnect `json:"disconnect"`
}

func (ps *pollServer) get(t *testing.T, id, query string) pollResponse {
	t.Helper()
	code, body, _ := ps.do(t, "GET", "/poll/"+id+"?"+query, ps.token(id), "")
	if code != http.StatusOK {
		t.Fatalf("poll: %d %s", code, body)
	}
	var r pollResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Messages == nil {
		t.Fatalf("poll: %s (%v)", body, err)
	}
	return r
}

// seqs checks that r's seqs follow after without gaps and returns the last.
func (r pollResponse) last(t *testing.T, after uint64) uint64 {
	t.Helper()
	for _, m := range r.Messages {
		if m.Seq != after+1 {
			t.Fatalf("seq %d after %d", m.Seq, after)
		}
		after = m.Seq
	}
	return after
}

func TestPollMessagesAndAck(t *testing.T) {
	ps := newPollServer(t, push.Config{}, &Polling{})
	id := ps.open(t, "ann", "poll")
	ps.send(t, id, `[{"id":1,"op":"subscribe","channel":"chat:lobby"},
		{"id":2,"op":"publish","channel":"chat:lobby","data":"one"},
		{"id":3,"op":"publish","channel":"chat:lobby","data":"two"}]`)
	ps.send(t, id, `{"id":4,"op":"publish","channel":"chat:lobby","data":"three"}`)

	first := ps.get(t, id, "ack=0")
	last := first.last(t, 0)
	var texts []string
	for _, m := range first.Messages {
		var env struct {
			ID   uint64 `json:"id"`
			Push *struct {
				Data string
				Join json.RawMessage
			} `json:"push"`
		}
		if err := json.Unmarshal(m.Data, &env); err != nil {
			t.Fatalf("data %s: %v", m.Data, err)
		}
		if env.Push != nil && env.Push.Join == nil {
			texts = append(texts, env.Push.Data)
		}
	}
	if got := strings.Join(texts, ","); got != "one,two,three" {
		t.Fatalf("pushes %q, want one,two,three; messages %+v", got, first.Messages)
	}

	// A retry (the response was lost) returns the same items.
	again := ps.get(t, id, "ack=0")
	if len(again.Messages) != len(first.Messages) || string(again.Messages[0].Data) != string(first.Messages[0].Data) {
		t.Fatalf("retry returned %d items, want %d", len(again.Messages), len(first.Messages))
	}
	// Acknowledging part returns only the rest.
	part := ps.get(t, id, "ack=2")
	if part.last(t, 2) != last {
		t.Fatalf("after ack=2: last %d, want %d", part.last(t, 2), last)
	}
	// After acknowledging everything there is nothing, at once.
	start := time.Now()
	if r := ps.get(t, id, "ack="+itoa(last)); len(r.Messages) != 0 {
		t.Fatalf("after full ack: %+v", r.Messages)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("ajax poll took %v", d)
	}
	// Items acknowledged are gone even for a client that asks from 0.
	if r := ps.get(t, id, "ack=0"); len(r.Messages) != 0 {
		t.Fatalf("acknowledged items sent again: %+v", r.Messages)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestLongPollHoldAndTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	ps := newPollServer(t, push.Config{}, &Polling{LongPollTimeout: timeout})
	id := ps.open(t, "ann", "longpoll")
	ps.send(t, id, `{"id":1,"op":"subscribe","channel":"news"}`)
	ack := ps.get(t, id, "ack=0").last(t, 0) // the subscribe reply

	// Nothing to deliver: held until the timeout, then empty.
	start := time.Now()
	if r := ps.get(t, id, "ack="+itoa(ack)); len(r.Messages) != 0 {
		t.Fatalf("empty poll returned %+v", r.Messages)
	}
	if d := time.Since(start); d < timeout-50*time.Millisecond || d > timeout+2*time.Second {
		t.Fatalf("held %v, want about %v", d, timeout)
	}

	// A publication while held answers it at once.
	ps.poll.LongPollTimeout = 10 * time.Second
	done := make(chan pollResponse, 1)
	go func() { done <- ps.get(t, id, "ack="+itoa(ack)) }()
	waitFor(t, func() bool { return ps.poll.Waiting() == 1 })
	if _, err := ps.engine.Publish(t.Context(), push.PublishRequest{Channel: "news", Data: json.RawMessage(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if len(r.Messages) != 1 || !strings.Contains(string(r.Messages[0].Data), `"n":1`) {
			t.Fatalf("held poll got %+v", r.Messages)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("held poll not answered after a publication")
	}
}

func TestPollGoingAwayReleasesHeld(t *testing.T) {
	ps := newPollServer(t, push.Config{}, &Polling{LongPollTimeout: time.Minute})
	id := ps.open(t, "ann", "longpoll")
	done := make(chan pollResponse, 1)
	go func() { done <- ps.get(t, id, "ack=0") }()
	waitFor(t, func() bool { return ps.poll.Waiting() == 1 })
	ps.poll.GoingAway()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("GoingAway did not answer the held poll")
	}
}

func TestPollErrors(t *testing.T) {
	ps := newPollServer(t, push.Config{MaxSessions: 2}, &Polling{MaxWaiting: 1, MaxBody: 1024, LongPollTimeout: time.Minute})
	cases := []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"no token", "POST", "/poll/open", "", `{"transport":"longpoll"}`, 401},
		{"bad token", "POST", "/poll/open", "x.y.z", `{"transport":"longpoll"}`, 401},
		{"unknown transport", "POST", "/poll/open", pollToken(t, "a"), `{"transport":"smoke"}`, 400},
		{"unknown session get", "GET", "/poll/nope?ack=0", "", "", 404},
		{"unknown session post", "POST", "/poll/nope", "", `{"id":1,"op":"connect"}`, 404},
		{"unknown session delete", "DELETE", "/poll/nope", "", "", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if code, body, _ := ps.do(t, tc.method, tc.path, tc.token, tc.body); code != tc.want {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, code, body, tc.want)
			}
		})
	}

	id := ps.open(t, "ann", "longpoll")
	if code, _, _ := ps.do(t, "GET", "/poll/"+id+"?ack=x", ps.token(id), ""); code != 400 {
		t.Errorf("bad ack: %d", code)
	}
	if code, _, _ := ps.do(t, "POST", "/poll/"+id, ps.token(id), `[{"id":1,"op":"connect"}`+strings.Repeat(" ", 2000)+`]`); code != 413 {
		t.Errorf("large body: %d, want 413", code)
	}
	if code, _, _ := ps.do(t, "POST", "/poll/"+id, ps.token(id), `[1,`); code != 400 {
		t.Errorf("bad array: %d, want 400", code)
	}

	// One long poll held is the limit: the next gets 503, Retry-After.
	go func() { // held until the server lets go; its answer does not matter
		req, _ := http.NewRequest("GET", ps.URL+"/poll/"+id+"?ack=0", nil)
		req.Header.Set("Authorization", "Bearer "+ps.token(id))
		if resp, err := ps.Client().Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, func() bool { return ps.poll.Waiting() == 1 })
	id2 := ps.open(t, "bob", "longpoll")
	code, _, hdr := ps.do(t, "GET", "/poll/"+id2+"?ack=0", ps.token(id2), "")
	if code != 503 || hdr.Get("Retry-After") == "" {
		t.Errorf("past MaxWaiting: %d Retry-After %q, want 503", code, hdr.Get("Retry-After"))
	}
	// An ajax poll is not held, so not refused.
	if code, _, _ := ps.do(t, "GET", "/poll/"+id2+"?ack=0&wait=0", ps.token(id2), ""); code != 200 {
		t.Errorf("ajax poll past MaxWaiting: %d", code)
	}
	// Past MaxSessions, open gets 503 too.
	code, _, hdr = ps.do(t, "POST", "/poll/open", pollToken(t, "cy"), `{"transport":"poll"}`)
	if code != 503 || hdr.Get("Retry-After") == "" {
		t.Errorf("past MaxSessions: %d Retry-After %q, want 503", code, hdr.Get("Retry-After"))
	}
	ps.poll.GoingAway()

	// DELETE ends the session; the next poll learns why, then it is gone.
	if code, _, _ := ps.do(t, "DELETE", "/poll/"+id2, ps.token(id2), ""); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if code, _, _ := ps.do(t, "GET", "/poll/"+id2+"?ack=0", ps.token(id2), ""); code != 404 {
		t.Fatalf("poll after delete: %d, want 404", code)
	}
}

func TestPollDisconnectNotice(t *testing.T) {
	ps := newPollServer(t, push.Config{}, &Polling{})
	id := ps.open(t, "ann", "poll")
	s, ok := ps.engine.Session(id)
	if !ok {
		t.Fatal("session not in engine")
	}
	s.Close(push.CodeGoingAway, "test over")
	r := ps.get(t, id, "ack=0")
	if r.Disconnect == nil || r.Disconnect.Code != push.CodeGoingAway || r.Disconnect.Reason != "test over" {
		t.Fatalf("disconnect = %+v, want 1001 test over", r.Disconnect)
	}
	last := r.last(t, 0)
	r = ps.get(t, id, "ack="+itoa(last))
	if r.Disconnect == nil || len(r.Messages) != 0 {
		t.Fatalf("after ack: %+v", r)
	}
	if code, _, _ := ps.do(t, "GET", "/poll/"+id+"?ack="+itoa(last), ps.token(id), ""); code != 404 {
		t.Fatalf("told session still known: %d", code)
	}
}

func TestPollCORS(t *testing.T) {
	ps := newPollServer(t, push.Config{}, &Polling{AllowedOrigins: []string{"https://*.example.com", "app.test:*"}})
	tok := pollToken(t, "ann")
	cases := []struct {
		origin string
		want   int
		acao   bool
	}{
		{"", 200, false},
		{ps.URL, 200, false},
		{"https://www.example.com", 200, true},
		{"http://app.test:8080", 200, true},
		{"https://evil.test", 403, false},
		{"null", 403, false},
	}
	for _, tc := range cases {
		t.Run(tc.origin, func(t *testing.T) {
			code, body, hdr := ps.do(t, "POST", "/poll/open", tok, `{"transport":"poll"}`, "Origin", tc.origin)
			if code != tc.want {
				t.Fatalf("open from %q: %d %s, want %d", tc.origin, code, body, tc.want)
			}
			if got := hdr.Get("Access-Control-Allow-Origin"); (got != "" && got == tc.origin) != tc.acao {
				t.Fatalf("Access-Control-Allow-Origin %q", got)
			}
		})
	}
	code, _, hdr := ps.do(t, "OPTIONS", "/poll/open", "", "", "Origin", "https://www.example.com",
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type")
	if code != 204 || !strings.Contains(hdr.Get("Access-Control-Allow-Headers"), "Authorization") || hdr.Get("Access-Control-Allow-Origin") == "" {
		t.Fatalf("preflight: %d %v", code, hdr)
	}
}

// TestPollToWebSocket moves a long-polling session onto WebSocket: the
// subscriptions stay, and what was queued is delivered there.
func TestPollToWebSocket(t *testing.T) {
	ps := newPollServer(t, push.Config{}, &Polling{LongPollTimeout: 200 * time.Millisecond})
	tok := pollToken(t, "ann")
	id := ps.open(t, "ann", "longpoll")
	ps.send(t, id, `{"id":1,"op":"subscribe","channel":"chat:lobby"}`)
	ps.get(t, id, "ack=0").last(t, 0)
	if _, err := ps.engine.Publish(t.Context(), push.PublishRequest{Channel: "chat:lobby", Data: json.RawMessage(`"before"`)}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(ps.URL, "http") + "/chat?session=" + id + "&token=" + tok
	c, resp, err := ws.Dial(ctx, u, &ws.DialOptions{Subprotocols: []string{"superchat"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if resp.Header.Get("Sec-WebSocket-Protocol") != "superchat" {
		t.Fatalf("subprotocol %q", resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	if _, err := ps.engine.Publish(t.Context(), push.PublishRequest{Channel: "chat:lobby", Data: json.RawMessage(`"after"`)}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 2 {
		_, msg, err := c.ReadMessage(ctx, nil)
		if err != nil {
			t.Fatalf("read: %v (got %q)", err, got)
		}
		var env struct {
			Push struct{ Data string } `json:"push"`
		}
		_ = json.Unmarshal(msg, &env)
		if env.Push.Data != "" {
			got = append(got, env.Push.Data)
		}
	}
	if got[0] != "before" || got[1] != "after" {
		t.Fatalf("over WebSocket: %q, want before, after", got)
	}
	s, _ := ps.engine.Session(id)
	if s == nil || s.Transport() != "websocket" {
		t.Fatalf("session transport not websocket")
	}
	c.Close(ws.StatusNormalClosure, "")
}

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
