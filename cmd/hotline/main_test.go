package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/internal/testredis"
	"github.com/hotline-rt/hotline/ws"
)

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

// logBuffer collects what a command writes, for the test to read while it
// writes.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// served is a "hotline serve" running in this process.
type served struct {
	cancel context.CancelFunc
	exit   chan int
}

// stop ends the server as a SIGTERM does (its context ends) and returns
// its exit status.
func (s *served) stop(t *testing.T) int {
	t.Helper()
	s.cancel()
	select {
	case code := <-s.exit:
		s.exit <- code // for the cleanup
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return within 30s of its context ending")
		return -1
	}
}

// startServe runs "hotline serve" in process (run, as main does) on a
// free loopback port and waits until it accepts connections. It stops
// when the test ends.
func startServe(t *testing.T, args ...string) (*served, string, *logBuffer) {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{cancel: cancel, exit: make(chan int, 1)}
	logs := &logBuffer{}
	go func() { s.exit <- run(ctx, append([]string{"serve", "-addr", addr}, args...), io.Discard, logs) }()
	t.Cleanup(func() { s.stop(t) })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case code := <-s.exit:
			s.exit <- code
			t.Fatalf("serve exited with %d: %s", code, logs.String())
		default:
		}
		if i == 400 {
			t.Fatalf("server did not start: %s", logs.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	return s, addr, logs
}

// runCmd runs a command line in process and returns its exit status,
// stdout and stderr.
func runCmd(t *testing.T, stdin io.Reader, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb logBuffer
	code := runIO(ctx, args, stdin, &out, &errb)
	return code, out.String(), errb.String()
}

func TestSeedHandshakeByteForByte(t *testing.T) {
	_, addr, _ := startServe(t, "-allowed-origins", "http://example.com")
	seedHandshake(t, addr)
}

// seedHandshake checks the seed's handshake, byte for byte, against a
// server started with -allowed-origins http://example.com.
func seedHandshake(t *testing.T, addr string) {
	t.Helper()
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

// TestShutdownClosesWithGoingAway: when serve's context ends (main ends
// it on SIGTERM or SIGINT) clients get close 1001 and serve returns 0.
func TestShutdownClosesWithGoingAway(t *testing.T) {
	s, addr, logs := startServe(t)
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
	s.cancel()
	_, _, err = c.ReadMessage(ctx, nil)
	if ws.CloseStatus(err) != ws.StatusGoingAway {
		t.Fatalf("after shutdown: %v, want close 1001", err)
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("serve returned %d\n%s", code, logs.String())
	}
}

func TestDialCommand(t *testing.T) {
	_, addr, _ := startServe(t)
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	exit := make(chan int, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		code := runIO(ctx, []string{"dial", "ws://" + addr + "/echo"}, stdinR, stdoutW, io.Discard)
		stdoutW.Close()
		exit <- code
	}()
	io.WriteString(stdinW, "one\ntwo\n")
	// Close stdin (which closes the connection) only once both echoes
	// are printed: a close that races the echoes may discard them.
	lines := bufio.NewScanner(stdoutR)
	for _, want := range []string{"one", "two"} {
		if !lines.Scan() || lines.Text() != want {
			t.Fatalf("dial printed %q, want %q (%v)", lines.Text(), want, lines.Err())
		}
	}
	stdinW.Close()
	go io.Copy(io.Discard, stdoutR)
	if code := <-exit; code != 0 {
		t.Fatalf("dial exited with %d", code)
	}

	// A refused handshake exits non-zero with the status and reason.
	code, _, stderr := runCmd(t, strings.NewReader(""), "dial", "-protocol", "mqtt", "ws://"+addr+"/chat")
	if code == 0 {
		t.Fatal("dial with an unknown subprotocol succeeded")
	}
	if !strings.Contains(stderr, "400") || !strings.Contains(stderr, "subprotocol") {
		t.Fatalf("stderr: %s", stderr)
	}
}

// TestReadmeNamesEveryFlag: every flag of serve -h is in the README, so
// that no limit goes undocumented.
func TestReadmeNamesEveryFlag(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, out := runCmd(t, nil, "serve", "-h")
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
	_, _, out := runCmd(t, nil, "serve", "-h")
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
