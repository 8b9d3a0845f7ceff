package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// results is everything one run measured, as written to results/MODE.json.
type results struct {
	Run     string    `json:"run"`
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	Machine string    `json:"machine"`
	// LoadAvg is the machine's 1-minute load average at the start and
	// the end of the run: above the CPU count, other work shared the
	// machine and the figures are not comparable with a quiet run's.
	LoadAvg  [2]float64 `json:"loadavg"`
	Command  string     `json:"command"`
	Plan     plan       `json:"plan"`
	CPUs     [2]string  `json:"cpus"` // taskset lists: the servers', the load generator's
	Servers  []server   `json:"servers"`
	Rows     []row      `json:"rows"`
	Failures []string   `json:"failures,omitempty"`
}

type server struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Config  string `json:"config"`
}

func (r *results) find(server, scenario string, keep func(row) bool) (row, bool) {
	for _, x := range r.Rows {
		if x.Server == server && x.Scenario == scenario && (keep == nil || keep(x)) {
			return x, true
		}
	}
	return row{}, false
}

// writeMarkdown writes the summary table (one column per server), then
// every measurement.
func (r *results) writeMarkdown(w io.Writer) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	names := make([]string, len(r.Servers))
	for i, s := range r.Servers {
		names[i] = s.Name + " " + s.Version
	}
	fmt.Fprintf(bw, "Run `%s` (%s mode), %s, %.0f s. Each server pinned to CPU %s, the load generator to CPU %s.\n\n",
		r.Run, r.Plan.Mode, r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.Seconds, r.CPUs[0], r.CPUs[1])
	if busy := max(r.LoadAvg[0], r.LoadAvg[1]); busy > float64(countCPUs()) {
		fmt.Fprintf(bw, "**The machine was busy with other work** (load average %.1f at the start, %.1f at the end, on %d CPUs): the servers and the load generator got only part of their cores, so these figures say that the harness ran, not how fast the servers are.\n\n",
			r.LoadAvg[0], r.LoadAvg[1], countCPUs())
	}
	fmt.Fprintf(bw, "| | %s |\n|---|%s\n", strings.Join(names, " | "), strings.Repeat("---|", len(names)))
	line := func(label string, cell func(server string) string) {
		cells := make([]string, len(r.Servers))
		for i, s := range r.Servers {
			cells[i] = cell(s.Name)
		}
		fmt.Fprintf(bw, "| %s | %s |\n", label, strings.Join(cells, " | "))
	}
	p := r.Plan
	line(fmt.Sprintf("idle: memory per subscribed client (%d clients, RSS after settling)", p.IdleClients), func(s string) string {
		x, ok := r.find(s, "idle", nil)
		if !ok {
			return "–"
		}
		return fmt.Sprintf("%.1f KiB", x.RSSPerClient/1024)
	})
	line(fmt.Sprintf("connect storm: %d clients at once, until all subscribed", p.StormClients), func(s string) string {
		x, ok := r.find(s, "storm", nil)
		if !ok {
			return "–"
		}
		c := fmt.Sprintf("%.2f s (%.0f/s)", x.ConnectSeconds, float64(x.Clients)/x.ConnectSeconds)
		if x.ConnectFailed > 0 {
			c += fmt.Sprintf(", %d failed", x.ConnectFailed)
		}
		return c
	})
	for _, n := range p.FanoutSizes {
		for _, rate := range p.FanoutRates {
			line(fmt.Sprintf("fan-out %d subscribers at %g msg/s: p50 / p99 / max; server CPU-s per 1M deliveries", n, rate), func(s string) string {
				x, ok := r.find(s, "fanout", func(x row) bool { return x.Clients+x.ConnectFailed == n && x.Rate == rate })
				if !ok {
					return "–"
				}
				return latencyCell(x) + fmt.Sprintf("; %.1f", x.CPUPerMillion)
			})
		}
	}
	line(fmt.Sprintf("saturation, %d subscribers: best deliveries/s on one core (p99 there)", p.SatClients), func(s string) string {
		x, ok := r.find(s, "saturation", func(x row) bool { return x.Best })
		if !ok {
			if first, ok := r.find(s, "saturation", nil); ok {
				return fmt.Sprintf("none: at the first step (%g msg/s) %s", first.Rate, strings.TrimPrefix(first.Note, "past the limit: "))
			}
			return "–"
		}
		return fmt.Sprintf("%s (%s ms at %g msg/s)", kilo(x.DeliveriesPerSec), num(x.P99ms), math.Round(x.Rate))
	})
	line("same: lowest server CPU-s per 1M deliveries", func(s string) string {
		best := math.Inf(1)
		for _, x := range r.Rows {
			if x.Server == s && x.Scenario == "saturation" && x.CPUPerMillion > 0 {
				best = min(best, x.CPUPerMillion)
			}
		}
		if math.IsInf(best, 1) {
			return "–"
		}
		return fmt.Sprintf("%.1f", best)
	})
	line(fmt.Sprintf("many rooms: %d clients in %d rooms at %g msg/s: deliveries per server CPU-s; p50 / p99 / max", p.RoomsClients, p.Rooms, p.RoomsRate), func(s string) string {
		x, ok := r.find(s, "rooms", nil)
		if !ok {
			return "–"
		}
		return kilo(x.PerCore) + "; " + latencyCell(x)
	})
	line("deliveries lost / out of order / duplicated, whole run", func(s string) string {
		var lost, order, dup int64
		for _, x := range r.Rows {
			if x.Server == s {
				lost += x.Lost
				order += x.OrderErrors
				dup += x.Duplicates
			}
		}
		return fmt.Sprintf("%d / %d / %d", lost, order, dup)
	})

	fmt.Fprintf(bw, "\nEvery measurement (latency from the publish request to the client's read, ms; `lost` counts deliveries missing at the end, including those of clients the server disconnected; `load CPU` is the load generator's core, 100 %% = full):\n\n")
	fmt.Fprintln(bw, "| server | scenario | clients | rooms | msg/s | published | delivered | lost | order | closed | p50 | p99 | max | deliveries/s | server CPU-s | CPU-s/1M | load CPU | note |")
	fmt.Fprintln(bw, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, x := range r.Rows {
		switch x.Scenario {
		case "idle":
			fmt.Fprintf(bw, "| %s | idle | %d | %d | | | | | | | | | | | | | | RSS %.1f MiB − base %.1f MiB = %.2f KiB/client; connected in %.2f s |\n",
				x.Server, x.Clients, x.Rooms, float64(x.RSS)/(1<<20), float64(x.BaseRSS)/(1<<20), x.RSSPerClient/1024, x.ConnectSeconds)
		case "storm":
			fmt.Fprintf(bw, "| %s | storm | %d | %d | | | | | | | | | | | | | | all subscribed in %.2f s; %d failed %s |\n",
				x.Server, x.Clients, x.Rooms, x.ConnectSeconds, x.ConnectFailed, x.ConnectErr)
		default:
			note := x.Note
			if x.Best {
				note = strings.TrimSpace("best " + note)
			}
			if x.PublishErrors > 0 && !strings.Contains(note, "publish") {
				note += fmt.Sprintf(" %d publish errors: %s", x.PublishErrors, x.PublishErr)
			}
			if x.Extra > 0 {
				note += fmt.Sprintf(" %d deliveries of publications whose request failed", x.Extra)
			}
			if x.Closed > 0 && !strings.Contains(note, "closed") {
				note += fmt.Sprintf(" clients closed by the server: %s", x.CloseErr)
			}
			fmt.Fprintf(bw, "| %s | %s | %d | %d | %g | %d | %d | %d | %d | %d | %s | %s | %s | %s | %.2f | %.2f | %.0f %% | %s |\n",
				x.Server, x.Scenario, x.Clients, x.Rooms, math.Round(x.Rate*10)/10, x.Published, x.Delivered, x.Lost, x.OrderErrors, x.Closed,
				num(x.P50ms), num(x.P99ms), num(x.MaxMs), kilo(x.DeliveriesPerSec), x.ServerCPU, x.CPUPerMillion, 100*x.LoadCPU, note)
		}
	}
	for _, f := range r.Failures {
		fmt.Fprintf(bw, "\nFAILED: %s\n", f)
	}
}

func latencyCell(x row) string {
	c := fmt.Sprintf("%s / %s / %s ms", num(x.P50ms), num(x.P99ms), num(x.MaxMs))
	if x.Lost != 0 || x.OrderErrors != 0 || x.Closed != 0 {
		c += fmt.Sprintf(" (%d lost, %d closed)", x.Lost, x.Closed)
	}
	return c
}

func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func kilo(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.0fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}
