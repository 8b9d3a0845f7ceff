package redisbroker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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

func clusterNode(t *testing.T, cfg redisbroker.Config) (*redisbroker.Broker, *brokertest.Node) {
	t.Helper()
	b, err := redisbroker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	if b.Mode() != "cluster" {
		t.Fatalf("mode %q, want cluster", b.Mode())
	}
	n := &brokertest.Node{}
	if err := b.Start(n); err != nil {
		t.Fatal(err)
	}
	return b, n
}

// TestClusterConformance runs the suite every broker passes against a
// 3-master Redis Cluster, found from one seed address.
func TestClusterConformance(t *testing.T) {
	c := testredis.StartCluster(t, 3, 0)
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = rc.Close() })
	var prefixes atomic.Int64
	var mu sync.Mutex
	prefixOf := map[broker.Broker]string{}
	brokertest.Run(t, func(t *testing.T) (broker.Broker, *brokertest.Node) {
		prefix := fmt.Sprintf("conformance%d:", prefixes.Add(1))
		b, n := clusterNode(t, redisbroker.Config{Addr: c.Masters[1].Addr, Prefix: prefix})
		mu.Lock()
		prefixOf[b] = prefix
		mu.Unlock()
		return b, n
	}, func(t *testing.T, b broker.Broker) int {
		mu.Lock()
		prefix := prefixOf[b]
		mu.Unlock()
		var n atomic.Int64
		err := rc.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
			keys, err := m.Keys(ctx, prefix+"*").Result()
			n.Add(int64(len(keys)))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return int(n.Load())
	})
}

// clusterChannels returns n channel names and checks that they are spread
// over every master of the cluster.
func clusterChannels(t *testing.T, c *testredis.Cluster, n int) []string {
	t.Helper()
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer rc.Close()
	owners := map[string]int{}
	var chs []string
	for i := range n {
		ch := fmt.Sprintf("room:%d", i)
		m, err := rc.MasterForKey(context.Background(), "hotline:{"+ch+"}:meta")
		if err != nil {
			t.Fatal(err)
		}
		owners[m.Options().Addr]++
		chs = append(chs, ch)
	}
	if len(owners) != len(c.Masters) {
		t.Fatalf("channels on %d masters, want %d: %v", len(owners), len(c.Masters), owners)
	}
	return chs
}

// TestClusterTwoNodes: two nodes on a 3-master cluster, subscribed to 30
// channels spread over every master, both publishing: each node gets every
// publication of every channel once, in order, with no gap.
func TestClusterTwoNodes(t *testing.T) {
	c := testredis.StartCluster(t, 3, 0)
	chs := clusterChannels(t, c, 30)
	a, na := clusterNode(t, redisbroker.Config{Addrs: c.Addrs()})
	b, nb := clusterNode(t, redisbroker.Config{Addr: c.Masters[2].Addr})
	ctx := context.Background()
	for _, ch := range chs {
		for _, br := range []broker.Broker{a, b} {
			if err := br.Subscribe(ctx, ch); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Sharded Pub/Sub: each channel is subscribed on its owner only, so
	// a publication travels through that shard alone.
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer rc.Close()
	for _, ch := range chs {
		owner, err := rc.MasterForKey(ctx, "hotline:{"+ch+"}:meta")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range c.Masters {
			out := c.Cmd(m.Addr, "PUBSUB", "SHARDNUMSUB", "hotline:{"+ch+"}:pub")
			subs := strings.Fields(out)
			onOwner := m.Addr == owner.Options().Addr
			if len(subs) != 2 || (onOwner && subs[1] != "2") || (!onOwner && subs[1] != "0") {
				t.Fatalf("%s on %s (owner %v): PUBSUB SHARDNUMSUB %q", ch, m.Addr, onOwner, out)
			}
		}
	}
	const per = 20
	for i := range per {
		for _, ch := range chs {
			br := a
			if i%2 == 1 {
				br = b
			}
			if _, err := br.Publish(ctx, ch, json.RawMessage(fmt.Sprint(i)), nil, broker.PublishOptions{HistorySize: 100}); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := fmt.Sprint(seq(1, per))
	for _, n := range []*brokertest.Node{na, nb} {
		for _, ch := range chs {
			brokertest.Eventually(t, "all of "+ch, func() bool { return len(n.Received(ch)) >= per })
			if got := brokertest.Offs(n.Received(ch)); got != want {
				t.Fatalf("%s: got %s, want %s", ch, got, want)
			}
		}
		if g := n.GapList(""); len(g) != 0 {
			t.Fatalf("gaps %+v", g)
		}
	}
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// TestClusterFailover kills (SIGKILL) a master of a 3-master cluster whose
// replica then takes over, while a publisher keeps publishing to channels
// on every master and two nodes subscribe to them all. Every publication
// acknowledged is counted, and each node must end up with all of them, in
// order, with no silent jump (a gap told is allowed where history cannot
// fill a hole; with history kept there should be none).
// Publications whose outcome is unknown may or may not exist: the nodes
// may have them too.
func TestClusterFailover(t *testing.T) {
	c := testredis.StartCluster(t, 3, 1)
	chs := clusterChannels(t, c, 12)
	cfg := redisbroker.Config{Addrs: c.Addrs(), Timeout: time.Second, PingInterval: 500 * time.Millisecond}
	a, na := clusterNode(t, cfg)
	ctx := context.Background()
	bb, _ := redisbroker.New(cfg) // a publisher-only node
	defer bb.Close(ctx)
	nodes := []*brokertest.Node{na}
	{
		n2, nn := clusterNode(t, cfg)
		for _, ch := range chs {
			if err := n2.Subscribe(ctx, ch); err != nil {
				t.Fatal(err)
			}
		}
		nodes = append(nodes, nn)
	}
	for _, ch := range chs {
		if err := a.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	opts := broker.PublishOptions{HistorySize: 10000}

	var mu sync.Mutex
	acked := map[string][]uint64{}
	var failed, unknown atomic.Int64
	stop := make(chan struct{})
	var killedAt atomic.Int64 // unix ns of the kill
	var recovered atomic.Int64
	victim := c.Masters[0].Addr
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()[1:]})
	defer rc.Close()
	onVictim := map[string]bool{}
	for _, ch := range chs {
		m, err := rc.MasterForKey(ctx, "hotline:{"+ch+"}:meta")
		if err != nil {
			t.Fatal(err)
		}
		onVictim[ch] = m.Options().Addr == victim
	}
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
				pos, err := bb.Publish(pctx, ch, json.RawMessage(fmt.Sprint(i)), nil, opts)
				cancel()
				switch {
				case err == nil:
					mu.Lock()
					acked[ch] = append(acked[ch], pos.Offset)
					mu.Unlock()
					if k := killedAt.Load(); k != 0 && started > k && onVictim[ch] && recovered.Load() == 0 {
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
	c.Masters[0].Kill() // returns once the process is gone
	killedAt.Store(time.Now().UnixNano())
	c.WaitPromoted(0)
	t.Logf("replica promoted, cluster ok again %v after SIGKILL", time.Duration(time.Now().UnixNano()-killedAt.Load()).Round(10*time.Millisecond))
	deadline := time.Now().Add(30 * time.Second)
	for recovered.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // and some more after the failover
	close(stop)
	wg.Wait()
	if recovered.Load() == 0 {
		t.Fatal("no publication to the failed master's channels succeeded within 30 s")
	}
	failover := time.Duration(recovered.Load() - killedAt.Load())
	total := 0
	for _, ch := range chs {
		total += len(acked[ch])
	}
	t.Logf("failover: first publication acknowledged by the promoted replica %v after SIGKILL; %d acknowledged, %d failed (not published), %d outcome unknown", failover.Round(10*time.Millisecond), total, failed.Load(), unknown.Load())

	for ni, n := range nodes {
		gaps := 0
		for _, ch := range chs {
			want := acked[ch]
			if len(want) == 0 {
				continue
			}
			last := want[len(want)-1]
			brokertest.Eventually(t, fmt.Sprintf("node %d gets %s up to %d", ni, ch, last), func() bool {
				got := n.Received(ch)
				return len(got) > 0 && got[len(got)-1].Offset >= last
			})
			got := n.Received(ch)
			silent, dups := continuity(got, n.GapList(ch))
			if silent != 0 || dups != 0 {
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

// TestClusterSlotMoves moves the slot of a subscribed channel, with its
// keys, to another master (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE,
// SETSLOT NODE), between two runs of publications: the subscriber follows
// the slot (the old owner ends its sharded subscription; the link is
// renewed on the new owner and the channel caught up) and gets every
// publication once, in order, with no gap.
func TestClusterSlotMoves(t *testing.T) {
	c := testredis.StartCluster(t, 3, 0)
	ctx := context.Background()
	a, na := clusterNode(t, redisbroker.Config{Addrs: c.Addrs(), PingInterval: 500 * time.Millisecond})
	p, err := redisbroker.New(redisbroker.Config{Addrs: c.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	const ch = "moving"
	if err := a.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	opts := broker.PublishOptions{HistorySize: 100}
	publish := func(from, to int) {
		for i := from; i <= to; i++ {
			if _, err := p.Publish(ctx, ch, json.RawMessage(fmt.Sprint(i)), nil, opts); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(1, 5)
	brokertest.Eventually(t, "first five", func() bool { return len(na.Received(ch)) == 5 })

	key := "hotline:{" + ch + "}:meta"
	slot := strings.TrimSpace(c.Cmd(c.Masters[0].Addr, "CLUSTER", "KEYSLOT", key))
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer rc.Close()
	owner, err := rc.MasterForKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var from, to *testredis.Proc
	for _, m := range c.Masters {
		if m.Addr == owner.Options().Addr {
			from = m
		} else if to == nil {
			to = m
		}
	}
	fromID := strings.TrimSpace(c.Cmd(from.Addr, "CLUSTER", "MYID"))
	toID := strings.TrimSpace(c.Cmd(to.Addr, "CLUSTER", "MYID"))
	c.Cmd(to.Addr, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID)
	c.Cmd(from.Addr, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID)
	keys := strings.Fields(c.Cmd(from.Addr, "CLUSTER", "GETKEYSINSLOT", slot, "100"))
	if len(keys) == 0 {
		t.Fatal("no keys in the slot")
	}
	args := append([]string{"MIGRATE", "127.0.0.1", fmt.Sprint(to.Port), "", "0", "5000", "KEYS"}, keys...)
	if out := c.Cmd(from.Addr, args...); !strings.Contains(out, "OK") {
		t.Fatalf("MIGRATE: %s", out)
	}
	for _, m := range c.Masters {
		c.Cmd(m.Addr, "CLUSTER", "SETSLOT", slot, "NODE", toID)
	}
	c.WaitOK()
	moved := time.Now()
	publish(6, 10)
	brokertest.Eventually(t, "all ten", func() bool { return len(na.Received(ch)) >= 10 })
	t.Logf("slot %s moved from %s to %s; the subscriber had the next five %v after the move", slot, from.Addr, to.Addr, time.Since(moved).Round(time.Millisecond))
	if got := brokertest.Offs(na.Received(ch)); got != fmt.Sprint(seq(1, 10)) {
		t.Fatalf("got %s", got)
	}
	if g := na.GapList(""); len(g) != 0 {
		t.Fatalf("gaps %+v", g)
	}
}
