package interop

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/hotline-rt/hotline/ws"
)

// TestChromiumDeflate loads a page in headless Chromium whose script opens
// a WebSocket to ws.Upgrade with compression on, sends a 20 KB text twice
// and checks both echoes. Chromium offers "permessage-deflate;
// client_max_window_bits"; the test checks the offer, the extension both
// sides agreed on, the messages, and (through a counting relay) that both
// sides compressed.
func TestChromiumDeflate(t *testing.T) {
	exe := requireChromium(t)

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(t.Context(),
		append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(exe),
			chromedp.NoSandbox,
			chromedp.Flag("disable-gpu", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.UserDataDir(t.TempDir()),
		)...)
	t.Cleanup(cancelAlloc) // runs before TempDir's removal: the browser is gone by then
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	// Start the browser under browserCtx: a context given to the first
	// action owns the browser, and each case's tab must not.
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}

	for _, tc := range []struct {
		name     string
		opts     ws.CompressionOptions
		wantExts string
	}{
		{"no-takeover", ws.CompressionOptions{}, "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		{"takeover", ws.CompressionOptions{ContextTakeover: true}, "permessage-deflate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A tab of its own in the shared browser, one at a time.
			tabCtx, cancelTab := chromedp.NewContext(browserCtx)
			defer cancelTab()
			ctx, cancel := context.WithTimeout(tabCtx, caseTimeout)
			defer cancel()

			want := chromiumText()
			results := make(chan chromiumResult, 1)
			var srv *httptest.Server
			srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/ws" {
					w.Header().Set("Content-Type", "text/html; charset=utf-8")
					fmt.Fprint(w, chromiumPage)
					return
				}
				results <- serveChromium(w, r, &ws.AcceptOptions{
					AllowedOrigins: []string{srv.URL},
					Compression:    &tc.opts,
				}, want)
			}))
			t.Cleanup(srv.Close)
			rl := startRelay(t, srv.Listener.Addr().String())

			page := srv.URL + "/?ws=" + url.QueryEscape("ws://"+rl.addr()+"/ws")
			if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
				t.Fatalf("navigate to %s: %v", page, err)
			}
			got, err := chromedp.Run(ctx, chromedp.Poll[string]("window.result",
				chromedp.WithPollingTimeout(caseTimeout/2)))
			if err != nil {
				t.Fatalf("waiting for the page's result: %v", err)
			}
			// The page reports "ok <extensions>" or "error: ...".
			pageExts, ok := strings.CutPrefix(got, "ok ")
			if !ok {
				t.Errorf("page: %s", got)
			} else if normalizeExtensions(pageExts) != normalizeExtensions(tc.wantExts) {
				t.Errorf("Chromium's ws.extensions = %q, want %q", pageExts, tc.wantExts)
			}

			var res chromiumResult
			select {
			case res = <-results:
			case <-ctx.Done():
				t.Fatalf("server side did not finish: %v", ctx.Err())
			}
			if res.err != nil {
				t.Errorf("server side: %v", res.err)
			}
			if normalizeExtensions(res.offer) != normalizeExtensions("permessage-deflate; client_max_window_bits") {
				t.Errorf("Chromium offered %q, want \"permessage-deflate; client_max_window_bits\"", res.offer)
			}
			if normalizeExtensions(res.exts) != normalizeExtensions(tc.wantExts) {
				t.Errorf("hotline's Extensions() = %q, want %q", res.exts, tc.wantExts)
			}

			fromChromium, fromHotline, err := rl.wait(ctx)
			if err != nil {
				t.Fatalf("relay: %v", err)
			}
			payload := int64(2 * len(want))
			t.Logf("payload %d bytes each way; on the wire Chromium sent %d, hotline %d", payload, fromChromium, fromHotline)
			if err := checkCompressed("Chromium", fromChromium, payload, true); err != nil {
				t.Error(err)
			}
			if err := checkCompressed("hotline", fromHotline, payload, true); err != nil {
				t.Error(err)
			}
		})
	}
}

// requireChromium returns Chromium's path, or skips as requirePeer does.
func requireChromium(t *testing.T) string {
	t.Helper()
	exe, err := exec.LookPath("chromium")
	if err == nil {
		return exe
	}
	why := "chromium not found on PATH (apt-get install chromium)"
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set, so interop tests may not skip)", why)
	}
	t.Skipf("%s; ./test.sh installs it", why)
	return ""
}

type chromiumResult struct {
	offer string // the request's Sec-WebSocket-Extensions
	exts  string // Conn.Extensions
	err   error
}

// serveChromium upgrades, echoes two messages equal to want and waits for
// the page's close 1000.
func serveChromium(w http.ResponseWriter, r *http.Request, opts *ws.AcceptOptions, want string) chromiumResult {
	res := chromiumResult{offer: r.Header.Get("Sec-WebSocket-Extensions")}
	c, err := ws.Upgrade(w, r, opts)
	if err != nil {
		res.err = fmt.Errorf("Upgrade: %w", err)
		return res
	}
	defer func() { _ = c.CloseNow() }()
	res.exts = c.Extensions()
	ctx, cancel := context.WithTimeout(r.Context(), caseTimeout/2)
	defer cancel()
	for i := range 2 {
		if err := expectMessage(ctx, c, ws.MessageText, []byte(want)); err != nil {
			res.err = fmt.Errorf("message %d: %w", i+1, err)
			return res
		}
		if err := c.WriteMessage(ctx, ws.MessageText, []byte(want)); err != nil {
			res.err = fmt.Errorf("echo %d: %w", i+1, err)
			return res
		}
	}
	_, p, err := c.ReadMessage(ctx, nil)
	var ce *ws.CloseError
	switch {
	case err == nil:
		res.err = fmt.Errorf("read a %d-byte message, want the page's close", len(p))
	case !errors.As(err, &ce) || ce.Code != ws.StatusNormalClosure:
		res.err = fmt.Errorf("read: %w, want the page's close 1000", err)
	}
	return res
}

// chromiumText is the page's message: 20,000 characters of text, some
// outside ASCII, built as the page builds it.
func chromiumText() string {
	var b strings.Builder
	for i := 0; b.Len() < 30000; i++ {
		fmt.Fprintf(&b, "line %d: héllo wörld ✓\n", i)
	}
	return string([]rune(b.String())[:20000])
}

// chromiumPage opens a WebSocket to the URL in its ws query parameter,
// sends chromiumText twice, checks each echo and closes with 1000; it
// reports in window.result.
const chromiumPage = `<!doctype html>
<meta charset="utf-8">
<title>hotline deflate</title>
<script>
(() => {
  let text = '';
  for (let i = 0; text.length < 30000; i++) text += 'line ' + i + ': h\u00e9llo w\u00f6rld \u2713\n';
  text = text.slice(0, 20000);
  const ws = new WebSocket(new URLSearchParams(location.search).get('ws'));
  let echoes = 0;
  const fail = (why) => { if (!window.result) window.result = 'error: ' + why; };
  ws.onopen = () => ws.send(text);
  ws.onmessage = (e) => {
    if (e.data !== text) {
      fail('echo ' + (echoes + 1) + ' differs: ' + String(e.data).length + ' characters');
      ws.close(1000);
      return;
    }
    echoes++;
    if (echoes === 1) {
      ws.send(text);
    } else {
      window.result = 'ok ' + ws.extensions;
      ws.close(1000);
    }
  };
  ws.onerror = () => fail('WebSocket error');
  ws.onclose = (e) => fail('closed early: ' + e.code + ' ' + e.reason);
})();
</script>
`
