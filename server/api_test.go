package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/push"
)

// failingBroker fails Publish with err while err is set.
type failingBroker struct {
	*broker.Memory
	mu  sync.Mutex
	err error
}

func (b *failingBroker) Publish(ctx context.Context, channel string, data json.RawMessage, info *broker.ClientInfo, opts broker.PublishOptions) (broker.Position, error) {
	b.mu.Lock()
	err := b.err
	b.mu.Unlock()
	if err != nil {
		return broker.Position{}, err
	}
	return b.Memory.Publish(ctx, channel, data, info, opts)
}

func (b *failingBroker) fail(err error) {
	b.mu.Lock()
	b.err = err
	b.mu.Unlock()
}

type apiClient struct {
	t    *testing.T
	base string
}

func (a apiClient) do(method, path, body string, header ...string) (int, http.Header, []byte) {
	a.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, a.base+path, r)
	req.Header.Set("Authorization", "apikey sesame")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

type apiErr struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func TestAPIPublishOutcome(t *testing.T) {
	fb := &failingBroker{Memory: broker.NewMemory()}
	_, base := start(t, Config{APIKey: "sesame", Broker: fb})
	api := apiClient{t, base}

	fb.fail(errors.New("connection refused"))
	status, h, body := api.do("POST", "/api/publish", `{"channel":"chat:x","data":1}`)
	e := decode[apiErr](t, body)
	if status != 503 || e.Code != "not_published" || !strings.HasPrefix(e.Error, "not published: ") || h.Get("Retry-After") == "" {
		t.Fatalf("not published: %d %s", status, body)
	}
	fb.fail(fmt.Errorf("%w: i/o timeout", broker.ErrOutcomeUnknown))
	status, _, body = api.do("POST", "/api/publish", `{"channel":"chat:x","data":1,"idempotency_key":"k"}`)
	if e := decode[apiErr](t, body); status != 504 || e.Code != "outcome_unknown" {
		t.Fatalf("outcome unknown: %d %s", status, body)
	}
	fb.fail(nil)

	// The retry after an unknown outcome, with the key in the body or
	// the header: one publication.
	status, _, body = api.do("POST", "/api/publish", `{"channel":"chat:x","data":1,"idempotency_key":"k"}`)
	first := decode[broker.Position](t, body)
	if status != 200 || first.Offset != 1 {
		t.Fatalf("publish: %d %s", status, body)
	}
	status, _, body = api.do("POST", "/api/publish", `{"channel":"chat:x","data":1}`, "Idempotency-Key", "k")
	if again := decode[broker.Position](t, body); status != 200 || again != first {
		t.Fatalf("retry with the header: %d %s, first %+v", status, body, first)
	}
	status, _, body = api.do("POST", "/api/publish", `{"channel":"chat:x","data":1,"idempotency_key":"k"}`, "Idempotency-Key", "other")
	if e := decode[apiErr](t, body); status != 400 || e.Code != "bad_request" {
		t.Fatalf("two keys: %d %s", status, body)
	}
	status, _, body = api.do("POST", "/api/publish", `{"channel":"chat:x","data":1,"idempotency_key":"`+strings.Repeat("k", push.MaxIdempotencyKey+1)+`"}`)
	if e := decode[apiErr](t, body); status != 400 || e.Code != "bad_request" {
		t.Fatalf("long key: %d %s", status, body)
	}
	status, _, body = api.do("POST", "/api/publish", `{"channel":"chat:x","data":2}`)
	if p := decode[broker.Position](t, body); status != 200 || p.Offset != 2 {
		t.Fatalf("next: %d %s", status, body)
	}
}

func TestAPIHistoryPaged(t *testing.T) {
	srv, base := start(t, Config{APIKey: "sesame", QueueBytes: 64 << 10, Namespaces: map[string]push.NamespaceOptions{
		"news": {HistorySize: 1000},
	}})
	api := apiClient{t, base}
	big := `"` + strings.Repeat("x", 6<<10) + `"`
	for i := range 150 {
		data := fmt.Sprint(i + 1)
		if i >= 140 {
			data = big
		}
		if _, err := srv.Engine().Publish(context.Background(), push.PublishRequest{Channel: "news:x", Data: json.RawMessage(data)}); err != nil {
			t.Fatal(err)
		}
	}
	type page struct {
		Top          broker.Position `json:"top"`
		Publications []struct {
			Offset uint64          `json:"offset"`
			Data   json.RawMessage `json:"data"`
		} `json:"publications"`
		More      bool   `json:"more"`
		Recovered *bool  `json:"recovered"`
		Reason    string `json:"reason"`
	}
	status, _, body := api.do("GET", "/api/history?channel=news:x", "")
	p := decode[page](t, body)
	if status != 200 || len(p.Publications) != 100 || !p.More || p.Top.Offset != 150 {
		t.Fatalf("first page: %d, %d publications, more %v", status, len(p.Publications), p.More)
	}
	// Page on to the end; the last ten are big, so the byte budget (16
	// KiB) cuts those pages.
	var got []uint64
	path := "/api/history?channel=news:x&limit=1000"
	for range 100 {
		_, _, body := api.do("GET", path, "")
		p := decode[page](t, body)
		if len(body) > 16<<10+1024 {
			t.Fatalf("page of %d bytes", len(body))
		}
		for _, pub := range p.Publications {
			got = append(got, pub.Offset)
		}
		if !p.More {
			break
		}
		path = fmt.Sprintf("/api/history?channel=news:x&epoch=%s&offset=%d", p.Top.Epoch, p.Publications[len(p.Publications)-1].Offset)
	}
	if len(got) != 150 || got[0] != 1 || got[149] != 150 {
		t.Fatalf("paged %d publications: %v", len(got), got)
	}
	// Newest first: two of the 6 KiB ones fit the 16 KiB budget.
	status, _, body = api.do("GET", "/api/history?channel=news:x&limit=3&reverse=true", "")
	if p := decode[page](t, body); status != 200 || len(p.Publications) != 2 || p.Publications[0].Offset != 150 || !p.More {
		t.Fatalf("reverse: %d, %d publications, more %v", status, len(p.Publications), p.More)
	}
	status, _, body = api.do("GET", "/api/history?channel=news:x&limit=3&reverse=true&epoch="+p.Top.Epoch+"&offset=20", "")
	if p := decode[page](t, body); status != 200 || len(p.Publications) != 3 || p.Publications[0].Offset != 19 || !p.More {
		t.Fatalf("reverse before 20: %d %s", status, body)
	}
	status, _, body = api.do("GET", "/api/history?channel=news:x&epoch=nope&offset=3", "")
	if p := decode[page](t, body); status != 200 || p.Recovered == nil || *p.Recovered || p.Publications == nil {
		t.Fatalf("unknown epoch: %d %s", status, body)
	}
	for _, q := range []string{"limit=-1", "limit=x", "reverse=maybe", "epoch=e&offset=x"} {
		status, _, body := api.do("GET", "/api/history?channel=news:x&"+q, "")
		if e := decode[apiErr](t, body); status != 400 || e.Code != "bad_request" {
			t.Errorf("%s: %d %s", q, status, body)
		}
	}
}

func TestAPIPresenceBounded(t *testing.T) {
	ctx := context.Background()
	b := broker.NewMemory()
	_, base := start(t, Config{APIKey: "sesame", Broker: b, QueueBytes: 64 << 10})
	api := apiClient{t, base}
	for i := range 3000 {
		if err := b.AddPresence(ctx, "chat:big", fmt.Sprint("s", i), broker.ClientInfo{User: fmt.Sprintf("u%04d", i)}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	status, _, body := api.do("GET", "/api/presence?channel=chat:big", "")
	p := decode[push.PresencePage](t, body)
	if status != 200 || p.Total != 3000 || !p.Truncated || len(p.Clients) == 0 || len(body) > 16<<10+256 {
		t.Fatalf("presence: %d, total %d, %d clients, %d bytes", status, p.Total, len(p.Clients), len(body))
	}
	status, _, body = api.do("GET", "/api/presence?channel=chat:big&limit=5", "")
	if p := decode[push.PresencePage](t, body); status != 200 || len(p.Clients) != 5 || p.Clients[4].User != "u0004" || !p.Truncated {
		t.Fatalf("limit 5: %d %s", status, body)
	}
	status, _, body = api.do("GET", "/api/presence?channel=chat:empty", "")
	if p := decode[push.PresencePage](t, body); status != 200 || p.Clients == nil || p.Total != 0 || p.Truncated {
		t.Fatalf("empty: %d %s", status, body)
	}
	status, _, body = api.do("GET", "/api/presence?channel=chat:big&limit=x", "")
	if e := decode[apiErr](t, body); status != 400 || e.Code != "bad_request" {
		t.Fatalf("bad limit: %d %s", status, body)
	}
	status, _, body = api.do("GET", "/api/presence", "")
	if e := decode[apiErr](t, body); status != 400 || e.Error == "" {
		t.Fatalf("no channel: %d %s", status, body)
	}
}
