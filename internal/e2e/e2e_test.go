// Package e2e tests the web pages in real headless Chromium against a real
// server: chat over each transport, fallback when WebSocket is blocked,
// reconnection without loss, and a restart that loses history. The run
// leaves screenshots of the chat page and the dashboard in
// build/screenshots.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hotline-rt/hotline/server"
	"github.com/hotline-rt/hotline/web"
)

const apiKey = "e2e-key"

// testServer is a hotline server on a loopback port that can be stopped
// and started again on the same address.
type testServer struct {
	t    *testing.T
	addr string
	wrap func(http.Handler) http.Handler
	conf func(*server.Config) // adjusts the config of each start

	mu    sync.Mutex
	srv   *server.Server
	hs    *http.Server
	conns map[net.Conn]struct{}
}

func startServer(t *testing.T, wrap func(http.Handler) http.Handler) *testServer {
	t.Helper()
	return startServerWith(t, wrap, nil)
}

// startServerWith starts a server whose config conf adjusts.
func startServerWith(t *testing.T, wrap func(http.Handler) http.Handler, conf func(*server.Config)) *testServer {
	t.Helper()
	ts := &testServer{t: t, addr: "127.0.0.1:0", wrap: wrap, conf: conf}
	ts.start()
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) start() {
	ts.t.Helper()
	cfg := server.Config{
		APIKey:          apiKey,
		Web:             web.Handler(),
		LongPollTimeout: 2 * time.Second,
		StatsInterval:   200 * time.Millisecond,
	}
	if ts.conf != nil {
		ts.conf(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		ts.t.Fatal(err)
	}
	var ln net.Listener
	for i := 0; ; i++ { // the old port may take a moment to be free
		ln, err = net.Listen("tcp", ts.addr)
		if err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.addr = ln.Addr().String()
	h := srv.Handler()
	if ts.wrap != nil {
		h = ts.wrap(h)
	}
	hs := &http.Server{Handler: h, ConnState: ts.track}
	hs.RegisterOnShutdown(srv.GoingAway)
	ts.mu.Lock()
	ts.srv, ts.hs, ts.conns = srv, hs, map[net.Conn]struct{}{}
	ts.mu.Unlock()
	go hs.Serve(ln)
}

// track remembers every connection, hijacked ones included, so that a test
// can cut them.
func (ts *testServer) track(c net.Conn, s http.ConnState) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if s == http.StateNew {
		ts.conns[c] = struct{}{}
	}
	if s == http.StateClosed {
		delete(ts.conns, c)
	}
}

// cut closes every client connection while the server keeps running.
func (ts *testServer) cut() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for c := range ts.conns {
		c.Close()
	}
}

func (ts *testServer) stop() {
	ts.mu.Lock()
	srv, hs := ts.srv, ts.hs
	ts.srv, ts.hs = nil, nil
	ts.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(ctx)
	srv.Shutdown(ctx)
	ts.cut()
}

func (ts *testServer) url(path string) string { return "http://" + ts.addr + path }

// publish posts through the server API.
func (ts *testServer) publish(channel, text string) {
	ts.t.Helper()
	if err := ts.tryPublish(channel, text); err != nil {
		ts.t.Fatal(err)
	}
}

// tryPublish posts through the server API; any goroutine may call it.
func (ts *testServer) tryPublish(channel, text string) error {
	body, _ := json.Marshal(map[string]any{"channel": channel, "data": text})
	req, _ := http.NewRequest("POST", ts.url("/api/publish"), strings.NewReader(string(body)))
	req.Header.Set("Authorization", "apikey "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("publish: %s", resp.Status)
	}
	return nil
}

// chromium is the one headless Chromium the tests share: starting it is
// the slowest part of a test. Each test gets its own browser context (as
// an incognito window: its own cookies, cache and storage), disposed when
// the test ends.
var chromium struct {
	once sync.Once
	ctx  context.Context
	stop func()
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if chromium.stop != nil {
		chromium.stop()
	}
	os.Exit(code)
}

// browser returns a fresh browser context of the shared Chromium.
func browser(t *testing.T) context.Context {
	t.Helper()
	exe, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium not found (./test.sh installs it)")
		}
		t.Skip("chromium not found; ./test.sh installs it")
	}
	chromium.once.Do(func() {
		dir, err := os.MkdirTemp("", "hotline-e2e-chromium-")
		if err != nil {
			chromium.err = err
			return
		}
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
			append(chromedp.DefaultExecAllocatorOptions[:],
				chromedp.ExecPath(exe),
				chromedp.NoSandbox,
				chromedp.Flag("disable-gpu", true),
				chromedp.Flag("disable-component-update", true),
				chromedp.Flag("disable-background-networking", true),
				chromedp.Flag("disable-sync", true),
				chromedp.Flag("no-first-run", true),
				chromedp.WindowSize(1100, 700),
				chromedp.UserDataDir(dir),
			)...)
		ctx, cancel := chromedp.NewContext(alloc)
		chromium.ctx = ctx
		chromium.stop = func() { cancel(); cancelAlloc(); os.RemoveAll(dir) }
		chromium.err = chromedp.Do(ctx)
	})
	if chromium.err != nil {
		t.Fatalf("start chromium: %v", chromium.err)
	}
	ctx, cancel := chromedp.NewContext(chromium.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("new browser context: %v", err)
	}
	return ctx
}

// page opens a new tab at url.
func page(t *testing.T, browser context.Context, url string) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	return ctx
}

// run runs one browser action, bounded.
func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return v
}

// waitFor polls a JavaScript condition in the page.
func waitFor(t *testing.T, ctx context.Context, cond string) {
	t.Helper()
	run(t, ctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(50*time.Millisecond)))
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	return run(t, ctx, chromedp.Evaluate[T](js))
}

func connected(t *testing.T, ctx context.Context) {
	t.Helper()
	waitFor(t, ctx, `document.body.dataset.state === "connected"`)
}

func say(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	eval[bool](t, ctx, fmt.Sprintf(`document.getElementById("text").value = %q; document.getElementById("send").requestSubmit(); true`, text))
}

func sees(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	waitFor(t, ctx, fmt.Sprintf(`[...document.querySelectorAll("#messages li")].some(li => li.textContent.includes(%q))`, text))
}

func count(t *testing.T, ctx context.Context, text string) int {
	t.Helper()
	return eval[int](t, ctx, fmt.Sprintf(`[...document.querySelectorAll("#messages li.msg")].filter(li => li.textContent.includes(%q)).length`, text))
}

func TestChatOverEachTransport(t *testing.T) {
	ts := startServer(t, nil)
	b := browser(t)
	for _, tr := range []string{"websocket", "longpoll", "poll"} {
		t.Run(tr, func(t *testing.T) {
			q := "?transport=" + tr + "&interval=200&room=e2e-" + tr
			a := page(t, b, ts.url("/"+q))
			c := page(t, b, ts.url("/"+q))
			connected(t, a)
			connected(t, c)
			if got := eval[string](t, a, "hotline.transport"); got != tr {
				t.Fatalf("transport = %q, want %q", got, tr)
			}
			// Both pages are subscribed once the join shows up.
			waitFor(t, a, `document.querySelectorAll("#people li").length === 2`)
			say(t, a, "hello from A over "+tr)
			sees(t, c, "hello from A over "+tr)
			say(t, c, "hello back over "+tr)
			sees(t, a, "hello back over "+tr)
			sees(t, a, "hello from A over "+tr)
		})
	}
}

func TestFallbackWhenWebSocketBlocked(t *testing.T) {
	// A proxy that refuses upgrades, as some corporate proxies do.
	ts := startServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
				http.Error(w, "upgrades are not allowed here", http.StatusForbidden)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	b := browser(t)
	p := page(t, b, ts.url("/?room=blocked"))
	connected(t, p)
	if got := eval[string](t, p, "hotline.transport"); got != "longpoll" {
		t.Fatalf("transport = %q, want the long-polling fallback", got)
	}
	waitFor(t, p, `document.querySelectorAll("#people li").length === 1`)
	for i := range 5 {
		ts.publish("chat:blocked", fmt.Sprintf("pushed %d", i))
	}
	for i := range 5 {
		sees(t, p, fmt.Sprintf("pushed %d", i))
	}
}

func TestReconnectLosesNothing(t *testing.T) {
	ts := startServer(t, nil)
	b := browser(t)
	p := page(t, b, ts.url("/?room=cut"))
	connected(t, p)
	waitFor(t, p, `document.querySelectorAll("#people li").length === 1`)
	ts.publish("chat:cut", "before the cut")
	sees(t, p, "before the cut")

	ts.cut() // the server stays up; the page's connection dies
	for i := range 3 {
		ts.publish("chat:cut", fmt.Sprintf("while away %d", i))
	}
	for i := range 3 {
		sees(t, p, fmt.Sprintf("while away %d", i))
	}
	connected(t, p)
	ts.publish("chat:cut", "after the cut")
	sees(t, p, "after the cut")
	for _, text := range []string{"before the cut", "while away 0", "while away 2", "after the cut"} {
		if n := count(t, p, text); n != 1 {
			t.Errorf("%q shown %d times, want once", text, n)
		}
	}
	if eval[bool](t, p, `document.body.dataset.historyLost === "true"`) {
		t.Error("page claims history was lost after a cut with the server up")
	}
}

func TestRestartShowsHistoryLost(t *testing.T) {
	ts := startServer(t, nil)
	b := browser(t)
	p := page(t, b, ts.url("/?room=restart"))
	connected(t, p)
	waitFor(t, p, `document.querySelectorAll("#people li").length === 1`)
	ts.publish("chat:restart", "before the restart")
	sees(t, p, "before the restart")

	ts.stop()
	ts.start() // same address, new memory broker: a new epoch
	waitFor(t, p, `document.body.dataset.historyLost === "true"`)
	connected(t, p)
	notice := eval[string](t, p, `document.getElementById("notice").textContent`)
	if !strings.Contains(notice, "History was lost") {
		t.Fatalf("notice = %q", notice)
	}
	ts.publish("chat:restart", "after the restart")
	sees(t, p, "after the restart")
}

func TestScreenshots(t *testing.T) {
	ts := startServer(t, nil)
	b := browser(t)
	a := page(t, b, ts.url("/?room=lobby"))
	c := page(t, b, ts.url("/?room=lobby&transport=longpoll"))
	connected(t, a)
	connected(t, c)
	waitFor(t, a, `document.querySelectorAll("#people li").length === 2`)
	say(t, a, "Hi! This page talks WebSocket.")
	say(t, c, "And this one long polling, through the same engine.")
	ts.publish("chat:lobby", "A backend says hello through POST /api/publish.")
	sees(t, a, "A backend says hello")
	d := page(t, b, ts.url("/dashboard"))
	waitFor(t, d, `document.body.dataset.updated !== undefined && document.getElementById("out").textContent !== "–"`)

	for name, ctx := range map[string]context.Context{"chat.png": a, "dashboard.png": d} {
		screenshot(t, ctx, name)
	}
}

// screenshot saves the page as a PNG in build/screenshots (ignored by
// git), or in $HOTLINE_SCREENSHOTS; docs/screenshots holds copies for the
// README.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("HOTLINE_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "build", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	png := run(t, ctx, chromedp.FullScreenshot(100)) // quality 100 gives PNG, below it JPEG
	if len(png) < 1000 {
		t.Fatalf("%s: screenshot of %d bytes", name, len(png))
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}
