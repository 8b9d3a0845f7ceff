//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs is every process the coordinator started. stopAll stops them by
// PID, in reverse order of start (clients, then nodes, then Redis): a
// SIGTERM, then a SIGKILL for one that has not ended in time.
type procs struct {
	mu   sync.Mutex
	list []*proc
	// setsid starts each process in a session of its own. Where the
	// kernel schedules by autogroup (one per session), the harness's
	// processes then each weigh as much as another user's session
	// instead of sharing one group's slice of the CPU.
	setsid bool
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been waited for
	err  error         // Wait's result, valid after done
}

func (ps *procs) start(name string, cmd *exec.Cmd) (*proc, error) {
	// SIGTERM if the coordinator dies without stopping it (SIGKILL,
	// a crash): nothing outlives the run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setsid: ps.setsid}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends p by its PID: SIGTERM, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	p.cmd.Process.Kill()
	<-p.done
}

func (ps *procs) stopAll() {
	ps.mu.Lock()
	list := ps.list
	ps.list = nil
	ps.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		list[i].stop(5 * time.Second)
	}
}

// usage is what /proc says of one process.
type usage struct {
	CPU   float64 // user + system seconds so far
	Sys   float64 // of which system (kernel) seconds
	Wait  float64 // seconds its live threads waited for a CPU while runnable
	Runs  int64   // times its live threads were put on a CPU (a thread wake-up each, mostly)
	RSS   int64   // resident bytes now
	HWM   int64   // peak resident bytes
	Valid bool
}

func procUsage(pid int) usage {
	var u usage
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: utime and stime are fields 14 and 15 of the whole line.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return u
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return u
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	u.CPU = (ut + st) / 100 // USER_HZ is 100 on Linux
	u.Sys = st / 100
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSuffix(strings.TrimSpace(v), " kB")
		switch k {
		case "VmRSS":
			n, _ := strconv.ParseInt(v, 10, 64)
			u.RSS = n << 10
		case "VmHWM":
			n, _ := strconv.ParseInt(v, 10, 64)
			u.HWM = n << 10
		}
	}
	u.Wait, u.Runs = runDelay(pid)
	u.Valid = true
	return u
}

// runDelay sums over the threads of pid the time spent runnable but
// waiting for a CPU (schedstat's second field, ns): on a shared machine it
// says how much of a latency was the scheduler's, not the program's; and
// the times they were put on a CPU (the third field).
func runDelay(pid int) (wait float64, runs int64) {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var ns int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			ns += n
			n, _ = strconv.ParseInt(f[2], 10, 64)
			runs += n
		}
	}
	return float64(ns) / 1e9, runs
}

func selfCPU() float64 { return procUsage(os.Getpid()).CPU }

// freePort returns a TCP port free on ip now (another process may take it
// before it is used: the start then fails plainly).
func freePort(ip string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func noProxy(*http.Request) (*url.URL, error) { return nil, nil }

// waitRedis waits until redis-server at addr answers PING.
func waitRedis(addr string, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("redis-server exited: %v", p.err)
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			_, err = c.Write([]byte("PING\r\n"))
			var b [7]byte
			if err == nil {
				_, err = io.ReadFull(c, b[:])
			}
			c.Close()
			if err == nil && string(b[:]) == "+PONG\r\n" {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("redis-server did not answer PING in time")
}

// waitHealthy waits until a node answers GET /healthz with 200.
func waitHealthy(base string, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	cl := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: noProxy}}
	defer cl.CloseIdleConnections()
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		}
		resp, err := cl.Get(base + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s: /healthz not 200 in time", p.name)
}

// machineCPU returns the CPU seconds the whole machine has spent busy
// (every process, ours and others'), from /proc/stat.
func machineCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already in user
			break
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	return busy / 100
}

// autogroup says whether the kernel schedules by session (autogroup).
func autogroup() bool {
	b, err := os.ReadFile("/proc/sys/kernel/sched_autogroup_enabled")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}
