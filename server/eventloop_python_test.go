//go:build linux

package server

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestEventLoopPythonClient runs a Python websockets client (Debian's
// python3-websockets) against the event-loop server: the opening
// handshake with its permessage-deflate offer (declined in this mode),
// subscribe, ping, a fragmented 30 KB publish, the publication back, and
// the close handshake. It skips without the module, unless CI is set.
func TestEventLoopPythonClient(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import websockets").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3-websockets missing: %v", err)
		}
		t.Skip("python3-websockets missing")
	}
	_, base := startEventLoop(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", "testdata/evloop_client.py",
		"ws"+strings.TrimPrefix(base, "http")+"/chat", token(t, "py", "Py", time.Hour)).CombinedOutput()
	if err != nil {
		t.Fatalf("python client: %v\n%s", err, out)
	}
	steps := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("client output %q: %v", line, err)
		}
		steps[ev["step"].(string)] = ev
	}
	for _, s := range []string{"open", "subscribed", "pong", "published", "publication", "closed"} {
		if steps[s] == nil {
			t.Fatalf("no %q step:\n%s", s, out)
		}
	}
	if p := steps["open"]["subprotocol"]; p != "superchat" {
		t.Errorf("subprotocol %v", p)
	}
	if e := steps["open"]["extensions"].([]any); len(e) != 0 {
		t.Errorf("extensions %v: the event loop declines permessage-deflate", e)
	}
	if c := steps["closed"]["code"]; c != float64(1000) {
		t.Errorf("close code %v, want 1000\n%s", c, out)
	}
}

// startEventLoop is start with the event-loop transport on.
func startEventLoop(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	cfg.EventLoop = true
	return start(t, cfg)
}
