package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/push"
)

func TestParseNamespace(t *testing.T) {
	for _, tc := range []struct {
		in   string
		name string
		want push.NamespaceOptions
		err  bool
	}{
		{in: "news:history=50,ttl=1h,presence,joinleave", name: "news", want: push.NamespaceOptions{HistorySize: 50, HistoryTTL: time.Hour, HistoryBytes: 1 << 20, Presence: true, JoinLeave: true}},
		{in: "chat:history=10,publish,presence=false", name: "chat", want: push.NamespaceOptions{HistorySize: 10, HistoryBytes: 1 << 20, ClientPublish: true}},
		{in: "news:history=10,bytes=65536", name: "news", want: push.NamespaceOptions{HistorySize: 10, HistoryBytes: 65536}},
		{in: "news:history=10,bytes=512KiB", name: "news", want: push.NamespaceOptions{HistorySize: 10, HistoryBytes: 512 << 10}},
		{in: "news:bytes=2MiB,history=10", name: "news", want: push.NamespaceOptions{HistorySize: 10, HistoryBytes: 2 << 20}},
		{in: "news:history=10,bytes=0", name: "news", want: push.NamespaceOptions{HistorySize: 10}},
		{in: "quiet:", name: "quiet"},
		{in: "news:bytes=-1", err: true},
		{in: "news:bytes=1GB", err: true},
		{in: "news:bytes", err: true},
		{in: "news:histroy=5", err: true},
		{in: "news:history=-1", err: true},
		{in: "news:ttl=soon", err: true},
		{in: "news:presence=maybe", err: true},
		{in: "bad name:presence", err: true},
	} {
		name, got, err := parseNamespace(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("%q: no error", tc.in)
			}
			continue
		}
		if err != nil || name != tc.name || got != tc.want {
			t.Errorf("%q = %q %+v %v, want %q %+v", tc.in, name, got, err, tc.name, tc.want)
		}
	}
}

// The real binary: -namespace bytes= bounds what history keeps, and the
// history API pages with limit.
func TestNamespaceHistoryBytes(t *testing.T) {
	_, addr, logs := startServe(t, "-api-key", "k", "-namespace", "news:history=100,bytes=1KiB")
	api := func(method, path, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "apikey k")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 64<<10)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, []byte(b.String())
	}
	data := strings.Repeat("x", 300)
	for i := range 10 {
		if status, body := api("POST", "/api/publish", fmt.Sprintf(`{"channel":"news:a","data":"%d%s"}`, i, data)); status != 200 {
			t.Fatalf("publish: %d %s\n%s", status, body, logs)
		}
	}
	var page struct {
		Publications []struct {
			Offset uint64 `json:"offset"`
		} `json:"publications"`
		More bool `json:"more"`
	}
	status, body := api("GET", "/api/history?channel=news:a", "")
	if err := json.Unmarshal(body, &page); status != 200 || err != nil {
		t.Fatalf("history: %d %s %v", status, body, err)
	}
	// 1 KiB holds three of the ~300-byte publications: the newest.
	if n := len(page.Publications); n == 0 || n > 3 || page.Publications[n-1].Offset != 10 {
		t.Fatalf("kept %d publications: %s", n, body)
	}
	status, body = api("GET", "/api/history?channel=news:a&limit=1", "")
	page.Publications, page.More = nil, false
	if err := json.Unmarshal(body, &page); status != 200 || err != nil || len(page.Publications) != 1 || !page.More {
		t.Fatalf("limit 1: %d %s %v", status, body, err)
	}
}
