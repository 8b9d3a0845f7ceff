package loadtest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// ErrIncomplete is what Result.Err wraps when a published message did not
// reach every client, or a publication failed.
var ErrIncomplete = errors.New("loadtest: not every message was delivered")

// Result is the measurement of one transport.
type Result struct {
	Transport string
	Channel   string
	Clients   int

	Messages      int    // publications the server accepted
	PublishFailed int    // publications refused or lost on the way
	PublishError  string // the first publish failure, if any

	Delivered  int64     // distinct (message, client) deliveries
	Expected   int64     // Messages × Clients
	Duplicates int       // deliveries of a message a client already had
	Missing    []Missing // accepted messages some client lacks, by seq

	ClientErrors int    // clients whose connection failed during the run
	ClientError  string // the first of those failures

	Elapsed  time.Duration // first publication to last delivery
	Latency  Latency       // publish request to delivery, over every delivery
	Bytes    int64         // subscribers' wire bytes, both directions
	Requests int64         // subscribers' HTTP requests (a WebSocket handshake is one)

	ServerCPU      time.Duration // the server's user+system CPU time during the run
	ServerCPUKnown bool          // ServerCPU was measured (Config.ServerPID)
}

// Latency summarizes latencies.
type Latency struct {
	P50, P99, Max time.Duration
}

// DeliveredPerSecond is the deliveries over the run's elapsed time.
func (r *Result) DeliveredPerSecond() float64 { return perSecond(r.Delivered, r.Elapsed) }

// BytesPerDelivery is the wire bytes per delivered message.
func (r *Result) BytesPerDelivery() float64 { return ratio(r.Bytes, r.Delivered) }

// RequestsPerDelivery is the HTTP requests per delivered message.
func (r *Result) RequestsPerDelivery() float64 { return ratio(r.Requests, r.Delivered) }

// Lost is the deliveries missing: accepted messages times the clients
// that lack each.
func (r *Result) Lost() int64 {
	var n int64
	for _, m := range r.Missing {
		n += int64(m.Clients)
	}
	return n
}

// Err is nil when every accepted message reached every client and no
// publication failed; otherwise it wraps ErrIncomplete and says which.
func (r *Result) Err() error {
	var errs []error
	if len(r.Missing) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrIncomplete, r.Transport, describeMissing(r.Missing, r.Clients)))
	}
	if r.PublishFailed > 0 {
		errs = append(errs, fmt.Errorf("%w: %s: %d publication(s) failed, first: %s", ErrIncomplete, r.Transport, r.PublishFailed, r.PublishError))
	}
	return errors.Join(errs...)
}

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// summarize sorts d in place and returns its percentiles.
func summarize(d []time.Duration) Latency {
	slices.Sort(d)
	return Latency{P50: percentile(d, 50), P99: percentile(d, 99), Max: percentile(d, 100)}
}

// percentile is the nearest-rank p-th percentile of sorted: the smallest
// value with at least p% of the values at or below it. 0 if sorted is
// empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(len(sorted), max(1, rank))-1]
}
