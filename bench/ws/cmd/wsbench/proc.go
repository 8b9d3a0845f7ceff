package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// server is one benchmark server process, pinned to the server CPU.
type server struct {
	cmd   *exec.Cmd
	addr  string
	gc    chan struct{} // one value per "gc" line
	done  chan struct{} // closed when the process has exited
	mu    sync.Mutex
	errb  bytes.Buffer // stderr, capped
	lines chan string
}

// startServer starts bin pinned with taskset to cpu (if taskset is
// there) and waits for its "listening" line.
func startServer(bin, cpu string, args ...string) (*server, error) {
	argv := append([]string{bin, "-addr", "127.0.0.1:0"}, args...)
	if cpu != "" {
		argv = append([]string{"taskset", "-c", cpu}, argv...)
	}
	s := &server{gc: make(chan struct{}, 4), done: make(chan struct{}), lines: make(chan string, 1)}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stderr = s
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			switch l := sc.Text(); {
			case l == "gc":
				s.gc <- struct{}{}
			case strings.HasPrefix(l, "listening "):
				s.lines <- strings.TrimPrefix(l, "listening ")
			}
		}
		_ = s.cmd.Wait()
		close(s.done)
	}()
	select {
	case s.addr = <-s.lines:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("%s exited: %s", bin, s.stderr())
	case <-time.After(10 * time.Second):
		s.stop()
		return nil, fmt.Errorf("%s did not listen within 10 s", bin)
	}
}

// Write collects the server's stderr, the first 16 KiB of it.
func (s *server) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.errb.Len() < 16<<10 {
		s.errb.Write(p)
	}
	return len(p), nil
}

func (s *server) stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.TrimSpace(s.errb.String())
}

// stop ends the process: SIGTERM, then SIGKILL after 3 s.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(3 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *server) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// collect has the server run the garbage collector and return freed
// memory to the kernel, and returns its resident set size afterwards.
func (s *server) collect() (int64, error) {
	if err := s.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return 0, err
	}
	select {
	case <-s.gc:
	case <-s.done:
		return 0, errors.New("server exited")
	case <-time.After(10 * time.Second):
		return 0, errors.New("no gc answer within 10 s")
	}
	return s.stat().rssKiB, nil
}

type procStat struct {
	cpu    float64 // user + system seconds, all threads
	rssKiB int64
}

// stat reads the server's CPU time and RSS from /proc.
func (s *server) stat() procStat {
	var ps procStat
	pid := s.cmd.Process.Pid
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	// f[0] is field 3; utime and stime are fields 14 and 15, in clock
	// ticks of 1/100 s (USER_HZ).
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	ps.cpu = float64(ut+st) / 100
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			ps.rssKiB, _ = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return ps
}

// selfCPU is the load generator's own CPU time in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
