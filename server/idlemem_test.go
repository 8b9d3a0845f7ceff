package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestIdleMemory measures what an idle subscribed superchat client costs
// the server: N clients connect over WebSocket (offering
// permessage-deflate, as browsers do), subscribe to one channel and stay
// silent; the server runs with `hotline serve`'s defaults (compression,
// 30 s keepalive, text log at warn). The clients live in a child process (this test binary
// again, TestIdleMemoryClients), so that the server's process holds the
// server side only. It reports, per client, the growth of the Go heap
// and stacks in use after a GC, and of the process's RSS.
//
// It runs only when HOTLINE_IDLE_N is set (the number of clients; each
// costs one file descriptor here and one in the child):
//
//	HOTLINE_IDLE_N=5000 go test -run '^TestIdleMemory$' -v ./server/
//
// HOTLINE_IDLE_PROFILE=file writes a heap profile of the idle server,
// every allocation sampled (go tool pprof -sample_index=inuse_space).
// HOTLINE_IDLE_MAX=bytes fails the test above that many heap+stack bytes
// per client.
func TestIdleMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("HOTLINE_IDLE_N"))
	if n <= 0 {
		t.Skip("set HOTLINE_IDLE_N to the number of idle clients")
	}
	profile := os.Getenv("HOTLINE_IDLE_PROFILE")
	if profile != "" {
		runtime.MemProfileRate = 1
	}
	// As `hotline serve` logs: text, at warn.
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// HOTLINE_IDLE_KEEPALIVE (a duration) shortens the keepalive so that
	// pings and pongs pass before the measurement, as they do for a
	// client idle longer than 30 s; the clients answer pings.
	keepAlive := 30 * time.Second
	if d, err := time.ParseDuration(os.Getenv("HOTLINE_IDLE_KEEPALIVE")); err == nil && d > 0 {
		keepAlive = d
	}
	srv, err := New(Config{StatsInterval: -1, Compress: true, KeepAlive: keepAlive, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		hs.Close()
	}()

	before := idleSnapshot()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleMemoryClients$", "-test.v")
	cmd.Env = append(os.Environ(), "HOTLINE_IDLE_ADDR="+hs.Listener.Addr().String(), "HOTLINE_IDLE_CLIENTS="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close() // the child closes its connections and exits
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("client process: %v", err)
			}
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-done
			t.Error("client process did not exit in a minute: killed")
		}
	}()
	sc := bufio.NewScanner(stdout)
	ready := false
	for sc.Scan() {
		line := sc.Text()
		if line == "READY" {
			ready = true
			break
		}
		if strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "---") || strings.HasPrefix(line, "panic") || strings.Contains(line, "idlemem_test.go") {
			t.Log("client:", line)
		}
	}
	if !ready {
		t.Fatal("the client process ended before its clients were subscribed")
	}
	go io.Copy(io.Discard, stdout)
	deadline := time.Now().Add(time.Minute)
	for srv.websocket.Len() != n {
		if time.Now().After(deadline) {
			t.Fatalf("serving %d connections, want %d", srv.websocket.Len(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second) // let the writers go idle
	if keepAlive < 30*time.Second {
		time.Sleep(3 * keepAlive) // a ping, its pong, maybe another
	}
	after := idleSnapshot()

	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	heap, stack := per(after.heap, before.heap), per(after.stack, before.stack)
	t.Logf("%d idle subscribed superchat clients, per client: heap %.0f B + stacks %.0f B = %.0f B (%.2f KiB); RSS %.0f B; goroutines %.2f",
		n, heap, stack, heap+stack, (heap+stack)/1024, per(after.rss, before.rss), per(uint64(after.goroutines), uint64(before.goroutines)))
	if max, _ := strconv.ParseFloat(os.Getenv("HOTLINE_IDLE_MAX"), 64); max > 0 && heap+stack > max {
		t.Errorf("%.0f bytes per idle client, want at most %.0f", heap+stack, max)
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
}

type idleMem struct {
	heap, stack, rss uint64
	goroutines       int
}

func idleSnapshot() idleMem {
	// Each GC halves the stacks that use less than a quarter of
	// theirs: a few let them settle.
	for range 4 {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return idleMem{heap: ms.HeapInuse, stack: ms.StackInuse, rss: vmRSS(), goroutines: runtime.NumGoroutine()}
}

// vmRSS returns the process's resident set in bytes, or 0 off Linux.
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestIdleMemoryClients is TestIdleMemory's client process: it opens
// HOTLINE_IDLE_CLIENTS connections to HOTLINE_IDLE_ADDR, subscribes each
// to bench:idle, prints READY and holds them until stdin closes.
func TestIdleMemoryClients(t *testing.T) {
	addr := os.Getenv("HOTLINE_IDLE_ADDR")
	n, _ := strconv.Atoi(os.Getenv("HOTLINE_IDLE_CLIENTS"))
	if addr == "" || n <= 0 {
		t.Skip("the client process of TestIdleMemory")
	}
	conns := dialMany(t, n, func(ctx context.Context) (net.Conn, error) {
		return idleClient(ctx, addr)
	})
	fmt.Println("READY")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}

// idleClient connects as a browser would (superchat, permessage-deflate
// offered), subscribes to bench:idle and reads the reply.
func idleClient(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	fmt.Fprintf(nc, "GET /chat HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Protocol: superchat\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n", addr)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	fail := func(err error) (net.Conn, error) {
		nc.Close()
		return nil, err
	}
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fail(fmt.Errorf("handshake: %s", resp.Status))
	}
	// One masked text frame (key 0, so the payload goes as is).
	sub := []byte(`{"id":1,"op":"subscribe","channel":"bench:idle"}`)
	frame := append([]byte{0x81, 0x80 | byte(len(sub)), 0, 0, 0, 0}, sub...)
	if _, err := nc.Write(frame); err != nil {
		return fail(err)
	}
	// The reply: a frame with a 7-bit length, holding "id":1 (after
	// pings, on a busy machine with a short keepalive: answered).
	var h [2]byte
	var p []byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return fail(err)
		}
		if h[1]&0x7f > 125 {
			return fail(fmt.Errorf("reply frame header % x", h))
		}
		p = make([]byte, h[1]&0x7f)
		if _, err := io.ReadFull(br, p); err != nil {
			return fail(err)
		}
		if h[0]&0x0f != 0x9 {
			break
		}
		nc.Write(append([]byte{0x8a, 0x80 | byte(len(p)), 0, 0, 0, 0}, p...))
	}
	if h[0]&0x40 == 0 && !bytes.Contains(p, []byte(`"id":1`)) {
		return fail(fmt.Errorf("reply %q", p))
	}
	nc.SetDeadline(time.Time{})
	go answerPings(nc, br) // at once: the keepalive may be shorter than the dialing of all
	return nc, nil
}

// answerPings reads the server's frames (short, unmasked: pings and pushes)
// and answers each ping with a pong.
func answerPings(c net.Conn, r io.Reader) {
	var h [2]byte
	p := make([]byte, 125)
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return
		}
		n := int(h[1] & 0x7f)
		if n > 125 {
			return
		}
		if _, err := io.ReadFull(r, p[:n]); err != nil {
			return
		}
		if h[0]&0x0f == 0x9 { // ping: a masked pong (key 0) with its payload
			c.Write(append([]byte{0x8a, 0x80 | byte(n), 0, 0, 0, 0}, p[:n]...))
		}
	}
}
