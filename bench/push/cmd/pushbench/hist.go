package main

import (
	"math/bits"
	"time"
)

// hist is a latency histogram in microseconds with about 1.6 % resolution:
// 64 linear sub-buckets per power of two. Recording is one increment, so
// a client records every delivery; not safe for concurrent use (each
// worker has one, fed under its lock).
type hist struct {
	counts [40 * histSub]uint64
	n      uint64
	max    int64
}

const histSub = 64

func histIndex(us int64) int {
	if us < histSub {
		if us < 0 {
			return 0
		}
		return int(us)
	}
	e := 63 - bits.LeadingZeros64(uint64(us)) // us in [2^e, 2^(e+1))
	shift := e - 6                            // keep 6 bits below the top one
	i := (shift+1)*histSub + int((uint64(us)>>shift)&(histSub-1))
	if i >= len(hist{}.counts) {
		i = len(hist{}.counts) - 1
	}
	return i
}

// histValue is the upper bound of bucket i, in microseconds.
func histValue(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	shift := i/histSub - 1
	sub := int64(i % histSub)
	return (histSub+sub+1)<<shift - 1
}

func (h *hist) record(us int64) {
	h.counts[histIndex(us)]++
	h.n++
	if us > h.max {
		h.max = us
	}
}

// quantile returns the latency at q (0..1).
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(histValue(i), h.max)) * time.Microsecond
		}
	}
	return time.Duration(h.max) * time.Microsecond
}

// sparse is the histogram as sent between processes: bucket → count.
type sparse struct {
	Buckets map[int]uint64 `json:"buckets"`
	Max     int64          `json:"max_us"`
}

func (h *hist) sparse() sparse {
	s := sparse{Buckets: map[int]uint64{}, Max: h.max}
	for i, c := range h.counts {
		if c != 0 {
			s.Buckets[i] = c
		}
	}
	return s
}

func (h *hist) add(s sparse) {
	for i, c := range s.Buckets {
		if i >= 0 && i < len(h.counts) {
			h.counts[i] += c
			h.n += c
		}
	}
	h.max = max(h.max, s.Max)
}
