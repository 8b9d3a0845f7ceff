package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/ws"
)

// statusOf sends one raw request to addr and returns the status code.
func statusOf(t *testing.T, addr, req string) int {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(nc, req) // the server may answer before reading it all
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

const handshake = "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n"

// TestServeLimitFlags drives the limits through the flags of the real
// binary: -idle-timeout, -max-header-bytes, -max-conns counting /echo,
// and -diagnostics with its default under JWT.
func TestServeLimitFlags(t *testing.T) {
	_, addr, logs := startServe(t, "-idle-timeout", "200ms", "-max-header-bytes", "4096", "-max-conns", "2")

	// An idle keep-alive connection is closed.
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(nc, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle connection still open after -idle-timeout 200ms: %v", err)
	}

	// Headers past -max-header-bytes: 431.
	big := strings.Replace(handshake, "%s", "/echo", 1) + "X-Pad: " + strings.Repeat("a", 16<<10) + "\r\n\r\n"
	if code := statusOf(t, addr, big); code != 431 {
		t.Fatalf("16 KiB of headers: %d, want 431", code)
	}

	// Two echo connections fill -max-conns 2; the third and a session
	// get 503.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for range 2 {
		c, _, err := ws.Dial(ctx, "ws://"+addr+"/echo", nil)
		if err != nil {
			t.Fatalf("echo: %v\n%s", err, logs.String())
		}
		defer c.CloseNow()
	}
	for _, path := range []string{"/echo", "/chat"} {
		_, _, err := ws.Dial(ctx, "ws://"+addr+path, nil)
		var he *ws.HandshakeError
		if !errors.As(err, &he) || he.StatusCode != 503 {
			t.Fatalf("%s past -max-conns: %v, want 503", path, err)
		}
	}

	// With a JWT key the diagnostics are off unless asked for.
	_, jwtAddr, _ := startServe(t, "-jwt-secret", "0123456789abcdef0123456789abcdef")
	if code := statusOf(t, jwtAddr, strings.Replace(handshake, "%s", "/echo", 1)+"\r\n"); code != 404 {
		t.Fatalf("/echo under JWT by default: %d, want 404", code)
	}
	_, onAddr, _ := startServe(t, "-jwt-secret", "0123456789abcdef0123456789abcdef", "-diagnostics")
	c, _, err := ws.Dial(ctx, "ws://"+onAddr+"/echo", nil)
	if err != nil {
		t.Fatalf("/echo with -diagnostics: %v", err)
	}
	c.CloseNow()
}
