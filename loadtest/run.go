package loadtest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/ws"
)

// connectParallel is how many clients connect at once.
const connectParallel = 32

// giveUp is how many publications may fail, with none accepted, before
// Run stops publishing (a wrong API key, a namespace that refuses).
const giveUp = 3

// Run measures one transport: it connects and subscribes cfg.Clients
// clients, publishes Rate×Duration messages at Rate, waits up to Drain
// for the deliveries, closes the clients and returns what it saw. An
// error means the measurement could not be made (a client could not
// connect, ctx ended); lost messages are not an error of Run but of
// Result.Err.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := newRunner(cfg)
	return r.run(ctx)
}

// runner holds one Run's state. Its methods run on Run's goroutine; the
// clients' receive goroutines and the publisher's are started and waited
// for by run.
type runner struct {
	cfg     Config
	base    string // scheme://host[:port][/path], no trailing slash
	runID   string
	channel string
	n       int // messages to publish

	w         wire
	delivered atomic.Int64
	last      atomic.Int64
	connected atomic.Int64
	tallies   []*tally
	subs      []subscriber
	pub       *published

	start time.Time // of publishing
	sent  int
}

func newRunner(cfg Config) *runner {
	var id [6]byte
	rand.Read(id[:])
	r := &runner{
		cfg:   cfg,
		base:  strings.TrimSuffix(cfg.URL, "/"),
		runID: hex.EncodeToString(id[:]),
		n:     cfg.messages(),
	}
	r.channel = cfg.Channel
	if r.channel == "" {
		r.channel = "bench:" + r.runID
	}
	r.pub = &published{run: r.runID, channel: r.channel, size: cfg.Size, accepted: make([]bool, r.n)}
	return r
}

func (r *runner) run(ctx context.Context) (*Result, error) {
	if err := r.newClients(); err != nil {
		return nil, err
	}
	r.report(PhaseConnect)
	if err := r.connect(ctx); err != nil {
		return nil, err
	}

	// From here every client is subscribed and receiving.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(r.subs))
	var wg sync.WaitGroup
	for i, s := range r.subs {
		wg.Go(func() { errs[i] = s.receive(rctx) })
	}
	stopAll := func() {
		var sw sync.WaitGroup
		for _, s := range r.subs {
			sw.Go(s.stop)
		}
		sw.Wait()
		wg.Wait()
	}

	pub, err := r.newPublisher(ctx)
	if err != nil {
		stopAll()
		return nil, err
	}
	var cpu0 time.Duration
	if r.cfg.ServerPID != 0 {
		if cpu0, err = processCPU(r.cfg.ServerPID); err != nil {
			pub.finish(ctx)
			stopAll()
			return nil, err
		}
	}
	r.start = time.Now()
	r.publish(ctx, pub)
	dctx, dcancel := context.WithTimeout(ctx, r.cfg.Drain)
	pub.finish(dctx)
	r.drain(dctx)
	dcancel()
	var cpu1 time.Duration
	if r.cfg.ServerPID != 0 {
		cpu1, err = processCPU(r.cfg.ServerPID)
	}
	stopAll()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	res := r.result(errs)
	if r.cfg.ServerPID != 0 {
		res.ServerCPU, res.ServerCPUKnown = cpu1-cpu0, true
	}
	r.report(PhaseDone)
	return res, nil
}

// token returns the bearer token of the client called name.
func (r *runner) token(name string) (string, error) {
	if len(r.cfg.JWTSecret) == 0 {
		return r.cfg.Token, nil
	}
	return auth.Sign(r.cfg.JWTSecret, auth.Identity{UserID: name, Name: name}, time.Hour)
}

func (r *runner) wsURL() string {
	u, _ := url.Parse(r.base) // validated
	if u.Scheme == "https" {
		u.Scheme = "wss"
	} else {
		u.Scheme = "ws"
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/chat"
	return u.String()
}

// tlsConfig is the clients' TLS configuration: nil (the defaults) unless
// Insecure.
func (r *runner) tlsConfig() *tls.Config {
	if !r.cfg.Insecure {
		return nil
	}
	return &tls.Config{InsecureSkipVerify: true}
}

func (r *runner) dialOptions(token string, dial func(context.Context, string, string) (net.Conn, error)) *ws.DialOptions {
	o := &ws.DialOptions{Subprotocols: []string{"superchat"}, Header: http.Header{}, NetDialContext: dial, TLSConfig: r.tlsConfig()}
	if token != "" {
		o.Header.Set("Authorization", "Bearer "+token)
	}
	if r.cfg.Compress {
		o.Compression = &ws.CompressionOptions{}
	}
	return o
}

func (r *runner) newClients() error {
	r.tallies = make([]*tally, r.cfg.Clients)
	r.subs = make([]subscriber, r.cfg.Clients)
	for i := range r.subs {
		tok, err := r.token("bench-" + strconv.Itoa(i))
		if err != nil {
			return err
		}
		r.tallies[i] = newTally(r.n)
		rc := receiver{run: r.runID, tally: r.tallies[i], delivered: &r.delivered, last: &r.last}
		if r.cfg.Transport == WebSocket {
			r.subs[i] = &wsClient{receiver: rc, url: r.wsURL(), channel: r.channel, opts: r.dialOptions(tok, r.w.dial), w: &r.w}
			continue
		}
		tr := &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         r.w.dial,
			TLSClientConfig:     r.tlsConfig(),
			MaxConnsPerHost:     2, // a held long poll and a request beside it
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
		}
		stopped, stopFn := context.WithCancel(context.Background())
		r.subs[i] = &pollClient{
			receiver:  rc,
			base:      r.base,
			transport: r.cfg.Transport,
			channel:   r.channel,
			token:     tok,
			interval:  r.cfg.PollInterval,
			hc:        &http.Client{Transport: countingTransport{w: &r.w, next: tr}},
			stopped:   stopped,
			stopFn:    stopFn,
		}
	}
	return nil
}

// connect opens every client, a few at a time. If one fails, the ones
// open are stopped and the first error returned.
func (r *runner) connect(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, r.cfg.ConnectTimeout)
	defer cancel()
	opened := make([]bool, len(r.subs))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	sem := make(chan struct{}, connectParallel)
	tick := time.NewTicker(r.cfg.ProgressInterval)
	defer tick.Stop()
	for i, s := range r.subs {
		select {
		case sem <- struct{}{}:
		case <-cctx.Done():
		}
		if cctx.Err() != nil {
			break
		}
		select {
		case <-tick.C:
			r.report(PhaseConnect)
		default:
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.open(cctx); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("client %d: %w", i, err)
				}
				mu.Unlock()
				cancel()
				return
			}
			opened[i] = true
			r.connected.Add(1)
		})
	}
	wg.Wait()
	if firstErr == nil && cctx.Err() != nil {
		firstErr = fmt.Errorf("loadtest: connecting %d clients: %w", len(r.subs), cctx.Err())
		if ctx.Err() != nil {
			firstErr = ctx.Err()
		}
	}
	if firstErr == nil {
		r.report(PhaseConnect)
		return nil
	}
	// Let go of the clients that did connect.
	var sw sync.WaitGroup
	for i, s := range r.subs {
		if opened[i] {
			sw.Go(func() {
				s.stop()
				sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer scancel()
				s.receive(sctx)
			})
		}
	}
	sw.Wait()
	return firstErr
}

func (r *runner) newPublisher(ctx context.Context) (publisher, error) {
	if r.cfg.APIKey != "" {
		a := newAPIPublisher(r.pub, r.base, r.cfg.APIKey, r.cfg.Publishers)
		a.hc.Transport.(*http.Transport).TLSClientConfig = r.tlsConfig()
		a.start(ctx, r.cfg.Publishers)
		return a, nil
	}
	tok, err := r.token("bench-publisher")
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.ConnectTimeout)
	defer cancel()
	return dialWSPublisher(cctx, r.pub, r.wsURL(), r.dialOptions(tok, nil))
}

// publish makes the n publications on schedule: message seq is due at
// start + seq/Rate. A publisher that cannot keep up makes the rest late,
// not fewer.
func (r *runner) publish(ctx context.Context, pub publisher) {
	r.report(PhasePublish)
	tick := time.NewTicker(r.cfg.ProgressInterval)
	defer tick.Stop()
	due := time.NewTimer(0)
	defer due.Stop()
	interval := float64(time.Second) / r.cfg.Rate
	for r.sent < r.n {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			r.report(PhasePublish)
		case <-due.C:
			if r.pub.ok.Load() == 0 && r.pub.failed.Load() >= giveUp {
				return // the server refuses them: the result says why
			}
			pub.publish(ctx, r.sent)
			r.sent++
			due.Reset(time.Until(r.start.Add(time.Duration(float64(r.sent) * interval))))
		}
	}
}

// drain waits until every accepted message has reached every client, or
// ctx ends.
func (r *runner) drain(ctx context.Context) {
	r.report(PhaseDrain)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	report := time.NewTicker(r.cfg.ProgressInterval)
	defer report.Stop()
	for r.delivered.Load() < r.pub.ok.Load()*int64(len(r.subs)) {
		select {
		case <-ctx.Done():
			return
		case <-report.C:
			r.report(PhaseDrain)
		case <-tick.C:
		}
	}
	r.report(PhaseDrain)
}

func (r *runner) report(phase string) {
	if r.cfg.OnProgress == nil {
		return
	}
	p := Progress{
		Transport: r.cfg.Transport,
		Phase:     phase,
		Clients:   len(r.subs),
		Connected: int(r.connected.Load()),
		Duration:  r.cfg.Duration,
		Messages:  r.n,
		Sent:      r.sent,
		Accepted:  r.pub.ok.Load(),
		Delivered: r.delivered.Load(),
	}
	p.Expected = p.Accepted * int64(len(r.subs))
	if !r.start.IsZero() {
		p.Elapsed = time.Since(r.start)
	}
	r.cfg.OnProgress(p)
}

// result gathers the tallies; every goroutine has finished.
func (r *runner) result(errs []error) *Result {
	res := &Result{
		Transport:     r.cfg.Transport,
		Channel:       r.channel,
		Clients:       len(r.subs),
		Messages:      int(r.pub.ok.Load()),
		PublishFailed: int(r.pub.failed.Load()) + (r.n - r.sent),
		Delivered:     r.delivered.Load(),
		Missing:       checkComplete(r.pub.accepted, r.tallies),
		Bytes:         r.w.bytes(),
		Requests:      r.w.requests.Load(),
	}
	res.Expected = int64(res.Messages) * int64(res.Clients)
	if r.pub.firstErr != nil {
		res.PublishError = r.pub.firstErr.Error()
	} else if r.sent < r.n {
		res.PublishError = fmt.Sprintf("only %d of %d sent", r.sent, r.n)
	}
	if last := r.last.Load(); last != 0 {
		res.Elapsed = time.Unix(0, last).Sub(r.start)
	}
	var all []time.Duration
	for _, t := range r.tallies {
		all = append(all, t.latencies...)
		res.Duplicates += t.duplicates
	}
	res.Latency = summarize(all)
	for _, err := range errs {
		if err == nil {
			continue
		}
		if res.ClientErrors == 0 {
			res.ClientError = err.Error()
		}
		res.ClientErrors++
	}
	return res
}
