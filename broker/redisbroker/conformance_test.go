package redisbroker_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/broker/brokertest"
	"github.com/hotline-rt/hotline/internal/testredis"
)

func TestRedisConformance(t *testing.T) {
	addr := testredis.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rc.Close() })
	var prefixes atomic.Int64 // one key space per broker: each starts empty
	var mu sync.Mutex
	prefixOf := map[broker.Broker]string{}
	brokertest.Run(t, func(t *testing.T) (broker.Broker, *brokertest.Node) {
		prefix := fmt.Sprintf("conformance%d:", prefixes.Add(1))
		b, n := newNodePrefix(t, addr, prefix)
		mu.Lock()
		prefixOf[b] = prefix
		mu.Unlock()
		return b, n
	}, func(t *testing.T, b broker.Broker) int {
		mu.Lock()
		prefix := prefixOf[b]
		mu.Unlock()
		keys, err := rc.Keys(context.Background(), prefix+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	})
}
