package loadtest

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/server"
)

// newServer starts a hotline server with the API key "k" and this
// package's test polling handler, stopped at cleanup.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv, err := server.New(server.Config{APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Close()
		srv.Shutdown(ctx)
	})
	return hs
}

func TestRunWebSocket(t *testing.T) {
	hs := newServer(t)
	for _, tc := range []struct {
		name   string
		apiKey string
	}{
		{"api publish", "k"},
		{"ws publish", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var phases []string
			res, err := Run(t.Context(), Config{
				URL:              hs.URL,
				Transport:        WebSocket,
				Clients:          4,
				Rate:             50,
				Duration:         500 * time.Millisecond,
				APIKey:           tc.apiKey,
				ProgressInterval: 50 * time.Millisecond,
				OnProgress: func(p Progress) {
					if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
						phases = append(phases, p.Phase)
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := res.Err(); err != nil {
				t.Fatal(err)
			}
			checkResult(t, res, 4, 25)
			if want := []string{PhaseConnect, PhasePublish, PhaseDrain, PhaseDone}; !equal(phases, want) {
				t.Errorf("phases %v, want %v", phases, want)
			}
			if res.Requests != 4 {
				t.Errorf("requests = %d, want 4 handshakes", res.Requests)
			}
		})
	}
}

func checkResult(t *testing.T, res *Result, clients, messages int) {
	t.Helper()
	if res.Messages != messages || res.Delivered != int64(clients*messages) || res.Expected != res.Delivered {
		t.Errorf("messages %d delivered %d expected %d, want %d and %d", res.Messages, res.Delivered, res.Expected, messages, clients*messages)
	}
	if res.Latency.P50 <= 0 || res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.Max {
		t.Errorf("latency %+v", res.Latency)
	}
	if res.Bytes <= 0 || res.BytesPerDelivery() < 20 {
		t.Errorf("bytes %d (%.1f per delivery)", res.Bytes, res.BytesPerDelivery())
	}
	if res.ClientErrors != 0 {
		t.Errorf("%d client errors: %s", res.ClientErrors, res.ClientError)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRunRefused(t *testing.T) {
	hs := newServer(t)
	_, err := Run(t.Context(), Config{URL: hs.URL, Clients: 2, Channel: "nosuchns:x", Duration: 100 * time.Millisecond})
	if err == nil {
		t.Fatal("subscribing to an unknown namespace succeeded")
	}
	t.Log(err)
	res, err := Run(t.Context(), Config{URL: hs.URL, Clients: 2, APIKey: "wrong", Duration: 100 * time.Millisecond, Drain: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("wrong API key: Err() = %v", err)
	}
	t.Log(res.Err())
}
