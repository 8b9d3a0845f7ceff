//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hotline-rt/hotline/superchat"
)

// The fast push parser must read what the wire type encodes: offset,
// epoch and the send time in the data, and refuse what is not a push.
func TestParsePush(t *testing.T) {
	data := fmt.Sprintf(`{"t":%19d,"p":"xxxxxxxx"}`, int64(1764547200123456789))
	b, err := json.Marshal(superchat.ServerMessage{Push: &superchat.Push{
		Channel: "scale:run1", Epoch: "Xy3kQ1aB", Offset: 4711, Data: json.RawMessage(data),
	}})
	if err != nil {
		t.Fatal(err)
	}
	off, epoch, sent, ok := parsePush(b)
	if !ok || off != 4711 || string(epoch) != "Xy3kQ1aB" || sent != 1764547200123456789 {
		t.Fatalf("parsePush(%s) = %d, %q, %d, %v", b, off, epoch, sent, ok)
	}
	for _, m := range []string{
		`{"gap":{"channel":"scale:run1","epoch":"Xy3kQ1aB","offset":3,"reason":"offset gap"}}`,
		`{"id":1,"result":{"epoch":"","offset":0}}`,
		`{"push":{"channel":"scale:run1","join":{"user":"u1"}}}`,
		`{"disconnect":{"code":1008,"reason":"slow consumer: outbound queue full"}}`,
	} {
		if _, _, _, ok := parsePush([]byte(m)); ok {
			t.Errorf("parsePush(%s): ok, want not a push", m)
		}
	}
}

// Quantiles of the bucketed histogram stay within a bucket's width
// (1/16) of the exact ones, also after merging histograms.
func TestHistQuantile(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var vals []int64
	a, b := newAtomicHist(), newAtomicHist()
	for i := range 20000 {
		v := int64(r.ExpFloat64() * 50000)
		vals = append(vals, v)
		if i%2 == 0 {
			a.record(v)
		} else {
			b.record(v)
		}
	}
	h := a.snapshot()
	h.merge(b.snapshot())
	slices.Sort(vals)
	if h.Count != uint64(len(vals)) || h.Min != vals[0] || h.Max != vals[len(vals)-1] {
		t.Fatalf("count %d min %d max %d, want %d %d %d", h.Count, h.Min, h.Max, len(vals), vals[0], vals[len(vals)-1])
	}
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		exact := vals[int(q*float64(len(vals)))-1]
		got := h.quantile(q)
		if d := float64(got-exact) / float64(max(exact, 16)); d > 1.0/16 || d < -1.0/16 {
			t.Errorf("q %.3f: %d, exact %d", q, got, exact)
		}
	}
}
