package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotline-rt/hotline/ws"
)

// The worker ("pushbench load") holds a share of the clients. The
// orchestrator drives it with one command a line on stdin and reads one
// JSON reply a line on stdout:
//
//	connect          dial and subscribe every client → workerConnected
//	phase            start a new measuring phase (counters, histogram)
//	stat             → workerStat (deliveries so far in the phase)
//	report {counts}  → workerReport; counts: publications per room this phase
//	quit             close every connection and exit
//
// Clients are split over several workers to stay under the open-files
// limit; all run on the load generator's CPU.

type workerConfig struct {
	server  string
	addr    string
	run     string
	clients int
	first   int // global index of the first client: client g is in room g % rooms
	rooms   int
	conc    int // dials at once
}

type workerConnected struct {
	OK       int    `json:"ok"`
	Failed   int    `json:"failed"`
	FirstErr string `json:"first_err,omitempty"`
	DoneUs   int64  `json:"done_us"` // Unix µs when the last client was subscribed
}

type workerStat struct {
	Delivered int64 `json:"delivered"`
	Closed    int64 `json:"closed"`
	LastUs    int64 `json:"last_us"`
}

type workerReport struct {
	Delivered   int64   `json:"delivered"`    // in order, counted once
	Expected    int64   `json:"expected"`     // publications × clients of their room
	OrderErrors int64   `json:"order_errors"` // a publication that did not follow the previous one
	Duplicates  int64   `json:"duplicates"`
	Closed      int64   `json:"closed"` // clients whose connection ended
	CloseErr    string  `json:"close_err,omitempty"`
	LastUs      int64   `json:"last_us"` // Unix µs of the last delivery
	CPUSeconds  float64 `json:"cpu_s"`   // this worker's CPU in the phase
	Hist        sparse  `json:"hist"`
}

type worker struct {
	cfg    workerConfig
	proto  protocol
	prefix []byte

	mu        sync.Mutex // guards the phase state below
	h         hist
	delivered int64
	orderErr  int64
	dups      int64
	lastUs    int64
	phaseCPU  time.Duration

	closed   atomic.Int64
	closeErr atomic.Value // string
	conns    []*client
}

type client struct {
	room int
	// next is, per publisher, the sequence number expected next in this
	// client's room; guarded by worker.mu.
	next [publishers]uint64
	c    *ws.Conn
}

// publishers is how many publish requests are in flight at most: each
// publisher sends its next request when the last one is answered, so the
// publications of one publisher to one room are in order whatever the
// server does with the others'.
const publishers = 8

func loadMain(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var cfg workerConfig
	fs.StringVar(&cfg.server, "server", "hotline", "protocol: hotline, centrifugo or socketio")
	fs.StringVar(&cfg.addr, "addr", "", "server host:port")
	fs.StringVar(&cfg.run, "run", "", "run id (in every payload)")
	fs.IntVar(&cfg.clients, "clients", 0, "clients in this worker")
	fs.IntVar(&cfg.first, "first", 0, "global index of the first client")
	fs.IntVar(&cfg.rooms, "rooms", 1, "rooms over all workers")
	fs.IntVar(&cfg.conc, "conc", 200, "dials at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := protocolOf(cfg.server)
	if err != nil {
		return err
	}
	w := &worker{cfg: cfg, proto: p, prefix: payloadPrefix(cfg.run)}
	return w.serve(os.Stdin, os.Stdout)
}

func (w *worker) serve(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	enc := json.NewEncoder(out)
	defer w.closeAll()
	for sc.Scan() {
		cmd, arg, _ := cutSpace(sc.Text())
		var err error
		switch cmd {
		case "connect":
			err = enc.Encode(w.connect())
		case "phase":
			w.mu.Lock()
			w.h, w.delivered, w.orderErr, w.dups = hist{}, 0, 0, 0
			w.phaseCPU, _ = procCPU(os.Getpid())
			w.mu.Unlock()
			err = enc.Encode(struct{}{})
		case "stat":
			w.mu.Lock()
			st := workerStat{Delivered: w.delivered, Closed: w.closed.Load(), LastUs: w.lastUs}
			w.mu.Unlock()
			err = enc.Encode(st)
		case "report":
			var counts []int64
			if err := json.Unmarshal([]byte(arg), &counts); err != nil || len(counts) != w.cfg.rooms {
				return fmt.Errorf("load: report wants %d room counts: %q", w.cfg.rooms, arg)
			}
			err = enc.Encode(w.report(counts))
		case "quit":
			return nil
		default:
			return fmt.Errorf("load: unknown command %q", cmd)
		}
		if err != nil {
			return err
		}
	}
	return sc.Err()
}

func cutSpace(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// connect dials and subscribes every client, cfg.conc at a time.
func (w *worker) connect() workerConnected {
	var (
		res  workerConnected
		mu   sync.Mutex
		wg   sync.WaitGroup
		sema = make(chan struct{}, max(w.cfg.conc, 1))
	)
	w.conns = make([]*client, w.cfg.clients)
	for i := range w.cfg.clients {
		sema <- struct{}{}
		wg.Go(func() {
			defer func() { <-sema }()
			cl := &client{room: (w.cfg.first + i) % w.cfg.rooms}
			for j := range cl.next {
				cl.next[j] = 1
			}
			err := w.open(cl)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed++
				if res.FirstErr == "" {
					res.FirstErr = err.Error()
				}
				return
			}
			w.conns[i] = cl
			res.OK++
			res.DoneUs = max(res.DoneUs, time.Now().UnixMicro())
			// Read from now on, not once all are in: a server's pings
			// (Centrifugo's {}, Engine.IO's 2) must be answered while the
			// others still connect, or it drops the client.
			go w.receive(cl)
		})
	}
	wg.Wait()
	return res
}

func (w *worker) open(cl *client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, _, err := ws.Dial(ctx, w.proto.dialURL(w.cfg.addr, cl.room), &ws.DialOptions{
		Subprotocols: w.proto.subprotocols(),
		ReadLimit:    1 << 20,
	})
	if err != nil {
		return err
	}
	if err := w.proto.subscribe(ctx, c, cl.room); err != nil {
		c.CloseNow()
		return err
	}
	var buf []byte
	for {
		_, msg, err := c.ReadMessage(ctx, buf[:0])
		if err != nil {
			c.CloseNow()
			return fmt.Errorf("waiting for the subscription: %w", err)
		}
		ok, err := w.proto.control(c, msg)
		if err != nil {
			c.CloseNow()
			return err
		}
		w.deliver(cl, msg) // nothing is published before all are subscribed; a stray is counted
		if ok {
			cl.c = c
			return nil
		}
		buf = msg
	}
}

// receive reads cl's messages until its connection ends.
func (w *worker) receive(cl *client) {
	buf := make([]byte, 0, 4096)
	for {
		_, msg, err := cl.c.ReadMessage(context.Background(), buf[:0])
		if err != nil {
			if !errors.Is(err, ws.ErrClosed) {
				w.lost(err)
			}
			return
		}
		if _, err := w.proto.control(cl.c, msg); err != nil {
			w.lost(err)
			cl.c.CloseNow()
			return
		}
		w.deliver(cl, msg)
		buf = msg
	}
}

func (w *worker) lost(err error) {
	w.closed.Add(1)
	w.closeErr.CompareAndSwap(nil, err.Error())
}

// deliver records every publication in msg for cl: latency, and whether
// it follows the one before (per room and publisher, sequence numbers go
// 1, 2, 3...).
func (w *worker) deliver(cl *client, msg []byte) {
	now := time.Now().UnixMicro()
	scanPayloads(msg, w.prefix, func(g int, seq uint64, sent int64) {
		if g < 0 || g >= publishers {
			return
		}
		w.mu.Lock()
		next := &cl.next[g]
		switch {
		case seq == *next:
			*next++
			w.delivered++
		case seq > *next:
			w.orderErr++
			*next = seq + 1
			w.delivered++
		default:
			w.dups++
			w.mu.Unlock()
			return
		}
		w.h.record(now - sent)
		w.lastUs = now
		w.mu.Unlock()
	})
}

func (w *worker) report(counts []int64) workerReport {
	var expected int64
	for i, cl := range w.conns {
		if cl != nil { // a client that never subscribed is reported by connect
			expected += counts[(w.cfg.first+i)%w.cfg.rooms]
		}
	}
	cpu, _ := procCPU(os.Getpid())
	w.mu.Lock()
	defer w.mu.Unlock()
	r := workerReport{
		Delivered: w.delivered, Expected: expected, OrderErrors: w.orderErr, Duplicates: w.dups,
		Closed: w.closed.Load(), LastUs: w.lastUs, CPUSeconds: (cpu - w.phaseCPU).Seconds(), Hist: w.h.sparse(),
	}
	if s, ok := w.closeErr.Load().(string); ok {
		r.CloseErr = s
	}
	return r
}

func (w *worker) closeAll() {
	var wg sync.WaitGroup
	for _, cl := range w.conns {
		if cl != nil && cl.c != nil {
			wg.Go(func() { cl.c.CloseNow() })
		}
	}
	wg.Wait()
}
