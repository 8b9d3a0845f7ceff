package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSilentClientStaysConnected: a superchat client that never sends a
// frame of its own (Python websockets with ping_interval=None, as a
// browser tab behaves) stays connected through 12 keepalive periods of
// hotline serve, and still receives a publication afterwards: 12 s, past
// the 10 s write timeout. Before the fix the transport's write deadline
// (10 s after the last batch, never cleared) broke the next keepalive
// ping and the client was dropped with 1006 at 10 s (checked with the
// previous binary: "fail closed after 10.0s idle: code=1006").
func TestSilentClientStaysConnected(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import websockets").Run(); err != nil {
		t.Skipf("%s with the websockets module is needed: %v", python, err)
	}
	_, addr, logs := startServe(t, "-keepalive", "1s")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "testdata/idle_client.py", "ws://"+addr+"/chat", "12").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ok ") {
		t.Fatalf("idle client: %v: %s\nserver log:\n%s", err, out, logs.String())
	}
	t.Logf("idle client: %s", strings.TrimSpace(string(out)))
}
