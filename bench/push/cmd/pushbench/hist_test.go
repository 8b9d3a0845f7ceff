package main

import (
	"testing"
	"time"
)

func TestHistQuantiles(t *testing.T) {
	var h hist
	for us := int64(1); us <= 100000; us++ {
		h.record(us)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		got := h.quantile(tc.q)
		if d := float64(got-tc.want) / float64(tc.want); d < -0.02 || d > 0.02 {
			t.Errorf("q%.2f = %v, want %v ± 2%%", tc.q, got, tc.want)
		}
	}
	var m hist
	m.add(h.sparse())
	if m.n != h.n || m.quantile(0.5) != h.quantile(0.5) || m.max != 100000 {
		t.Fatal("a histogram does not survive its sparse form")
	}
	for i := 0; i < len(h.counts); i++ {
		if v := histValue(i); histIndex(v) != i {
			t.Fatalf("bucket %d: upper bound %d maps to %d", i, v, histIndex(v))
		}
	}
}
