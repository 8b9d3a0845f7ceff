package server

import (
	"context"
	"encoding/json"
	"math"
	"math/bits"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hotline-rt/hotline/push"
)

// metrics exports the engine's counters to Prometheus and keeps the
// publish→deliver latency, for /metrics and the dashboard feed.
type metrics struct {
	engine   *push.Engine
	registry *prometheus.Registry
	latency  *prometheus.HistogramVec
	// observers caches latency's child per transport, so that a
	// delivery does no label lookup.
	observers map[string]prometheus.Observer
	apiPubs   prometheus.Counter
	recent    latencyBuckets // for the dashboard's per-interval quantiles
}

// endedPolls reports the polling table's tombstones; it is called at
// scrape time only.
func newMetrics(e *push.Engine, limit *connLimit, endedPolls func() int) *metrics {
	m := &metrics{engine: e, registry: prometheus.NewRegistry()}
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "hotline_deliver_latency_seconds",
		Help:    "Time from the broker accepting a publication to its write to a client, by transport.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
	}, []string{"transport"})
	m.observers = make(map[string]prometheus.Observer)
	for _, t := range []string{"websocket", "longpoll", "poll"} {
		m.observers[t] = m.latency.WithLabelValues(t)
	}
	m.apiPubs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hotline_api_publish_total",
		Help: "Publications made through POST /api/publish.",
	})
	diag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hotline_diagnostic_connections",
		Help: "Connections to /echo and /broadcast, counted against -max-conns with the sessions.",
	}, func() float64 { return float64(limit.diag.Load()) })
	ended := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hotline_polling_ended_sessions",
		Help: "Ended polling sessions remembered (tombstones, no queue) so that a late poll learns why; bounded by -max-ended-polls.",
	}, func() float64 { return float64(endedPolls()) })
	m.registry.MustRegister(
		m.latency, m.apiPubs, diag, ended, engineCollector{e},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// delivered records one publication written to a client.
func (m *metrics) delivered(transport string, published time.Time) {
	d := time.Since(published)
	if o, ok := m.observers[transport]; ok {
		o.Observe(d.Seconds())
	} else {
		m.latency.WithLabelValues(transport).Observe(d.Seconds())
	}
	m.recent.add(d)
}

func (m *metrics) published() { m.apiPubs.Inc() }

var (
	descSessions = prometheus.NewDesc("hotline_sessions", "Live sessions by the transport they last attached with.", []string{"transport"}, nil)
	descCounters = []struct {
		desc *prometheus.Desc
		get  func(push.Stats) int64
	}{
		{prometheus.NewDesc("hotline_connects_total", "Sessions created.", nil, nil), func(s push.Stats) int64 { return s.Connects }},
		{prometheus.NewDesc("hotline_refused_total", "New clients refused at the connection limit (503).", nil, nil), func(s push.Stats) int64 { return s.Refused }},
		{prometheus.NewDesc("hotline_messages_in_total", "Messages received from clients.", nil, nil), func(s push.Stats) int64 { return s.MessagesIn }},
		{prometheus.NewDesc("hotline_messages_out_total", "Messages queued to clients (pushes, replies, notices).", nil, nil), func(s push.Stats) int64 { return s.MessagesOut }},
		{prometheus.NewDesc("hotline_publications_total", "Publications accepted.", nil, nil), func(s push.Stats) int64 { return s.Publications }},
		{prometheus.NewDesc("hotline_slow_consumer_disconnects_total", "Sessions ended because their outbound queue was full (queue drops).", nil, nil), func(s push.Stats) int64 { return s.SlowConsumers }},
		{prometheus.NewDesc("hotline_rate_limited_total", "Client publications refused by the rate limit.", nil, nil), func(s push.Stats) int64 { return s.RateLimited }},
	}
)

// engineCollector reads the engine's counters once per scrape.
type engineCollector struct{ e *push.Engine }

func (c engineCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSessions
	for _, d := range descCounters {
		ch <- d.desc
	}
}

func (c engineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.e.Stats()
	for t, n := range st.SessionsByTransport {
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(n), t)
	}
	for _, d := range descCounters {
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(d.get(st)))
	}
}

// latencyBuckets is a lock-free histogram with power-of-two microsecond
// buckets, read and reset by the stats publisher each interval.
type latencyBuckets struct {
	n [32]atomic.Int64
}

func (l *latencyBuckets) add(d time.Duration) {
	us := max(d.Microseconds(), 1)
	i := min(63-bits.LeadingZeros64(uint64(us)), len(l.n)-1)
	l.n[i].Add(1)
}

// takeQuantiles returns the p50 and p99 in milliseconds of what was
// added since the last call (upper bucket bounds), and resets.
func (l *latencyBuckets) takeQuantiles() (p50, p99 float64, count int64) {
	var counts [32]int64
	for i := range l.n {
		counts[i] = l.n[i].Swap(0)
		count += counts[i]
	}
	if count == 0 {
		return 0, 0, 0
	}
	q := func(f float64) float64 {
		target := int64(math.Ceil(f * float64(count)))
		var seen int64
		for i, c := range counts {
			seen += c
			if seen >= target {
				return float64(uint64(2)<<i) / 1000
			}
		}
		return math.Inf(1)
	}
	return q(0.50), q(0.99), count
}

// publishStats publishes a snapshot to stats:server each interval, for
// the dashboard, which subscribes over hotline itself.
func (s *Server) publishStats() {
	defer close(s.stopped)
	iv := s.cfg.StatsInterval
	if iv < 0 {
		return
	}
	if iv == 0 {
		iv = time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			st := s.engine.Stats()
			p50, p99, n := s.metrics.recent.takeQuantiles()
			snap := map[string]any{
				"time":           now.UnixMilli(),
				"sessions":       st.SessionsByTransport,
				"messages_in":    st.MessagesIn,
				"messages_out":   st.MessagesOut,
				"publications":   st.Publications,
				"slow_consumers": st.SlowConsumers,
				"latency_ms":     map[string]any{"p50": p50, "p99": p99, "count": n},
			}
			data, _ := json.Marshal(snap)
			ctx, cancel := context.WithTimeout(context.Background(), iv)
			if _, err := s.engine.Publish(ctx, push.PublishRequest{Channel: "stats:server", Data: data}); err != nil {
				s.log.Debug("stats: publish failed", "err", err)
			}
			cancel()
		}
	}
}
