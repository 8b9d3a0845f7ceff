package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/server"
)

// droppingBroker is the memory broker with one flaw put in on purpose: the
// publication of channel at offset drop is stored in history but never
// handed to the node, as when a node's broker link loses a message. The
// engine then pushes the next one, which skips an offset: a live jump.
type droppingBroker struct {
	*broker.Memory
	channel string
	drop    atomic.Uint64 // offset to drop; 0: none
	dropped atomic.Int32
}

func (b *droppingBroker) Start(h broker.Handler) error {
	return b.Memory.Start(&droppingHandler{Handler: h, b: b})
}

// droppingHandler forwards everything but the one publication. It embeds
// the engine's handler, so methods the interface gains pass through.
type droppingHandler struct {
	broker.Handler
	b *droppingBroker
}

func (h *droppingHandler) HandlePublication(pub *broker.Publication) {
	if pub.Channel == h.b.channel && pub.Offset == h.b.drop.Load() {
		h.b.dropped.Add(1)
		return
	}
	h.Handler.HandlePublication(pub)
}

// TestLiveJumpRecovered: a publication never reaches the node (history
// still holds it). The engine sees the jump and sends a gap notice
// ("offset gap") before the next push; the page must recover from
// history and show every message once, in order, with onRecovery saying
// so. (The client's own detection of a jump that comes without a notice
// is held by TestClientScripted.)
func TestLiveJumpRecovered(t *testing.T) {
	for _, tr := range []string{"websocket", "longpoll"} {
		t.Run(tr, func(t *testing.T) {
			room := "jump-" + tr
			db := &droppingBroker{Memory: broker.NewMemory(), channel: "chat:" + room}
			ts := startServerWith(t, nil, func(c *server.Config) { c.Broker = db })
			b := browser(t)
			p := page(t, b, ts.url("/?transport="+tr+"&room="+room))
			connected(t, p)
			waitFor(t, p, `document.querySelectorAll("#people li").length === 1`)
			for i := 1; i <= 4; i++ {
				ts.publish("chat:"+room, fmt.Sprintf("m%d", i))
			}
			sees(t, p, "m4")
			db.drop.Store(5) // m5 is stored but never pushed
			for i := 5; i <= 8; i++ {
				ts.publish("chat:"+room, fmt.Sprintf("m%d", i))
			}
			sees(t, p, "m8")
			if db.dropped.Load() != 1 {
				t.Fatalf("the broker dropped %d publications, want 1", db.dropped.Load())
			}
			got := eval[[]string](t, p, `[...document.querySelectorAll("#messages li.msg")].map(li => li.textContent)`)
			var want []string
			for i := 1; i <= 8; i++ {
				want = append(want, fmt.Sprintf("server m%d", i))
			}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("messages shown:\n%q\nwant each once, in order:\n%q", got, want)
			}
			// m8 is shown after m5 was replayed, so the report is in.
			var recs []struct {
				Recovered bool
				Reason    string
				Replayed  int
				First     bool
				Cause     string
				Gap       map[string]any
			}
			raw := eval[string](t, p, `JSON.stringify(window.recoveries)`)
			if err := json.Unmarshal([]byte(raw), &recs); err != nil {
				t.Fatal(err)
			}
			t.Logf("recovery reports: %s", raw)
			n := 0
			for _, r := range recs {
				if r.First || r.Cause == "subscribe" { // the page's join, from its history read
					continue
				}
				n++
				if !r.Recovered || r.Cause != "gap" || r.Gap["reason"] != "offset gap" || r.Replayed < 1 {
					t.Errorf("recovery report %+v: want recovered after the server's gap notice (offset gap), with m5 replayed", r)
				}
			}
			if n != 1 {
				t.Errorf("%d recovery reports after the first subscribe, want 1: %s", n, raw)
			}
			if eval[bool](t, p, `document.body.dataset.historyLost === "true"`) {
				t.Error("page claims history was lost, though it was recovered")
			}
		})
	}
}

// TestHistoryTrimmedWhileAway: the page is kept away while more is
// published than history holds; when it is back it must say plainly that
// messages were lost. The server keeps no session for a dropped client
// (SessionGrace < 0): one kept would hold what was published meanwhile in
// its queue, and the page would continue it with nothing lost.
func TestHistoryTrimmedWhileAway(t *testing.T) {
	var blocked atomic.Bool
	ts := startServerWith(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if blocked.Load() && (r.URL.Path == "/chat" || strings.HasPrefix(r.URL.Path, "/poll/")) {
				http.Error(w, "away", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	}, func(c *server.Config) {
		ns := server.DefaultNamespaces()
		chat := ns["chat"]
		chat.HistorySize = 5
		ns["chat"] = chat
		c.Namespaces = ns
		c.SessionGrace = -1
	})
	b := browser(t)
	p := page(t, b, ts.url("/?transport=websocket&room=away"))
	connected(t, p)
	waitFor(t, p, `document.querySelectorAll("#people li").length === 1`)
	ts.publish("chat:away", "before")
	sees(t, p, "before")

	blocked.Store(true)
	ts.cut()
	waitFor(t, p, `document.body.dataset.state !== "connected"`)
	for i := range 12 {
		ts.publish("chat:away", fmt.Sprintf("while away %d", i))
	}
	blocked.Store(false)
	waitFor(t, p, `document.body.dataset.historyLost === "true"`)
	connected(t, p)
	notice := eval[string](t, p, `document.getElementById("notice").hidden ? "" : document.getElementById("notice").textContent`)
	if !strings.Contains(notice, "History was lost") || !strings.Contains(notice, "trimmed") {
		t.Fatalf("notice = %q, want a visible history-lost notice with the reason", notice)
	}
	last := eval[map[string]any](t, p, `window.recoveries[window.recoveries.length - 1]`)
	if last["recovered"] != false || last["cause"] != "reconnect" {
		t.Fatalf("last recovery report %v, want recovered false after the reconnect", last)
	}
	ts.publish("chat:away", "after")
	sees(t, p, "after")
	if n := count(t, p, "while away"); n != 0 {
		t.Errorf("%d trimmed messages shown", n)
	}
	screenshot(t, p, "history-lost.png")
}

// requestLog records what reached the server: each request's URL, its
// token cookie and its Authorization header.
type requestLog struct {
	mu   sync.Mutex
	reqs []loggedRequest
}

type loggedRequest struct {
	method, url, cookie, authz string
	upgrade                    bool
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lr := loggedRequest{method: r.Method, url: r.URL.String(), authz: r.Header.Get("Authorization"),
			upgrade: strings.EqualFold(r.Header.Get("Upgrade"), "websocket")}
		if c, err := r.Cookie("hotline_token"); err == nil {
			lr.cookie = c.Value
		}
		l.mu.Lock()
		l.reqs = append(l.reqs, lr)
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *requestLog) all() []loggedRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]loggedRequest(nil), l.reqs...)
}

// TestTokenNeverInURL: with JWT auth on, the page connects over each
// transport and no request URL carries the token: the WebSocket handshake
// has it in the cookie (gone once the socket is open), every polling
// request in Authorization.
func TestTokenNeverInURL(t *testing.T) {
	secret := []byte("e2e-secret-e2e-secret-e2e-secret")
	v, err := auth.New(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	token, err := auth.Sign(secret, auth.Identity{UserID: "ann", Name: "Ann"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	log := &requestLog{}
	ts := startServerWith(t, log.wrap, func(c *server.Config) { c.Auth = v })
	b := browser(t)
	for _, tr := range []string{"websocket", "longpoll", "poll"} {
		t.Run(tr, func(t *testing.T) {
			p := page(t, b, ts.url("/?interval=200&transport="+tr+"&room=tok-"+tr+"#token="+token))
			connected(t, p)
			waitFor(t, p, `document.getElementById("me").textContent.includes("Ann")`)
			say(t, p, "signed "+tr)
			sees(t, p, "signed "+tr)
			if c := eval[string](t, p, `document.cookie`); strings.Contains(c, "hotline_token") {
				t.Errorf("the token cookie outlived the handshake: %q", c)
			}
		})
	}
	reqs := log.all()
	var upgrades, polls int
	for _, r := range reqs {
		if strings.Contains(r.url, token) || strings.Contains(r.url, "token=") {
			t.Errorf("token in a request URL: %s %s", r.method, r.url)
		}
		if r.upgrade {
			upgrades++
			if r.cookie != token {
				t.Errorf("WebSocket handshake %s without the token cookie", r.url)
			}
		}
		if strings.HasPrefix(r.url, "/poll/") && r.method != "OPTIONS" {
			polls++
			if r.authz != "Bearer "+token {
				t.Errorf("%s %s without Authorization: Bearer", r.method, r.url)
			}
		}
	}
	if upgrades == 0 || polls == 0 {
		t.Fatalf("saw %d upgrades and %d polling requests; the test did not cover both", upgrades, polls)
	}
}

// refreshPage is a page whose client asks /test/token for a token before
// each connection.
const refreshPage = `<!doctype html><meta charset="utf-8"><title>refresh</title>
<script type="module">
import { Hotline } from "/hotline.js";
const params = new URLSearchParams(location.search);
const h = new Hotline({
  transport: params.get("transport"),
  token: async () => (await fetch("/test/token", { method: "POST" })).text(),
});
window.hotline = h;
window.got = [];
window.recoveries = [];
h.subscribe("chat:refresh-" + params.get("transport"), {
  onPublication: (p) => window.got.push(p.data),
  onRecovery: (r) => window.recoveries.push(r),
});
</script>`

// TestTokenRefreshedOnReconnect: the token is a function; tokens live
// two seconds. After the first one expired the connection is cut: the
// client must fetch a fresh token to get back in, and recover.
func TestTokenRefreshedOnReconnect(t *testing.T) {
	secret := []byte("e2e-secret-e2e-secret-e2e-secret")
	v, err := auth.New(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	var minted atomic.Int32
	ts := startServerWith(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/test/page":
				w.Header().Set("Content-Type", "text/html")
				fmt.Fprint(w, refreshPage)
			case "/test/token":
				tok, err := auth.Sign(secret, auth.Identity{UserID: "cy"}, 2*time.Second)
				if err != nil {
					http.Error(w, err.Error(), 500)
					return
				}
				minted.Add(1)
				fmt.Fprint(w, tok)
			default:
				h.ServeHTTP(w, r)
			}
		})
	}, func(c *server.Config) { c.Auth = v })
	b := browser(t)
	for _, tr := range []string{"websocket", "longpoll"} {
		t.Run(tr, func(t *testing.T) {
			ch := "chat:refresh-" + tr
			p := page(t, b, ts.url("/test/page?transport="+tr))
			waitFor(t, p, `window.hotline.state === "connected" && window.recoveries.length === 1`)
			ts.publish(ch, "one")
			waitFor(t, p, `window.got.includes("one")`)
			before := minted.Load()
			time.Sleep(3 * time.Second) // the token expires (exp has whole seconds)
			ts.cut()
			ts.publish(ch, "two")
			waitFor(t, p, `window.got.includes("two")`)
			ts.publish(ch, "three")
			waitFor(t, p, `window.got.includes("three")`)
			if got := eval[string](t, p, `window.got.join(" ")`); got != "one two three" {
				t.Fatalf("delivered %q", got)
			}
			if minted.Load() == before {
				t.Fatal("reconnected without asking for a fresh token")
			}
		})
	}
}

// TestTokenRefreshedInBand: tokens live five seconds; the client renews
// its session's token before it expires (op refresh), so the session
// outlives its first token, is never ended with 4001, and the client
// never reconnects.
func TestTokenRefreshedInBand(t *testing.T) {
	secret := []byte("e2e-secret-e2e-secret-e2e-secret")
	v, err := auth.New(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	var minted atomic.Int32
	ts := startServerWith(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/test/page":
				w.Header().Set("Content-Type", "text/html")
				fmt.Fprint(w, refreshPage)
			case "/test/token":
				tok, err := auth.Sign(secret, auth.Identity{UserID: "dee"}, 5*time.Second)
				if err != nil {
					http.Error(w, err.Error(), 500)
					return
				}
				minted.Add(1)
				fmt.Fprint(w, tok)
			default:
				h.ServeHTTP(w, r)
			}
		})
	}, func(c *server.Config) { c.Auth = v })
	b := browser(t)
	for _, tr := range []string{"websocket", "longpoll"} {
		t.Run(tr, func(t *testing.T) {
			ch := "chat:refresh-" + tr
			p := page(t, b, ts.url("/test/page?transport="+tr))
			eval[bool](t, p, `window.disconnects = []; window.hotline.addEventListener("disconnect", (e) => window.disconnects.push(e.detail)); true`)
			waitFor(t, p, `window.hotline.info !== null && window.hotline.info.exp > 0`)
			session := eval[string](t, p, `window.hotline.info.session`)
			exp0 := eval[int](t, p, `window.hotline.info.exp`)
			start := minted.Load()
			// Past the first token's expiry (plus a second for the
			// server's timer): without a refresh the session would have
			// been ended.
			waitFor(t, p, fmt.Sprintf(`Date.now() / 1000 > %d && window.hotline.info.exp > %d`, exp0+1, exp0))
			if minted.Load() == start {
				t.Fatal("no token fetched for a refresh")
			}
			if got := eval[string](t, p, `window.hotline.info.session`); got != session {
				t.Fatalf("session changed from %s to %s: the client reconnected", session, got)
			}
			if d := eval[string](t, p, `JSON.stringify(window.disconnects)`); d != "[]" {
				t.Fatalf("disconnect notices: %s", d)
			}
			ts.publish(ch, "still here")
			waitFor(t, p, `window.got.includes("still here")`)
		})
	}
}

// TestRefusedSubscribeReachesPage: a token that may not read a room; the
// refusal reaches the page (onError), not only the console.
func TestRefusedSubscribeReachesPage(t *testing.T) {
	secret := []byte("e2e-secret-e2e-secret-e2e-secret")
	v, err := auth.New(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	token, err := auth.Sign(secret, auth.Identity{UserID: "eve", Subscribe: []string{"chat:lobby"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServerWith(t, nil, func(c *server.Config) { c.Auth = v })
	b := browser(t)
	p := page(t, b, ts.url("/?transport=websocket&room=secret#token="+token))
	connected(t, p)
	sees(t, p, "cannot join chat:secret")
	text := eval[string](t, p, `[...document.querySelectorAll("#messages li.err")].map(li => li.textContent).join("|")`)
	if !strings.Contains(text, "not allowed") {
		t.Fatalf("error line %q, want the server's reason", text)
	}
}

// TestDashboardNeedsStatsGrant: with tokens verified, the stats feed is
// for identities granted stats:*; the dashboard says so instead of
// staying blank, and works with such a token.
func TestDashboardNeedsStatsGrant(t *testing.T) {
	secret := []byte("e2e-secret-e2e-secret-e2e-secret")
	v, err := auth.New(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := auth.Sign(secret, auth.Identity{UserID: "fay"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := auth.Sign(secret, auth.Identity{UserID: "ops", Subscribe: []string{"stats:*"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServerWith(t, nil, func(c *server.Config) { c.Auth = v })
	b := browser(t)
	p := page(t, b, ts.url("/dashboard#token="+plain))
	waitFor(t, p, `document.body.dataset.error === "403"`)
	if msg := eval[string](t, p, `document.getElementById("error").textContent`); !strings.Contains(msg, "stats:server") {
		t.Fatalf("dashboard says %q", msg)
	}
	p = page(t, b, ts.url("/dashboard#token="+ops))
	waitFor(t, p, `document.body.dataset.updated !== undefined`)
}

// TestJoinEmptyRoomMissesNothing: the chat page reads a room's history,
// then subscribes. A publication that lands between the two, in a room
// that had no stream yet ({"",0}), must still be shown: the page
// subscribes from where the history ended, so it is replayed.
func TestJoinEmptyRoomMissesNothing(t *testing.T) {
	var ts *testServer
	var published atomic.Bool
	ts = startServerWith(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "POST" && strings.HasPrefix(r.URL.Path, "/poll/") && r.URL.Path != "/poll/open" && !published.Load() {
				body, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(body))
				if bytes.Contains(body, []byte(`"op":"subscribe"`)) && published.CompareAndSwap(false, true) {
					if err := ts.tryPublish("chat:empty", "in between"); err != nil {
						t.Error(err)
					}
				}
			}
			h.ServeHTTP(w, r)
		})
	}, nil)
	b := browser(t)
	p := page(t, b, ts.url("/?transport=longpoll&room=empty"))
	connected(t, p)
	sees(t, p, "in between")
	if n := count(t, p, "in between"); n != 1 {
		t.Fatalf("shown %d times, want once", n)
	}
}

// TestCleanCloseLeavesAtOnce: a page that closes its client, or goes
// away, leaves presence at once; the server's grace period (here ten
// minutes, for dropped connections only) does not hold it. Chromium keeps
// a page it navigates away from in its back-forward cache, WebSocket
// open: the client ends its session on pagehide (without that handler
// both "navigate" cases fail, checked), and when the page comes back
// it connects again.
func TestCleanCloseLeavesAtOnce(t *testing.T) {
	ts := startServerWith(t, nil, func(c *server.Config) { c.SessionGrace = 10 * time.Minute })
	b := browser(t)
	for _, tr := range []string{"websocket", "longpoll"} {
		for _, how := range []string{"close", "navigate"} {
			if tr == "websocket" && how == "close" {
				continue // close(): 1000, transport's TestCleanCloseEndsSession
			}
			t.Run(tr+"/"+how, func(t *testing.T) {
				q := "/?transport=" + tr + "&room=leave-" + tr + "-" + how
				stays := page(t, b, ts.url(q))
				goes := page(t, b, ts.url(q))
				connected(t, stays)
				connected(t, goes)
				waitFor(t, stays, `document.querySelectorAll("#people li").length === 2`)
				if how == "close" {
					eval[bool](t, goes, `window.hotline.close(), true`)
				} else {
					run(t, goes, chromedp.Navigate("about:blank"))
				}
				waitFor(t, stays, `document.querySelectorAll("#people li").length === 1`)
				if how == "navigate" && tr == "websocket" {
					// Restored from the cache: no load event to wait for.
					// (chromedp loses the page's execution context then: the
					// other page tells that it is back.)
					eval[bool](t, goes, `history.back(), true`)
					waitFor(t, stays, `document.querySelectorAll("#people li").length === 2`)
				}
			})
		}
	}
}
