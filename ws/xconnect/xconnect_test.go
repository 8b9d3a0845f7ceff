//lint:file-ignore SA1019 x/net/http2.Transport is deprecated for net/http's, but net/http's client in Go 1.26 refuses the :protocol pseudo-header of an extended CONNECT (see h2Pool).

package xconnect_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/hotline-rt/hotline/ws/xconnect"
	"golang.org/x/net/http2"
)

// TestServerAllowsExtendedConnect checks the package's effect where it
// matters: Go's HTTP/2 server, started after this package's init, takes
// an extended CONNECT (without it, the client refuses to send one:
// "extended connect not supported by peer").
func TestServerAllowsExtendedConnect(t *testing.T) {
	if !xconnect.Enabled() {
		t.Fatal("GODEBUG does not hold http2xconnect=1 after init")
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.ProtoMajor != 2 || r.Header.Get(":protocol") != "websocket" {
			http.Error(w, "not an extended CONNECT", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	tr := &http2.Transport{TLSClientConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig}
	u, _ := url.Parse(srv.URL)
	resp, err := tr.RoundTrip(&http.Request{Method: http.MethodConnect, URL: u, Host: u.Host, Header: http.Header{":protocol": {"websocket"}}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
}
