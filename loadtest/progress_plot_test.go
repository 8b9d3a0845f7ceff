package loadtest

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

// TestProgressNeverOver100: subscribers got publications whose publish
// replies have not come back (Delivered > Accepted × Clients); the
// progress counts them as due and stays at or below 100%.
func TestProgressNeverOver100(t *testing.T) {
	p := Progress{Transport: "websocket", Phase: PhasePublish, Clients: 10, Connected: 10,
		Elapsed: time.Second, Duration: 2 * time.Second, Messages: 100,
		Accepted: 5, Delivered: 57, Expected: 50}
	if due := p.Due(); due != 60 {
		t.Fatalf("Due = %d, want 60 (6 publications delivered to 10 clients at most)", due)
	}
	p.Phase = PhaseDrain
	if f := p.Fraction(); f > 1 || math.Abs(f-0.95) > 1e-9 {
		t.Errorf("Fraction = %v, want 0.95", f)
	}
	if s := p.String(); !strings.Contains(s, "delivered 57/60 (95.0%)") {
		t.Errorf("String = %q", s)
	}
	if b := p.Bar(120); !strings.HasSuffix(b, "recv   57/  60") {
		t.Errorf("Bar = %q", b)
	}
	// Without early deliveries nothing changes.
	p.Delivered = 40
	if p.Due() != 50 {
		t.Errorf("Due = %d, want Expected 50", p.Due())
	}
	// No clients: never below what was delivered.
	if (Progress{Delivered: 3, Expected: 2}).Due() != 3 {
		t.Error("Due below Delivered without clients")
	}
}

// TestLatencyLogAxis: WebSocket's 2 ms and ajax polling's 1 s are both
// visible: on the log axis the 2 ms bar is a tenth of the plot (on the
// old linear one it was 0.2%).
func TestLatencyLogAxis(t *testing.T) {
	ax := logAxis([]float64{2, 1000, math.NaN(), 0})
	if f := ax.frac(2); math.Abs(f-math.Log10(2)/3) > 1e-9 {
		t.Errorf("frac(2 ms) = %v", f)
	}
	if ax.frac(1000) != 1 || ax.frac(0) != 0 || ax.frac(math.NaN()) != 0 {
		t.Errorf("frac(1000) = %v, frac(0) = %v", ax.frac(1000), ax.frac(0))
	}
	if len(ax.ticks) != 4 || ax.ticks[0] != 1 || ax.ticks[3] != 1000 {
		t.Errorf("ticks %v, want 1 10 100 1000", ax.ticks)
	}
	if ax := logAxis(nil); len(ax.ticks) != 2 {
		t.Errorf("empty: ticks %v", ax.ticks)
	}
	if ax := logAxis([]float64{5, 5}); len(ax.ticks) != 2 || ax.frac(5) <= 0 {
		t.Errorf("one value: ticks %v", ax.ticks)
	}
	var b bytes.Buffer
	res := []*Result{
		{Transport: "websocket", Latency: Latency{P50: 2 * time.Millisecond, P99: 5 * time.Millisecond}},
		{Transport: "poll", Latency: Latency{P50: time.Second, P99: 2 * time.Second}},
	}
	if err := WriteSVG(&b, res); err != nil {
		t.Fatal(err)
	}
	texts := checkXML(t, b.Bytes())
	for _, want := range []string{"Latency, publish to delivery (ms, log scale)", "1", "10", "100", "1000", "10000"} {
		if !texts[want] {
			t.Errorf("no text %q in the SVG", want)
		}
	}
}
