package loadtest

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Plot geometry, in SVG user units (pixels).
const (
	plotPanelWidth = 440
	plotHeight     = 360
	plotMarginL    = 64
	plotMarginR    = 16
	plotMarginT    = 56
	plotMarginB    = 48
)

var (
	colorP50   = "#4e79a7"
	colorP99   = "#f28e2b"
	colorBytes = "#59a14f"
)

// series is one kind of bar in a panel.
type series struct {
	name   string
	color  string
	values []float64 // one per transport
}

// WriteSVG draws two bar charts side by side: latency p50 and p99 per
// transport (ms, on a log axis: WebSocket's milliseconds and ajax
// polling's second differ a thousandfold, and on a linear axis the first
// vanish), and wire bytes per delivered message per transport (linear).
// The SVG is self-contained, with no scripts or external references.
func WriteSVG(w io.Writer, results []*Result) error {
	labels := make([]string, len(results))
	p50 := make([]float64, len(results))
	p99 := make([]float64, len(results))
	bytes := make([]float64, len(results))
	for i, r := range results {
		labels[i] = r.Transport
		p50[i] = ms(r.Latency.P50)
		p99[i] = ms(r.Latency.P99)
		bytes[i] = r.BytesPerDelivery()
	}
	bw := bufio.NewWriter(w)
	width := 2 * plotPanelWidth
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, plotHeight, width, plotHeight)
	fmt.Fprintf(bw, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, plotHeight)
	panel(bw, 0, "Latency, publish to delivery (ms, log scale)", labels,
		[]series{{"p50", colorP50, p50}, {"p99", colorP99, p99}}, true)
	panel(bw, plotPanelWidth, "Bytes on the wire per delivered message", labels,
		[]series{{"bytes", colorBytes, bytes}}, false)
	fmt.Fprintln(bw, "</svg>")
	return bw.Flush()
}

// panel draws one grouped bar chart with its left edge at x0, on a
// linear axis from 0 or, if logScale, a log axis over the decades the
// positive values span (a value <= 0 gets no bar, only its label).
func panel(w io.Writer, x0 int, title string, labels []string, ss []series, logScale bool) {
	left, top := float64(x0+plotMarginL), float64(plotMarginT)
	plotW := float64(plotPanelWidth - plotMarginL - plotMarginR)
	plotH := float64(plotHeight - plotMarginT - plotMarginB)
	bottom := top + plotH

	fmt.Fprintf(w, `<text x="%g" y="24" text-anchor="middle" font-size="14" font-weight="bold">%s</text>`+"\n", left+plotW/2, esc(title))
	if len(ss) > 1 {
		for i, s := range ss {
			x := left + float64(i)*60
			fmt.Fprintf(w, `<rect x="%g" y="34" width="10" height="10" fill="%s"/><text x="%g" y="43">%s</text>`+"\n", x, s.color, x+14, esc(s.name))
		}
	}

	var all []float64
	for _, s := range ss {
		all = append(all, s.values...)
	}
	ax := linearAxis(all)
	if logScale {
		ax = logAxis(all)
	}
	for _, v := range ax.ticks {
		y := bottom - ax.frac(v)*plotH
		fmt.Fprintf(w, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#ddd"/>`, left, y, left+plotW, y)
		fmt.Fprintf(w, `<text x="%g" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", left-6, y, esc(formatTick(v)))
	}
	fmt.Fprintf(w, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/>`+"\n", left, bottom, left+plotW, bottom)

	if len(labels) == 0 {
		return
	}
	groupW := plotW / float64(len(labels))
	barW := min(48, groupW*0.7/float64(len(ss)))
	for i, label := range labels {
		gx := left + float64(i)*groupW
		fmt.Fprintf(w, `<text x="%.1f" y="%g" text-anchor="middle">%s</text>`+"\n", gx+groupW/2, bottom+18, esc(label))
		x := gx + (groupW-barW*float64(len(ss)))/2
		for _, s := range ss {
			v := s.values[i]
			if math.IsNaN(v) {
				v = 0
			}
			h := ax.frac(v) * plotH
			fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s</title></rect>`,
				x, bottom-h, barW, h, s.color, esc(label), esc(s.name), esc(formatTick(v)))
			fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%s</text>`+"\n", x+barW/2, bottom-h-4, esc(formatValue(v)))
			x += barW
		}
	}
}

// axis maps values to a fraction of the plot's height.
type axis struct {
	ticks []float64
	frac  func(v float64) float64 // 0 at the bottom, 1 at the top
}

// linearAxis runs from 0 to a nice top at least the largest value.
func linearAxis(values []float64) axis {
	top0 := 0.0
	for _, v := range values {
		if !math.IsNaN(v) {
			top0 = max(top0, v)
		}
	}
	step, top := niceAxis(top0)
	var ticks []float64
	for v := 0.0; v <= top+step/2; v += step {
		ticks = append(ticks, v)
	}
	return axis{ticks: ticks, frac: func(v float64) float64 { return min(1, max(0, v/top)) }}
}

// logAxis runs over whole decades, from the one below the smallest
// positive value to the one at or above the largest, with a tick at
// each; at least one decade. Without positive values it is 1 to 10.
func logAxis(values []float64) axis {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range values {
		if v > 0 && !math.IsInf(v, 0) {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 10
	}
	d0, d1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if d1 <= d0 {
		d1 = d0 + 1
	}
	var ticks []float64
	for d := d0; d <= d1; d++ {
		ticks = append(ticks, math.Pow(10, d))
	}
	return axis{ticks: ticks, frac: func(v float64) float64 {
		if !(v > 0) {
			return 0
		}
		return min(1, max(0, (math.Log10(v)-d0)/(d1-d0)))
	}}
}

// niceAxis picks a tick step of 1, 2 or 5 times a power of ten that puts
// about five ticks under the axis top, and that top, at least v.
func niceAxis(v float64) (step, top float64) {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1, 5
	}
	raw := v / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	switch n := raw / mag; {
	case n <= 1:
		step = mag
	case n <= 2:
		step = 2 * mag
	case n <= 5:
		step = 5 * mag
	default:
		step = 10 * mag
	}
	return step, math.Ceil(v/step) * step
}

func formatTick(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

func formatValue(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
