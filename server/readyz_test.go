package server

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hotline-rt/hotline/broker/redisbroker"
	"github.com/hotline-rt/hotline/internal/testredis"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReadyz: /readyz follows the broker (503 with the reason while Redis
// is down, 200 again once it is back) while /healthz stays 200; with the
// memory broker the server is ready.
func TestReadyz(t *testing.T) {
	_, mem := start(t, Config{})
	if code, body := get(t, mem+"/readyz"); code != 200 {
		t.Fatalf("memory broker: /readyz %d %q", code, body)
	}

	rs := testredis.StartServer(t)
	b, err := redisbroker.New(redisbroker.Config{Addr: rs.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(t.Context()) })
	_, base := start(t, Config{Broker: b})
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("redis up: /readyz %d %q", code, body)
	}
	rs.Stop()
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.HasPrefix(body, "not ready: ") {
		t.Fatalf("redis down: /readyz %d %q", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("redis down: /healthz %d", code)
	}
	rs.Restart()
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("redis back: /readyz %d %q", code, body)
	}
}
