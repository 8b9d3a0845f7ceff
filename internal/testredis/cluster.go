package testredis

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// CLI is the redis-cli that joins a cluster.
const CLI = "/usr/bin/redis-cli"

// clusterTimeout bounds how long a cluster or Sentinel setup waits to
// become usable.
const clusterTimeout = 20 * time.Second

// Proc is one redis-server (or Sentinel) process a test started.
type Proc struct {
	Addr string
	Port int
	pid  int
	stop func()
}

// PID is the process id, for a test that signals it.
func (p *Proc) PID() int { return p.pid }

// Kill sends SIGKILL to the process and waits for it to exit.
func (p *Proc) Kill() {
	if p.stop != nil {
		p.stop()
		p.stop = nil
	}
}

// startProc starts a redis-server with args on a free port (tried three
// times), stopped by PID when the test ends.
func startProc(t testing.TB, args func(port int) []string) *Proc {
	t.Helper()
	need(t, Binary)
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testredis: find a free port: %v", err)
		}
		addr, stop, pid, err := run(port, args(port)...)
		if err == nil {
			p := &Proc{Addr: addr, Port: port, pid: pid, stop: stop}
			t.Cleanup(p.Kill)
			return p
		}
		lastErr = err
	}
	t.Fatalf("testredis: %v", lastErr)
	return nil
}

func need(t testing.TB, bin string) {
	t.Helper()
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("testredis: %s is required in CI: %v", bin, err)
		}
		t.Skipf("testredis: %s not found (%v); skipping the test that needs it", bin, err)
	}
}

// Cluster is a Redis Cluster of masters (and a replica of the first master
// if asked), on free loopback ports, joined with redis-cli --cluster
// create. A node is taken for failed after NodeTimeout.
type Cluster struct {
	Masters  []*Proc
	Replicas []*Proc // Replicas[i] replicates Masters[i]
	t        testing.TB
}

// NodeTimeout is the cluster-node-timeout of a test cluster: a master
// silent this long is failed over to its replica.
const NodeTimeout = 1000 * time.Millisecond

// StartCluster starts masters cluster nodes (at least 3) and replicas
// replicas (of the first masters, one each), joins them, and waits until
// every node says cluster_state:ok.
func StartCluster(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	need(t, CLI)
	dir := t.TempDir()
	node := func(port int) []string {
		return []string{"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes-"+strconv.Itoa(port)+".conf"),
			"--cluster-node-timeout", strconv.Itoa(int(NodeTimeout / time.Millisecond)),
			"--dir", dir}
	}
	c := &Cluster{t: t}
	for range masters {
		c.Masters = append(c.Masters, startProc(t, node))
	}
	args := []string{"--cluster", "create"}
	for _, m := range c.Masters {
		args = append(args, m.Addr)
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(CLI, args...).CombinedOutput(); err != nil {
		t.Fatalf("testredis: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	c.WaitOK()
	for range replicas {
		c.Replicas = append(c.Replicas, startProc(t, node))
	}
	for i, r := range c.Replicas {
		id := strings.TrimSpace(c.Cmd(c.Masters[i].Addr, "CLUSTER", "MYID"))
		c.Cmd(r.Addr, "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(c.Masters[0].Port))
		deadline := time.Now().Add(clusterTimeout)
		for {
			// The replica must know the master before it can follow it.
			out := c.Cmd(r.Addr, "CLUSTER", "REPLICATE", id)
			if strings.HasPrefix(out, "OK") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testredis: replica %s of %s: %s", r.Addr, id, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	c.WaitOK()
	for i, r := range c.Replicas {
		c.waitFor(r.Addr+" in sync with "+c.Masters[i].Addr, func() bool {
			info := c.Cmd(r.Addr, "INFO", "replication")
			return strings.Contains(info, "master_link_status:up")
		})
	}
	return c
}

// WaitPromoted waits until Replicas[i] has become a master (after its
// master failed) and the cluster serves every slot again.
func (c *Cluster) WaitPromoted(i int) {
	c.t.Helper()
	c.waitFor("replica promoted", func() bool {
		out, err := tryCli(c.Replicas[i].Addr, "INFO", "replication")
		return err == nil && strings.Contains(out, "role:master")
	})
	c.WaitOK()
}

// Addrs are the addresses of the masters.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, m := range c.Masters {
		out = append(out, m.Addr)
	}
	return out
}

// Cmd runs one command with redis-cli against addr and returns its output;
// a failed run fails the test.
func (c *Cluster) Cmd(addr string, args ...string) string {
	c.t.Helper()
	return cli(c.t, addr, args...)
}

func cli(t testing.TB, addr string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	full := append([]string{"-h", host, "-p", port}, args...)
	out, err := exec.Command(CLI, full...).CombinedOutput()
	if err != nil {
		t.Fatalf("testredis: redis-cli %s: %v\n%s", strings.Join(full, " "), err, out)
	}
	return string(out)
}

// tryCli is cli for a node that may be down: errors are returned.
func tryCli(addr string, args ...string) (string, error) {
	host, port, _ := net.SplitHostPort(addr)
	full := append([]string{"-h", host, "-p", port}, args...)
	out, err := exec.Command(CLI, full...).CombinedOutput()
	return string(out), err
}

// WaitOK waits until every live node says cluster_state:ok and agrees on
// who serves each of the 16384 slots.
func (c *Cluster) WaitOK() {
	c.t.Helper()
	last := ""
	defer func() {
		if c.t.Failed() {
			c.t.Logf("last CLUSTER INFO: %s", last)
		}
	}()
	c.waitFor("cluster_state:ok", func() bool {
		for _, p := range append(append([]*Proc{}, c.Masters...), c.Replicas...) {
			if p.stop == nil {
				continue // killed
			}
			out, err := tryCli(p.Addr, "CLUSTER", "INFO")
			if err != nil || !strings.Contains(out, "cluster_state:ok") || !strings.Contains(out, "cluster_slots_ok:16384") {
				last = p.Addr + ": " + out
				return false
			}
		}
		return true
	})
}

func (c *Cluster) waitFor(what string, cond func() bool) {
	c.t.Helper()
	waitFor(c.t, what, cond)
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(clusterTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("testredis: timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Sentinel is one master, one replica and three Sentinels watching the
// master as Master, with a down-after of NodeTimeout.
type Sentinel struct {
	Master, Replica *Proc
	Sentinels       []*Proc
	t               testing.TB
}

// SentinelMaster is the name the Sentinels know the master by.
const SentinelMaster = "hotline"

// StartSentinel starts the master, its replica and three Sentinels, and
// waits until every Sentinel knows the replica and the other Sentinels.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	need(t, CLI)
	dir := t.TempDir()
	s := &Sentinel{t: t}
	s.Master, s.Replica = StartReplicated(t)
	for i := range 3 {
		s.Sentinels = append(s.Sentinels, startProc(t, func(port int) []string {
			conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d-%d.conf", i, port))
			text := fmt.Sprintf("port %d\nbind 127.0.0.1\nsentinel monitor %s 127.0.0.1 %d 2\n"+
				"sentinel down-after-milliseconds %s %d\nsentinel failover-timeout %s 3000\n",
				port, SentinelMaster, s.Master.Port, SentinelMaster, NodeTimeout/time.Millisecond, SentinelMaster)
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{conf, "--sentinel"}
		}))
	}
	for _, sn := range s.Sentinels {
		waitFor(t, "sentinel "+sn.Addr+" sees the replica and the other sentinels", func() bool {
			out, err := tryCli(sn.Addr, "SENTINEL", "MASTER", SentinelMaster)
			return err == nil && strings.Contains(out, "num-slaves\n1\n") && strings.Contains(out, "num-other-sentinels\n2\n")
		})
	}
	return s
}

// StartReplicated starts a master and a replica of it (no Sentinel), and
// waits until the replica is in sync.
func StartReplicated(t testing.TB) (master, replica *Proc) {
	t.Helper()
	need(t, CLI)
	dir := t.TempDir()
	master = startProc(t, func(int) []string { return []string{"--dir", dir} })
	replica = startProc(t, func(int) []string {
		return []string{"--dir", dir, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port)}
	})
	waitFor(t, "replica in sync", func() bool {
		out, err := tryCli(replica.Addr, "INFO", "replication")
		return err == nil && strings.Contains(out, "master_link_status:up")
	})
	return master, replica
}

// Addrs are the Sentinels' addresses.
func (s *Sentinel) Addrs() []string {
	var out []string
	for _, p := range s.Sentinels {
		out = append(out, p.Addr)
	}
	return out
}

// MasterAddr asks the first live Sentinel where the master is now.
func (s *Sentinel) MasterAddr() string {
	for _, sn := range s.Sentinels {
		out, err := tryCli(sn.Addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(out))
		var f []string
		for sc.Scan() {
			f = append(f, strings.TrimSpace(sc.Text()))
		}
		if len(f) >= 2 {
			return net.JoinHostPort(f[0], f[1])
		}
	}
	return ""
}
