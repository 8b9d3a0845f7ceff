package faulttest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisBinary is the redis-server the test runs (as internal/testredis).
const redisBinary = "/usr/bin/redis-server"

// startTimeout bounds how long a process may take to answer after start.
const startTimeout = 15 * time.Second

// repoRoot finds the module root (the directory holding go.mod) above the
// package directory the test runs in.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		dir = filepath.Dir(dir)
	}
	t.Fatal("faulttest: go.mod not found above the working directory")
	return ""
}

// buildBinary builds cmd/hotline into dir and returns its path.
func buildBinary(t testing.TB, root, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "hotline")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/hotline")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("faulttest: go build ./cmd/hotline: %v\n%s", err, out)
	}
	return bin
}

// freePort returns a loopback port that is free now, taken below the
// kernel's ephemeral range: a process restarted on the same port must not
// find it taken by an outgoing connection (or by a client connecting to
// itself, which TCP allows on loopback while nobody listens).
func freePort(rng *rand.Rand) (int, error) {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				lo = n
			}
		}
	}
	if lo < 12000 {
		// An unusual range: let the kernel choose, and hope.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	for range 100 {
		p := 10000 + rng.IntN(lo-10000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, errors.New("faulttest: no free port below the ephemeral range")
}

// proc is one child process (redis-server or a hotline node) that the test
// starts, signals, kills and starts again on the same port. Every process
// it starts it waits for.
type proc struct {
	name string
	log  *os.File // stdout and stderr of every run, appended

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	stopped bool          // SIGSTOPped and not yet continued
}

func newProc(name, logPath string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &proc{name: name, log: f}, nil
}

// start runs path with args; it fails if the process is running.
func (p *proc) start(path string, args ...string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s: already running", p.name)
	}
	fmt.Fprintf(p.log, "\n==== %s start: %s %s\n", time.Now().Format(time.RFC3339Nano), path, strings.Join(args, " "))
	cmd := exec.Command(path, args...)
	cmd.Stdout = p.log
	cmd.Stderr = p.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited, p.stopped = cmd, exited, false
	return nil
}

// running reports whether the process has not exited.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// exitedChan is closed when the current run ends (nil if none).
func (p *proc) exitedChan() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// pid is the process id of the current run, 0 if none.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// signal sends sig to the current run, by its pid.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s: not running", p.name)
	}
	fmt.Fprintf(p.log, "\n==== %s signal %v\n", time.Now().Format(time.RFC3339Nano), sig)
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", p.name, sig, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		p.stopped = true
	case syscall.SIGCONT:
		p.stopped = false
	}
	return nil
}

// kill SIGKILLs the current run and waits for it to exit. Killing a process
// that is not running does nothing.
func (p *proc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	fmt.Fprintf(p.log, "\n==== %s kill\n", time.Now().Format(time.RFC3339Nano))
	_ = p.cmd.Process.Kill() // a stopped process dies of SIGKILL too
	<-p.exited
	p.cmd, p.exited, p.stopped = nil, nil, false
}

// close kills the process and closes its log.
func (p *proc) close() {
	p.kill()
	p.log.Close()
}

// redisServer is the redis-server of the test. It keeps its port and data
// directory across restarts.
type redisServer struct {
	*proc
	addr string
	port int
	dir  string
	aof  bool // the current run writes an append-only file
	// fsync is the appendfsync policy: "always" writes and syncs each
	// write before answering it; "everysec" (Redis's default) syncs once a
	// second and documents that a crash may lose about that much.
	fsync string
}

func (r *redisServer) args(aof bool) []string {
	yn := "no"
	if aof {
		yn = "yes"
	}
	return []string{
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", yn, "--appendfsync", r.fsync,
		"--dir", r.dir,
	}
}

// startRedis starts redis-server and waits for it to answer PING.
func (r *redisServer) startRedis(aof bool) error {
	if err := r.start(redisBinary, r.args(aof)...); err != nil {
		return err
	}
	r.aof = aof
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		if redisPing(ctx, r.addr) == nil {
			return nil
		}
		select {
		case <-r.exitedChan():
			r.kill()
			return fmt.Errorf("redis-server on %s exited at start (see its log)", r.addr)
		case <-ctx.Done():
			r.kill()
			return fmt.Errorf("redis-server on %s: no PONG within %v", r.addr, startTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// wipe removes the data directory's contents: the next start is empty.
func (r *redisServer) wipe() error {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(r.dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// client opens an admin connection (one connection, short timeouts).
func (r *redisServer) client() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: r.addr, PoolSize: 1, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
	})
}

func redisPing(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, MaxRetries: -1,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond})
	defer c.Close()
	return c.Ping(ctx).Err()
}

// enableAOF turns on the append-only file of the running server and waits
// until the file holds the whole dataset, so that a kill then loses
// nothing that was acknowledged.
func (r *redisServer) enableAOF(ctx context.Context) error {
	if r.aof {
		return nil
	}
	c := r.client()
	defer c.Close()
	if err := c.ConfigSet(ctx, "appendonly", "yes").Err(); err != nil {
		return fmt.Errorf("CONFIG SET appendonly yes: %w", err)
	}
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		info, err := c.Info(ctx, "persistence").Result()
		if err == nil && infoField(info, "aof_enabled") == "1" &&
			infoField(info, "aof_rewrite_in_progress") == "0" &&
			infoField(info, "aof_rewrite_scheduled") == "0" {
			r.aof = true
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("redis: the append-only file was not written in time")
}

func infoField(info, name string) string {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if ok && k == name {
			return v
		}
	}
	return ""
}

// killPubSub kills the Pub/Sub connections of the process pid (0: of
// every client) with CLIENT KILL, and returns how many it killed.
func (r *redisServer) killPubSub(ctx context.Context, pid int) (int, error) {
	c := r.client()
	defer c.Close()
	if pid == 0 {
		n, err := c.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Int()
		return n, err
	}
	ports, err := localPorts(pid, r.port)
	if err != nil {
		return 0, err
	}
	list, err := c.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if err != nil {
		return 0, err
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		for _, f := range strings.Fields(line) {
			a, ok := strings.CutPrefix(f, "addr=")
			if !ok {
				continue
			}
			_, ps, _ := net.SplitHostPort(a)
			p, _ := strconv.Atoi(ps)
			if !ports[p] {
				continue
			}
			if n, err := c.Do(ctx, "CLIENT", "KILL", "ADDR", a).Result(); err == nil && n != nil {
				killed++
			}
		}
	}
	return killed, nil
}

// localPorts returns the local ports of pid's TCP connections to the
// loopback port remote, from /proc: the socket inodes among its open files,
// matched against /proc/net/tcp.
func localPorts(pid, remote int) (map[int]bool, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := make(map[string]bool)
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		if in, ok := strings.CutPrefix(l, "socket:["); ok {
			inodes[strings.TrimSuffix(in, "]")] = true
		}
	}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil, err
	}
	ports := make(map[int]bool)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || !inodes[f[9]] {
			continue
		}
		_, lp, ok1 := strings.Cut(f[1], ":")
		_, rp, ok2 := strings.Cut(f[2], ":")
		if !ok1 || !ok2 {
			continue
		}
		l, err1 := strconv.ParseInt(lp, 16, 32)
		r, err2 := strconv.ParseInt(rp, 16, 32)
		if err1 == nil && err2 == nil && int(r) == remote {
			ports[int(l)] = true
		}
	}
	return ports, nil
}

// node is one "hotline serve" process.
type node struct {
	*proc
	addr string // 127.0.0.1:port, the same across restarts
	bin  string
	args []string
}

func (n *node) url() string { return "http://" + n.addr }

// startNode starts the node and waits for /healthz.
func (n *node) startNode() error {
	if err := n.start(n.bin, n.args...); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	for {
		if resp, err := hc.Get(n.url() + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-n.exitedChan():
			n.kill()
			return fmt.Errorf("%s exited at start (see its log)", n.name)
		case <-ctx.Done():
			n.kill()
			return fmt.Errorf("%s: no /healthz within %v", n.name, startTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
