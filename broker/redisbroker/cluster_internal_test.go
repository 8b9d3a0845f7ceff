package redisbroker

import (
	"fmt"
	"strings"
	"testing"

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
