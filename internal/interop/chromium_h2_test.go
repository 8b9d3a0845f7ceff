package interop

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/hotline-rt/hotline/ws"
	_ "github.com/hotline-rt/hotline/ws/xconnect" // this test binary's HTTP/2 servers allow extended CONNECT
)

// TestChromiumHTTP2 loads the deflate page from a TLS server with HTTP/2
// (a test certificate; Chromium runs with --ignore-certificate-errors):
// the page's WebSocket goes over HTTP/2 (RFC 8441), as the server sees it
// (an extended CONNECT, r.ProtoMajor 2, on the connection that carried
// the page), echoes the 20 KB text twice, both sides compress (counted
// on the stream, under TLS), and the page's close 1000 ends it cleanly.
func TestChromiumHTTP2(t *testing.T) {
	exe := requireChromium(t)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(t.Context(),
		append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(exe),
			chromedp.NoSandbox,
			chromedp.Flag("disable-gpu", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("ignore-certificate-errors", true),
			chromedp.UserDataDir(t.TempDir()),
		)...)
	t.Cleanup(cancelAlloc)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	tabCtx, cancelTab := chromedp.NewContext(browserCtx)
	defer cancelTab()
	ctx, cancel := context.WithTimeout(tabCtx, caseTimeout)
	defer cancel()

	want := chromiumText()
	type seen struct {
		method, proto, protocol, remote string
	}
	var (
		mu       sync.Mutex
		pageConn string
		wsReq    *seen
	)
	var fromChromium, fromHotline atomic.Int64
	results := make(chan chromiumResult, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Logf("%s %s %s from %s", r.Proto, r.Method, r.URL.Path, r.RemoteAddr)
		if r.URL.Path != "/ws" {
			if r.URL.Path == "/" {
				mu.Lock()
				pageConn = r.RemoteAddr
				mu.Unlock()
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, chromiumPage)
			return
		}
		mu.Lock()
		wsReq = &seen{r.Method, r.Proto, r.Header.Get(":protocol"), r.RemoteAddr}
		mu.Unlock()
		// Count the WebSocket's bytes on the stream: the request body
		// is what Chromium sends, the response what hotline sends.
		r.Body = &countingBody{ReadCloser: r.Body, n: &fromChromium}
		results <- serveChromium(&countingWriter{ResponseWriter: w, n: &fromHotline}, r, &ws.AcceptOptions{Compression: &ws.CompressionOptions{}}, want)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)

	page := srv.URL + "/?ws=" + url.QueryEscape("wss"+strings.TrimPrefix(srv.URL, "https")+"/ws")
	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("navigate to %s: %v", page, err)
	}
	got, err := chromedp.Run(ctx, chromedp.Poll[string]("window.result", chromedp.WithPollingTimeout(caseTimeout/2)))
	if err != nil {
		t.Fatalf("waiting for the page's result: %v", err)
	}
	if !strings.HasPrefix(got, "ok permessage-deflate") {
		t.Errorf("page: %s", got)
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
	mu.Lock()
	defer mu.Unlock()
	if wsReq == nil || wsReq.method != http.MethodConnect || wsReq.proto != "HTTP/2.0" || wsReq.protocol != "websocket" {
		t.Fatalf("the WebSocket request was %+v, want an HTTP/2 extended CONNECT for websocket", wsReq)
	}
	if wsReq.remote != pageConn {
		t.Errorf("WebSocket on connection %s, the page on %s: want one HTTP/2 connection for both", wsReq.remote, pageConn)
	}
	payload := int64(2 * len(want))
	t.Logf("over HTTP/2: payload %d bytes each way; on the stream Chromium sent %d, hotline %d", payload, fromChromium.Load(), fromHotline.Load())
	if err := checkCompressed("Chromium", fromChromium.Load(), payload, true); err != nil {
		t.Error(err)
	}
	if err := checkCompressed("hotline", fromHotline.Load(), payload, true); err != nil {
		t.Error(err)
	}
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer's Flush and
// deadlines.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
