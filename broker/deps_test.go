package broker_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoRedisInEngine keeps go-redis out of the engine and of this package:
// only a binary that picks the Redis broker (package redisbroker) links it.
func TestNoRedisInEngine(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	for _, pkg := range []string{"github.com/hotline-rt/hotline/broker", "github.com/hotline-rt/hotline/push"} {
		out, err := exec.Command(goBin, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.Contains(dep, "go-redis") || strings.HasSuffix(dep, "/redisbroker") {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}
