package server

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/superchat"
	"github.com/hotline-rt/hotline/web"
)

// TestWrongMethod405: an endpoint asked with a method it does not serve
// answers 405 with Allow, not the pages' 404.
func TestWrongMethod405(t *testing.T) {
	_, base := start(t, Config{Auth: auth.Anonymous(), Web: web.Handler(), APIKey: "k"})
	for _, tc := range []struct{ method, path, allow string }{
		{"POST", "/chat", "GET"},
		{"POST", "/chat/lobby", "GET"},
		{"POST", "/echo", "GET"},
		{"PUT", "/broadcast", "GET"},
		{"POST", "/healthz", "GET"},
		{"POST", "/api/history", "GET"},
		{"GET", "/api/publish", "POST"},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(resp.Header.Get("Allow"), tc.allow) {
			t.Errorf("%s %s: %d Allow %q, want 405 Allow %s", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), tc.allow)
		}
	}
	// The pages still answer, and a page that does not exist is 404.
	for path, want := range map[string]int{"/": 200, "/nope": 404} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// TestStatsFeedAccess: with tokens verified, stats:server is for the
// identities whose patterns name it; in development mode for everyone.
func TestStatsFeedAccess(t *testing.T) {
	subscribe := func(t *testing.T, base, tok string) *superchat.Error {
		c := dial(t, base, "/chat", "superchat", tok)
		c.send(`{"id":1,"op":"subscribe","channel":"stats:server"}`)
		return c.next(reply(1)).Error
	}
	_, base := start(t, Config{})
	for _, tc := range []struct {
		name     string
		patterns []string
		allowed  bool
	}{
		{"no patterns", nil, false},
		{"star", []string{"*"}, false},
		{"chat only", []string{"chat:*"}, false},
		{"named", []string{"chat:*", "stats:server"}, true},
		{"namespace", []string{"stats:*"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := auth.Sign(secret, auth.Identity{UserID: "u", Subscribe: tc.patterns}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			e := subscribe(t, base, tok)
			if tc.allowed != (e == nil) || (e != nil && e.Code != 403) {
				t.Fatalf("subscribe stats:server with %q: error %+v, want allowed=%v", tc.patterns, e, tc.allowed)
			}
		})
	}
	_, dev := start(t, Config{Auth: auth.Anonymous()})
	if e := subscribe(t, dev, ""); e != nil {
		t.Fatalf("development mode: %+v", e)
	}
}

// TestAllowedHosts: with AllowedHosts set, a request for another Host
// (what a DNS-rebinding page sends, with a matching Origin) gets 421.
func TestAllowedHosts(t *testing.T) {
	_, base := start(t, Config{Auth: auth.Anonymous(), AllowedHosts: []string{"127.0.0.1:*", "chat.example.com"}})
	for _, tc := range []struct {
		host string
		want int
	}{
		{"", 200}, // the URL's 127.0.0.1:port
		{"chat.example.com", 200},
		{"CHAT.example.com", 200},
		{"evil.example:8080", 421},
	} {
		req, _ := http.NewRequest("GET", base+"/healthz", nil)
		if tc.host != "" {
			req.Host = tc.host
			req.Header.Set("Origin", "http://"+tc.host)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Host %q: %d, want %d", tc.host, resp.StatusCode, tc.want)
		}
	}
	// A handshake is not exempt.
	c := rawConn(t, strings.TrimPrefix(base, "http://"))
	io.WriteString(c, "GET /echo HTTP/1.1\r\nHost: evil.example\r\nOrigin: http://evil.example\r\n"+
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("rebinding handshake: %d, want 421", resp.StatusCode)
	}
}

// TestLimitMetrics: the gauges of the limits this package adds are
// exported.
func TestLimitMetrics(t *testing.T) {
	_, base := start(t, Config{})
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"hotline_diagnostic_connections 0", "hotline_polling_ended_sessions 0"} {
		if !strings.Contains(string(b), name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
}
