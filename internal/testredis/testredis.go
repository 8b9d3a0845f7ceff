// Package testredis runs a throwaway redis-server for tests.
package testredis

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// Binary is the redis-server that Start runs.
const Binary = "/usr/bin/redis-server"

// startTimeout bounds how long Start waits for the server to answer PING.
const startTimeout = 5 * time.Second

// Start runs a redis-server without persistence on a free 127.0.0.1 port and
// returns its address ("127.0.0.1:port"). The server is killed when the test
// ends. Without redis-server the test is skipped, or fails if the
// environment variable CI is set.
func Start(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("testredis: %s is required in CI: %v", Binary, err)
		}
		t.Skipf("testredis: %s not found (%v); skipping the test that needs Redis", Binary, err)
	}
	// The port is free when we look; another process could take it
	// before redis-server binds it, so a failed start is retried with
	// a new port.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testredis: find a free port: %v", err)
		}
		addr, err := run(t, port)
		if err == nil {
			return addr
		}
		lastErr = err
	}
	t.Fatalf("testredis: %v", lastErr)
	return ""
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run starts redis-server on port and waits until it answers PING. On
// failure the process is stopped before run returns.
func run(t testing.TB, port int) (string, error) {
	p := strconv.Itoa(port)
	cmd := exec.Command(Binary, "--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	addr := net.JoinHostPort("127.0.0.1", p)
	deadline := time.Now().Add(startTimeout)
	for {
		if ping(addr) {
			t.Cleanup(stop)
			return addr, nil
		}
		select {
		case err := <-exited:
			return "", &startError{addr: addr, err: err, out: out.String()}
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", &startError{addr: addr, err: errTimeout, out: out.String()}
		}
	}
}

var errTimeout = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string { return "no PONG within " + startTimeout.String() }

type startError struct {
	addr string
	err  error
	out  string
}

func (e *startError) Error() string {
	return "redis-server on " + e.addr + ": " + e.err.Error() + "\n" + e.out
}

// ping reports whether addr answers PING with +PONG.
func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}
