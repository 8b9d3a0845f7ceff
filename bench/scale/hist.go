//go:build linux

package main

import (
	"math"
	"math/bits"
	"sort"
	"sync/atomic"
)

// Latencies are kept in microseconds, in log-linear buckets: values below
// 16 have a bucket each, and every power of two above is split into 16
// equal buckets, so a bucket is at most 1/16 (6.25 %) wide relative to
// its value. Min and max are kept exactly. Histograms of different
// processes merge by adding buckets.
const (
	subBuckets = 16
	subBits    = 4
	maxExp     = 40 // values are capped at 2^40 µs (12 days)
	numBuckets = subBuckets + (maxExp-subBits)*subBuckets
)

func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	if v < subBuckets {
		return int(v)
	}
	if v >= 1<<maxExp {
		return numBuckets - 1
	}
	k := bits.Len64(uint64(v)) - 1 // 2^k <= v < 2^(k+1), k >= subBits
	sub := (v >> (k - subBits)) & (subBuckets - 1)
	return subBuckets + (k-subBits)*subBuckets + int(sub)
}

// bucketValue is the middle of bucket i.
func bucketValue(i int) int64 {
	if i < subBuckets {
		return int64(i)
	}
	k := (i-subBuckets)/subBuckets + subBits
	sub := int64((i - subBuckets) % subBuckets)
	width := int64(1) << (k - subBits)
	return int64(1)<<k + sub*width + width/2
}

// atomicHist is a histogram that many goroutines record into without a
// lock.
type atomicHist struct {
	count    atomic.Uint64
	min, max atomic.Int64
	buckets  [numBuckets]atomic.Uint32
}

func newAtomicHist() *atomicHist {
	h := &atomicHist{}
	h.min.Store(math.MaxInt64)
	h.max.Store(math.MinInt64)
	return h
}

func (h *atomicHist) record(v int64) {
	h.buckets[bucketOf(v)].Add(1)
	h.count.Add(1)
	for {
		m := h.min.Load()
		if v >= m || h.min.CompareAndSwap(m, v) {
			break
		}
	}
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
}

// snapshot copies h into a Hist for the report.
func (h *atomicHist) snapshot() Hist {
	out := Hist{Count: h.count.Load(), Min: h.min.Load(), Max: h.max.Load()}
	for i := range h.buckets {
		if n := h.buckets[i].Load(); n > 0 {
			out.Buckets = append(out.Buckets, [2]uint64{uint64(i), uint64(n)})
		}
	}
	if out.Count == 0 {
		out.Min, out.Max = 0, 0
	}
	return out
}

// Hist is a histogram as a client reports it: sparse buckets
// (index, count), with exact min and max.
type Hist struct {
	Count   uint64      `json:"n"`
	Min     int64       `json:"min"`
	Max     int64       `json:"max"`
	Buckets [][2]uint64 `json:"b,omitempty"`
}

// merge adds o into h.
func (h *Hist) merge(o Hist) {
	if o.Count == 0 {
		return
	}
	if h.Count == 0 || o.Min < h.Min {
		h.Min = o.Min
	}
	if h.Count == 0 || o.Max > h.Max {
		h.Max = o.Max
	}
	h.Count += o.Count
	m := make(map[uint64]uint64, len(h.Buckets)+len(o.Buckets))
	for _, b := range h.Buckets {
		m[b[0]] += b[1]
	}
	for _, b := range o.Buckets {
		m[b[0]] += b[1]
	}
	h.Buckets = h.Buckets[:0]
	for i, n := range m {
		h.Buckets = append(h.Buckets, [2]uint64{i, n})
	}
	sort.Slice(h.Buckets, func(i, j int) bool { return h.Buckets[i][0] < h.Buckets[j][0] })
}

// quantile returns the value below which a fraction q of the recorded
// values lie (q = 0: min, q = 1: max), to the bucket's precision and
// clamped to [min, max].
func (h *Hist) quantile(q float64) int64 {
	if h.Count == 0 {
		return 0
	}
	if q <= 0 {
		return h.Min
	}
	if q >= 1 {
		return h.Max
	}
	rank := uint64(math.Ceil(q * float64(h.Count)))
	var seen uint64
	for _, b := range h.Buckets {
		seen += b[1]
		if seen >= rank {
			return min(max(bucketValue(int(b[0])), h.Min), h.Max)
		}
	}
	return h.Max
}
