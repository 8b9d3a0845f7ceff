// Command wsbench compares hotline's ws package with the other Go
// WebSocket libraries and raw TCP as whole servers: each library's small
// echo and broadcast server (../../servers) runs as its own process,
// pinned to one CPU, under one load generator (this program, pinned to
// another) that is the same for all of them. See ../../../README.md.
//
//	cd bench && go run ./ws/cmd/wsbench -quick    # under 2 minutes, smaller sizes
//	cd bench && go run ./ws/cmd/wsbench           # the full run, 3 rounds, about 7 minutes
//
// It prints markdown tables (each figure with its ratio to hotline) and
// writes the results as JSON (-json), markdown (-md) and an SVG bar
// chart (-svg); the full run writes ws/results/wsbench.{json,md,svg}
// unless told otherwise.
package main

import (
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// servers, in the order of the table: hotline first, raw TCP last.
var allServers = []string{"hotline", "gorilla", "coder", "gws", "gobwas", "rawtcp"}

// modules maps a server to the module whose version the table names.
var modules = map[string]string{
	"hotline": "github.com/hotline-rt/hotline",
	"gorilla": "github.com/gorilla/websocket",
	"coder":   "github.com/coder/websocket",
	"gws":     "github.com/lxzan/gws",
	"gobwas":  "github.com/gobwas/ws",
}

// deflates are the servers that negotiate permessage-deflate.
var deflates = []string{"hotline", "gorilla", "coder", "gws"}

type params struct {
	warmup, measure, settle time.Duration
	idle                    []int
	idleFresh               []int // idle with -fresh
	conns                   int   // the many-connections and broadcast cases
	rounds                  int
}

// kase is one row of the table.
type kase struct {
	name  string
	unit  string
	lower bool // a lower value is better
	once  bool // measured in the first round only: not a rate, and slow
	// deflate cases run only for the servers that have compression.
	deflate bool
	args    []string // the server's flags
	run     func(srv *server, raw bool, p params, r *result)
}

func cases(p params) []kase {
	small := payloadOf(64, false)
	large := payloadOf(16<<10, false)
	text := payloadOf(16<<10, true)
	ks := []kase{
		{name: "echo, 1 connection, 64 B", unit: "round trips/s", run: func(s *server, raw bool, p params, r *result) {
			echo(s, raw, 1, 1, small, false, p, r)
		}},
		{name: "echo, 1 connection, 16 KiB", unit: "round trips/s", run: func(s *server, raw bool, p params, r *result) {
			echo(s, raw, 1, 1, large, false, p, r)
		}},
		{name: "pipelined echo, 1 connection, 64 B, 64 in flight", unit: "msgs/s", run: func(s *server, raw bool, p params, r *result) {
			echo(s, raw, 1, 64, small, false, p, r)
		}},
		{name: fmt.Sprintf("echo, %s connections, 64 B", thousands(float64(p.conns))), unit: "round trips/s", run: func(s *server, raw bool, p params, r *result) {
			echo(s, raw, p.conns, 1, small, false, p, r)
		}},
		{name: fmt.Sprintf("broadcast to %s connections, 64 B", thousands(float64(p.conns))), unit: "deliveries/s", run: func(s *server, raw bool, p params, r *result) {
			broadcast(s, raw, p.conns, 16, 64, p, r)
		}},
		{name: "permessage-deflate echo, 16 connections, 16 KiB JSON text", unit: "round trips/s", deflate: true, args: []string{"-deflate"}, run: func(s *server, raw bool, p params, r *result) {
			echo(s, raw, 16, 1, text, true, p, r)
		}},
	}
	for _, n := range p.idle {
		ks = append(ks, kase{name: fmt.Sprintf("idle memory, %s connections", thousands(float64(n))), unit: "KiB/conn", lower: true, once: true,
			run: func(s *server, raw bool, p params, r *result) { idle(s, raw, n, p, r) }})
	}
	for _, n := range p.idleFresh {
		ks = append(ks, kase{name: fmt.Sprintf("idle memory, %s connections, echo on a fresh goroutine", thousands(float64(n))), unit: "KiB/conn", lower: true, once: true,
			args: []string{"-fresh"},
			run:  func(s *server, raw bool, p params, r *result) { idle(s, raw, n, p, r) }})
	}
	return ks
}

// payloadOf returns n bytes: random-looking binary, or JSON-like text
// that compresses as chat messages do.
func payloadOf(n int, text bool) []byte {
	var b bytes.Buffer
	if !text {
		for i := range n {
			b.WriteByte(byte(i*131 + i>>3))
		}
		return b.Bytes()
	}
	words := []string{"hotline", "channel", "message", "presence", "history", "offset", "epoch", "client", "user", "room"}
	b.WriteByte('[')
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"id":%d,"channel":"%s:%d","user":"%s-%d","text":"%s %s %s","ts":%d},`,
			i, words[i%10], i%7, words[(i*3)%10], i%13, words[(i*7)%10], words[(i+4)%10], words[(i*9)%10], 1764547200000+i*37)
	}
	return b.Bytes()[:n]
}

func main() {
	quick := flag.Bool("quick", false, "small sizes and short intervals: under 2 minutes (for test.sh)")
	only := flag.String("servers", strings.Join(allServers, ","), "servers to run, comma-separated")
	jsonOut := flag.String("json", "", "write the results as JSON to this file")
	mdOut := flag.String("md", "", "write the markdown tables to this file")
	svgOut := flag.String("svg", "", "write an SVG bar chart to this file")
	serverCPU := flag.String("server-cpu", "0", "CPU the servers are pinned to (taskset -c); empty: not pinned")
	genCPU := flag.String("loadgen-cpu", "1", "CPU the load generator is pinned to; empty: not pinned")
	caseRE := flag.String("cases", "", "run only the cases whose name matches this regular expression")
	measure := flag.Duration("measure", 0, "measured interval of each throughput case (default 2s, 500ms with -quick)")
	rounds := flag.Int("rounds", 0, "rounds of every case for every server; the tables show the median (default 3, 1 with -quick)")
	render := flag.String("render", "", "measure nothing: read the results of an earlier run from this JSON file and write its tables and chart")
	flag.Parse()

	if *render != "" {
		b, err := os.ReadFile(*render)
		if err != nil {
			fatalf("%v", err)
		}
		var rep report
		if err := json.Unmarshal(b, &rep); err != nil {
			fatalf("%s: %v", *render, err)
		}
		rep.output(*mdOut, "", *svgOut)
		return
	}
	pin(*genCPU)
	match, err := regexp.Compile(*caseRE)
	if err != nil {
		fatalf("-cases: %v", err)
	}

	p := params{warmup: 500 * time.Millisecond, measure: 2 * time.Second, settle: 500 * time.Millisecond, idle: []int{1000, 10000}, idleFresh: []int{10000}, conns: 1000, rounds: 3}
	mode := "full"
	if *quick {
		mode = "quick"
		p = params{warmup: 200 * time.Millisecond, measure: 500 * time.Millisecond, settle: 300 * time.Millisecond, idle: []int{1000}, idleFresh: []int{1000}, conns: 1000, rounds: 1}
	}
	if *rounds > 0 {
		p.rounds = *rounds
	}
	if *measure > 0 {
		p.measure = *measure
	}
	names := strings.Split(*only, ",")
	for _, n := range names {
		if !slices.Contains(allServers, n) {
			fatalf("unknown server %q (have %s)", n, strings.Join(allServers, ", "))
		}
	}

	dir, err := os.MkdirTemp("", "wsbench-")
	if err != nil {
		fatalf("%v", err)
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-o", dir+"/", "github.com/hotline-rt/hotline/bench/ws/servers/...")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fatalf("building the servers: %v", err)
	}

	rep := report{Mode: mode, Rounds: p.rounds, Started: time.Now().UTC(), Servers: names, Versions: map[string]string{},
		Command: "cd bench && go run ./ws/cmd/wsbench " + strings.Join(os.Args[1:], " "), Pinning: fmt.Sprintf("servers on CPU %q, load generator on CPU %q", *serverCPU, *genCPU)}
	rep.Machine = machine()
	rep.LoadBefore = loadavg()
	for _, n := range names {
		if bi, err := buildinfo.ReadFile(filepath.Join(dir, n)); err == nil {
			rep.GoVersion = bi.GoVersion
			for _, d := range bi.Deps {
				if d.Path == modules[n] {
					rep.Versions[n] = d.Version
				}
			}
		}
	}
	rep.Versions["hotline"] = "this tree"
	// hotline is whatever the repository holds: name the commit.
	if rev, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		rep.Versions["hotline"] = "this tree at " + strings.TrimSpace(string(rev))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			rep.Versions["hotline"] += " with uncommitted changes"
		}
	}
	fmt.Fprintf(os.Stderr, "wsbench %s: %s; %s\n", mode, rep.Machine, rep.Pinning)

	if mode == "full" && *jsonOut == "" && *mdOut == "" && *svgOut == "" && *caseRE == "" && *rounds == 0 && *measure == 0 && len(names) == len(allServers) {
		// The full run's results are kept in the repository.
		out := resultsDir()
		if err := os.MkdirAll(out, 0o755); err != nil {
			fatalf("%v", err)
		}
		*jsonOut, *mdOut, *svgOut = filepath.Join(out, "wsbench.json"), filepath.Join(out, "wsbench.md"), filepath.Join(out, "wsbench.svg")
		fmt.Fprintf(os.Stderr, "wsbench: writing %s/wsbench.{json,md,svg}\n", out)
	}
	var ks []kase
	for _, k := range cases(p) {
		if match.MatchString(k.name) {
			ks = append(ks, k)
			rep.Cases = append(rep.Cases, caseInfo{Name: k.name, Unit: k.unit, LowerIsBetter: k.lower})
		}
	}
	// Rounds run every case for every server in turn, so that a burst of
	// load on the machine hits one round, not one server.
	for round := 1; round <= p.rounds; round++ {
		for _, k := range ks {
			if k.once && round > 1 {
				continue
			}
			for _, n := range names {
				r := result{Case: k.name, Server: n, Unit: k.unit, Round: round}
				if k.deflate && !slices.Contains(deflates, n) {
					r.Skipped = "no permessage-deflate"
					rep.Runs = append(rep.Runs, r)
					continue
				}
				t0 := time.Now()
				srv, err := startServer(filepath.Join(dir, n), *serverCPU, k.args...)
				if err != nil {
					r.Failed = err.Error()
				} else {
					k.run(srv, n == "rawtcp", p, &r)
					if !srv.alive() {
						r.Failed = strings.TrimSpace("server died: " + srv.stderr())
					}
					srv.stop()
					if e := srv.stderr(); e != "" && r.Failed == "" {
						r.Failed = "server said: " + firstLine(e)
					}
				}
				fmt.Fprintf(os.Stderr, "  %d  %-58s %-8s %10s %-14s server %3.0f%% loadgen %3.0f%%  %4.1f s %s\n", round, k.name, n, thousands(r.Value), k.unit, r.SrvCPUpct, r.GenCPUpct, time.Since(t0).Seconds(), r.Failed)
				rep.Runs = append(rep.Runs, r)
			}
		}
	}
	rep.summarize()
	rep.LoadAfter = loadavg()
	rep.Seconds = time.Since(rep.Started).Seconds()

	rep.output(*mdOut, *jsonOut, *svgOut)
	for _, r := range rep.Results {
		if r.Failed != "" {
			fmt.Fprintf(os.Stderr, "wsbench: %s failed in %q: %s\n", r.Server, r.Case, r.Failed)
			defer os.Exit(1)
		}
	}
}

// output prints the tables and writes the files whose paths are set.
func (rep *report) output(md, js, svg string) {
	text := rep.markdown()
	fmt.Print(text)
	write := func(path string, b []byte) {
		if path == "" {
			return
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			fatalf("%v", err)
		}
	}
	write(md, []byte(text))
	write(js, rep.json())
	write(svg, rep.svg())
}

// resultsDir is ws/results in the bench module.
func resultsDir() string {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		fatalf("go env GOMOD: %v", err)
	}
	dir := filepath.Dir(strings.TrimSpace(string(gomod)))
	if _, err := os.Stat(filepath.Join(dir, "ws", "cmd", "wsbench")); err != nil {
		fatalf("run from the bench module (cd bench), or name the outputs with -json, -md, -svg")
	}
	return filepath.Join(dir, "ws", "results")
}

// pin re-executes this program under taskset on cpu, once.
func pin(cpu string) {
	if cpu == "" || os.Getenv("WSBENCH_PINNED") != "" {
		return
	}
	ts, err := exec.LookPath("taskset")
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsbench: no taskset: nothing pinned")
		return
	}
	self, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}
	env := append(os.Environ(), "WSBENCH_PINNED=1")
	err = syscall.Exec(ts, append([]string{"taskset", "-c", cpu, self}, os.Args[1:]...), env)
	fatalf("exec taskset: %v", err)
}

func machine() string {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	var rl syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	cpus, _ := exec.Command("nproc", "--all").Output()
	return fmt.Sprintf("%s CPUs, %s, linux %s, nofile %d", strings.TrimSpace(string(cpus)), runtime.Version(), strings.TrimSpace(string(kernel)), rl.Cur)
}

// loadavg is the machine's 1-minute load average: the other processes
// that the pinned ones share their CPU with.
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "wsbench: "+format+"\n", a...)
	os.Exit(2)
}
