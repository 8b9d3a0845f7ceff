package transport

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/ws"
)

func (p *Polling) counts() (live, ended int) { return p.Sessions() }

func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestPollEndedSessionsFreeMemory is the attack of issue 10.1 scaled down:
// with a session limit of n, open n polling sessions per round, fill each
// one's queue until it ends as a slow consumer, and repeat. Ended sessions
// must not keep their queues: the heap stays within what n live sessions
// may hold, and returns near idle once they have ended.
func TestPollEndedSessionsFreeMemory(t *testing.T) {
	const (
		n          = 30
		queueBytes = 128 << 10
		rounds     = 4
		payload    = 32 << 10
	)
	ps := newPollServer(t, push.Config{
		MaxSessions:     n,
		QueueBytes:      queueBytes,
		MaxUserSessions: -1, // one user opens them all; the per-user limit is not under test
		// No history, so that the broker keeps no payload.
		Namespaces: map[string]push.NamespaceOptions{"": {}},
	}, &Polling{EndedKeep: time.Hour})
	data := json.RawMessage(strconv.Quote(strings.Repeat("x", payload)))
	base := heapAfterGC()
	for round := range rounds {
		sessions := make([]*push.Session, n)
		for i := range n {
			id := ps.open(t, "mallory", "longpoll")
			ps.send(t, id, `{"id":1,"op":"subscribe","channel":"feed`+strconv.Itoa(i)+`"}`)
			s, ok := ps.engine.Session(id)
			if !ok {
				t.Fatalf("round %d: session %d not live", round, i)
			}
			sessions[i] = s
		}
		// Each channel's publication is its own allocation, so each
		// queue holds its own bytes.
		for i, s := range sessions {
			for k := 0; s.Err() == nil; k++ {
				if k == 2*queueBytes/payload {
					t.Fatalf("round %d: session %d not ended after %d publications", round, i, k)
				}
				if _, err := ps.engine.Publish(t.Context(), push.PublishRequest{Channel: "feed" + strconv.Itoa(i), Data: data}); err != nil {
					t.Fatal(err)
				}
			}
		}
		sessions = nil
		waitFor(t, func() bool { return ps.engine.Stats().Sessions == 0 })
		// Ended; the queues go as soon as the watchers have run.
		heap := heapAfterGC()
		for k := 0; heap > base+n*queueBytes && k < 100; k++ {
			time.Sleep(20 * time.Millisecond)
			heap = heapAfterGC()
		}
		t.Logf("round %d: heap %+d KiB over idle", round, (int64(heap)-int64(base))>>10)
		if heap > base+n*queueBytes {
			t.Fatalf("round %d: heap %d KiB over idle, more than %d sessions may hold (%d KiB): ended sessions keep their queues",
				round, (heap-base)>>10, n, n*queueBytes>>10)
		}
	}
	waitFor(t, func() bool { live, _ := ps.poll.counts(); return live == 0 })
	if _, ended := ps.poll.counts(); ended != n*rounds {
		t.Fatalf("%d tombstones, want %d", ended, n*rounds)
	}
	// Idle again: what stays is the tombstones, a few hundred bytes each.
	if heap := heapAfterGC(); heap > base+2<<20 {
		t.Fatalf("idle heap %d KiB over the start, want at most 2 MiB", (heap-base)>>10)
	}
}

// TestPollTombstones: an ended session's poll gets its final notice once
// the queue is gone; past MaxEnded the oldest tombstone goes first; the
// sweeper forgets them after EndedKeep; the session itself is collected.
func TestPollTombstones(t *testing.T) {
	ps := newPollServer(t, push.Config{}, &Polling{MaxEnded: 2, EndedKeep: time.Hour})
	var ids []string
	for i := range 3 {
		id := ps.open(t, "ann", "poll")
		ps.send(t, id, `{"id":1,"op":"subscribe","channel":"news"}`)
		s, _ := ps.engine.Session(id)
		freed := make(chan struct{})
		runtime.AddCleanup(s, func(ch chan struct{}) { close(ch) }, freed)
		s.Close(push.CodeGoingAway, "test "+strconv.Itoa(i))
		s = nil
		waitFor(t, func() bool { _, ended := ps.poll.counts(); return ended == min(i+1, 2) })
		// The tombstone does not keep the session (nor its queue).
		for k := 0; ; k++ {
			runtime.GC()
			select {
			case <-freed:
			case <-time.After(10 * time.Millisecond):
				if k == 500 {
					t.Fatalf("session %d not collected once ended", i)
				}
				continue
			}
			break
		}
		ids = append(ids, id)
	}
	if code, body, _ := ps.do(t, "GET", "/poll/"+ids[0]+"?ack=0", ps.token(ids[0]), ""); code != 404 {
		t.Fatalf("oldest tombstone past MaxEnded: %d %s, want 404", code, body)
	}
	for i, id := range ids[1:] {
		r := ps.get(t, id, "ack=0")
		want := "test " + strconv.Itoa(i+1)
		if r.Disconnect == nil || r.Disconnect.Reason != want || len(r.Messages) != 1 || !strings.Contains(string(r.Messages[0].Data), want) {
			t.Fatalf("late poll of %s: %+v, want the notice %q", id, r, want)
		}
		// The subscribe reply was not acknowledged: gone with the queue.
		if r.Messages[0].Seq != 2 {
			t.Fatalf("notice seq %d, want 2", r.Messages[0].Seq)
		}
		if code, _, _ := ps.do(t, "POST", "/poll/"+id, ps.token(id), `{"id":2,"op":"connect"}`); code != http.StatusGone {
			t.Fatalf("send to an ended session: %d, want 410", code)
		}
		// Told: acknowledged, then forgotten.
		if r := ps.get(t, id, "ack=2"); r.Disconnect == nil || len(r.Messages) != 0 {
			t.Fatalf("after ack: %+v", r)
		}
		if code, _, _ := ps.do(t, "GET", "/poll/"+id+"?ack=2", ps.token(id), ""); code != 404 {
			t.Fatalf("told tombstone still known: %d", code)
		}
	}

	// The sweeper forgets tombstones after EndedKeep.
	sw := newPollServer(t, push.Config{}, &Polling{EndedKeep: 20 * time.Millisecond})
	id := sw.open(t, "ann", "poll")
	s, _ := sw.engine.Session(id)
	s.Close(push.CodeGoingAway, "bye")
	waitFor(t, func() bool { live, ended := sw.poll.counts(); return live == 0 && ended == 0 })
	if code, _, _ := sw.do(t, "GET", "/poll/"+id+"?ack=0", sw.token(id), ""); code != 404 {
		t.Fatalf("swept tombstone: %d, want 404", code)
	}
}

// TestPollSessionOwnUserOnly: with authentication on, every request of a
// polling session carries its user's credentials.
func TestPollSessionOwnUserOnly(t *testing.T) {
	ps := newPollServer(t, push.Config{}, &Polling{LongPollTimeout: 50 * time.Millisecond})
	id := ps.open(t, "ann", "poll")
	ann, bob := ps.token(id), pollToken(t, "bob")
	cookie := http.Cookie{Name: TokenCookie, Value: ann}
	cases := []struct {
		name, method, query, body string
		hdr                       []string
		want                      int
	}{
		{"get no token", "GET", "?ack=0", "", nil, 401},
		{"get bad token", "GET", "?ack=0", "", []string{"Authorization", "Bearer x.y.z"}, 401},
		{"get other user", "GET", "?ack=0", "", []string{"Authorization", "Bearer " + bob}, 403},
		{"publish no token", "POST", "", `{"id":1,"op":"publish","channel":"chat:lobby","data":"x"}`, nil, 401},
		{"publish other user", "POST", "", `{"id":1,"op":"publish","channel":"chat:lobby","data":"x"}`, []string{"Authorization", "Bearer " + bob}, 403},
		{"delete other user", "DELETE", "", "", []string{"Authorization", "Bearer " + bob}, 403},
		{"get own bearer", "GET", "?ack=0", "", []string{"Authorization", "Bearer " + ann}, 200},
		{"get own cookie", "GET", "?ack=0", "", []string{"Cookie", cookie.String()}, 200},
		{"delete own", "DELETE", "", "", []string{"Authorization", "Bearer " + ann}, 204},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if code, body, _ := ps.do(t, tc.method, "/poll/"+id+tc.query, "", tc.body, tc.hdr...); code != tc.want {
				t.Fatalf("%d %s, want %d", code, body, tc.want)
			}
		})
	}
}

// TestPollRefusesWebSocketSession: the id of a WebSocket session does not
// open it to polling, even to its own user.
func TestPollRefusesWebSocketSession(t *testing.T) {
	ps := newPollServer(t, push.Config{}, &Polling{})
	tok := pollToken(t, "ann")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(ps.URL, "http") + "/chat?token=" + tok
	c, _, err := ws.Dial(ctx, u, &ws.DialOptions{Subprotocols: []string{"superchat"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.WriteMessage(ctx, ws.MessageText, []byte(`{"id":1,"op":"connect"}`)); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.ReadMessage(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var reply struct {
		Result struct{ Session string } `json:"result"`
	}
	if err := json.Unmarshal(msg, &reply); err != nil || reply.Result.Session == "" {
		t.Fatalf("connect reply %s (%v)", msg, err)
	}
	id := reply.Result.Session
	for _, m := range []struct{ method, query, body string }{
		{"GET", "?ack=0", ""},
		{"POST", "", `{"id":2,"op":"publish","channel":"chat:lobby","data":"as ann"}`},
		{"DELETE", "", ""},
	} {
		if code, body, _ := ps.do(t, m.method, "/poll/"+id+m.query, tok, m.body); code != 404 {
			t.Fatalf("%s of a WebSocket session over polling: %d %s, want 404", m.method, code, body)
		}
	}
	if _, ok := ps.engine.Session(id); !ok {
		t.Fatal("the WebSocket session ended")
	}
}

// TestPollDevModeNeedsNoToken: in development mode every client is a fresh
// guest, so the session id alone continues a polling session.
func TestPollDevModeNeedsNoToken(t *testing.T) {
	ps := newPollServer(t, push.Config{}, &Polling{Verifier: auth.Anonymous()})
	id := ps.open(t, "ann", "poll") // the token is ignored
	if code, body, _ := ps.do(t, "GET", "/poll/"+id+"?ack=0", "", ""); code != 200 {
		t.Fatalf("dev-mode poll without a token: %d %s", code, body)
	}
}

// TestPollEngineLimits: the engine's per-user session limit answers 429
// with Retry-After; a batch past MaxBatch answers 413 and handles nothing.
func TestPollEngineLimits(t *testing.T) {
	ps := newPollServer(t, push.Config{MaxUserSessions: 1, MaxBatch: 2}, &Polling{})
	id := ps.open(t, "ann", "poll")
	code, body, hdr := ps.do(t, "POST", "/poll/open", pollToken(t, "ann"), `{"transport":"poll"}`)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("second session of one user: %d %s Retry-After %q, want 429", code, body, hdr.Get("Retry-After"))
	}
	ps.open(t, "bob", "poll") // another user is not limited by ann
	code, body, _ = ps.do(t, "POST", "/poll/"+id, ps.token(id),
		`[{"id":1,"op":"subscribe","channel":"news"},{"id":2,"op":"subscribe","channel":"news"},{"id":3,"op":"connect"}]`)
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("batch of 3 past MaxBatch 2: %d %s, want 413", code, body)
	}
	if r := ps.get(t, id, "ack=0"); len(r.Messages) != 0 {
		t.Fatalf("a refused batch was handled: %+v", r.Messages)
	}
	ps.send(t, id, `[{"id":1,"op":"subscribe","channel":"news"},{"id":2,"op":"connect"}]`)
	if r := ps.get(t, id, "ack=0"); len(r.Messages) != 2 {
		t.Fatalf("batch of 2: %d replies, want 2", len(r.Messages))
	}
}

// TestPollLogsNoSessionID: the session id is a credential; the logs of a
// polling session's whole life show its LogID, never the id.
func TestPollLogsNoSessionID(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ps := newPollServer(t, push.Config{Logger: log}, &Polling{Log: log})
	id := ps.open(t, "ann", "poll")
	ps.send(t, id, `{"id":1,"op":"subscribe","channel":"news"}`)
	ps.get(t, id, "ack=0")
	s, _ := ps.engine.Session(id)
	s.Close(push.CodeGoingAway, "bye")
	waitFor(t, func() bool { live, _ := ps.poll.counts(); return live == 0 })
	ps.get(t, id, "ack=0")
	logs := buf.String()
	if strings.Contains(logs, id) {
		t.Fatalf("the session id is in the logs:\n%s", logs)
	}
	if !strings.Contains(logs, push.LogID(id)) {
		t.Fatalf("the session's LogID is not in the logs:\n%s", logs)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPollCORSFollowsWebSocket: polling allows exactly the origins the
// WebSocket handshake allows (one rule, ws.OriginAllowed), and an origin
// allowed only by "*" gets no credentials.
func TestPollCORSFollowsWebSocket(t *testing.T) {
	patterns := []string{"https://*.example.com", "*"}
	ps := newPollServer(t, push.Config{}, &Polling{AllowedOrigins: patterns})
	tok := pollToken(t, "ann")
	for _, tc := range []struct {
		origin string
		creds  bool
	}{
		{"https://app.example.com", true},
		{"https://evil.test", false},
	} {
		code, _, hdr := ps.do(t, "POST", "/poll/open", tok, `{"transport":"poll"}`, "Origin", tc.origin)
		r, _ := http.NewRequest("GET", ps.URL, nil)
		r.Header.Set("Origin", tc.origin)
		if want := ws.OriginAllowed(r, patterns); (code == 200) != want {
			t.Fatalf("%s: polling %d, WebSocket allows %v", tc.origin, code, want)
		}
		if hdr.Get("Access-Control-Allow-Origin") != tc.origin || (hdr.Get("Access-Control-Allow-Credentials") == "true") != tc.creds {
			t.Fatalf("%s: CORS headers %v, want credentials %v", tc.origin, hdr, tc.creds)
		}
	}
}
