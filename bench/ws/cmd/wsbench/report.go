package main

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

type report struct {
	Mode    string    `json:"mode"`
	Rounds  int       `json:"rounds"`
	Command string    `json:"command"`
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	Machine string    `json:"machine"`
	Pinning string    `json:"pinning"`
	// LoadBefore and LoadAfter are the 1-minute load averages when the
	// run started and ended: the machine may be shared.
	LoadBefore string            `json:"load_before"`
	LoadAfter  string            `json:"load_after"`
	GoVersion  string            `json:"go_version"`
	Versions   map[string]string `json:"versions"`
	Servers    []string          `json:"servers"`
	Cases      []caseInfo        `json:"cases"`
	// Results holds the median of the rounds of each case and server;
	// Runs every round.
	Results []result `json:"results"`
	Runs    []result `json:"runs"`
}

// summarize fills Results from Runs: the median value and the median
// server CPU of the rounds that did not fail. A round that failed fails
// the result, with its reason.
func (rep *report) summarize() {
	rep.Results = nil
	for _, k := range rep.Cases {
		for _, s := range rep.Servers {
			var rs []result
			for _, r := range rep.Runs {
				if r.Case == k.Name && r.Server == s {
					rs = append(rs, r)
				}
			}
			if len(rs) == 0 || slices.ContainsFunc(rep.Results, func(r result) bool { return r.Case == k.Name && r.Server == s }) {
				continue
			}
			sum := rs[0]
			sum.Round = 0
			var vals, cpus, spct, gpct []float64
			for _, r := range rs {
				if r.Failed != "" && sum.Failed == "" {
					sum.Failed = fmt.Sprintf("round %d: %s", r.Round, r.Failed)
				}
				if r.Failed == "" && r.Skipped == "" {
					vals = append(vals, r.Value)
					cpus = append(cpus, r.SrvCPUus)
					spct = append(spct, r.SrvCPUpct)
					gpct = append(gpct, r.GenCPUpct)
				}
			}
			sum.Value, sum.SrvCPUus = median(vals), median(cpus)
			sum.SrvCPUpct, sum.GenCPUpct = median(spct), median(gpct)
			sum.Messages, sum.Seconds = 0, 0 // per round, in Runs
			sum.Rounds = len(vals)
			rep.Results = append(rep.Results, sum)
		}
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

type caseInfo struct {
	Name          string `json:"name"`
	Unit          string `json:"unit"`
	LowerIsBetter bool   `json:"lower_is_better,omitempty"`
}

func (rep *report) json() []byte {
	b, _ := json.MarshalIndent(rep, "", "  ")
	return append(b, '\n')
}

func (rep *report) get(kase, srv string) *result {
	for i := range rep.Results {
		if r := &rep.Results[i]; r.Case == kase && r.Server == srv {
			return r
		}
	}
	return nil
}

// cell is a figure and its ratio to hotline's.
func cell(v, ref float64, ok, refOK bool) string {
	if !ok {
		return "–"
	}
	s := thousands(v)
	if refOK && ref > 0 {
		s += fmt.Sprintf(" (%.2f)", v/ref)
	}
	return s
}

func (rep *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "wsbench %s run, %s UTC, %.0f s, medians of %d round(s): %s; %s.\n\n", rep.Mode, rep.Started.Format("2006-01-02 15:04"), rep.Seconds, rep.Rounds, rep.Machine, rep.Pinning)
	fmt.Fprintf(&b, "Load average (1 min) at the start %s, at the end %s.\n\n", rep.LoadBefore, rep.LoadAfter)
	fmt.Fprintf(&b, "    %s\n\n", rep.Command)
	head := func(first string) {
		b.WriteString("| " + first + " |")
		for _, s := range rep.Servers {
			b.WriteString(" " + s + " |")
		}
		b.WriteString("\n|---|")
		for range rep.Servers {
			b.WriteString("---:|")
		}
		b.WriteString("\n")
	}
	value := func(kase, srv string, cpu bool) (float64, bool) {
		r := rep.get(kase, srv)
		if r == nil || r.Skipped != "" || r.Failed != "" {
			return 0, false
		}
		if cpu {
			return r.SrvCPUus, r.SrvCPUus > 0
		}
		return r.Value, true
	}
	table := func(cpu bool) {
		for _, k := range rep.Cases {
			unit := k.Unit
			if cpu {
				unit = "server CPU µs per message"
				switch {
				case strings.HasPrefix(k.Name, "idle"):
					unit = "server CPU µs per handshake"
				case strings.HasPrefix(k.Name, "broadcast"):
					unit = "server CPU µs per delivery"
				}
			}
			b.WriteString("| " + k.Name + ": " + unit + " |")
			ref, refOK := value(k.Name, "hotline", cpu)
			for _, s := range rep.Servers {
				v, ok := value(k.Name, s, cpu)
				b.WriteString(" " + cell(v, ref, ok, refOK) + " |")
			}
			b.WriteString("\n")
		}
	}
	head("case (ratio to hotline)")
	table(false)
	b.WriteString("\n")
	head("server CPU (ratio to hotline; lower is better)")
	table(true)
	b.WriteString("\nVersions: ")
	var vs []string
	for _, s := range rep.Servers {
		if v, ok := rep.Versions[s]; ok {
			vs = append(vs, s+" "+v)
		}
	}
	b.WriteString(strings.Join(vs, ", ") + "; built with " + rep.GoVersion + ".\n")
	var notes []string
	for _, r := range rep.Results {
		if r.Failed != "" {
			notes = append(notes, fmt.Sprintf("- %s, %s: failed: %s", r.Server, r.Case, r.Failed))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	return b.String()
}

// thousands formats v with thousands separators, to 3 significant
// figures below 100.
func thousands(v float64) string {
	if v == 0 {
		return "0"
	}
	if math.Abs(v) < 100 {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// svg draws one group of bars per case, each bar a server's figure
// relative to hotline's (1.0), higher is better everywhere: for the cases
// where lower is better the bar is hotline's figure over the server's.
func (rep *report) svg() []byte {
	const (
		rowH   = 14
		headH  = 18
		gap    = 10
		left   = 70
		width  = 480
		top    = 44
		maxRel = 2.0
	)
	colors := []string{"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#7f7f7f"}
	n := len(rep.Servers)
	height := top + len(rep.Cases)*(headH+n*rowH+gap) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", left+width+230, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="16" font-size="13">wsbench %s run, %s: each server relative to hotline (dashed line = hotline)</text>`+"\n", rep.Mode, rep.Started.Format("2006-01-02"))
	fmt.Fprintf(&b, `<text x="10" y="32" fill="#444">longer is better (for memory the bar is hotline's figure over the server's); bars cut at %.0f×</text>`+"\n", maxRel)
	x1 := left + int(width/maxRel)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black" stroke-dasharray="3,3"/>`+"\n", x1, top, x1, height-10)
	y := top
	for _, k := range rep.Cases {
		fmt.Fprintf(&b, `<text x="10" y="%d" font-weight="bold">%s: %s</text>`+"\n", y+headH-5, esc(k.Name), esc(k.Unit))
		y += headH
		ref := rep.get(k.Name, "hotline")
		for i, s := range rep.Servers {
			r := rep.get(k.Name, s)
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-4, y+rowH-3, s)
			if r == nil || ref == nil || r.Skipped != "" || r.Failed != "" || ref.Failed != "" || r.Value <= 0 || ref.Value <= 0 {
				fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#888">–</text>`+"\n", left+4, y+rowH-3)
				y += rowH
				continue
			}
			rel := r.Value / ref.Value
			if k.LowerIsBetter {
				rel = ref.Value / r.Value
			}
			w := int(math.Min(rel, maxRel) / maxRel * width)
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", left, y+1, w, rowH-2, colors[i%len(colors)])
			fmt.Fprintf(&b, `<text x="%d" y="%d">%.2f (%s)</text>`+"\n", left+w+4, y+rowH-3, rel, thousands(r.Value))
			y += rowH
		}
		y += gap
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
