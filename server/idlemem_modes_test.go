//go:build linux

package server

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/push"
)

// TestIdleMemoryModes measures what an idle subscribed superchat client costs
// the server, in the default mode or the event-loop one. It runs only when
// asked, as it takes the machine for a while:
//
//	HOTLINE_IDLE_CLIENTS=19000 HOTLINE_IDLE_PROCS=2 HOTLINE_IDLE_MODE=eventloop \
//	    go test -run TestIdleMemoryModes -v -timeout 10m ./server
//
// The server runs in this process (so that the heap and stacks can be read
// after a GC); the clients run in HOTLINE_IDLE_PROCS processes of
// internal/idleclients, each under its own open-files limit. It reports,
// per client: the growth of this process's RSS, of the Go heap in use plus
// goroutine stacks after a GC, and of the kernel's TCP memory and slab
// (system-wide: both ends of each loopback connection, and whatever else
// runs on the machine meanwhile).
func TestIdleMemoryModes(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("HOTLINE_IDLE_CLIENTS"))
	if n <= 0 {
		t.Skip("set HOTLINE_IDLE_CLIENTS (and HOTLINE_IDLE_PROCS, HOTLINE_IDLE_MODE=eventloop|default)")
	}
	procs, _ := strconv.Atoi(os.Getenv("HOTLINE_IDLE_PROCS"))
	procs = max(procs, 1)
	eventLoop := os.Getenv("HOTLINE_IDLE_MODE") == "eventloop"
	if os.Getenv("HOTLINE_IDLE_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 1
	}

	bin := filepath.Join(t.TempDir(), "idleclients")
	if out, err := exec.Command("go", "build", "-o", bin, "../internal/idleclients").CombinedOutput(); err != nil {
		t.Fatalf("build idleclients: %v\n%s", err, out)
	}

	srv, err := New(Config{
		EventLoop:       eventLoop,
		MaxUserSessions: -1,
		StatsInterval:   -1,
		KeepAlive:       30 * time.Second,
		// One channel with history (recovery), without presence and
		// join/leave events: a join event to every subscriber of the
		// channel per connect would make the connect storm quadratic.
		Namespaces: map[string]push.NamespaceOptions{
			"idle": {HistorySize: 100, HistoryTTL: 10 * time.Minute, HistoryBytes: 1 << 20},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer()
	go hs.Serve(ln)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
		srv.Shutdown(ctx)
	}()

	before := measure()
	start := time.Now()
	var clients []*exec.Cmd
	defer func() {
		for _, c := range clients {
			c.Process.Kill()
			c.Wait()
		}
	}()
	ready := make(chan string, procs)
	for i := range procs {
		per := n / procs
		if i == procs-1 {
			per = n - per*(procs-1)
		}
		cmd := exec.Command(bin, "-addr", ln.Addr().String(), "-n", strconv.Itoa(per), "-channel", "idle:room")
		cmd.Stderr = os.Stderr
		stdin, _ := cmd.StdinPipe()
		_ = stdin // held open: the clients stay until killed
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, cmd)
		go func() {
			line, _ := bufio.NewReader(out).ReadString('\n')
			ready <- strings.TrimSpace(line)
		}()
	}
	for range procs {
		select {
		case line := <-ready:
			t.Logf("clients: %s", line)
		case <-time.After(5 * time.Minute):
			t.Fatal("clients not ready in 5 minutes")
		}
	}
	connected := time.Since(start)
	sessions := srv.Engine().Stats().Sessions
	time.Sleep(2 * time.Second)
	after := measure()
	if path := os.Getenv("HOTLINE_IDLE_HEAPPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
	mode := "default"
	if eventLoop {
		mode = "event-loop"
	}
	per := func(a, b int64) float64 { return float64(a-b) / float64(sessions) }
	t.Logf("mode %s: %d sessions, connected in %v, %d goroutines", mode, sessions, connected.Round(time.Millisecond), runtime.NumGoroutine())
	t.Logf("per client: RSS %.0f B, heap+stacks after GC %.0f B (heap %.0f, stacks %.0f)",
		per(after.rss, before.rss), per(after.heap+after.stack, before.heap+before.stack),
		per(after.heap, before.heap), per(after.stack, before.stack))
	t.Logf("kernel, per connection (both ends, system-wide): TCP mem %.0f B, slab %.0f B",
		per(after.tcpMem, before.tcpMem)/2, per(after.slab, before.slab)/2)
	fmt.Printf("IDLE mode=%s clients=%d rss_per=%.0f heapstack_per=%.0f heap_per=%.0f stack_per=%.0f tcpmem_per_conn=%.0f slab_per_conn=%.0f\n",
		mode, sessions, per(after.rss, before.rss), per(after.heap+after.stack, before.heap+before.stack),
		per(after.heap, before.heap), per(after.stack, before.stack),
		per(after.tcpMem, before.tcpMem)/2, per(after.slab, before.slab)/2)
}

type memSample struct{ rss, heap, stack, tcpMem, slab int64 }

func measure() memSample {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := memSample{heap: int64(ms.HeapAlloc), stack: int64(ms.StackInuse)}
	s.rss = procField("/proc/self/status", "VmRSS:") * 1024
	s.slab = procField("/proc/meminfo", "Slab:") * 1024
	if b, err := os.ReadFile("/proc/net/sockstat"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == "TCP:" {
				for i := 0; i+1 < len(f); i++ {
					if f[i] == "mem" {
						pages, _ := strconv.ParseInt(f[i+1], 10, 64)
						s.tcpMem = pages * int64(os.Getpagesize())
					}
				}
			}
		}
	}
	return s
}

func procField(path, name string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name) {
			f := strings.Fields(line)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				return v
			}
		}
	}
	return 0
}
