//go:build linux

package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Results is what a run found; results.json holds it.
type Results struct {
	Nodes       int           `json:"nodes"`
	Broker      string        `json:"broker"`
	Subscribers int           `json:"subscribers"` // that subscribed
	Asked       int           `json:"asked"`
	Clients     int           `json:"client_processes"`
	ConnectSecs float64       `json:"connect_seconds"` // first dial to the last subscribe reply
	Connect     Summary       `json:"connect_ms"`      // per subscriber: dial to subscribe reply
	Phases      []PhaseResult `json:"phases"`
	Deliveries  int64         `json:"deliveries"`
	Expected    int64         `json:"expected"`
	Duplicates  int64         `json:"duplicates"`
	Skipped     int64         `json:"skipped"`
	TailMissing int64         `json:"tail_missing"`
	Cut         bool          `json:"cut"` // deliveries were still arriving when counted
	Gaps        int64         `json:"gaps"`
	Disconnects int64         `json:"disconnects"`
	Closed      int64         `json:"closed"`
	Other       int64         `json:"other"`
	Errors      []string      `json:"errors,omitempty"`
	Idle        []procCPU     `json:"after_connect"`
	Final       []procCPU     `json:"final"`
	ClientCPU   float64       `json:"client_cpu_seconds"`
	LoadAverage string        `json:"load_average"`
}

// Summary is a histogram's headline numbers, in milliseconds.
type Summary struct {
	N    uint64  `json:"n"`
	Min  float64 `json:"min"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

func summaryOf(h *Hist) Summary {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Summary{N: h.Count, Min: ms(h.Min), P50: ms(h.quantile(0.5)), P99: ms(h.quantile(0.99)),
		P999: ms(h.quantile(0.999)), Max: ms(h.Max)}
}

// PhaseResult is one rate's numbers. Per publication the latency until
// the first, the median, the 99th percentile and the last subscriber had
// it; over the phase, the median and the worst of each across its
// publications, and the distribution of every delivery.
type PhaseResult struct {
	Name       string     `json:"name"`
	Rate       float64    `json:"rate"`
	Achieved   float64    `json:"achieved_rate"`
	Published  int        `json:"published"`
	Failed     int        `json:"failed"`
	Offsets    [2]uint64  `json:"offsets"`
	Deliveries uint64     `json:"deliveries"` // latencies recorded for the phase's offsets
	Expected   uint64     `json:"expected"`
	First      [2]float64 `json:"first_ms"`  // median, worst over publications
	Median     [2]float64 `json:"median_ms"` // median, worst
	P99        [2]float64 `json:"p99_ms"`    // median, worst
	Last       [2]float64 `json:"last_ms"`   // median, worst
	All        Summary    `json:"all_ms"`    // every delivery of the phase
	APIms      [2]float64 `json:"api_ms"`    // publish round trip: median, worst
	Usage      []procCPU  `json:"usage"`
	WallSecs   float64    `json:"wall_seconds"`
	Within400  uint64     `json:"within_400ms"` // deliveries at most 400 ms late
	// CPU per delivery made during the phase, µs: the nodes', the clients',
	// Redis's; and the cores the harness's processes and the whole
	// machine used.
	NodeUS, ClientUS, RedisUS float64
	DuringPhase               int64   // deliveries made while the phase ran, the divisor of the above
	NodeSys, ClientSys        float64 // the kernel's share of NodeUS, ClientUS
	NodeRuns, ClientRuns      float64 // thread runs (wake-ups) per delivery
	OursCores, MachineCores   float64
}

func summarize(cfg config, subscribed int, connect time.Duration, phases []*phase, reports []Report, idle, final []procCPU, co *coordinator) Results {
	r := Results{
		Nodes: cfg.nodes, Broker: cfg.broker, Subscribers: subscribed, Asked: cfg.subs, Clients: len(reports),
		ConnectSecs: connect.Seconds(), Idle: idle, Final: final, LoadAverage: loadAvg(), Cut: co.cut,
	}
	offsets := map[uint64]*Hist{}
	var conn Hist
	for _, rep := range reports {
		conn.merge(rep.Connect)
		r.Deliveries += rep.Delivered
		r.Duplicates += rep.Duplicates
		r.Skipped += rep.Skipped
		r.TailMissing += rep.TailMissing
		r.Gaps += rep.Gaps
		r.Disconnects += rep.Disconnects
		r.Closed += rep.Closed
		r.Other += rep.Other
		r.ClientCPU += rep.CPUSeconds
		for _, e := range rep.Errors {
			if len(r.Errors) < 20 {
				r.Errors = append(r.Errors, fmt.Sprintf("client%d: %s", rep.Client, e))
			}
		}
		for off, h := range rep.Offsets {
			if offsets[off] == nil {
				offsets[off] = &Hist{}
			}
			offsets[off].merge(h)
		}
	}
	r.Connect = summaryOf(&conn)
	var last uint64
	for _, ph := range phases {
		last = max(last, ph.lastOffset)
	}
	r.Expected = int64(subscribed) * int64(last)
	for _, ph := range phases {
		pr := PhaseResult{Name: ph.name, Rate: ph.rate, Achieved: ph.achieved, Published: ph.published,
			Failed: ph.failed, Offsets: [2]uint64{ph.firstOffset, ph.lastOffset},
			Expected: uint64(subscribed) * uint64(ph.published), Usage: ph.usage, WallSecs: ph.wall.Seconds()}
		var firsts, medians, p99s, lasts []float64
		var all Hist
		for off := ph.firstOffset; off <= ph.lastOffset && off > 0; off++ {
			h := offsets[off]
			if h == nil {
				continue
			}
			s := summaryOf(h)
			firsts = append(firsts, s.Min)
			medians = append(medians, s.P50)
			p99s = append(p99s, s.P99)
			lasts = append(lasts, s.Max)
			pr.Deliveries += h.Count
			all.merge(*h)
		}
		for _, b := range all.Buckets {
			if bucketValue(int(b[0])) <= 400_000 {
				pr.Within400 += b[1]
			}
		}
		pr.First = medWorst(firsts)
		pr.Median = medWorst(medians)
		pr.P99 = medWorst(p99s)
		pr.Last = medWorst(lasts)
		pr.All = summaryOf(&all)
		var api []float64
		for _, d := range ph.apiLatencies {
			api = append(api, float64(d.Microseconds())/1000)
		}
		pr.APIms = medWorst(api)
		var nodes, clients, redis, nodesSys, clientsSys float64
		var nodeRuns, clientRuns int64
		for _, u := range ph.usage {
			switch {
			case strings.HasPrefix(u.Name, "node"):
				nodes += u.CPU
				nodesSys += u.Sys
				nodeRuns += u.Runs
			case strings.HasPrefix(u.Name, "client"):
				clients += u.CPU
				clientsSys += u.Sys
				clientRuns += u.Runs
			case u.Name == "redis":
				redis += u.CPU
			}
			if u.PID > 0 {
				pr.OursCores += u.Cores
			} else {
				pr.MachineCores = u.Cores
			}
		}
		// Per delivery made while the phase ran (a backlog of the phase
		// before is delivered, and paid for, during this one).
		pr.DuringPhase = ph.delivered
		if d := float64(ph.delivered); d > 0 {
			pr.NodeUS, pr.ClientUS, pr.RedisUS = nodes/d*1e6, clients/d*1e6, redis/d*1e6
			pr.NodeRuns, pr.ClientRuns = float64(nodeRuns)/d, float64(clientRuns)/d
		}
		if nodes > 0 {
			pr.NodeSys = nodesSys / nodes
		}
		if clients > 0 {
			pr.ClientSys = clientsSys / clients
		}
		r.Phases = append(r.Phases, pr)
	}
	return r
}

// medWorst returns the median and the largest of xs.
func medWorst(xs []float64) [2]float64 {
	if len(xs) == 0 {
		return [2]float64{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return [2]float64{s[(len(s)-1)/2], s[len(s)-1]}
}

func mib(b int64) string { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) }

func (co *coordinator) printResults(r Results) {
	w := co.log
	fmt.Fprintf(w, "\n## %d subscribers on %d node(s), broker %s, %d client processes (load average at end %s)\n\n",
		r.Subscribers, r.Nodes, r.Broker, r.Clients, r.LoadAverage)
	fmt.Fprintf(w, "connect: all %d subscribed in %.1f s; per subscriber dial→subscribed p50 %.1f ms, p99 %.1f ms, max %.1f ms\n\n",
		r.Subscribers, r.ConnectSecs, r.Connect.P50, r.Connect.P99, r.Connect.Max)
	fmt.Fprintln(w, "latency from the publisher's send to arrival, ms; per publication: first, median, p99, last subscriber; \"med/worst\" over the phase's publications")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| phase | pubs (rate) | deliveries | first | median | p99 | last | all deliveries p50 / p99 / p99.9 | ≤ 400 ms | API publish |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, p := range r.Phases {
		fmt.Fprintf(w, "| %s | %d (%.1f/s) | %d/%d | %s | %s | %s | %s | %.0f / %.0f / %.0f | %.3f%% | %s |\n",
			p.Name, p.Published, p.Achieved, p.Deliveries, p.Expected,
			mw(p.First), mw(p.Median), mw(p.P99), mw(p.Last),
			p.All.P50, p.All.P99, p.All.P999, 100*float64(p.Within400)/float64(max(1, p.Expected)), mw(p.APIms))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "per delivery made while the phase ran (of any publication): CPU (the kernel's share) and thread runs (a thread put on a CPU: mostly a wake-up)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| phase | nodes CPU | clients CPU | Redis CPU | node thread runs | client thread runs | cores used: this run | whole machine |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, p := range r.Phases {
		fmt.Fprintf(w, "| %s | %.1f µs (%.0f %%) | %.1f µs (%.0f %%) | %.2f µs | %.3f | %.3f | %.2f | %.2f |\n",
			p.Name, p.NodeUS, 100*p.NodeSys, p.ClientUS, 100*p.ClientSys, p.RedisUS, p.NodeRuns, p.ClientRuns, p.OursCores, p.MachineCores)
	}
	missing := "missing at the end"
	if r.Cut {
		missing = "not yet arrived when counted (still arriving, cut by -drain-max)"
	}
	fmt.Fprintf(w, "\ncounted: %d deliveries of %d expected; %s %d, skipped in stream %d, duplicates %d, gap notices %d, disconnect notices %d, connections closed %d, other messages %d\n",
		r.Deliveries, r.Expected, missing, r.TailMissing, r.Skipped, r.Duplicates, r.Gaps, r.Disconnects, r.Closed, r.Other)
	if len(r.Errors) > 0 {
		fmt.Fprintln(w, "first errors:")
		for _, e := range r.Errors {
			fmt.Fprintln(w, "  ", e)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "per phase, CPU: cores used (CPU seconds per second); wait: seconds its threads were runnable but waited for a CPU, per second")
	fmt.Fprintln(w)
	fmt.Fprint(w, "| process | RSS after connect, MiB | peak RSS, MiB |")
	for _, p := range r.Phases {
		fmt.Fprintf(w, " %s: CPU / wait |", p.Name)
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, "| --- | --- | --- |"+strings.Repeat(" --- |", len(r.Phases))+"\n")
	for _, f := range r.Final {
		idle := int64(0)
		for _, i := range r.Idle {
			if i.PID == f.PID {
				idle = i.RSS
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s |", f.Name, mib(idle), mib(f.HWM))
		for _, p := range r.Phases {
			c, wt := 0.0, 0.0
			for _, u := range p.Usage {
				if u.PID == f.PID {
					c, wt = u.Cores, u.Waits
				}
			}
			fmt.Fprintf(w, " %.2f / %.2f |", c, wt)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

func mw(v [2]float64) string { return fmt.Sprintf("%.0f / %.0f", v[0], v[1]) }
