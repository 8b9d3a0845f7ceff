//go:build linux

// Command scale measures how long one publication takes to reach every
// subscriber of one channel when the subscribers are many (100,000) and
// spread over several hotline nodes that share one Redis server.
//
// One command starts everything on this machine: it builds hotline,
// starts redis-server on a free loopback port, the nodes (hotline serve
// -broker redis, each on its own 127.0.1.x address), and client processes
// (this program, "scale client ...") that hold the subscribers, each
// process under the open-files limit and dialing from its own 127.0.2.x
// address so that ephemeral ports do not run out. Once every subscriber
// is subscribed, it publishes one message at a time through the HTTP API
// (POST /api/publish) at each rate asked for, and reports per
// publication the latency until the first, the median, the 99th
// percentile and the last subscriber has it, every delivery counted
// (nothing missing, nothing duplicated, in order), with the RSS and CPU
// of every process. Every process it starts it stops by PID at the end,
// on failure and on ctrl-C. See README.md.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "client" {
		if err := runClient(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "scale client:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

type config struct {
	nodes, subs, perClient int
	rates                  []float64
	duration, drain        time.Duration
	drainMax               time.Duration
	connectTimeout         time.Duration
	size                   int
	hotline, redis         string
	broker                 string
	dir                    string
	concurrency            int
	nodeArgs               []string
	clientProfile          bool
	setsid                 bool
	gomaxprocs             int
}

func parseConfig() (config, error) {
	var c config
	flag.IntVar(&c.nodes, "nodes", 6, "hotline nodes")
	flag.IntVar(&c.subs, "subscribers", 6000, "subscribers, spread evenly over the nodes")
	flag.IntVar(&c.perClient, "per-client", 16000, "most subscribers per client process (the open-files limit is per process)")
	rates := flag.String("rates", "1,10", "publication rates to run, per second, comma-separated")
	flag.DurationVar(&c.duration, "duration", 20*time.Second, "how long each rate runs")
	flag.DurationVar(&c.drain, "drain", 5*time.Second, "after a rate's last publication, how long the delivery count may stand still\nbefore the missing ones are taken as lost (see -drain-max)")
	flag.DurationVar(&c.drainMax, "drain-max", 2*time.Minute, "the longest wait for a rate's deliveries after its last publication")
	flag.DurationVar(&c.connectTimeout, "connect-timeout", 5*time.Minute, "how long all subscribers may take to connect and subscribe")
	flag.IntVar(&c.size, "size", 100, "bytes of each publication's data (JSON, at least 32)")
	flag.StringVar(&c.hotline, "hotline", "", "hotline binary to run (default: build it from this tree)")
	flag.StringVar(&c.redis, "redis-server", "redis-server", "redis-server binary")
	flag.StringVar(&c.broker, "broker", "redis", "broker of the nodes: redis, or memory (one node only)")
	flag.StringVar(&c.dir, "dir", "", "directory for binaries, logs and results (default: a new temporary one)")
	flag.IntVar(&c.concurrency, "concurrency", 32, "dials in flight per client process")
	nodeArgs := flag.String("node-args", "", "extra flags for every hotline serve, space-separated")
	flag.BoolVar(&c.clientProfile, "client-cpuprofile", false, "write a CPU profile of every client process into -dir")
	flag.IntVar(&c.gomaxprocs, "gomaxprocs", 0, "GOMAXPROCS of the nodes and clients (0: Go's default, the CPU count)")
	flag.BoolVar(&c.setsid, "setsid", false, "start every process in a session of its own: with autogroup scheduling,\neach then gets a share of the CPU like another user's session, instead\nof all sharing one (the full run: it takes the machine)")
	flag.Parse()
	for _, r := range strings.Split(*rates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v <= 0 {
			return c, fmt.Errorf("-rates %q: want positive numbers", *rates)
		}
		c.rates = append(c.rates, v)
	}
	c.nodeArgs = strings.Fields(*nodeArgs)
	switch {
	case c.nodes < 1 || c.nodes > 250:
		return c, errors.New("-nodes: 1 to 250")
	case c.subs < 1:
		return c, errors.New("-subscribers: at least 1")
	case c.perClient < 1:
		return c, errors.New("-per-client: at least 1")
	case c.size < 32:
		return c, errors.New("-size: at least 32")
	case c.broker == "memory" && c.nodes != 1:
		return c, errors.New("-broker memory takes -nodes 1")
	case c.broker != "memory" && c.broker != "redis":
		return c, errors.New("-broker: redis or memory")
	}
	return c, nil
}

// coordinator holds the run's processes and what the clients say.
type coordinator struct {
	cfg     config
	ps      procs
	redis   *proc
	nodes   []*proc
	bases   []string // http://ip:port of each node
	clients []*clientProc
	apiKey  string
	channel string
	pub     *http.Client
	// cut: a phase's deliveries were still arriving when -drain-max
	// ended the wait for them.
	cut bool
	// published counts the publications started, to spread them over
	// the nodes' APIs in turn.
	published int
	log       io.Writer // the run's log: stdout and results.txt
}

type clientProc struct {
	*proc
	stdin   io.WriteCloser
	mu      sync.Mutex
	last    Progress
	reports chan Report
}

func run() error {
	cfg, err := parseConfig()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.dir == "" {
		if cfg.dir, err = os.MkdirTemp("", "hotline-scale-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(cfg.dir, 0o755); err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(cfg.dir, "results.txt"))
	if err != nil {
		return err
	}
	defer out.Close()
	co := &coordinator{
		cfg:     cfg,
		apiKey:  fmt.Sprintf("scale-%d", time.Now().UnixNano()),
		channel: fmt.Sprintf("scale:run%d", time.Now().Unix()),
		log:     io.MultiWriter(os.Stdout, out),
		pub: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			Proxy: noProxy, MaxIdleConnsPerHost: 16,
		}},
	}
	co.ps.setsid = cfg.setsid
	defer co.ps.stopAll()
	err = co.run(ctx)
	if ctx.Err() != nil {
		err = errors.Join(err, errors.New("interrupted"))
	}
	co.logf("processes: stopping %d by PID", len(co.ps.list))
	return err
}

func (co *coordinator) logf(format string, args ...any) {
	fmt.Fprintf(co.log, time.Now().UTC().Format("15:04:05 ")+format+"\n", args...)
}

func (co *coordinator) run(ctx context.Context) error {
	cfg := co.cfg
	co.logf("scale: %d nodes (broker %s), %d subscribers, rates %v/s for %s, %d-byte messages; dir %s",
		cfg.nodes, cfg.broker, cfg.subs, cfg.rates, cfg.duration, cfg.size, cfg.dir)
	co.logf("machine: %d CPUs, load average %s, autogroup scheduling %v, -setsid %v, -gomaxprocs %d", numCPU(), loadAvg(), autogroup(), cfg.setsid, cfg.gomaxprocs)
	if err := co.build(ctx); err != nil {
		return err
	}
	if err := co.startRedis(); err != nil {
		return err
	}
	if err := co.startNodes(); err != nil {
		return err
	}
	connStart := time.Now()
	if err := co.startClients(); err != nil {
		return err
	}
	subscribed, err := co.waitSubscribed(ctx, connStart)
	if err != nil {
		return err
	}
	connectTime := time.Since(connStart)
	co.logf("connect: %d subscribed in %.1fs (%.0f/s)", subscribed, connectTime.Seconds(), float64(subscribed)/connectTime.Seconds())
	idle := co.usageAll()

	phases := []*phase{{name: "warm-up", rate: 1, count: 1}}
	for _, r := range cfg.rates {
		phases = append(phases, &phase{name: fmt.Sprintf("%g/s", r), rate: r, count: int(math.Round(r * cfg.duration.Seconds()))})
	}
	var published uint64
	for _, ph := range phases {
		before := co.usageAll()
		p0, _ := co.sum()
		ph.start = time.Now()
		if err := co.publishPhase(ctx, ph); err != nil {
			return err
		}
		published = max(published, ph.lastOffset)
		want := int64(subscribed) * int64(published)
		drained, got := co.waitDelivered(ctx, want)
		ph.wall = time.Since(ph.start)
		ph.usage = usageDelta(before, co.usageAll(), ph.wall)
		p1, _ := co.sum()
		ph.delivered = p1.Delivered - p0.Delivered
		co.logf("%s: %d published (%.1f/s achieved, %d failed), deliveries %d/%d %s",
			ph.name, ph.published, ph.achieved, ph.failed, got, want, drained)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	reports, err := co.collect(ctx, published)
	if err != nil {
		return err
	}
	final := co.usageAll()
	res := summarize(cfg, subscribed, connectTime, phases, reports, idle, final, co)
	co.printResults(res)
	b, _ := json.MarshalIndent(res, "", "  ")
	os.WriteFile(filepath.Join(cfg.dir, "results.json"), b, 0o644)
	for _, c := range co.clients {
		io.WriteString(c.stdin, "quit\n")
		c.stdin.Close()
	}
	for _, c := range co.clients {
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
		}
	}
	return nil
}

func (co *coordinator) build(ctx context.Context) error {
	if co.cfg.hotline != "" {
		return nil
	}
	dir, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/hotline-rt/hotline").Output()
	if err != nil {
		return fmt.Errorf("find the hotline module (run from the bench module): %w", err)
	}
	co.cfg.hotline = filepath.Join(co.cfg.dir, "hotline")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", co.cfg.hotline, "./cmd/hotline")
	cmd.Dir = strings.TrimSpace(string(dir))
	cmd.Stderr = os.Stderr
	t := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build hotline: %w", err)
	}
	rev, _ := exec.Command("git", "-C", cmd.Dir, "describe", "--always", "--dirty").Output()
	co.logf("built hotline (%s) in %.1fs", strings.TrimSpace(string(rev)), time.Since(t).Seconds())
	return nil
}

// env is the environment of the nodes and clients.
func (co *coordinator) env() []string {
	env := os.Environ()
	if co.cfg.gomaxprocs > 0 {
		env = append(env, fmt.Sprintf("GOMAXPROCS=%d", co.cfg.gomaxprocs))
	}
	return env
}

func (co *coordinator) logFile(name string) (*os.File, error) {
	return os.Create(filepath.Join(co.cfg.dir, name))
}

func (co *coordinator) startRedis() error {
	if co.cfg.broker != "redis" {
		return nil
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(co.cfg.redis, "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--maxclients", "10000", "--dir", co.cfg.dir,
		"--logfile", filepath.Join(co.cfg.dir, "redis.log"))
	if co.redis, err = co.ps.start("redis", cmd); err != nil {
		return err
	}
	if err := waitRedis(addr, co.redis, 10*time.Second); err != nil {
		return err
	}
	co.logf("redis-server: pid %d on %s", co.redis.pid(), addr)
	co.cfg.nodeArgs = append([]string{"-redis-addr", addr}, co.cfg.nodeArgs...)
	return nil
}

func (co *coordinator) startNodes() error {
	for j := range co.cfg.nodes {
		ip := fmt.Sprintf("127.0.1.%d", j+1)
		port, err := freePort(ip)
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("%s:%d", ip, port)
		args := []string{"serve", "-addr", addr, "-broker", co.cfg.broker,
			"-log-level", "warn", "-api-key", co.apiKey,
			"-max-user-sessions", "-1", "-max-conns", "0",
			"-namespace", "scale:history=1000,ttl=10m",
			"-shutdown-timeout", "2s"}
		args = append(args, co.cfg.nodeArgs...)
		cmd := exec.Command(co.cfg.hotline, args...)
		cmd.Env = co.env()
		f, err := co.logFile(fmt.Sprintf("node%d.log", j))
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = f, f
		p, err := co.ps.start(fmt.Sprintf("node%d", j), cmd)
		f.Close()
		if err != nil {
			return err
		}
		co.nodes = append(co.nodes, p)
		co.bases = append(co.bases, "http://"+addr)
	}
	for j, p := range co.nodes {
		if err := waitHealthy(co.bases[j], p, 20*time.Second); err != nil {
			return err
		}
	}
	co.logf("nodes: %d up (%s)", len(co.nodes), strings.Join(co.bases, " "))
	return nil
}

func (co *coordinator) startClients() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var urls []string
	for _, b := range co.bases {
		urls = append(urls, "ws"+strings.TrimPrefix(b, "http")+"/chat")
	}
	k := (co.cfg.subs + co.cfg.perClient - 1) / co.cfg.perClient
	if k > 250 {
		return errors.New("too many client processes: raise -per-client")
	}
	first := 0
	for i := range k {
		n := co.cfg.subs / k
		if i < co.cfg.subs%k {
			n++
		}
		args := []string{"client", "-id", strconv.Itoa(i), "-urls", strings.Join(urls, ","),
			"-first", strconv.Itoa(first), "-n", strconv.Itoa(n),
			"-local", fmt.Sprintf("127.0.2.%d", i+1), "-channel", co.channel,
			"-concurrency", strconv.Itoa(co.cfg.concurrency)}
		if co.cfg.clientProfile {
			args = append(args, "-cpuprofile", filepath.Join(co.cfg.dir, fmt.Sprintf("client%d.pprof", i)))
		}
		first += n
		cmd := exec.Command(self, args...)
		cmd.Env = co.env()
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		f, err := co.logFile(fmt.Sprintf("client%d.log", i))
		if err != nil {
			return err
		}
		cmd.Stderr = f
		p, err := co.ps.start(fmt.Sprintf("client%d", i), cmd)
		f.Close()
		if err != nil {
			return err
		}
		cp := &clientProc{proc: p, stdin: stdin, reports: make(chan Report, 1)}
		co.clients = append(co.clients, cp)
		go cp.readLines(stdout)
	}
	co.logf("clients: %d processes, about %d subscribers each", k, co.cfg.subs/k)
	return nil
}

// readLines takes the client's progress and report lines until its
// stdout closes.
func (cp *clientProc) readLines(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, []byte(`{"type":"progress"`)):
			var p Progress
			if json.Unmarshal(line, &p) == nil {
				cp.mu.Lock()
				cp.last = p
				cp.mu.Unlock()
			}
		case bytes.HasPrefix(line, []byte(`{"type":"report"`)):
			var r Report
			if err := json.Unmarshal(line, &r); err == nil {
				cp.reports <- r
			}
		}
	}
}

// sum adds up the clients' last progress lines; exited counts the
// clients that have ended.
func (co *coordinator) sum() (p Progress, exited int) {
	for _, c := range co.clients {
		c.mu.Lock()
		l := c.last
		c.mu.Unlock()
		p.Connected += l.Connected
		p.Subscribed += l.Subscribed
		p.Delivered += l.Delivered
		p.DialErrors += l.DialErrors
		p.SubErrors += l.SubErrors
		p.Failed += l.Failed
		p.Closed += l.Closed
		if c.exited() {
			exited++
		}
	}
	return p, exited
}

func (co *coordinator) waitSubscribed(ctx context.Context, start time.Time) (int, error) {
	deadline := start.Add(co.cfg.connectTimeout)
	lastLog := time.Now()
	for {
		p, exited := co.sum()
		if int(p.Subscribed+p.Failed) >= co.cfg.subs {
			if p.Failed > 0 {
				co.logf("connect: %d subscribers failed (see client*.log); going on with %d", p.Failed, p.Subscribed)
			}
			return int(p.Subscribed), nil
		}
		if exited > 0 {
			return 0, fmt.Errorf("a client process ended during connect (see %s/client*.log)", co.cfg.dir)
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("connect: only %d of %d subscribed after %s", p.Subscribed, co.cfg.subs, co.cfg.connectTimeout)
		}
		if time.Since(lastLog) >= 2*time.Second {
			lastLog = time.Now()
			co.logf("connect: %d/%d subscribed, %d connected, %d dial errors, %d failed, %d closed (%.0fs)",
				p.Subscribed, co.cfg.subs, p.Connected, p.DialErrors, p.Failed, p.Closed, time.Since(start).Seconds())
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitDelivered waits until the clients have counted want deliveries,
// or their count has not moved for -drain, or -drain-max passes; it says
// how long that took. A backlog still draining would be counted into the
// next phase, so it is waited for while it moves.
func (co *coordinator) waitDelivered(ctx context.Context, want int64) (string, int64) {
	start := time.Now()
	var last int64 = -1
	moved := start
	for {
		p, _ := co.sum()
		if p.Delivered >= want {
			return fmt.Sprintf("(all in %.1fs after the last publication)", time.Since(start).Seconds()), p.Delivered
		}
		if p.Delivered != last {
			last, moved = p.Delivered, time.Now()
		}
		if time.Since(moved) > co.cfg.drain || time.Since(start) > co.cfg.drainMax || ctx.Err() != nil {
			still := "the count had stopped: lost"
			if time.Since(moved) <= co.cfg.drain {
				still = "still arriving: cut by -drain-max, not lost"
				co.cut = true
			}
			return fmt.Sprintf("(NOT ALL: %d missing %.1fs after the last publication; %s)", want-p.Delivered, time.Since(start).Seconds(), still), p.Delivered
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// phase is one rate's run of publications.
type phase struct {
	name         string
	rate         float64
	count        int
	start        time.Time
	wall         time.Duration
	published    int
	failed       int
	achieved     float64
	firstOffset  uint64
	lastOffset   uint64
	apiLatencies []time.Duration
	delivered    int64 // deliveries counted while the phase ran, whatever their publication
	usage        []procCPU
}

// publishPhase publishes ph.count messages at ph.rate, each on time
// whether or not the previous one has been answered (a backend does not
// wait for one publication before the next), with at most maxInFlight
// unanswered. It returns once every publication has been answered.
func (co *coordinator) publishPhase(ctx context.Context, ph *phase) error {
	const maxInFlight = 16
	interval := time.Duration(float64(time.Second) / ph.rate)
	sem := make(chan struct{}, maxInFlight)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for k := range ph.count {
		if d := time.Until(start.Add(time.Duration(k) * interval)); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		node := co.published % len(co.bases)
		co.published++
		wg.Go(func() {
			defer func() { <-sem }()
			off, lat, err := co.publish(ctx, co.bases[node])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				ph.failed++
				co.logf("%s: publish through node%d: %v", ph.name, node, err)
				return
			}
			ph.published++
			ph.apiLatencies = append(ph.apiLatencies, lat)
			if ph.firstOffset == 0 || off < ph.firstOffset {
				ph.firstOffset = off
			}
			ph.lastOffset = max(ph.lastOffset, off)
		})
	}
	// The last publication takes its interval too.
	ph.achieved = float64(ph.count) / (time.Since(start) + interval).Seconds()
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if ph.published > 0 && ph.lastOffset-ph.firstOffset+1 != uint64(ph.published) {
		return fmt.Errorf("%s: offsets %d to %d for %d publications: someone else publishes", ph.name, ph.firstOffset, ph.lastOffset, ph.published)
	}
	if ph.lastOffset >= maxOffsets {
		return fmt.Errorf("more than %d publications", maxOffsets-1)
	}
	return nil
}

// publish sends one message of -size bytes through a node's API; its
// data carries the send time, {"t":<unix ns>,"p":"xxx"}.
func (co *coordinator) publish(ctx context.Context, base string) (uint64, time.Duration, error) {
	pad := strings.Repeat("x", co.cfg.size-32)
	t := time.Now()
	data := fmt.Sprintf(`{"t":%19d,"p":"%s"}`, t.UnixNano(), pad)
	body := fmt.Sprintf(`{"channel":%q,"data":%s}`, co.channel, data)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/publish", strings.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "apikey "+co.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := co.pub.Do(req)
	if err != nil {
		return 0, 0, err
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	lat := time.Since(t)
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("%s: %s", resp.Status, b)
	}
	var pos struct {
		Offset uint64 `json:"offset"`
	}
	if err := json.Unmarshal(b, &pos); err != nil {
		return 0, 0, fmt.Errorf("publish reply %q: %w", b, err)
	}
	return pos.Offset, lat, nil
}

// collect asks every client for its report up to offset last.
func (co *coordinator) collect(ctx context.Context, last uint64) ([]Report, error) {
	for _, c := range co.clients {
		if _, err := fmt.Fprintf(c.stdin, "report %d\n", last); err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
	}
	var out []Report
	for _, c := range co.clients {
		select {
		case r := <-c.reports:
			out = append(out, r)
		case <-c.done:
			return nil, fmt.Errorf("%s ended before its report: %v", c.name, c.err)
		case <-time.After(2 * time.Minute):
			return nil, fmt.Errorf("%s: no report in 2 minutes", c.name)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

// procCPU is one process's usage over a phase, or at a moment.
type procCPU struct {
	Name  string  `json:"name"`
	PID   int     `json:"pid"`
	CPU   float64 `json:"cpu_seconds"`
	Sys   float64 `json:"sys_seconds"` // of CPU, in the kernel
	Cores float64 `json:"cores"`       // CPU seconds per second of the phase
	Wait  float64 `json:"wait_seconds"`
	Runs  int64   `json:"runs"`    // times its threads were put on a CPU
	Waits float64 `json:"waiting"` // seconds waiting for a CPU per second of the phase
	RSS   int64   `json:"rss"`
	HWM   int64   `json:"rss_peak"`
}

func (co *coordinator) usageAll() []procCPU {
	var out []procCPU
	add := func(name string, pid int) {
		u := procUsage(pid)
		if u.Valid {
			out = append(out, procCPU{Name: name, PID: pid, CPU: u.CPU, Sys: u.Sys, Wait: u.Wait, Runs: u.Runs, RSS: u.RSS, HWM: u.HWM})
		}
	}
	if co.redis != nil {
		add("redis", co.redis.pid())
	}
	for _, p := range co.nodes {
		add(p.name, p.pid())
	}
	for _, c := range co.clients {
		add(c.name, c.pid())
	}
	add("coordinator", os.Getpid())
	out = append(out, procCPU{Name: "whole machine", PID: -1, CPU: machineCPU()})
	return out
}

func usageDelta(before, after []procCPU, wall time.Duration) []procCPU {
	var out []procCPU
	for _, a := range after {
		for _, b := range before {
			if a.PID == b.PID {
				d := a
				d.CPU = a.CPU - b.CPU
				d.Sys = a.Sys - b.Sys
				d.Cores = d.CPU / wall.Seconds()
				d.Wait = a.Wait - b.Wait
				d.Runs = a.Runs - b.Runs
				d.Waits = d.Wait / wall.Seconds()
				out = append(out, d)
			}
		}
	}
	return out
}

func numCPU() int { return runtime.NumCPU() }

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
