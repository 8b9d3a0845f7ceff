package redisbroker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/broker/brokertest"
	"github.com/hotline-rt/hotline/broker/redisbroker"
	"github.com/hotline-rt/hotline/internal/testredis"
)

// TestSentinelFailover: one master, one replica and three Sentinels; two
// nodes subscribe to a few channels while a third publishes to them. The
// master is killed (SIGKILL) and the Sentinels promote the replica.
// Publications during the switch fail (not published, or outcome
// unknown); every acknowledged one reaches both nodes, in order, or a gap
// is told; nothing jumps silently.
func TestSentinelFailover(t *testing.T) {
	s := testredis.StartSentinel(t)
	cfg := redisbroker.Config{
		SentinelAddrs:  s.Addrs(),
		SentinelMaster: testredis.SentinelMaster,
		Timeout:        time.Second,
		PingInterval:   500 * time.Millisecond,
	}
	ctx := context.Background()
	chs := []string{"s:a", "s:b", "s:c", "s:d"}
	var nodes []*brokertest.Node
	for range 2 {
		b, err := redisbroker.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close(ctx) })
		if b.Mode() != "sentinel" {
			t.Fatalf("mode %q", b.Mode())
		}
		n := &brokertest.Node{}
		if err := b.Start(n); err != nil {
			t.Fatal(err)
		}
		for _, ch := range chs {
			if err := b.Subscribe(ctx, ch); err != nil {
				t.Fatal(err)
			}
		}
		nodes = append(nodes, n)
	}
	pub, err := redisbroker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(ctx)
	opts := broker.PublishOptions{HistorySize: 10000}

	var mu sync.Mutex
	acked := map[string][]uint64{}
	var failed, unknown atomic.Int64
	var killedAt, recovered atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			for _, ch := range chs {
				started := time.Now().UnixNano()
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				pos, err := pub.Publish(pctx, ch, json.RawMessage(fmt.Sprint(i)), nil, opts)
				cancel()
				switch {
				case err == nil:
					mu.Lock()
					acked[ch] = append(acked[ch], pos.Offset)
					mu.Unlock()
					if k := killedAt.Load(); k != 0 && started > k && recovered.Load() == 0 {
						recovered.Store(time.Now().UnixNano())
					}
				case errors.Is(err, broker.ErrOutcomeUnknown):
					unknown.Add(1)
				default:
					failed.Add(1)
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	time.Sleep(500 * time.Millisecond)
	old := s.Master.Addr
	s.Master.Kill() // returns once the process is gone
	killedAt.Store(time.Now().UnixNano())
	deadline := time.Now().Add(30 * time.Second)
	for recovered.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	if recovered.Load() == 0 {
		t.Fatalf("no publication succeeded within 30 s of the kill (master now %q)", s.MasterAddr())
	}
	if now := s.MasterAddr(); now != s.Replica.Addr {
		t.Fatalf("master after failover %q, want the replica %s (was %s)", now, s.Replica.Addr, old)
	}
	total := 0
	for _, ch := range chs {
		total += len(acked[ch])
	}
	t.Logf("sentinel failover: first publication acknowledged %v after SIGKILL of the master; %d acknowledged, %d failed (not published), %d outcome unknown",
		time.Duration(recovered.Load()-killedAt.Load()).Round(10*time.Millisecond), total, failed.Load(), unknown.Load())
	for ni, n := range nodes {
		gaps := 0
		for _, ch := range chs {
			want := acked[ch]
			last := want[len(want)-1]
			brokertest.Eventually(t, fmt.Sprintf("node %d gets %s up to %d", ni, ch, last), func() bool {
				got := n.Received(ch)
				return len(got) > 0 && got[len(got)-1].Offset >= last
			})
			got := n.Received(ch)
			if silent, dups := continuity(got, n.GapList(ch)); silent != 0 || dups != 0 {
				t.Errorf("node %d %s: %d silent jumps, %d duplicates: %s gaps %+v", ni, ch, silent, dups, brokertest.Offs(got), n.GapList(ch))
			}
			have := map[uint64]bool{}
			for _, p := range got {
				have[p.Offset] = true
			}
			missing := 0
			for _, o := range want {
				if !have[o] {
					missing++
				}
			}
			gaps += len(n.GapList(ch))
			if missing > 0 && len(n.GapList(ch)) == 0 {
				t.Errorf("node %d %s: %d acknowledged publications missing without a gap", ni, ch, missing)
			}
		}
		t.Logf("node %d: every acknowledged publication received or told (%d gap notices)", ni, gaps)
	}
}

// TestSentinelConformance runs the suite every broker passes through
// Sentinel (the master found by name).
func TestSentinelConformance(t *testing.T) {
	s := testredis.StartSentinel(t)
	var prefixes atomic.Int64
	var mu sync.Mutex
	prefixOf := map[broker.Broker]string{}
	rc := redis.NewClient(&redis.Options{Addr: s.Master.Addr})
	t.Cleanup(func() { _ = rc.Close() })
	brokertest.Run(t, func(t *testing.T) (broker.Broker, *brokertest.Node) {
		prefix := fmt.Sprintf("conformance%d:", prefixes.Add(1))
		b, err := redisbroker.New(redisbroker.Config{SentinelAddrs: s.Addrs(), SentinelMaster: testredis.SentinelMaster, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close(context.Background()) })
		n := &brokertest.Node{}
		if err := b.Start(n); err != nil {
			t.Fatal(err)
		}
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
