package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/ws"
)

// TestBinary is the one test of the real binary (every other test runs
// the commands in process): built as a user builds it, it prints its
// version, answers the seed handshake byte for byte, and on SIGTERM
// closes its clients with 1001 and exits 0.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "hotline")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-version").Output()
	if v := string(out); err != nil || !strings.HasPrefix(v, "hotline ") || !strings.Contains(v, runtime.Version()) {
		t.Fatalf("hotline -version: %q %v", out, err)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))

	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "-addr", addr, "-allowed-origins", "http://example.com")
	logs := &logBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		exited <- nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var c *ws.Conn
	for {
		if c, _, err = ws.Dial(ctx, "ws://"+addr+"/chat", nil); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("server did not start: %v\n%s", err, logs.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	defer c.CloseNow()
	seedHandshake(t, addr)

	cmd.Process.Signal(syscall.SIGTERM)
	if _, _, err := c.ReadMessage(ctx, nil); ws.CloseStatus(err) != ws.StatusGoingAway {
		t.Fatalf("after SIGTERM: %v, want close 1001", err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-ctx.Done():
		t.Fatal("server did not exit after SIGTERM")
	}
}
