package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/broker/brokertest"
	"github.com/hotline-rt/hotline/internal/testredis"
)

// TestKeySlot checks keySlot against CLUSTER KEYSLOT of a real cluster,
// for plain names, a tagged key and a hashed tag.
func TestKeySlot(t *testing.T) {
	c := testredis.StartCluster(t, 3, 0)
	for _, name := range []string{"a", "chat:lobby", "123456789", "ünï", tag("has{brace}"), "x y"} {
		want := strings.TrimSpace(c.Cmd(c.Masters[0].Addr, "CLUSTER", "KEYSLOT", "hotline:{"+name+"}:meta"))
		if got := fmt.Sprint(keySlot(name)); got != want {
			t.Errorf("keySlot(%q) = %s, CLUSTER KEYSLOT %s", name, got, want)
		}
	}
}

// TestClusterBumpEpoch moves streams of channels in several slots to a new
// epoch on a cluster: the script's keys share the channel's slot, and a
// since in the old epoch is then "epoch changed".
func TestClusterBumpEpoch(t *testing.T) {
	c := testredis.StartCluster(t, 3, 0)
	ctx := context.Background()
	r, err := New(Config{Addrs: c.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	if r.Mode() != "cluster" {
		t.Fatalf("mode %q, want cluster", r.Mode())
	}
	opts := broker.PublishOptions{HistorySize: 10}
	for i := range 6 {
		ch := fmt.Sprint("bump", i)
		old := brokertest.Pub(t, r, ch, 2, opts)
		e, moved, err := r.bumpEpoch(ctx, ch, old.Epoch)
		if err != nil || !moved || e == old.Epoch || e == "" {
			t.Fatalf("%s: %q %v %v", ch, e, moved, err)
		}
		if _, err := r.History(ctx, ch, broker.HistoryRequest{Since: &old, Limit: -1}); !errors.Is(err, broker.ErrEpochChanged) {
			t.Fatalf("%s: since the old epoch: %v", ch, err)
		}
		if p := brokertest.Pub(t, r, ch, 1, opts); p.Epoch != e || p.Offset != 1 {
			t.Fatalf("%s: next at %+v, want %s/1", ch, p, e)
		}
	}
}
