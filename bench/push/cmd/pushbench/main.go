// Command pushbench compares hotline's push server with Centrifugo and
// Socket.IO under the same load, in one run: it installs the peers
// (pinned), builds hotline from this repository, runs each server pinned
// to one CPU and its own load generator processes pinned to another, and
// writes a table, an SVG and a JSON file. See bench/push/README.md.
//
//	cd bench && go run ./push/cmd/pushbench            # full size, ~15 min
//	cd bench && go run ./push/cmd/pushbench -quick     # small sizes, < 2 min
//
// "pushbench load ..." is the load generator process it starts itself.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	var err error
	if len(os.Args) > 1 && os.Args[1] == "load" {
		err = loadMain(os.Args[2:])
	} else {
		err = benchMain(os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		os.Exit(1)
	}
}

func benchMain(args []string) error {
	fs := flag.NewFlagSet("pushbench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "small sizes and short phases (under 2 minutes): proves the harness works; its numbers mean little")
	servers := fs.String("servers", "hotline,centrifugo,socketio", "servers to run, in this order")
	scenarios := fs.String("scenarios", "idle,storm,fanout,saturation,rooms", "scenarios to run, in this order")
	cache := fs.String("cache", defaultCache(), "where the peers are installed and the binaries built")
	repo := fs.String("repo", "..", "hotline's module root (the harness builds cmd/hotline from it)")
	out := fs.String("out", "push/results", "directory for MODE.json, MODE.md and MODE.svg")
	readme := fs.String("readme", "push/README.md", "file whose results section (between the pushbench markers) is replaced by a full run's table; empty: none")
	serverCPU := fs.String("server-cpu", "0", "CPU list the servers are pinned to (taskset -c); empty: not pinned")
	loadCPU := fs.String("load-cpu", "1", "CPU list of the load generator processes; empty: not pinned")
	report := fs.String("report", "", "run nothing: write the table, plot and README section again from this results file (MODE.json)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *report != "" {
		b, err := os.ReadFile(*report)
		if err != nil {
			return err
		}
		var res results
		if err := json.Unmarshal(b, &res); err != nil {
			return fmt.Errorf("%s: %w", *report, err)
		}
		if err := res.write(*out); err != nil {
			return err
		}
		if *readme != "" && res.Plan.Mode == "full" {
			return res.updateReadme(*readme, *out)
		}
		return nil
	}
	p := fullPlan
	if *quick {
		p = quickPlan
	}
	for _, d := range []string{*cache, filepath.Join(*cache, "bin"), *out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	repoAbs, err := filepath.Abs(*repo)
	if err != nil {
		return err
	}
	e := &env{repo: repoAbs, cache: *cache, log: os.Stderr}
	if *serverCPU != "" || *loadCPU != "" {
		if _, err := exec.LookPath("taskset"); err != nil {
			return fmt.Errorf("taskset not found (util-linux); or run with -server-cpu= -load-cpu=")
		}
	}
	if *loadCPU != "" && os.Getenv("PUSHBENCH_PINNED") == "" {
		// The publisher runs here: it is load, so it goes on the load
		// generator's CPU with the workers, off the server's.
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cmd := exec.Command("taskset", append([]string{"-c", *loadCPU, self}, args...)...)
		cmd.Env = append(os.Environ(), "PUSHBENCH_PINNED=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		return cmd.Run()
	}

	res := &results{Run: runID(), Started: time.Now(), Plan: p, Machine: machine(), LoadAvg: [2]float64{loadAvg(), 0}, CPUs: [2]string{*serverCPU, *loadCPU},
		Command: "cd bench && go run ./push/cmd/pushbench " + strings.Join(args, " ")}
	o := &orch{env: e, plan: p, serverCPU: *serverCPU, loadCPU: *loadCPU, run: res.Run,
		hc:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
		logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }}

	var peers []*peer
	for _, name := range strings.Split(*servers, ",") {
		var pr *peer
		var err error
		switch strings.TrimSpace(name) {
		case "hotline":
			pr, err = e.hotlinePeer()
		case "centrifugo":
			pr, err = e.centrifugoPeer()
		case "socketio":
			pr, err = e.socketioPeer()
		default:
			err = fmt.Errorf("unknown server %q", name)
		}
		if err != nil {
			return err
		}
		peers = append(peers, pr)
		res.Servers = append(res.Servers, server{Name: pr.name, Version: pr.version, Config: pr.config})
	}
	for _, sc := range strings.Split(*scenarios, ",") {
		for _, pr := range peers {
			o.logf("%s: %s", strings.TrimSpace(sc), pr.name)
			var rows []row
			var err error
			switch strings.TrimSpace(sc) {
			case "fanout":
				rows, err = o.fanout(pr)
			case "saturation":
				rows, err = o.saturation(pr)
			case "rooms":
				rows, err = o.rooms(pr)
			case "idle":
				rows, err = o.idle(pr)
			case "storm":
				rows, err = o.storm(pr)
			default:
				return fmt.Errorf("unknown scenario %q", sc)
			}
			res.Rows = append(res.Rows, rows...)
			if err != nil {
				o.logf("  FAILED: %v", err)
				res.Failures = append(res.Failures, fmt.Sprintf("%s %s: %v", pr.name, sc, err))
			}
		}
	}
	res.Seconds = time.Since(res.Started).Seconds()
	res.LoadAvg[1] = loadAvg()
	if err := res.write(*out); err != nil {
		return err
	}
	if *readme != "" && p.Mode == "full" {
		if err := res.updateReadme(*readme, *out); err != nil {
			return err
		}
	}
	var md bytes.Buffer
	res.writeMarkdown(&md)
	os.Stdout.Write(md.Bytes())
	if len(res.Failures) > 0 {
		return fmt.Errorf("%d scenario(s) failed", len(res.Failures))
	}
	return nil
}

func defaultCache() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "hotline-pushbench")
	}
	return filepath.Join(os.TempDir(), "hotline-pushbench")
}

func runID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func machine() string {
	s := fmt.Sprintf("%d CPUs", countCPUs())
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(l, "model name"); ok {
				s = strings.TrimSpace(strings.TrimLeft(name, " \t:")) + ", " + s
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		s += ", Linux " + strings.TrimSpace(string(b))
	}
	return s
}

// loadAvg is the 1-minute load average (/proc/loadavg).
func loadAvg() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	var v float64
	fmt.Sscan(string(b), &v)
	return v
}

func countCPUs() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	n := 0
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(l, "processor") {
			n++
		}
	}
	return n
}

func (r *results) write(dir string) error {
	base := filepath.Join(dir, r.Plan.Mode)
	j, _ := json.MarshalIndent(r, "", "  ")
	if err := os.WriteFile(base+".json", append(j, '\n'), 0o644); err != nil {
		return err
	}
	var md bytes.Buffer
	r.writeMarkdown(&md)
	if err := os.WriteFile(base+".md", md.Bytes(), 0o644); err != nil {
		return err
	}
	var svg bytes.Buffer
	if err := r.writeSVG(&svg); err != nil {
		return err
	}
	return os.WriteFile(base+".svg", svg.Bytes(), 0o644)
}

const (
	readmeBegin = "<!-- pushbench:begin (written by pushbench; do not edit by hand) -->"
	readmeEnd   = "<!-- pushbench:end -->"
)

// updateReadme replaces the results section of the README with this run's
// table, versions and configurations.
func (r *results) updateReadme(path, out string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	i, j := bytes.Index(b, []byte(readmeBegin)), bytes.Index(b, []byte(readmeEnd))
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %q ... %q section", path, readmeBegin, readmeEnd)
	}
	var sec bytes.Buffer
	sec.WriteString(readmeBegin + "\n\n")
	rel, _ := filepath.Rel(filepath.Dir(path), filepath.Join(out, r.Plan.Mode+".svg"))
	fmt.Fprintf(&sec, "![pushbench %s run](%s)\n\n", r.Plan.Mode, rel)
	fmt.Fprintf(&sec, "Machine: %s. Command: `%s`.\n\n", r.Machine, r.Command)
	r.writeMarkdown(&sec)
	sec.WriteString("\nServers as configured in this run:\n\n")
	for _, s := range r.Servers {
		fmt.Fprintf(&sec, "- **%s %s**: %s.\n", s.Name, s.Version, s.Config)
	}
	sec.WriteString("\n")
	var nb bytes.Buffer
	nb.Write(b[:i])
	nb.Write(sec.Bytes())
	nb.Write(b[j:])
	return os.WriteFile(path, nb.Bytes(), 0o644)
}
