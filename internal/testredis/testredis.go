// Package testredis runs a throwaway redis-server for tests.
package testredis

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
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
	return StartServer(t).Addr
}

// Server is a running redis-server that a test can stop and start again,
// to see what its clients do while Redis is away.
type Server struct {
	// Addr is "127.0.0.1:port"; it stays the same across Restart.
	Addr string

	t    testing.TB
	port int

	mu   sync.Mutex
	stop func() // kills the process and waits for it; nil while stopped
	pid  int    // of the running process; 0 while stopped
}

// PID returns the process id of the running server (0 while stopped), for a
// test that signals it (SIGSTOP to make it stall, SIGKILL to lose it).
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

// StartServer is Start for a test that needs to stop or restart the server.
func StartServer(t testing.TB) *Server {
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
		addr, stop, pid, err := run(port)
		if err == nil {
			s := &Server{Addr: addr, t: t, port: port, stop: stop, pid: pid}
			t.Cleanup(s.Stop)
			return s
		}
		lastErr = err
	}
	t.Fatalf("testredis: %v", lastErr)
	return nil
}

// Stop kills the server and waits for it to exit. Its data is gone (it
// keeps none on disk). Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop != nil {
		s.stop()
		s.stop, s.pid = nil, 0
	}
}

// Restart starts a stopped server again, empty, on the same address; the
// test fails if it cannot.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop != nil {
		s.t.Fatalf("testredis: restart %s: still running", s.Addr)
	}
	_, stop, pid, err := run(s.port)
	if err != nil {
		s.t.Fatalf("testredis: restart: %v", err)
	}
	s.stop, s.pid = stop, pid
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run starts redis-server on port, waits until it answers PING and returns
// its address, the function that stops it and its pid. On failure the
// process is stopped before run returns.
func run(port int, extra ...string) (string, func(), int, error) {
	p := strconv.Itoa(port)
	args := []string{"--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}
	if len(extra) > 0 && !strings.HasPrefix(extra[0], "--") {
		// A configuration file comes first.
		args = append(append([]string{extra[0]}, args...), extra[1:]...)
	} else {
		args = append(args, extra...)
	}
	cmd := exec.Command(Binary, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return "", nil, 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill() // SIGKILL ends a stopped (SIGSTOP) process too
		<-exited
	}
	addr := net.JoinHostPort("127.0.0.1", p)
	deadline := time.Now().Add(startTimeout)
	for {
		if ping(addr) {
			return addr, stop, cmd.Process.Pid, nil
		}
		select {
		case err := <-exited:
			return "", nil, 0, &startError{addr: addr, err: err, out: out.String()}
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, 0, &startError{addr: addr, err: errTimeout, out: out.String()}
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
