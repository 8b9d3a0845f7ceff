package loadtest

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"
)

// WriteTable writes one row per result: deliveries per second, latency
// percentiles, wire bytes and HTTP requests per delivered message, the
// server's CPU time (or "-" if not measured) and the deliveries missing.
func WriteTable(w io.Writer, results []*Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "transport\tclients\tmessages\tdelivered\tdelivered/s\tp50\tp99\tmax\tbytes/msg\treq/msg\tserver CPU\tmissing\t")
	for _, r := range results {
		cpu := "-"
		if r.ServerCPUKnown {
			cpu = fmt.Sprintf("%.2fs", r.ServerCPU.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n",
			r.Transport, r.Clients, r.Messages, r.Delivered, r.DeliveredPerSecond(),
			formatLatency(r.Latency.P50), formatLatency(r.Latency.P99), formatLatency(r.Latency.Max),
			formatRatio(r.BytesPerDelivery(), 1), formatRatio(r.RequestsPerDelivery(), 3),
			cpu, r.Lost())
	}
	return tw.Flush()
}

// formatLatency prints a latency with three significant digits or so,
// in ms below a second.
func formatLatency(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d == 0:
		return "-"
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.0fms", ms)
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

func formatRatio(v float64, decimals int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.*f", decimals, v)
}
