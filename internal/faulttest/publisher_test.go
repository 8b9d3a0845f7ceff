package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// pubRecord is what the publisher knows of one publication.
type pubRecord struct {
	seq     int64
	channel string
	key     string
	tries   int
	acked   bool
	pos     pos           // the acknowledged position
	ackAt   time.Duration // since the run started
	unknown bool          // an attempt before the ack (or the last) had an unknown outcome
	gaveUp  bool          // never acknowledged
	refused string        // a 4xx answer: not retried
}

// publisher posts to /api/publish at a steady rate, each publication with
// its own idempotency key, retrying failures with the same key on either
// node until acknowledged or giveUp passes.
type publisher struct {
	urls     []string
	apiKey   string
	channels []string
	rate     float64
	runID    string
	hc       *http.Client
	t0       time.Time
	maxIn    int           // most publications in flight; past it a tick is skipped
	giveUp   time.Duration // how long one publication is retried
	attemptT time.Duration // bound of one attempt

	mu       sync.Mutex
	recs     []*pubRecord
	inflight int
	skipped  int
	outcomes map[string]int // attempt outcomes by class
}

// Attempt outcome classes.
const (
	oAck          = "200 acknowledged"
	oNotPublished = "503 not published"
	oUnknown      = "504 outcome unknown"
	o5xx          = "other 5xx"
	oRefusedConn  = "connection refused"
	oNetUnknown   = "network error/timeout"
	o4xx          = "4xx refused"
)

// run publishes until ctx ends, then waits for the publications in flight
// (each bounded by giveUp).
func (p *publisher) run(ctx context.Context) {
	p.outcomes = make(map[string]int)
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / p.rate))
	defer tick.Stop()
	var seq int64
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		p.mu.Lock()
		if p.inflight >= p.maxIn {
			p.skipped++
			p.mu.Unlock()
			continue
		}
		seq++
		r := &pubRecord{seq: seq, channel: p.channels[int(seq)%len(p.channels)],
			key: p.runID + "-" + strconv.FormatInt(seq, 10)}
		p.recs = append(p.recs, r)
		p.inflight++
		p.mu.Unlock()
		wg.Go(func() {
			p.publish(r)
			p.mu.Lock()
			p.inflight--
			p.mu.Unlock()
		})
	}
	wg.Wait()
}

func (p *publisher) publish(r *pubRecord) {
	start := time.Now()
	body, _ := json.Marshal(map[string]any{
		"channel":         r.channel,
		"data":            payload{Seq: r.seq},
		"idempotency_key": r.key,
	})
	node := int(r.seq) % len(p.urls)
	backoff := 50 * time.Millisecond
	for {
		class, at, err := p.attempt(p.urls[node], r.key, body)
		p.mu.Lock()
		r.tries++
		p.outcomes[class]++
		switch class {
		case oAck:
			r.acked, r.pos, r.ackAt = true, at, time.Since(p.t0)
		case oUnknown, o5xx, oNetUnknown:
			r.unknown = true
		case o4xx:
			r.refused = err.Error()
		}
		p.mu.Unlock()
		if class == oAck || class == o4xx {
			return
		}
		if time.Since(start) > p.giveUp {
			p.mu.Lock()
			r.gaveUp = true
			p.mu.Unlock()
			return
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
		node = (node + 1) % len(p.urls)
	}
}

// attempt makes one POST and classifies its outcome.
func (p *publisher) attempt(base, key string, body []byte) (string, pos, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.attemptT)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/publish", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "apikey "+p.apiKey)
	req.Header.Set("Idempotency-Key", key)
	resp, err := p.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return oRefusedConn, pos{}, err // never reached a server
		}
		return oNetUnknown, pos{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	switch {
	case resp.StatusCode == http.StatusOK:
		var at pos
		if err := json.Unmarshal(b, &at); err != nil || at.Offset == 0 {
			// Acknowledged but unreadable: the outcome is unknown.
			return oUnknown, pos{}, fmt.Errorf("publish: bad answer %q", b)
		}
		return oAck, at, nil
	case resp.StatusCode == http.StatusServiceUnavailable:
		return oNotPublished, pos{}, fmt.Errorf("publish: %s %s", resp.Status, b)
	case resp.StatusCode == http.StatusGatewayTimeout:
		return oUnknown, pos{}, fmt.Errorf("publish: %s %s", resp.Status, b)
	case resp.StatusCode == http.StatusTooManyRequests:
		return oNotPublished, pos{}, fmt.Errorf("publish: %s %s", resp.Status, b)
	case resp.StatusCode >= 500:
		return o5xx, pos{}, fmt.Errorf("publish: %s %s", resp.Status, b)
	default:
		return o4xx, pos{}, fmt.Errorf("publish: %s %s", resp.Status, b)
	}
}

// records returns a snapshot of the publication records.
func (p *publisher) records() []pubRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]pubRecord, len(p.recs))
	for i, r := range p.recs {
		out[i] = *r
	}
	return out
}

// probeIdempotency publishes twice with one key and reports whether the
// server answered both with the same position (keys honored).
func probeIdempotency(hc *http.Client, base, apiKey, channel, key string) (bool, error) {
	p := &publisher{hc: hc, apiKey: apiKey, attemptT: 5 * time.Second}
	body, _ := json.Marshal(map[string]any{"channel": channel, "data": payload{Seq: -1}, "idempotency_key": key})
	var got [2]pos
	for i := range got {
		class, at, err := p.attempt(base, key, body)
		if class != oAck {
			return false, fmt.Errorf("probe publish: %s: %v", class, err)
		}
		got[i] = at
	}
	return got[0] == got[1], nil
}
