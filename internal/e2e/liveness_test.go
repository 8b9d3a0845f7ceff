package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// freezingProxy forwards TCP to a server until freeze: from then on the
// connections it has stay open and carry nothing, as behind a proxy or NAT
// that lost them without a reset. New connections work.
type freezingProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	pairs  []*proxyPair
	closed bool
	wg     sync.WaitGroup
}

type proxyPair struct {
	client, server net.Conn
	frozen         atomic.Bool
}

func startFreezingProxy(t *testing.T, target string) *freezingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *freezingProxy) addr() string { return p.ln.Addr().String() }

func (p *freezingProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pair := &proxyPair{client: c, server: s}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			s.Close()
			return
		}
		p.pairs = append(p.pairs, pair)
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(pair, c, s)
		go p.pipe(pair, s, c)
	}
}

// pipe copies until the pair freezes; what it reads after that is
// dropped, and it stops reading, leaving both sockets open.
func (p *freezingProxy) pipe(pair *proxyPair, from, to net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if pair.frozen.Load() {
			return
		}
		if n > 0 {
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err == io.EOF {
				if tc, ok := to.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
			} else {
				to.Close()
			}
			return
		}
	}
}

// freeze silences every connection open now.
func (p *freezingProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pair := range p.pairs {
		pair.frozen.Store(true)
	}
}

func (p *freezingProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for _, pair := range p.pairs {
		pair.client.Close()
		pair.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestSilentConnectionReconnects: the page's connection goes silent
// without closing (no FIN, no RST). A browser answers WebSocket pings
// itself and tells the page nothing, so the client must probe in band,
// give up on the dead connection, reconnect and recover what was
// published meanwhile.
func TestSilentConnectionReconnects(t *testing.T) {
	ts := startServer(t, nil)
	px := startFreezingProxy(t, ts.addr)
	b := browser(t)
	p := page(t, b, "http://"+px.addr()+"/?transport=websocket&room=silent&idle=1000&timeout=1000")
	connected(t, p)
	waitFor(t, p, `document.querySelectorAll("#people li").length === 1`)
	ts.publish("chat:silent", "before the silence")
	sees(t, p, "before the silence")

	px.freeze()
	ts.publish("chat:silent", "during the silence")
	sees(t, p, "during the silence") // only over a new connection
	connected(t, p)
	ts.publish("chat:silent", "after the silence")
	sees(t, p, "after the silence")
	for _, text := range []string{"before the silence", "during the silence", "after the silence"} {
		if n := count(t, p, text); n != 1 {
			t.Errorf("%q shown %d times, want once", text, n)
		}
	}
	if !eval[bool](t, p, `window.recoveries.some(r => r.cause === "reconnect" && r.recovered && r.replayed >= 1)`) {
		t.Errorf("no recovery report after the reconnect: %s", eval[string](t, p, `JSON.stringify(window.recoveries)`))
	}
}

// TestRetryAfterHonoured: an overloaded server answers 503 with
// Retry-After; the client waits at least that long before it asks again.
func TestRetryAfterHonoured(t *testing.T) {
	var mu sync.Mutex
	var opens []time.Time
	ts := startServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/poll/open" {
				mu.Lock()
				opens = append(opens, time.Now())
				first := len(opens) == 1
				mu.Unlock()
				if first {
					w.Header().Set("Retry-After", "2")
					http.Error(w, "server is at its connection limit, retry later", http.StatusServiceUnavailable)
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	b := browser(t)
	p := page(t, b, ts.url("/?transport=longpoll&room=busy"))
	connected(t, p)
	mu.Lock()
	defer mu.Unlock()
	if len(opens) < 2 {
		t.Fatalf("%d opens", len(opens))
	}
	// A lower bound, not a speed: the client must not come back sooner.
	if gap := opens[1].Sub(opens[0]); gap < 2*time.Second {
		t.Fatalf("retried %v after a 503 with Retry-After: 2", gap)
	}
}

// TestTransportSwitchesLoseNothing: the page switches transport five
// times (WebSocket, long polling, ajax polling) while a backend publishes
// steadily; every publication is shown once, in order, and the server
// session carries over each switch (the same session id, its
// subscriptions and queue), so nothing is replayed: no resubscribe.
func TestTransportSwitchesLoseNothing(t *testing.T) {
	ts := startServer(t, nil)
	b := browser(t)
	p := page(t, b, ts.url("/?transport=websocket&interval=100&room=switch"))
	connected(t, p)
	waitFor(t, p, `document.querySelectorAll("#people li").length === 1`)
	session := eval[string](t, p, `window.hotline.info.session`)

	const total = 150
	done := make(chan error, 1)
	go func() {
		for i := range total {
			if err := ts.tryPublish("chat:switch", fmt.Sprintf("s%03d", i)); err != nil {
				done <- err
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		done <- nil
	}()
	for i, tr := range []string{"longpoll", "websocket", "poll", "longpoll", "websocket"} {
		time.Sleep(400 * time.Millisecond)
		eval[bool](t, p, fmt.Sprintf(`window.hotline.setTransport(%q), true`, tr))
		waitFor(t, p, fmt.Sprintf(`window.hotline.state === "connected" && window.hotline.transport === %q && window.hotline.info !== null`, tr))
		got := eval[string](t, p, `window.hotline.info.session`)
		t.Logf("switch %d to %s: recoveries so far %s", i+1, tr, eval[string](t, p, `JSON.stringify(window.recoveries.map(r => [r.cause, r.recovered, r.replayed, r.since.offset]))`))
		if got != session {
			t.Errorf("switch %d to %s: session %.8s..., want %.8s... carried over", i+1, tr, got, session)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sees(t, p, fmt.Sprintf("s%03d", total-1))
	got := eval[[]string](t, p, `[...document.querySelectorAll("#messages li.msg")].map(li => li.textContent.replace(/^server /, ""))`)
	want := make([]string, total)
	for i := range want {
		want[i] = fmt.Sprintf("s%03d", i)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("shown (%d):\n%v\nwant each of %d once, in order", len(got), got, total)
	}
	// The first subscribe reports; a switch that resubscribed would too.
	if n := eval[int](t, p, `window.recoveries.filter(r => r.cause !== "jump" || r.replayed > 0).length`); n != 1 {
		t.Errorf("%d recovery reports, want only the first subscribe's: %s", n, eval[string](t, p, `JSON.stringify(window.recoveries)`))
	}
}

// TestSessionSurvivesFallbackAndUpgrade: the page's WebSocket dies and a
// proxy now refuses upgrades: the client falls back to long polling and
// continues its session there; when upgrades work again it moves the
// session back to WebSocket. A backend publishes all along; every
// publication is shown once, in order, and the only recovery is the one
// after the socket died (what the server wrote into it counts as
// delivered).
func TestSessionSurvivesFallbackAndUpgrade(t *testing.T) {
	var blocked atomic.Bool
	ts := startServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if blocked.Load() && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
				http.Error(w, "upgrades are not allowed here", http.StatusForbidden)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	b := browser(t)
	p := page(t, b, ts.url("/?room=fallback&upgrade=1500"))
	connected(t, p)
	waitFor(t, p, `window.hotline.transport === "websocket" && document.querySelectorAll("#people li").length === 1`)
	session := eval[string](t, p, `window.hotline.info.session`)

	const total = 120
	done := make(chan error, 1)
	go func() {
		for i := range total {
			if err := ts.tryPublish("chat:fallback", fmt.Sprintf("f%03d", i)); err != nil {
				done <- err
				return
			}
			time.Sleep(25 * time.Millisecond)
		}
		done <- nil
	}()
	time.Sleep(300 * time.Millisecond)
	blocked.Store(true)
	ts.cut()
	waitFor(t, p, `window.hotline.state === "connected" && window.hotline.transport === "longpoll"`)
	if got := eval[string](t, p, `window.hotline.info.session`); got != session {
		t.Errorf("after the fallback: session %.8s..., want %.8s... continued", got, session)
	}
	blocked.Store(false)
	waitFor(t, p, `window.hotline.state === "connected" && window.hotline.transport === "websocket"`)
	if got := eval[string](t, p, `window.hotline.info.session`); got != session {
		t.Errorf("after the upgrade: session %.8s..., want %.8s... continued", got, session)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sees(t, p, fmt.Sprintf("f%03d", total-1))
	got := eval[[]string](t, p, `[...document.querySelectorAll("#messages li.msg")].map(li => li.textContent.replace(/^server /, ""))`)
	want := make([]string, total)
	for i := range want {
		want[i] = fmt.Sprintf("f%03d", i)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("shown (%d):\n%v\nwant each of %d once, in order", len(got), got, total)
	}
	reports := eval[string](t, p, `JSON.stringify(window.recoveries.map(r => [r.cause, r.recovered, r.replayed]))`)
	t.Logf("recovery reports: %s", reports)
	if n := eval[int](t, p, `window.recoveries.filter(r => r.cause !== "reconnect" && !r.first && r.since.offset !== 0).length`); n != 0 {
		t.Errorf("recoveries besides the one after the socket died: %s", reports)
	}
}
