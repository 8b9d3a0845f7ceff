package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/internal/testredis"
	"github.com/hotline-rt/hotline/ws"
)

// hotlineBin is the binary under test, built once by TestMain.
var hotlineBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hotline-test")
	if err != nil {
		panic(err)
	}
	hotlineBin = filepath.Join(dir, "hotline")
	if out, err := exec.Command("go", "build", "-race", "-o", hotlineBin, ".").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		panic("build hotline: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServe runs "hotline serve" and waits until it answers /healthz.
func startServe(t *testing.T, args ...string) (*exec.Cmd, string, *strings.Builder) {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(hotlineBin, append([]string{"serve", "-addr", addr}, args...)...)
	var logs strings.Builder
	cmd.Stderr = &syncWriter{w: &logs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i == 200 {
			t.Fatalf("server did not start: %s", logs.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	return cmd, addr, &logs
}

func TestSeedHandshakeByteForByte(t *testing.T) {
	_, addr, _ := startServe(t, "-allowed-origins", "http://example.com")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, "GET /chat HTTP/1.1\r\n"+
		"Host: server.example.com\r\n"+
		"Upgrade: websocket\r\n"+
		"Connection: Upgrade\r\n"+
		"Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"+
		"Sec-WebSocket-Protocol: chat, superchat\r\n"+
		"Sec-WebSocket-Version: 13\r\n"+
		"Origin: http://example.com\r\n\r\n")
	want := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\n" +
		"Sec-WebSocket-Protocol: chat\r\n\r\n"
	got := make([]byte, len(want))
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(nc, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("got:\n%q\nwant:\n%q", got, want)
	}

	// Version 8 gets 426 with the version the server speaks.
	nc2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	io.WriteString(nc2, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 8\r\n\r\n")
	nc2.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, _ := io.ReadAll(io.LimitReader(nc2, 4096))
	if !strings.HasPrefix(string(resp), "HTTP/1.1 426 Upgrade Required\r\n") || !strings.Contains(string(resp), "Sec-Websocket-Version: 13\r\n") {
		t.Fatalf("version 8 got:\n%s", resp)
	}
}

func TestSIGTERMClosesWithGoingAway(t *testing.T) {
	cmd, addr, logs := startServe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := ws.Dial(ctx, "ws://"+addr+"/chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.WriteMessage(ctx, ws.MessageText, []byte("hello"))
	if _, msg, err := c.ReadMessage(ctx, nil); err != nil || string(msg) != "hello" {
		t.Fatalf("echo from room: %q %v", msg, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	_, _, err = c.ReadMessage(ctx, nil)
	if ws.CloseStatus(err) != ws.StatusGoingAway {
		t.Fatalf("after SIGTERM: %v, want close 1001", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not exit after SIGTERM")
	}
}

func TestDialCommand(t *testing.T) {
	_, addr, _ := startServe(t)
	cmd := exec.Command(hotlineBin, "dial", "ws://"+addr+"/echo")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	io.WriteString(stdin, "one\ntwo\n")
	// Close stdin (which closes the connection) only once both echoes
	// are printed: a close that races the echoes may discard them.
	lines := bufio.NewScanner(stdout)
	for _, want := range []string{"one", "two"} {
		if !lines.Scan() || lines.Text() != want {
			t.Fatalf("dial printed %q, want %q (%v)", lines.Text(), want, lines.Err())
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dial: %v", err)
	}

	// A refused handshake exits non-zero with the status and reason.
	cmd = exec.Command(hotlineBin, "dial", "-protocol", "mqtt", "ws://"+addr+"/chat")
	cmd.Stdin = strings.NewReader("")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatal("dial with an unknown subprotocol succeeded")
	}
	if !strings.Contains(stderr.String(), "400") || !strings.Contains(stderr.String(), "subprotocol") {
		t.Fatalf("stderr: %s", stderr.String())
	}
}

// TestReadmeNamesEveryFlag: every flag of serve -h is in the README, so
// that no limit goes undocumented.
func TestReadmeNamesEveryFlag(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(hotlineBin, "serve", "-h").CombinedOutput()
	n := 0
	for line := range strings.Lines(string(out)) {
		if !strings.HasPrefix(line, "  -") { // a flag's own line, not its help
			continue
		}
		f := strings.Fields(line)
		n++
		if !strings.Contains(string(readme), "`"+f[0]+"`") && !strings.Contains(string(readme), "`"+f[0]+" ") {
			t.Errorf("README.md does not name %s (in backquotes)", f[0])
		}
	}
	if n < 30 {
		t.Fatalf("found only %d flags in serve -h:\n%s", n, out)
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	out, _ := exec.Command(hotlineBin, "serve", "-h").CombinedOutput()
	for _, want := range []string{"-addr", "HOTLINE_ADDR", "-jwt-secret", "-max-conns", "-allowed-origins", "-api-key",
		"-diagnostics", "-read-timeout", "-idle-timeout", "-max-header-bytes", "-max-body", "-allowed-hosts",
		"-max-user-sessions", "-max-subscriptions", "-max-batch", "-max-history-reply", "-max-presence-reply",
		"-idempotency-ttl", "-broker-timeout", "-session-grace", "-max-ended-polls", "-write-timeout",
		"-redis-queue-size", "-redis-catchups", "-empty-stream-ttl"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("serve -h lacks %s", want)
		}
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "Usage: hotline serve") {
		t.Errorf("serve -h starts with %q", sc.Text())
	}
}

// syncWriter lets the test read what the child wrote while it writes.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestTwoNodesShareRedis(t *testing.T) {
	redisAddr := testredis.Start(t)
	_, a, _ := startServe(t, "-broker", "redis", "-redis-addr", redisAddr, "-api-key", "k")
	_, b, _ := startServe(t, "-broker", "redis", "-redis-addr", redisAddr, "-api-key", "k")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	onB, _, err := ws.Dial(ctx, "ws://"+b+"/chat/lobby", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer onB.CloseNow()
	onA, _, err := ws.Dial(ctx, "ws://"+a+"/chat/lobby", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer onA.CloseNow()
	// Node B's client sees its own line once its subscription is live.
	onB.WriteMessage(ctx, ws.MessageText, []byte("b is here"))
	if _, msg, err := onB.ReadMessage(ctx, nil); err != nil || string(msg) != "b is here" {
		t.Fatalf("own line on B: %q %v", msg, err)
	}
	onA.WriteMessage(ctx, ws.MessageText, []byte("from node a"))
	for {
		_, msg, err := onB.ReadMessage(ctx, nil)
		if err != nil {
			t.Fatalf("node B never got node A's line: %v", err)
		}
		if string(msg) == "from node a" {
			break
		}
	}
}
