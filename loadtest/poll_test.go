package loadtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/transport"
	"github.com/hotline-rt/hotline/ws"
)

// newTransportServer serves /chat and /poll/ from one engine whose
// "bench" namespace lets clients publish: the WebSocket publisher's path.
func newTransportServer(t *testing.T, v auth.Verifier) *httptest.Server {
	t.Helper()
	e, err := push.New(push.Config{Namespaces: map[string]push.NamespaceOptions{
		"bench": {ClientPublish: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	wst := &transport.WebSocket{Engine: e, Verifier: v, Accept: ws.AcceptOptions{Compression: &ws.CompressionOptions{}}}
	pt := &transport.Polling{Engine: e, Verifier: v, LongPollTimeout: 2 * time.Second}
	mux := http.NewServeMux()
	mux.Handle("GET /chat", wst)
	mux.Handle("/poll/", pt)
	hs := httptest.NewUnstartedServer(mux)
	hs.Config.RegisterOnShutdown(pt.GoingAway)
	hs.Start()
	t.Cleanup(func() {
		pt.GoingAway()
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Shutdown(ctx)
		wst.Wait(ctx)
	})
	return hs
}

func TestRunTransports(t *testing.T) {
	secret := []byte("test secret")
	v, err := auth.New(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	hs := newTransportServer(t, v)
	for _, tr := range Transports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			res, err := Run(t.Context(), Config{
				URL:          hs.URL,
				Transport:    tr,
				Clients:      3,
				Rate:         40,
				Duration:     500 * time.Millisecond,
				JWTSecret:    secret,
				PollInterval: 100 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := res.Err(); err != nil {
				t.Fatal(err)
			}
			checkResult(t, res, 3, 20)
			if tr != WebSocket && res.RequestsPerDelivery() <= 0 {
				t.Errorf("requests per delivery %v", res.RequestsPerDelivery())
			}
			t.Logf("%s: %d requests, %d bytes, latency %+v", tr, res.Requests, res.Bytes, res.Latency)
		})
	}
}

// TestRunCompress checks that offering compression still delivers all,
// and with fewer bytes for padded messages.
func TestRunCompress(t *testing.T) {
	hs := newTransportServer(t, auth.Anonymous())
	bytes := map[bool]float64{}
	for _, compress := range []bool{false, true} {
		res, err := Run(t.Context(), Config{URL: hs.URL, Clients: 2, Rate: 40, Duration: 250 * time.Millisecond, Size: 2000, Compress: compress})
		if err != nil {
			t.Fatal(err)
		}
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		bytes[compress] = res.BytesPerDelivery()
	}
	if bytes[true] >= bytes[false] {
		t.Errorf("bytes per delivery: %v compressed, %v not", bytes[true], bytes[false])
	}
}

func TestRunBadToken(t *testing.T) {
	v, err := auth.New(auth.Config{Secret: []byte("right")})
	if err != nil {
		t.Fatal(err)
	}
	hs := newTransportServer(t, v)
	for _, tr := range Transports {
		_, err := Run(t.Context(), Config{URL: hs.URL, Transport: tr, Clients: 2, JWTSecret: []byte("wrong"), Duration: 100 * time.Millisecond})
		if err == nil {
			t.Errorf("%s: a wrong token was accepted", tr)
		}
	}
}
