package ws

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMeasureH2 compares N WebSockets multiplexed on one HTTP/2
// connection with N WebSockets on N connections (TLS and plain TCP):
// the server's memory per WebSocket, the handshake time, and echo
// throughput. The server is a child process (this test binary), so that
// its memory is its own. Run it by hand:
//
//	HOTLINE_MEASURE_H2=1000 go test -run TestMeasureH2 -v -timeout 10m ./ws/
func TestMeasureH2(t *testing.T) {
	if os.Getenv("WS_MEASURE_SERVER") != "" {
		measureServer(os.Getenv("WS_MEASURE_SERVER") == "tls")
		return
	}
	n, _ := strconv.Atoi(os.Getenv("HOTLINE_MEASURE_H2"))
	if n <= 0 {
		t.Skip("set HOTLINE_MEASURE_H2=N to measure N WebSockets")
	}
	rounds := 20
	t.Logf("| %d WebSockets | server memory per WebSocket (heap + stacks, after GC) | server RSS per WebSocket | handshakes (all, 50 at a time) | handshake p50 / p99 | echo, 64 B, %d round trips each, all at once |", n, rounds)
	t.Logf("|---|---|---|---|---|---|")
	for _, mode := range []struct {
		name   string
		scheme string
		http2  HTTP2Mode
	}{
		{"wss, HTTP/2: one TCP connection", "tls", HTTP2Only},
		{"wss, HTTP/1.1: one TCP connection each", "tls", HTTP2Off},
		{"ws, HTTP/1.1: one TCP connection each", "plain", HTTP2Off},
	} {
		m := measureMode(t, mode.scheme, mode.http2, n, rounds)
		t.Logf("| %s | %.1f KiB | %.1f KiB | %v | %v / %v | %.0f messages/s |", mode.name, m.mem/1024, m.rss/1024,
			m.total.Round(time.Millisecond), m.p50.Round(10*time.Microsecond), m.p99.Round(10*time.Microsecond), m.echoRate)
	}
}

type measured struct {
	mem, rss        float64
	total, p50, p99 time.Duration
	echoRate        float64
}

type memReport struct {
	Heap, Stack, RSS uint64
	Goroutines       int
}

func measureMode(t *testing.T, scheme string, mode HTTP2Mode, n, rounds int) measured {
	cmd := exec.Command(os.Args[0], "-test.run=^TestMeasureH2$")
	cmd.Env = append(os.Environ(), "WS_MEASURE_SERVER="+scheme)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	br := bufio.NewReader(out)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSpace(line)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 30 * time.Second}
	mem := func() memReport {
		resp, err := hc.Get(base + "/mem")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m memReport
		json.NewDecoder(resp.Body).Decode(&m)
		return m
	}
	before := mem()
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/ws"
	opts := &DialOptions{TLSConfig: &tls.Config{InsecureSkipVerify: true}, HTTP2: mode}
	ctx := context.Background()
	conns := make([]*Conn, n)
	times := make([]time.Duration, n)
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	var failed sync.Once
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t0 := time.Now()
			c, _, err := Dial(ctx, wsURL, opts)
			times[i] = time.Since(t0)
			if err != nil {
				failed.Do(func() { t.Errorf("dial %d: %v", i, err) })
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	total := time.Since(start)
	if t.Failed() {
		t.FailNow()
	}
	after := mem()
	slices.Sort(times)

	msg := make([]byte, 64)
	start = time.Now()
	for _, c := range conns {
		wg.Go(func() {
			for range rounds {
				if c.WriteMessage(ctx, MessageBinary, msg) != nil {
					return
				}
				if _, _, err := c.ReadMessage(ctx, nil); err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	echo := time.Since(start)
	for _, c := range conns {
		wg.Go(func() { c.Close(StatusNormalClosure, "") })
	}
	wg.Wait()
	return measured{
		mem:      float64(after.Heap+after.Stack-before.Heap-before.Stack) / float64(n),
		rss:      float64(after.RSS-before.RSS) / float64(n),
		total:    total,
		p50:      times[n/2],
		p99:      times[n*99/100],
		echoRate: float64(n*rounds) / echo.Seconds(),
	}
}

// measureServer is the child: an echo server (TLS with HTTP/2, or plain)
// that prints its URL and reports its memory at /mem.
func measureServer(useTLS bool) {
	mux := http.NewServeMux()
	mux.Handle("/ws", echoHandler(nil))
	mux.HandleFunc("/mem", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		json.NewEncoder(w).Encode(memReport{Heap: ms.HeapInuse, Stack: ms.StackInuse, RSS: rss(), Goroutines: runtime.NumGoroutine()})
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 100000}
	if useTLS {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv.Start()
	}
	fmt.Println(srv.URL)
	select {}
}

// rss is the process's resident set size, from /proc (Linux), in bytes.
func rss() uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
