package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// result is one measurement of one server in one case.
type result struct {
	Case   string  `json:"case"`
	Server string  `json:"server"`
	Round  int     `json:"round,omitempty"`  // in Runs: which round
	Rounds int     `json:"rounds,omitempty"` // in Results: the rounds in the medians
	Value  float64 `json:"value"`            // the case's figure, in Unit
	Unit   string  `json:"unit"`
	// SrvCPUus is the server's CPU time per message (per delivery for
	// broadcast, per connection for idle), in microseconds.
	SrvCPUus float64 `json:"server_cpu_us_per_msg,omitempty"`
	// CPU use in the measured interval, in % of one core.
	SrvCPUpct float64 `json:"server_cpu_pct,omitempty"`
	GenCPUpct float64 `json:"loadgen_cpu_pct,omitempty"`
	Messages  int64   `json:"messages,omitempty"`
	Seconds   float64 `json:"seconds,omitempty"`
	Conns     int     `json:"conns,omitempty"`
	BaseKiB   int64   `json:"base_rss_kib,omitempty"`
	RSSKiB    int64   `json:"rss_kib,omitempty"`
	Skipped   string  `json:"skipped,omitempty"`
	Failed    string  `json:"failed,omitempty"`
}

// dialAll opens n connections with up to par handshakes at once.
func dialAll(addr, path string, raw, deflate bool, n, par int) ([]*conn, error) {
	conns := make([]*conn, n)
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		first atomic.Pointer[error]
	)
	for range min(par, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || first.Load() != nil {
					return
				}
				c, err := dial(addr, path, raw, deflate, 15*time.Second)
				if err != nil {
					err = fmt.Errorf("connection %d of %d: %w", i+1, n, err)
					first.CompareAndSwap(nil, &err)
					return
				}
				if deflate && !c.deflate && !raw {
					err := errors.New("permessage-deflate not negotiated")
					first.CompareAndSwap(nil, &err)
					c.close()
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		closeAll(conns)
		return nil, *e
	}
	return conns, nil
}

func closeAll(conns []*conn) {
	for _, c := range conns {
		if c != nil {
			c.close()
		}
	}
}

// meter samples a message counter and both processes' CPU time over the
// measured interval, after a warm-up.
type meter struct {
	srv        *server
	count      *atomic.Int64
	t0         time.Time
	n0         int64
	s0, g0     float64
	wall, msgs float64
	srvCPU     float64
	genCPU     float64
}

func (m *meter) start() {
	m.t0, m.n0 = time.Now(), m.count.Load()
	m.s0, m.g0 = m.srv.stat().cpu, selfCPU()
}

func (m *meter) end() {
	m.wall = time.Since(m.t0).Seconds()
	m.msgs = float64(m.count.Load() - m.n0)
	m.srvCPU = m.srv.stat().cpu - m.s0
	m.genCPU = selfCPU() - m.g0
}

func (m *meter) fill(r *result) {
	r.Messages, r.Seconds = int64(m.msgs), m.wall
	r.Value = m.msgs / m.wall
	if m.msgs > 0 {
		r.SrvCPUus = m.srvCPU / m.msgs * 1e6
	}
	r.SrvCPUpct = m.srvCPU / m.wall * 100
	r.GenCPUpct = m.genCPU / m.wall * 100
}

// echo runs conns connections to /echo, each with window messages of
// payload in flight, and counts round trips per second.
func echo(srv *server, raw bool, conns, window int, payload []byte, deflate bool, p params, r *result) {
	cs, err := dialAll(srv.addr, "/echo", raw, deflate, conns, 64)
	if err != nil {
		r.Failed = err.Error()
		return
	}
	var (
		count atomic.Int64
		stop  atomic.Bool
		quit  = make(chan struct{}) // closed with stop
		wg    sync.WaitGroup
		errs  firstErr
	)
	fail := func(err error) {
		if !stop.Load() {
			errs.set(err)
		}
	}
	for _, c := range cs {
		// The frame is built (masked, compressed) once: the servers see a
		// fresh message every time all the same.
		frame := c.frame(nil, opBinary, payload, false)
		if deflate {
			frame = c.frame(nil, opText, compress(payload), true)
		}
		want := len(payload)
		if window == 1 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					if _, err := c.nc.Write(frame); err != nil {
						fail(err)
						return
					}
					m, err := c.read()
					if err != nil {
						fail(err)
						return
					}
					if len(m) != want {
						fail(fmt.Errorf("echo of %d bytes, want %d", len(m), want))
						return
					}
					count.Add(1)
				}
			}()
			continue
		}
		// Pipelined: the writer sends as many frames as there are free
		// slots in one write; the reader frees a slot per echo.
		slots := make(chan struct{}, window)
		for range window {
			slots <- struct{}{}
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			batch := make([]byte, 0, window*len(frame))
			for !stop.Load() {
				select {
				case <-slots:
				case <-quit:
					return
				}
				k := 1
			more:
				for k < window {
					select {
					case <-slots:
						k++
					default:
						break more
					}
				}
				batch = batch[:0]
				for range k {
					batch = append(batch, frame...)
				}
				if _, err := c.nc.Write(batch); err != nil {
					fail(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for !stop.Load() {
				m, err := c.read()
				if err != nil {
					fail(err)
					return
				}
				if len(m) != want {
					fail(fmt.Errorf("echo of %d bytes, want %d", len(m), want))
					return
				}
				count.Add(1)
				slots <- struct{}{}
			}
		}()
	}
	m := meter{srv: srv, count: &count}
	time.Sleep(p.warmup)
	m.start()
	time.Sleep(p.measure)
	m.end()
	stop.Store(true)
	close(quit)
	closeAll(cs) // ends the blocked reads and writes
	wg.Wait()
	m.fill(r)
	r.Conns = conns
	if err := errs.get(); err != nil {
		r.Failed = err.Error()
	}
	if deflate {
		var n int64
		for _, c := range cs {
			n += c.inflated
		}
		if n == 0 && r.Failed == "" {
			// Allowed by RFC 7692, but then the case does not measure
			// compression.
			r.Failed = "permessage-deflate negotiated, but no reply was compressed"
		}
	}
}

// broadcast opens conns connections to /broadcast; the first one
// publishes, every connection (the publisher too) receives every message.
// The publisher keeps window messages not yet delivered everywhere, so
// that no server queue grows without bound; the figure is deliveries per
// second, every one counted and checked for order.
func broadcast(srv *server, raw bool, conns, window, size int, p params, r *result) {
	cs, err := dialAll(srv.addr, "/broadcast", raw, false, conns, 64)
	if err != nil {
		r.Failed = err.Error()
		return
	}
	defer closeAll(cs)
	const maxMsgs = 1 << 18
	var (
		got       = make([]atomic.Int32, maxMsgs)
		completed = make(chan int, maxMsgs)
		ready     atomic.Int64
		delivered atomic.Int64
		stop      atomic.Bool
		wg        sync.WaitGroup
		errs      firstErr
	)
	fail := func(err error) {
		if !stop.Load() {
			errs.set(err)
		}
	}
	// A message is 'w' (warm-up: are you there?) or 'm' and a sequence
	// number, padded to size.
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen, next := false, 0
			for {
				m, err := c.read()
				if err != nil {
					fail(err)
					return
				}
				if len(m) != size {
					fail(fmt.Errorf("message of %d bytes, want %d", len(m), size))
					return
				}
				switch m[0] {
				case 'w':
					if !seen {
						seen = true
						ready.Add(1)
					}
				case 'm':
					seq := int(binary.BigEndian.Uint32(m[1:5]))
					if seq != next {
						fail(fmt.Errorf("message %d after %d: lost or out of order", seq, next-1))
						return
					}
					next++
					delivered.Add(1)
					if got[seq].Add(1) == int32(conns) {
						completed <- seq
					}
				}
			}
		}()
	}
	pub := cs[0]
	msg := make([]byte, size)
	send := func(kind byte, seq int) error {
		msg[0] = kind
		binary.BigEndian.PutUint32(msg[1:5], uint32(seq))
		_, err := pub.nc.Write(pub.frame(nil, opBinary, msg, false))
		return err
	}
	// Warm-up: until every connection has joined the server's hub.
	deadline := time.Now().Add(20 * time.Second)
	for ready.Load() < int64(conns) && errs.get() == nil {
		if time.Now().After(deadline) {
			r.Failed = fmt.Sprintf("only %d of %d connections got the warm-up message", ready.Load(), conns)
			stop.Store(true)
			return
		}
		if err := send('w', 0); err != nil {
			r.Failed = err.Error()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Drain the warm-up messages still on their way: the next ones are
	// counted. A last 'w' is harmless, it is not counted.
	time.Sleep(100 * time.Millisecond)

	m := meter{srv: srv, count: &delivered}
	m.start()
	end := m.t0.Add(p.measure)
	sent, done := 0, 0
	stall := time.NewTimer(10 * time.Second)
	defer stall.Stop()
	for sent < maxMsgs && time.Now().Before(end) && errs.get() == nil {
		if sent-done >= window {
			stall.Reset(10 * time.Second)
			select {
			case <-completed:
				done++
			case <-stall.C:
				r.Failed = fmt.Sprintf("message %d not delivered everywhere within 10 s", done)
				stop.Store(true)
				return
			}
			continue
		}
		if err := send('m', sent); err != nil {
			r.Failed = err.Error()
			stop.Store(true)
			return
		}
		sent++
	}
	// The rate is what was delivered while publishing; then every message
	// sent must still arrive everywhere.
	m.end()
	for done < sent && errs.get() == nil {
		stall.Reset(10 * time.Second)
		select {
		case <-completed:
			done++
		case <-stall.C:
			r.Failed = fmt.Sprintf("message %d not delivered everywhere within 10 s", done)
			stop.Store(true)
			return
		}
	}
	total := delivered.Load()
	stop.Store(true)
	closeAll(cs)
	wg.Wait()
	m.fill(r)
	r.Conns = conns
	if err := errs.get(); err != nil {
		r.Failed = err.Error()
	}
	if total != int64(sent)*int64(conns) && r.Failed == "" {
		r.Failed = fmt.Sprintf("%d deliveries of %d messages to %d connections", total, sent, conns)
	}
}

// idle opens conns connections to /echo and holds them: the server's
// RSS after a garbage collection, less the same before, per connection.
// A few connections echo afterwards, to show they were alive.
func idle(srv *server, raw bool, conns int, p params, r *result) {
	time.Sleep(p.settle)
	base, err := srv.collect()
	if err != nil {
		r.Failed = err.Error()
		return
	}
	s0 := srv.stat().cpu
	cs, err := dialAll(srv.addr, "/echo", raw, false, conns, 64)
	if err != nil {
		r.Failed = err.Error()
		return
	}
	defer closeAll(cs)
	cpu := srv.stat().cpu - s0
	time.Sleep(p.settle)
	rss, err := srv.collect()
	if err != nil {
		r.Failed = err.Error()
		return
	}
	r.Conns, r.BaseKiB, r.RSSKiB = conns, base, rss
	r.Value = float64(rss-base) / float64(conns)
	r.SrvCPUus = cpu / float64(conns) * 1e6 // the handshakes
	payload := []byte("are you alive?")
	for range 20 {
		c := cs[rand.IntN(len(cs))]
		_ = c.nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.nc.Write(c.frame(nil, opBinary, payload, false)); err != nil {
			r.Failed = "held connection dead: " + err.Error()
			return
		}
		m, err := c.read()
		if err != nil || !bytes.Equal(m, payload) {
			r.Failed = fmt.Sprintf("held connection did not echo: %v", err)
			return
		}
	}
}

// firstErr keeps the first error of many goroutines.
type firstErr struct{ p atomic.Pointer[error] }

func (f *firstErr) set(err error) { f.p.CompareAndSwap(nil, &err) }

func (f *firstErr) get() error {
	if p := f.p.Load(); p != nil {
		return *p
	}
	return nil
}
