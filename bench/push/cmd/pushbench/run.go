package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// plan is the load of one run; every server gets the same.
type plan struct {
	Mode         string        `json:"mode"`
	FanoutSizes  []int         `json:"fanout_sizes"`
	FanoutRates  []float64     `json:"fanout_rates"`
	FanoutDur    time.Duration `json:"fanout_duration"`
	SatClients   int           `json:"saturation_clients"`
	SatStart     float64       `json:"saturation_start_rate"`
	SatFactor    float64       `json:"saturation_factor"`
	SatStep      time.Duration `json:"saturation_step"`
	SatMaxSteps  int           `json:"saturation_max_steps"`
	RoomsClients int           `json:"rooms_clients"`
	Rooms        int           `json:"rooms"`
	RoomsRate    float64       `json:"rooms_rate"`
	RoomsDur     time.Duration `json:"rooms_duration"`
	IdleClients  int           `json:"idle_clients"`
	IdleSettle   time.Duration `json:"idle_settle"`
	StormClients int           `json:"storm_clients"`
	PerProc      int           `json:"clients_per_load_process"`
	Pad          int           `json:"payload_pad"`
	DrainMax     time.Duration `json:"drain_max"`
	Stall        time.Duration `json:"drain_stall"`
}

var fullPlan = plan{
	Mode:        "full",
	FanoutSizes: []int{1000, 5000, 10000}, FanoutRates: []float64{1, 20}, FanoutDur: 10 * time.Second,
	SatClients: 2000, SatStart: 10, SatFactor: 1.5, SatStep: 5 * time.Second, SatMaxSteps: 12,
	RoomsClients: 10000, Rooms: 1000, RoomsRate: 1000, RoomsDur: 10 * time.Second,
	IdleClients: 10000, IdleSettle: 5 * time.Second,
	StormClients: 5000,
	PerProc:      8000, Pad: 32, DrainMax: 15 * time.Second, Stall: 1500 * time.Millisecond,
}

var quickPlan = plan{
	Mode:        "quick",
	FanoutSizes: []int{200}, FanoutRates: []float64{1, 20}, FanoutDur: 1500 * time.Millisecond,
	SatClients: 200, SatStart: 50, SatFactor: 2, SatStep: 1500 * time.Millisecond, SatMaxSteps: 2,
	RoomsClients: 200, Rooms: 20, RoomsRate: 100, RoomsDur: 1500 * time.Millisecond,
	IdleClients: 200, IdleSettle: 500 * time.Millisecond,
	StormClients: 200,
	PerProc:      150, Pad: 32, DrainMax: 5 * time.Second, Stall: 500 * time.Millisecond,
}

// row is one measurement: a scenario step on one server.
type row struct {
	Server   string  `json:"server"`
	Scenario string  `json:"scenario"` // fanout, saturation, rooms, idle, storm
	Clients  int     `json:"clients"`
	Rooms    int     `json:"rooms"`
	Rate     float64 `json:"rate,omitempty"` // target publications/s, all rooms together

	Published     int64  `json:"published,omitempty"`
	PublishErrors int64  `json:"publish_errors,omitempty"`
	PublishErr    string `json:"publish_err,omitempty"`
	Delivered     int64  `json:"delivered,omitempty"`
	Expected      int64  `json:"expected,omitempty"`
	Lost          int64  `json:"lost,omitempty"`
	Extra         int64  `json:"extra,omitempty"` // delivered beyond expected: publications whose request failed yet were published
	OrderErrors   int64  `json:"order_errors,omitempty"`
	Duplicates    int64  `json:"duplicates,omitempty"`
	Closed        int64  `json:"closed,omitempty"`
	CloseErr      string `json:"close_err,omitempty"`

	P50ms float64 `json:"p50_ms,omitempty"`
	P99ms float64 `json:"p99_ms,omitempty"`
	MaxMs float64 `json:"max_ms,omitempty"`

	Seconds          float64 `json:"seconds,omitempty"` // first publication to last delivery
	DeliveriesPerSec float64 `json:"deliveries_per_s,omitempty"`
	ServerCPU        float64 `json:"server_cpu_s,omitempty"` // in the phase
	CPUPerMillion    float64 `json:"cpu_s_per_million,omitempty"`
	PerCore          float64 `json:"deliveries_per_cpu_s,omitempty"` // deliveries per server CPU-second
	LoadCPU          float64 `json:"load_cpu_util,omitempty"`        // load generator CPU-s per s (1 = its core full)

	BaseRSS      int64   `json:"base_rss,omitempty"`
	RSS          int64   `json:"rss,omitempty"`
	RSSPerClient float64 `json:"rss_per_client,omitempty"`

	ConnectSeconds float64 `json:"connect_s,omitempty"`
	ConnectFailed  int     `json:"connect_failed,omitempty"`
	ConnectErr     string  `json:"connect_err,omitempty"`

	Best bool   `json:"best,omitempty"` // saturation: the step reported
	Note string `json:"note,omitempty"`
}

type orch struct {
	env       *env
	plan      plan
	serverCPU string
	loadCPU   string
	run       string
	hc        *http.Client
	logf      func(format string, args ...any)
}

// session is one server started with its clients connected.
type session struct {
	o       *orch
	srv     *running
	wk      *workers
	rooms   int
	clients int
	seq     [publishers][]uint64 // per publisher and room: the last sequence number published
	baseRSS int64
	conn    workerConnected
	connSec float64
}

func (o *orch) open(p *peer, clients, rooms, conc int) (*session, error) {
	srv, err := o.env.start(p, o.serverCPU)
	if err != nil {
		return nil, err
	}
	time.Sleep(500 * time.Millisecond)
	if p.gc != nil {
		p.gc(context.Background(), o.hc, srv.addr)
	}
	base, _ := procRSS(srv.pid)
	wk, err := o.env.spawn(p.name, srv.addr, o.run, clients, rooms, conc, o.plan.PerProc, o.loadCPU)
	if err != nil {
		srv.stop()
		return nil, err
	}
	s := &session{o: o, srv: srv, wk: wk, rooms: rooms, clients: clients, baseRSS: base}
	for j := range s.seq {
		s.seq[j] = make([]uint64, rooms)
	}
	replies := make([]workerConnected, len(wk.procs))
	t0 := time.Now()
	if err := wk.call("connect", func(i int) any { return &replies[i] }); err != nil {
		s.close()
		return nil, err
	}
	for _, r := range replies {
		s.conn.OK += r.OK
		s.conn.Failed += r.Failed
		if s.conn.FirstErr == "" {
			s.conn.FirstErr = r.FirstErr
		}
		s.conn.DoneUs = max(s.conn.DoneUs, r.DoneUs)
	}
	s.connSec = float64(s.conn.DoneUs-t0.UnixMicro()) / 1e6
	o.logf("  %s: %d/%d clients subscribed in %.2f s (failed %d %s)", p.name, s.conn.OK, clients, s.connSec, s.conn.Failed, s.conn.FirstErr)
	return s, nil
}

func (s *session) close() {
	s.wk.quit()
	s.srv.stop()
}

// phase publishes at rate (over all rooms, in turn) for dur, waits until
// deliveries stop, and measures.
func (s *session) phase(rate float64, dur time.Duration) (row, error) {
	o := s.o
	if err := s.wk.call("phase", func(int) any { return new(struct{}) }); err != nil {
		return row{}, err
	}
	loadCPU0 := s.loadCPU()
	cpu0, err := procCPU(s.srv.pid)
	if err != nil {
		return row{}, fmt.Errorf("%s died: %w", s.srv.p.name, err)
	}
	start := time.Now()
	counts, perrs, perr := s.publish(rate, dur)
	var reps []workerReport
	var last, lastChange time.Time
	prev := int64(-1)
	for {
		time.Sleep(200 * time.Millisecond)
		reps = make([]workerReport, len(s.wk.procs))
		cj, _ := json.Marshal(counts)
		if err := s.wk.call("report "+string(cj), func(i int) any { return &reps[i] }); err != nil {
			return row{}, err
		}
		var d, exp int64
		for _, r := range reps {
			d += r.Delivered
			exp += r.Expected
		}
		now := time.Now()
		if d != prev {
			prev, lastChange = d, now
		}
		last = now
		if d >= exp || now.Sub(lastChange) > o.plan.Stall || now.Sub(start) > dur+o.plan.DrainMax {
			break
		}
	}
	cpu1, _ := procCPU(s.srv.pid)
	loadCPU1 := s.loadCPU()
	r := row{Server: s.srv.p.name, Clients: s.conn.OK, Rooms: s.rooms, Rate: rate, PublishErrors: perrs}
	if perr != nil {
		r.PublishErr = perr.Error()
	}
	for _, c := range counts {
		r.Published += c
	}
	var h hist
	var lastUs int64
	for _, rep := range reps {
		r.Delivered += rep.Delivered
		r.Expected += rep.Expected
		r.OrderErrors += rep.OrderErrors
		r.Duplicates += rep.Duplicates
		r.Closed += rep.Closed
		if r.CloseErr == "" {
			r.CloseErr = rep.CloseErr
		}
		lastUs = max(lastUs, rep.LastUs)
		h.add(rep.Hist)
	}
	// A publish request that failed (a timeout) may still have been
	// published: its deliveries count, beyond what was expected.
	if r.Lost = r.Expected - r.Delivered; r.Lost < 0 {
		r.Extra, r.Lost = -r.Lost, 0
	}
	r.P50ms, r.P99ms, r.MaxMs = ms(h.quantile(0.5)), ms(h.quantile(0.99)), ms(h.quantile(1))
	if lastUs > start.UnixMicro() {
		r.Seconds = float64(lastUs-start.UnixMicro()) / 1e6
		r.DeliveriesPerSec = float64(r.Delivered) / r.Seconds
	}
	r.ServerCPU = (cpu1 - cpu0).Seconds()
	if r.Delivered > 0 {
		r.CPUPerMillion = r.ServerCPU / float64(r.Delivered) * 1e6
	}
	if r.ServerCPU > 0 {
		r.PerCore = float64(r.Delivered) / r.ServerCPU
	}
	r.LoadCPU = (loadCPU1 - loadCPU0).Seconds() / last.Sub(start).Seconds()
	return r, nil
}

// loadCPU is the CPU time of the load generator: the workers and this
// process, which publishes.
func (s *session) loadCPU() time.Duration {
	t, _ := procCPU(os.Getpid())
	for _, pid := range s.wk.pids() {
		c, _ := procCPU(pid)
		t += c
	}
	return t
}

// publish sends publications at rate for dur through the server's API,
// from publishers goroutines: publication n (n = 0, 1, ...) is due at
// start + n/rate, goes to room n % rooms and is sent by publisher
// n % publishers, which sends one request at a time, so that a
// publisher's publications to a room are numbered 1, 2, 3... in the order
// sent. A publisher behind its schedule sends at once. The send time in
// each payload is taken just before its request. Returns the publications
// accepted per room.
func (s *session) publish(rate float64, dur time.Duration) ([]int64, int64, error) {
	counts := make([][]int64, publishers)
	var errs atomic.Int64
	var firstErr atomic.Value
	pad := strings.Repeat("x", s.o.plan.Pad)
	start := time.Now()
	end := start.Add(dur)
	ctx := context.Background()
	var wg sync.WaitGroup
	for j := range publishers {
		counts[j] = make([]int64, s.rooms)
		seq := s.seq[j]
		wg.Go(func() {
			for n := j; ; n += publishers {
				if d := time.Until(start.Add(time.Duration(float64(n) / rate * float64(time.Second)))); d > 0 {
					time.Sleep(d)
				}
				if !time.Now().Before(end) {
					return
				}
				room := n % s.rooms
				body := makePayload(s.o.run, j, seq[room]+1, time.Now().UnixMicro(), pad)
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := s.srv.p.publish(pctx, s.o.hc, s.srv.addr, room, body)
				cancel()
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				seq[room]++
				counts[j][room]++
			}
		})
	}
	wg.Wait()
	total := make([]int64, s.rooms)
	for _, c := range counts {
		for room, n := range c {
			total[room] += n
		}
	}
	err, _ := firstErr.Load().(error)
	return total, errs.Load(), err
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// The scenarios. Each starts the server afresh, so that one's leftovers
// (memory, history) do not weigh on the next.

func (o *orch) fanout(p *peer) ([]row, error) {
	var rows []row
	for _, n := range o.plan.FanoutSizes {
		s, err := o.open(p, n, 1, 200)
		if err != nil {
			return rows, err
		}
		for _, rate := range o.plan.FanoutRates {
			r, err := s.phase(rate, o.plan.FanoutDur)
			if err != nil {
				s.close()
				return rows, err
			}
			r.Scenario = "fanout"
			r.ConnectFailed, r.ConnectErr = s.conn.Failed, s.conn.FirstErr
			o.logRow(r)
			rows = append(rows, r)
		}
		s.close()
	}
	return rows, nil
}

func (o *orch) saturation(p *peer) ([]row, error) {
	s, err := o.open(p, o.plan.SatClients, 1, 200)
	if err != nil {
		return nil, err
	}
	defer s.close()
	var rows []row
	best := -1
	rate := o.plan.SatStart
	for step := 0; step < o.plan.SatMaxSteps; step++ {
		r, err := s.phase(rate, o.plan.SatStep)
		if err != nil {
			return rows, err
		}
		r.Scenario = "saturation"
		o.logRow(r)
		rows = append(rows, r)
		ok := r.P99ms <= 1000 && r.Lost == 0 && r.Closed == 0 && r.PublishErrors == 0
		if ok && (best < 0 || r.DeliveriesPerSec > rows[best].DeliveriesPerSec) {
			best = len(rows) - 1
		}
		grew := len(rows) < 2 || r.DeliveriesPerSec > 1.05*rows[len(rows)-2].DeliveriesPerSec
		if !ok || !grew {
			if !ok {
				rows[len(rows)-1].Note = "past the limit: " + limitNote(r)
			} else {
				rows[len(rows)-1].Note = "deliveries/s stopped growing"
			}
			break
		}
		rate *= o.plan.SatFactor
	}
	if best >= 0 {
		rows[best].Best = true
	}
	return rows, nil
}

func limitNote(r row) string {
	var why []string
	if r.P99ms > 1000 {
		why = append(why, "p99 > 1 s")
	}
	if r.Lost != 0 {
		why = append(why, fmt.Sprintf("%d lost", r.Lost))
	}
	if r.Closed != 0 {
		why = append(why, fmt.Sprintf("%d closed (%s)", r.Closed, r.CloseErr))
	}
	if r.PublishErrors != 0 {
		why = append(why, fmt.Sprintf("%d publish errors (%s)", r.PublishErrors, r.PublishErr))
	}
	return strings.Join(why, ", ")
}

func (o *orch) rooms(p *peer) ([]row, error) {
	s, err := o.open(p, o.plan.RoomsClients, o.plan.Rooms, 200)
	if err != nil {
		return nil, err
	}
	defer s.close()
	r, err := s.phase(o.plan.RoomsRate, o.plan.RoomsDur)
	if err != nil {
		return nil, err
	}
	r.Scenario = "rooms"
	r.ConnectFailed, r.ConnectErr = s.conn.Failed, s.conn.FirstErr
	o.logRow(r)
	return []row{r}, nil
}

func (o *orch) idle(p *peer) ([]row, error) {
	s, err := o.open(p, o.plan.IdleClients, 1, 200) // all on one channel: the cost of a client, not of channels
	if err != nil {
		return nil, err
	}
	defer s.close()
	time.Sleep(o.plan.IdleSettle)
	if p.gc != nil {
		p.gc(context.Background(), o.hc, s.srv.addr)
		time.Sleep(time.Second)
	}
	rss, err := procRSS(s.srv.pid)
	if err != nil {
		return nil, err
	}
	r := row{Server: p.name, Scenario: "idle", Clients: s.conn.OK, Rooms: s.rooms, BaseRSS: s.baseRSS, RSS: rss,
		ConnectSeconds: s.connSec, ConnectFailed: s.conn.Failed, ConnectErr: s.conn.FirstErr}
	if s.conn.OK > 0 {
		r.RSSPerClient = float64(rss-s.baseRSS) / float64(s.conn.OK)
	}
	o.logRow(r)
	return []row{r}, nil
}

func (o *orch) storm(p *peer) ([]row, error) {
	s, err := o.open(p, o.plan.StormClients, 1, o.plan.StormClients)
	if err != nil {
		return nil, err
	}
	defer s.close()
	r := row{Server: p.name, Scenario: "storm", Clients: s.conn.OK, Rooms: 1, ConnectSeconds: s.connSec,
		ConnectFailed: s.conn.Failed, ConnectErr: s.conn.FirstErr}
	o.logRow(r)
	return []row{r}, nil
}

func (o *orch) logRow(r row) {
	switch r.Scenario {
	case "idle":
		o.logf("  %s idle %d: RSS %.1f MiB over a base of %.1f MiB: %.2f KiB/client", r.Server, r.Clients, float64(r.RSS)/(1<<20), float64(r.BaseRSS)/(1<<20), r.RSSPerClient/1024)
	case "storm":
		o.logf("  %s storm %d: all subscribed in %.2f s (%d failed)", r.Server, r.Clients, r.ConnectSeconds, r.ConnectFailed)
	default:
		o.logf("  %s %s %d clients/%d rooms @ %g pub/s: %d/%d delivered (lost %d, order %d, dup %d, closed %d, publish errors %d), p50 %.1f p99 %.1f max %.1f ms, %.0f deliveries/s, server CPU %.2f s (%.2f s/M), load CPU %.0f %%",
			r.Server, r.Scenario, r.Clients, r.Rooms, r.Rate, r.Delivered, r.Expected, r.Lost, r.OrderErrors, r.Duplicates, r.Closed, r.PublishErrors,
			r.P50ms, r.P99ms, r.MaxMs, r.DeliveriesPerSec, r.ServerCPU, r.CPUPerMillion, 100*r.LoadCPU)
	}
}
