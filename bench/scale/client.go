//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hotline-rt/hotline/superchat"
	"github.com/hotline-rt/hotline/ws"
)

// The client process: it holds a share of the subscribers, each a
// superchat WebSocket session on one node, all subscribed to one channel.
// It timestamps every push on arrival against the publisher's send time
// in the payload (CLOCK_REALTIME is one clock on one machine) and keeps,
// per publication offset, a histogram of the latencies. It talks to the
// coordinator over its stdin (commands) and stdout (JSON lines): a
// progress line every half second, and a report on "report LAST".
// Its stdin closing ends it, so that a coordinator that dies leaves no
// client behind.

// maxOffsets bounds the publications a run may make (offsets 1 to
// maxOffsets-1 are recorded).
const maxOffsets = 8192

// Progress is the client's periodic line.
type Progress struct {
	Type       string `json:"type"` // "progress"
	Client     int    `json:"client"`
	Connected  int64  `json:"connected"`
	Subscribed int64  `json:"subscribed"`
	Delivered  int64  `json:"delivered"`
	DialErrors int64  `json:"dial_errors"`
	Failed     int64  `json:"failed"` // subscribers that gave up (dial or subscribe failed)
	SubErrors  int64  `json:"sub_errors"`
	Closed     int64  `json:"closed"`
}

// Report is the client's answer to "report LAST".
type Report struct {
	Type string `json:"type"` // "report"
	Progress
	Duplicates  int64           `json:"duplicates"`   // a push at or below the last offset
	Skipped     int64           `json:"skipped"`      // offsets jumped over within the stream
	TailMissing int64           `json:"tail_missing"` // offsets up to LAST a subscriber never got
	Gaps        int64           `json:"gaps"`         // gap notices
	Disconnects int64           `json:"disconnects"`  // disconnect notices
	EpochChange int64           `json:"epoch_changes"`
	Other       int64           `json:"other"` // messages that are none of the above
	Errors      []string        `json:"errors,omitempty"`
	Connect     Hist            `json:"connect"` // µs from dial to the subscribe reply
	Offsets     map[uint64]Hist `json:"offsets"` // µs from send to arrival, per offset
	CPUSeconds  float64         `json:"cpu_seconds"`
}

type client struct {
	id      int
	urls    []string
	first   int
	n       int
	channel string
	dialer  net.Dialer

	connected, subscribed, delivered      atomic.Int64
	dialErrors, subErrors, closed, failed atomic.Int64
	dups, skipped, gaps, disconnects      atomic.Int64
	epochChanges, other                   atomic.Int64
	connect                               *atomicHist
	offsets                               [maxOffsets]atomic.Pointer[atomicHist]
	lasts                                 []atomic.Uint64 // per subscriber: last offset processed
	errMu                                 sync.Mutex
	errs                                  []string
	quitting                              atomic.Bool
	conns                                 []*ws.Conn
	connsMu                               sync.Mutex
}

func runClient(args []string) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	id := fs.Int("id", 0, "client number")
	urls := fs.String("urls", "", "comma-separated node URLs (ws://host:port/chat)")
	first := fs.Int("first", 0, "global index of this client's first subscriber (picks its node)")
	n := fs.Int("n", 0, "subscribers")
	local := fs.String("local", "", "source IP address to dial from")
	channel := fs.String("channel", "", "channel to subscribe to")
	conc := fs.Int("concurrency", 32, "dials in flight")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this client here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := &client{id: *id, urls: strings.Split(*urls, ","), first: *first, n: *n, channel: *channel, connect: newAtomicHist()}
	c.lasts = make([]atomic.Uint64, c.n)
	c.conns = make([]*ws.Conn, c.n)
	if *local != "" {
		c.dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(*local)}
		c.dialer.Control = bindNoPort
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	out := bufio.NewWriter(os.Stdout)
	var outMu sync.Mutex
	emit := func(v any) {
		b, _ := json.Marshal(v)
		outMu.Lock()
		out.Write(b)
		out.WriteByte('\n')
		out.Flush()
		outMu.Unlock()
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { c.dialAll(ctx, *conc) })
	wg.Go(func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				emit(c.progress())
			}
		}
	})

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(strings.TrimSpace(in.Text()), " ")
		switch cmd {
		case "report":
			last, err := strconv.ParseUint(arg, 10, 64)
			if err != nil || last >= maxOffsets {
				return fmt.Errorf("client %d: bad command %q", c.id, in.Text())
			}
			emit(c.report(last))
		case "quit":
			c.stop(cancel)
			wg.Wait()
			return nil
		default:
			return fmt.Errorf("client %d: unknown command %q", c.id, in.Text())
		}
	}
	c.stop(cancel) // stdin closed: the coordinator is gone
	wg.Wait()
	return nil
}

// stop closes every connection without a close handshake: the process
// is about to end, and the nodes are stopped next.
func (c *client) stop(cancel context.CancelFunc) {
	c.quitting.Store(true)
	cancel()
	c.connsMu.Lock()
	defer c.connsMu.Unlock()
	for _, wc := range c.conns {
		if wc != nil {
			wc.CloseNow()
		}
	}
}

func (c *client) progress() Progress {
	return Progress{
		Type: "progress", Client: c.id,
		Connected: c.connected.Load(), Subscribed: c.subscribed.Load(), Delivered: c.delivered.Load(),
		DialErrors: c.dialErrors.Load(), Failed: c.failed.Load(), SubErrors: c.subErrors.Load(), Closed: c.closed.Load(),
	}
}

func (c *client) report(last uint64) Report {
	r := Report{
		Type: "report", Progress: c.progress(),
		Duplicates: c.dups.Load(), Skipped: c.skipped.Load(), Gaps: c.gaps.Load(),
		Disconnects: c.disconnects.Load(), EpochChange: c.epochChanges.Load(), Other: c.other.Load(),
		Connect: c.connect.snapshot(), Offsets: make(map[uint64]Hist), CPUSeconds: selfCPU(),
	}
	r.Progress.Type = "report"
	for i := range c.lasts {
		if l := c.lasts[i].Load(); l < last {
			r.TailMissing += int64(last - l)
		}
	}
	for off := uint64(1); off <= last; off++ {
		if h := c.offsets[off].Load(); h != nil {
			r.Offsets[off] = h.snapshot()
		}
	}
	c.errMu.Lock()
	r.Errors = append(r.Errors, c.errs...)
	c.errMu.Unlock()
	return r
}

func (c *client) noteErr(err error) {
	c.errMu.Lock()
	if len(c.errs) < 10 {
		c.errs = append(c.errs, err.Error())
	}
	c.errMu.Unlock()
}

// dialAll opens the subscribers, conc at a time; each then reads on its
// own goroutine until the process quits.
func (c *client) dialAll(ctx context.Context, conc int) {
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := 0; i < c.n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Go(func() {
			wc, err := c.open(ctx, i, func() { <-sem })
			if err != nil {
				if !c.quitting.Load() {
					c.failed.Add(1)
					c.noteErr(err)
				}
				return
			}
			c.read(i, wc)
		})
	}
	wg.Wait()
}

// open dials subscriber i and subscribes it; release is called once the
// handshake and subscribe are done (or failed), to let the next dial go.
func (c *client) open(ctx context.Context, i int, release func()) (*ws.Conn, error) {
	defer release()
	url := c.urls[(c.first+i)%len(c.urls)]
	start := time.Now()
	var wc *ws.Conn
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		wc, _, err = ws.Dial(dctx, url, &ws.DialOptions{
			Subprotocols:   []string{"superchat"},
			NetDialContext: c.dialer.DialContext,
			Proxy:          noProxy,
			ReadLimit:      1 << 20,
		})
		cancel()
		if err == nil {
			break
		}
		c.dialErrors.Add(1)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	c.connsMu.Lock()
	c.conns[i] = wc
	c.connsMu.Unlock()
	if c.quitting.Load() { // stop may have passed this one by
		wc.CloseNow()
		return nil, errors.New("quitting")
	}
	c.connected.Add(1)

	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req := `{"id":1,"op":"subscribe","channel":` + strconv.Quote(c.channel) + `}`
	if err := wc.WriteMessage(sctx, ws.MessageText, []byte(req)); err != nil {
		c.subErrors.Add(1)
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	for {
		_, msg, err := wc.ReadMessage(sctx, nil)
		if err != nil {
			c.subErrors.Add(1)
			return nil, fmt.Errorf("subscribe reply: %w", err)
		}
		var m superchat.ServerMessage
		if err := json.Unmarshal(msg, &m); err != nil {
			c.subErrors.Add(1)
			return nil, fmt.Errorf("subscribe reply %q: %w", msg, err)
		}
		if m.ID != 1 {
			c.other.Add(1) // nothing else is expected before the reply
			c.noteErr(fmt.Errorf("before the subscribe reply: %.200s", msg))
			continue
		}
		if m.Error != nil {
			c.subErrors.Add(1)
			return nil, fmt.Errorf("subscribe: %w", m.Error)
		}
		var top superchat.SubscribeResult
		if err := json.Unmarshal(m.Result, &top); err != nil {
			c.subErrors.Add(1)
			return nil, fmt.Errorf("subscribe result %s: %w", m.Result, err)
		}
		c.lasts[i].Store(top.Offset)
		c.connect.record(time.Since(start).Microseconds())
		c.subscribed.Add(1)
		return wc, nil
	}
}

// read is subscriber i's reading loop: every push is checked against the
// last offset (in order, no duplicate) and its latency recorded.
func (c *client) read(i int, wc *ws.Conn) {
	// A ctx that never ends: ws then arms nothing per read. stop ends
	// the reads by closing the connections.
	rctx := context.Background()
	buf := make([]byte, 0, 512)
	var epoch string
	last := c.lasts[i].Load()
	for {
		var err error
		_, buf, err = wc.ReadMessage(rctx, buf[:0])
		now := time.Now().UnixNano()
		if err != nil {
			if !c.quitting.Load() {
				c.closed.Add(1)
				c.noteErr(fmt.Errorf("subscriber %d: %w", c.first+i, err))
			}
			return
		}
		off, ep, sent, ok := parsePush(buf)
		if !ok {
			c.otherMessage(buf)
			continue
		}
		if epoch == "" {
			epoch = string(ep)
		} else if string(ep) != epoch {
			c.epochChanges.Add(1)
			epoch = string(ep)
		}
		switch {
		case off <= last:
			c.dups.Add(1)
			continue
		case off > last+1:
			c.skipped.Add(int64(off - last - 1))
		}
		last = off
		c.lasts[i].Store(off)
		c.delivered.Add(1)
		if off < maxOffsets && sent > 0 {
			c.histOf(off).record((now - sent) / 1000)
		}
	}
}

func (c *client) histOf(off uint64) *atomicHist {
	p := &c.offsets[off]
	if h := p.Load(); h != nil {
		return h
	}
	h := newAtomicHist()
	if p.CompareAndSwap(nil, h) {
		return h
	}
	return p.Load()
}

func (c *client) otherMessage(msg []byte) {
	var m superchat.ServerMessage
	if err := json.Unmarshal(msg, &m); err != nil {
		c.other.Add(1)
		c.noteErr(fmt.Errorf("not JSON: %q", msg))
		return
	}
	switch {
	case m.Gap != nil:
		c.gaps.Add(1)
		c.noteErr(fmt.Errorf("gap: %+v", *m.Gap))
	case m.Disconnect != nil:
		c.disconnects.Add(1)
		c.noteErr(m.Disconnect)
	default:
		c.other.Add(1)
		c.noteErr(fmt.Errorf("unexpected message: %.200s", msg))
	}
}

var (
	pushPrefix  = []byte(`{"push":{`)
	epochKey    = []byte(`"epoch":"`)
	offsetKey   = []byte(`"offset":`)
	sentKey     = []byte(`"data":{"t":`)
	errNotDigit = errors.New("no digits")
)

// parsePush reads offset, epoch and the publisher's send time (ns) out of
// a publication push without a JSON decoder: the server writes the push
// fields in a fixed order (channel, epoch, offset, data), and the data is
// the coordinator's own {"t":...,"p":"..."}. Anything else is not a push
// (ok false) and goes to the full decoder.
func parsePush(b []byte) (off uint64, epoch []byte, sent int64, ok bool) {
	if !bytes.HasPrefix(b, pushPrefix) {
		return 0, nil, 0, false
	}
	i := bytes.Index(b, epochKey)
	if i < 0 {
		return 0, nil, 0, false
	}
	rest := b[i+len(epochKey):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return 0, nil, 0, false
	}
	epoch, rest = rest[:j], rest[j:]
	i = bytes.Index(rest, offsetKey)
	if i < 0 {
		return 0, nil, 0, false
	}
	rest = rest[i+len(offsetKey):]
	o, rest, err := digits(rest)
	if err != nil {
		return 0, nil, 0, false
	}
	i = bytes.Index(rest, sentKey)
	if i < 0 {
		return o, epoch, 0, true // someone else's data: count it, no latency
	}
	t, _, err := digits(rest[i+len(sentKey):])
	if err != nil {
		return o, epoch, 0, true
	}
	return o, epoch, int64(t), true
}

func digits(b []byte) (uint64, []byte, error) {
	var v uint64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		v = v*10 + uint64(b[i]-'0')
	}
	if i == 0 {
		return 0, b, errNotDigit
	}
	return v, b[i:], nil
}

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT (not in package
// syscall).
const ipBindAddressNoPort = 24

// bindNoPort lets the kernel pick the source port at connect, where only
// the whole 4-tuple must be unique, instead of at bind: a bind to port 0
// on an address with thousands of bound sockets searched for a free port
// in the kernel, 24 % of a client's CPU at 16,000 subscribers in its
// profile.
func bindNoPort(network, address string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
