package superchat_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestClientsNeedNoEngine holds the reason this package exists: a client
// of superchat builds without the engine and its Redis client. It asks the
// go command for the import graph, so it fails the moment someone imports
// push (or anything that reaches go-redis) from here or from loadtest.
func TestClientsNeedNoEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	list := func(format string, pkgs ...string) []string {
		t.Helper()
		cmd := exec.Command(goBin, append([]string{"list", "-deps", "-f", format}, pkgs...)...)
		cmd.Dir = ".." // the module root
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		return strings.Fields(string(out))
	}
	for _, p := range list("{{.ImportPath}}", "./superchat", "./loadtest") {
		if strings.Contains(p, "go-redis") || strings.HasSuffix(p, "hotline/push") || strings.Contains(p, "hotline/broker") {
			t.Errorf("superchat or loadtest depends on %s", p)
		}
	}
	// superchat itself: the standard library only.
	if got := list("{{if not .Standard}}{{.ImportPath}}{{end}}", "./superchat"); len(got) != 1 || got[0] != "github.com/hotline-rt/hotline/superchat" {
		t.Errorf("superchat imports beyond std: %v", got)
	}
}
