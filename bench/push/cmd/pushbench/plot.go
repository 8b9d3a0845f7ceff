package main

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
)

// The SVG: one grouped bar chart per headline figure, servers as bars.

var serverColors = []string{"#e15759", "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1"}

type chart struct {
	title  string
	groups []string    // x axis
	values [][]float64 // [server][group]; NaN: not measured
	format func(float64) string
}

const (
	chartW, chartH                 = 420, 300
	chartL, chartR, chartT, chartB = 56, 12, 52, 40
)

func (r *results) writeSVG(w io.Writer) error {
	p := r.Plan
	var charts []chart
	// fan-out p99 at the highest rate, by size
	if len(p.FanoutRates) > 0 {
		rate := p.FanoutRates[len(p.FanoutRates)-1]
		c := chart{title: fmt.Sprintf("Fan-out p99 at %g msg/s, ms (lower is better)", rate), format: func(v float64) string { return num(v) }}
		for _, n := range p.FanoutSizes {
			c.groups = append(c.groups, fmt.Sprintf("%d subs", n))
		}
		for _, s := range r.Servers {
			var vs []float64
			for _, n := range p.FanoutSizes {
				x, ok := r.find(s.Name, "fanout", func(x row) bool { return x.Clients+x.ConnectFailed == n && x.Rate == rate })
				vs = append(vs, pick(ok, x.P99ms))
			}
			c.values = append(c.values, vs)
		}
		charts = append(charts, c)
	}
	single := func(title, scenario string, f func(row) (float64, bool), format func(float64) string) chart {
		c := chart{title: title, groups: []string{""}, format: format}
		for _, s := range r.Servers {
			x, ok := r.find(s.Name, scenario, func(x row) bool { return scenario != "saturation" || x.Best })
			v, ok2 := f(x)
			c.values = append(c.values, []float64{pick(ok && ok2, v)})
		}
		return c
	}
	charts = append(charts,
		single("Saturation: deliveries/s on one core (higher is better)", "saturation", func(x row) (float64, bool) { return x.DeliveriesPerSec, true }, kilo),
		single("Idle memory per client, KiB (lower is better)", "idle", func(x row) (float64, bool) { return x.RSSPerClient / 1024, true }, func(v float64) string { return fmt.Sprintf("%.1f", v) }),
		single(fmt.Sprintf("Connect storm, %d clients: s (lower is better)", p.StormClients), "storm", func(x row) (float64, bool) { return x.ConnectSeconds, true }, func(v float64) string { return fmt.Sprintf("%.2f", v) }),
	)
	bw := bufio.NewWriter(w)
	cols := 2
	rows := (len(charts) + cols - 1) / cols
	W, H := cols*chartW, rows*chartH+30
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(bw, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	for i, s := range r.Servers {
		x := 12 + i*200
		fmt.Fprintf(bw, `<rect x="%d" y="10" width="10" height="10" fill="%s"/><text x="%d" y="19">%s</text>`+"\n", x, serverColors[i%len(serverColors)], x+14, esc(s.Name+" "+s.Version))
	}
	if busy := max(r.LoadAvg[0], r.LoadAvg[1]); busy > float64(countCPUs()) {
		fmt.Fprintf(bw, `<text x="%d" y="%d" text-anchor="end" fill="#c00">machine busy with other work (load average %.0f): not a measurement of the servers</text>`+"\n", W-12, H-8, busy)
	}
	for i, c := range charts {
		drawChart(bw, (i%cols)*chartW, 30+(i/cols)*chartH, c)
	}
	fmt.Fprintln(bw, "</svg>")
	return bw.Flush()
}

func pick(ok bool, v float64) float64 {
	if !ok {
		return math.NaN()
	}
	return v
}

func drawChart(w io.Writer, x0, y0 int, c chart) {
	left, top := float64(x0+chartL), float64(y0+chartT)
	pw, ph := float64(chartW-chartL-chartR), float64(chartH-chartT-chartB)
	bottom := top + ph
	fmt.Fprintf(w, `<text x="%g" y="%d" text-anchor="middle" font-size="12" font-weight="bold">%s</text>`+"\n", float64(x0+chartW/2), y0+30, esc(c.title))
	top0 := 0.0
	for _, vs := range c.values {
		for _, v := range vs {
			if !math.IsNaN(v) {
				top0 = max(top0, v)
			}
		}
	}
	if top0 == 0 {
		top0 = 1
	}
	top0 = niceCeil(top0)
	for i := 0; i <= 4; i++ {
		v := top0 * float64(i) / 4
		y := bottom - ph*float64(i)/4
		fmt.Fprintf(w, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#ddd"/><text x="%g" y="%g" text-anchor="end">%s</text>`+"\n", left, y, left+pw, y, left-6, y+4, esc(c.format(v)))
	}
	fmt.Fprintf(w, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/>`+"\n", left, bottom, left+pw, bottom)
	n := len(c.values)
	gw := pw / float64(len(c.groups))
	bw := gw * 0.8 / float64(max(n, 1))
	for g, label := range c.groups {
		gx := left + gw*float64(g) + gw*0.1
		for s := range c.values {
			v := c.values[s][g]
			x := gx + bw*float64(s)
			if math.IsNaN(v) {
				fmt.Fprintf(w, `<text x="%g" y="%g" text-anchor="middle" fill="#999">n/a</text>`+"\n", x+bw/2, bottom-4)
				continue
			}
			h := ph * v / top0
			fmt.Fprintf(w, `<rect x="%g" y="%g" width="%g" height="%g" fill="%s"/>`+"\n", x, bottom-h, bw-2, h, serverColors[s%len(serverColors)])
			fmt.Fprintf(w, `<text x="%g" y="%g" text-anchor="middle" font-size="10">%s</text>`+"\n", x+bw/2-1, bottom-h-3, esc(c.format(v)))
		}
		if label != "" {
			fmt.Fprintf(w, `<text x="%g" y="%g" text-anchor="middle">%s</text>`+"\n", gx+gw*0.4, bottom+16, esc(label))
		}
	}
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
