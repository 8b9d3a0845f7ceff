package redisbroker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/broker/redisbroker"
	"github.com/hotline-rt/hotline/internal/testredis"
)

// TestMinReplicas: with MinReplicas 1 a publication is acknowledged once
// the replica has it; with the replica gone, the publish fails with
// ErrOutcomeUnknown (it exists on the master, but a failover could lose
// it), which the API answers with 504.
func TestMinReplicas(t *testing.T) {
	master, replica := testredis.StartReplicated(t)
	ctx := context.Background()
	b, err := redisbroker.New(redisbroker.Config{Addr: master.Addr, MinReplicas: 1, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	opts := broker.PublishOptions{HistorySize: 10}
	pos, err := b.Publish(ctx, "r", json.RawMessage(`1`), nil, opts)
	if err != nil || pos.Offset != 1 {
		t.Fatalf("with the replica: %+v %v", pos, err)
	}
	replica.Kill()
	_, err = b.Publish(ctx, "r", json.RawMessage(`2`), nil, opts)
	if !errors.Is(err, broker.ErrOutcomeUnknown) || !strings.Contains(err.Error(), "0 of 1 replicas") {
		t.Fatalf("without the replica: %v", err)
	}
	// It is there, on the master: outcome unknown, not "not published".
	res, err := b.History(ctx, "r", broker.HistoryRequest{Limit: -1})
	if err != nil || res.Top.Offset != 2 {
		t.Fatalf("history %+v %v", res, err)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestGoRedisLogsThroughSlog: what go-redis logs (here, failing to dial a
// server that went away) reaches the slog logger of Config.Logger.
func TestGoRedisLogsThroughSlog(t *testing.T) {
	srv := testredis.StartServer(t)
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	b, err := redisbroker.New(redisbroker.Config{Addr: srv.Addr, Logger: log, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	srv.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "component=go-redis") {
		if time.Now().After(deadline) {
			t.Fatalf("no go-redis line in the slog output: %q", buf.String())
		}
		_, _ = b.Publish(context.Background(), "x", json.RawMessage(`1`), nil, broker.PublishOptions{})
		time.Sleep(50 * time.Millisecond)
	}
}
