package push

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/broker/redisbroker"
	"github.com/hotline-rt/hotline/internal/testredis"
)

func redisEngine(t *testing.T, addr string, cfg Config) *Engine {
	t.Helper()
	b, err := redisbroker.New(redisbroker.Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cfg.Broker = b
	return newEngine(t, cfg)
}

// With the Redis broker and two nodes: history pages (count, bytes, both
// directions) and a publish retried on the other node with the same key
// publishes once.
func TestPagingAndIdempotencyRedis(t *testing.T) {
	addr := testredis.Start(t)
	ns := map[string]NamespaceOptions{"news": {HistorySize: 1000}, "chat": ChatNamespace}
	a := redisEngine(t, addr, Config{Namespaces: ns, QueueBytes: 64 << 10})
	b := redisEngine(t, addr, Config{Namespaces: ns, QueueBytes: 64 << 10})
	ctx := context.Background()

	for i := range 230 {
		data := fmt.Sprint(i + 1)
		if i >= 220 {
			data = `"` + strings.Repeat("z", 6<<10) + `"`
		}
		if _, err := a.Publish(ctx, PublishRequest{Channel: "news:x", Data: json.RawMessage(data)}); err != nil {
			t.Fatal(err)
		}
	}
	c := connect(t, b, ProtocolSuperchat, "reader")
	got, pages := readAll(t, c, "news:x", false, -1)
	wantOffsets(t, got, 1, 230)
	if pages < 4 {
		t.Fatalf("%d pages", pages)
	}
	got, _ = readAll(t, c, "news:x", true, -1)
	wantOffsets(t, got, 230, 1)
	if c.s.Err() != nil {
		t.Fatal(c.s.Err())
	}

	first, err := a.Publish(ctx, PublishRequest{Channel: "chat:k", Data: json.RawMessage(`1`), IdempotencyKey: "retry-me"})
	if err != nil {
		t.Fatal(err)
	}
	p := c.request(`{"id":99,"op":"publish","channel":"chat:k","data":1,"idempotency_key":"retry-me"}`)
	if again := result[broker.Position](t, p); again != first {
		t.Fatalf("retry on the other node: %+v, first %+v", again, first)
	}
	h := result[historyPage](t, c.request(`{"id":100,"op":"history","channel":"chat:k"}`))
	if len(h.Publications) != 1 || h.Offset != first.Offset {
		t.Fatalf("history after the retry: %+v", h)
	}
}
