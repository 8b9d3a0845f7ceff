package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/superchat"
	"github.com/hotline-rt/hotline/ws"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

// newServer returns a server for one test: no stats ticker, and HS256
// tokens signed with secret unless cfg says otherwise.
func newServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.StatsInterval = -1
	if strings.HasPrefix(t.Name(), "TestEventLoop/") {
		cfg.EventLoop = true // eventloop_test.go runs these tests again
	}
	if cfg.Auth == nil {
		v, err := auth.New(auth.Config{Secret: secret})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Auth = v
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// start runs a server for one test and returns its base URL.
func start(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	srv := newServer(t, cfg)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
	})
	return srv, hs.URL
}

func token(t *testing.T, user, name string, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.Sign(secret, auth.Identity{UserID: user, Name: name}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// client is a test WebSocket client with a deadline on every read.
type client struct {
	t *testing.T
	c *ws.Conn
}

func dial(t *testing.T, base, path, protocol, tok string) *client {
	t.Helper()
	opts := &ws.DialOptions{Header: http.Header{"Authorization": {"Bearer " + tok}}}
	if protocol != "" {
		opts.Subprotocols = []string{protocol}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+path, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return &client{t, c}
}

func (c *client) send(s string) {
	c.t.Helper()
	if err := c.c.WriteMessage(context.Background(), ws.MessageText, []byte(s)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *client) read() string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, msg, err := c.c.ReadMessage(ctx, nil)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return string(msg)
}

// next reads superchat envelopes until one matches keep.
func (c *client) next(keep func(superchat.ServerMessage) bool) superchat.ServerMessage {
	c.t.Helper()
	for range 100 {
		var m superchat.ServerMessage
		raw := c.read()
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			c.t.Fatalf("bad envelope %q: %v", raw, err)
		}
		if keep(m) {
			return m
		}
	}
	c.t.Fatal("no matching envelope in 100 messages")
	return superchat.ServerMessage{}
}

func reply(id uint64) func(superchat.ServerMessage) bool {
	return func(m superchat.ServerMessage) bool { return m.ID == id }
}

func publication(m superchat.ServerMessage) bool { return m.Push != nil && m.Push.Offset > 0 }

func TestChatRoomOrder(t *testing.T) {
	_, base := start(t, Config{})
	a := dial(t, base, "/chat/room1", "chat", token(t, "a", "Ann", time.Hour))
	b := dial(t, base, "/chat/room1", "", token(t, "b", "Bob", time.Hour))
	other := dial(t, base, "/chat/room2", "chat", token(t, "c", "Cy", time.Hour))
	sc := dial(t, base, "/chat", "superchat", token(t, "d", "Dee", time.Hour))
	sc.send(`{"id":1,"op":"subscribe","channel":"chat:room1"}`)
	sc.next(reply(1))

	// Both write at once; both must see the same order.
	const n = 20
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			b.c.WriteMessage(context.Background(), ws.MessageText, fmt.Appendf(nil, "b%d", i))
		}
	}()
	for i := range n {
		a.send(fmt.Sprintf("a%d", i))
	}
	<-done
	var seenA, seenB []string
	for range 2 * n {
		seenA = append(seenA, a.read())
		seenB = append(seenB, b.read())
	}
	if strings.Join(seenA, ",") != strings.Join(seenB, ",") {
		t.Fatalf("orders differ:\n%v\n%v", seenA, seenB)
	}
	// The superchat subscriber sees the same lines, with identities.
	for i := range 2 * n {
		m := sc.next(publication)
		var text string
		json.Unmarshal(m.Push.Data, &text)
		if text != seenA[i] {
			t.Fatalf("superchat push %d = %q, want %q", i, text, seenA[i])
		}
		wantUser := map[byte]string{'a': "a", 'b': "b"}[text[0]]
		if m.Push.Info == nil || m.Push.Info.User != wantUser {
			t.Fatalf("push %q has info %+v, want user %s", text, m.Push.Info, wantUser)
		}
	}
	// The other room saw nothing: its next message is its own.
	other.send("only me")
	if got := other.read(); got != "only me" {
		t.Fatalf("room2 got %q", got)
	}
}

func TestRecovery(t *testing.T) {
	srv, base := start(t, Config{APIKey: "k", Namespaces: map[string]push.NamespaceOptions{
		"news": {HistorySize: 5, ClientPublish: true},
	}})
	tok := token(t, "u", "U", time.Hour)
	c := dial(t, base, "/chat", "superchat", tok)
	c.send(`{"id":1,"op":"subscribe","channel":"news:eu"}`)
	c.next(reply(1))
	ctx := context.Background()
	pos, err := srv.Engine().Publish(ctx, push.PublishRequest{Channel: "news:eu", Data: json.RawMessage(`"one"`)})
	if err != nil {
		t.Fatal(err)
	}
	c.next(publication)
	c.c.CloseNow()

	// Missed while away: two publications.
	for _, d := range []string{`"two"`, `"three"`} {
		if _, err := srv.Engine().Publish(ctx, push.PublishRequest{Channel: "news:eu", Data: json.RawMessage(d)}); err != nil {
			t.Fatal(err)
		}
	}
	c = dial(t, base, "/chat", "superchat", tok)
	c.send(fmt.Sprintf(`{"id":2,"op":"subscribe","channel":"news:eu","since":{"epoch":%q,"offset":%d}}`, pos.Epoch, pos.Offset))
	m := c.next(reply(2))
	var res struct {
		Recovered bool `json:"recovered"`
	}
	if err := json.Unmarshal(m.Result, &res); err != nil {
		t.Fatalf("result %s: %v", m.Result, err)
	}
	if !res.Recovered {
		t.Fatalf("recovery result: %s", m.Result)
	}
	// The missed publications follow the reply as pushes, in order.
	for _, want := range []string{`"two"`, `"three"`} {
		if m := c.next(publication); string(m.Push.Data) != want {
			t.Fatalf("replay: got %s, want %s", m.Push.Data, want)
		}
	}
	// Live publications follow without a gap or duplicate.
	srv.Engine().Publish(ctx, push.PublishRequest{Channel: "news:eu", Data: json.RawMessage(`"four"`)})
	if m := c.next(publication); string(m.Push.Data) != `"four"` {
		t.Fatalf("after recovery got %s", m.Push.Data)
	}

	// Past the history size the server says it cannot recover.
	for i := range 10 {
		srv.Engine().Publish(ctx, push.PublishRequest{Channel: "news:eu", Data: fmt.Appendf(nil, "%d", i)})
	}
	c2 := dial(t, base, "/chat", "superchat", tok)
	c2.send(fmt.Sprintf(`{"id":3,"op":"subscribe","channel":"news:eu","since":{"epoch":%q,"offset":%d}}`, pos.Epoch, pos.Offset))
	m = c2.next(reply(3))
	if !strings.Contains(string(m.Result), `"recovered":false`) || !strings.Contains(string(m.Result), "trimmed") {
		t.Fatalf("after trim: %s", m.Result)
	}
	c3 := dial(t, base, "/chat", "superchat", tok)
	c3.send(`{"id":4,"op":"subscribe","channel":"news:eu","since":{"epoch":"not-this-one","offset":1}}`)
	if m := c3.next(reply(4)); !strings.Contains(string(m.Result), "epoch") {
		t.Fatalf("other epoch: %s %+v", m.Result, m.Error)
	}
}

func TestSlowConsumer(t *testing.T) {
	srv, base := start(t, Config{QueueMessages: 50})
	slow := dial(t, base, "/chat", "chat", token(t, "slow", "", time.Hour))
	fast := dial(t, base, "/chat", "chat", token(t, "fast", "", time.Hour))
	// The slow client never reads: its socket buffers fill, then its
	// queue, and the server drops it. The fast one keeps receiving.
	payload := json.RawMessage(`"` + strings.Repeat("x", 16<<10) + `"`)
	ctx := context.Background()
	got := 0
	for i := 0; i < 2000 && srv.Engine().Stats().SlowConsumers == 0; i++ {
		if _, err := srv.Engine().Publish(ctx, push.PublishRequest{Channel: "chat:lobby", Data: payload}); err != nil {
			t.Fatal(err)
		}
		fast.read()
		got++
	}
	if srv.Engine().Stats().SlowConsumers != 1 {
		t.Fatalf("slow consumer not dropped after %d messages", got)
	}
	// The slow client finds a close frame with 1008 behind the messages.
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, _, err := slow.c.ReadMessage(rctx, nil)
		if err != nil {
			if ws.CloseStatus(err) != ws.StatusPolicyViolation {
				t.Fatalf("slow client: %v, want close 1008", err)
			}
			break
		}
	}
	fast.send("still here")
	for fast.read() != "still here" {
	}
}

func TestHandshakeRefusals(t *testing.T) {
	_, base := start(t, Config{MaxConns: 1})
	expired := token(t, "x", "", -time.Minute)
	bad, _ := auth.Sign([]byte("another secret, 32 bytes long!!!"), auth.Identity{UserID: "x"}, time.Hour)
	good := token(t, "ok", "", time.Hour)

	for _, tc := range []struct {
		name, protocol, token string
		status                int
		header                string
	}{
		{"expired token", "chat", expired, 401, ""},
		{"bad signature", "chat", bad, 401, ""},
		{"no token", "chat", "", 401, ""},
		{"unknown subprotocol", "mqtt", good, 400, ""},
		{"over max-conns", "chat", good, 503, "Retry-After"},
	} {
		if tc.status == 503 {
			// Takes the one slot. The limit is checked first, before the
			// token: at the limit a refusal costs no signature check.
			dial(t, base, "/chat", "chat", good)
		}
		t.Run(tc.name, func(t *testing.T) {
			opts := &ws.DialOptions{Subprotocols: []string{tc.protocol}, Header: http.Header{}}
			if tc.token != "" {
				opts.Header.Set("Authorization", "Bearer "+tc.token)
			}
			_, resp, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(base, "http")+"/chat", opts)
			var he *ws.HandshakeError
			if !errorsAs(err, &he) || he.StatusCode != tc.status {
				t.Fatalf("err = %v, want status %d", err, tc.status)
			}
			if he.Reason == "" {
				t.Error("refusal without a reason")
			}
			if tc.header != "" && resp.Header.Get(tc.header) == "" {
				t.Errorf("no %s header", tc.header)
			}
		})
	}
}

func TestSuperchatErrorsKeepConnection(t *testing.T) {
	_, base := start(t, Config{})
	v, _ := auth.Sign(secret, auth.Identity{UserID: "u", Subscribe: []string{"chat:*"}}, time.Hour)
	c := dial(t, base, "/chat", "superchat", v)
	for _, tc := range []struct {
		req  string
		code int
	}{
		{`{not json`, 400},
		{`{"id":7,"op":"dance"}`, 404},
		{`{"id":8,"op":"subscribe","channel":"secret:x"}`, 403},
		{`{"id":9,"op":"publish","channel":"chat:lobby"}`, 400},
	} {
		c.send(tc.req)
		m := c.next(func(m superchat.ServerMessage) bool { return m.Error != nil })
		if m.Error.Code != tc.code {
			t.Errorf("%s: error %+v, want code %d", tc.req, m.Error, tc.code)
		}
	}
	c.send(`{"id":10,"op":"subscribe","channel":"chat:lobby"}`)
	if m := c.next(reply(10)); m.Error != nil {
		t.Fatalf("after errors: %+v", m.Error)
	}
}

func TestAPI(t *testing.T) {
	_, base := start(t, Config{APIKey: "sesame"})
	chat := dial(t, base, "/chat/lobby", "chat", token(t, "a", "", time.Hour))
	post := func(key, body string) (*http.Response, string) {
		req, _ := http.NewRequest("POST", base+"/api/publish", strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "apikey "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return resp, b.String()
	}
	if resp, _ := post("wrong", `{"channel":"chat:lobby","data":"x"}`); resp.StatusCode != 401 {
		t.Fatalf("wrong key: %d", resp.StatusCode)
	}
	if resp, body := post("sesame", `{"channel":"chat:lobby"`); resp.StatusCode != 400 || !strings.Contains(body, `"code":"bad_request"`) {
		t.Fatalf("bad body: %d %s", resp.StatusCode, body)
	}
	resp, body := post("sesame", `{"channel":"chat:lobby","data":"hi"}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"offset":1`) {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	if got := chat.read(); got != "hi" {
		t.Fatalf("chat client got %q, want the bare text", got)
	}
	req, _ := http.NewRequest("GET", base+"/api/presence?channel=chat:lobby", nil)
	req.Header.Set("Authorization", "apikey sesame")
	presp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var pres struct {
		Clients []push.PresenceClient `json:"clients"`
	}
	json.NewDecoder(presp.Body).Decode(&pres)
	presp.Body.Close()
	if len(pres.Clients) != 1 {
		t.Fatalf("presence: %+v", pres)
	}
}

func TestShutdownGoingAway(t *testing.T) {
	srv, base := start(t, Config{})
	c := dial(t, base, "/chat", "chat", token(t, "a", "", time.Hour))
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.c.ReadMessage(context.Background(), nil)
		errc <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if ws.CloseStatus(err) != ws.StatusGoingAway {
			t.Fatalf("client got %v, want 1001", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("client not closed")
	}
	// New clients are refused.
	_, _, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(base, "http")+"/chat", &ws.DialOptions{Header: http.Header{"Authorization": {"Bearer " + token(t, "b", "", time.Hour)}}})
	var he *ws.HandshakeError
	if !errorsAs(err, &he) || he.StatusCode != 503 {
		t.Fatalf("after shutdown: %v", err)
	}
	_ = net.ErrClosed
}
