package faulttest

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// ordKey orders the positions of one channel: epochs by when they were
// first seen (the publisher's acknowledgements, or a subscriber's
// receipts), offsets within an epoch. The empty epoch (a stream that did
// not exist yet) comes first.
type ordKey struct {
	rank int
	off  uint64
}

func (a ordKey) less(b ordKey) bool {
	if a.rank != b.rank {
		return a.rank < b.rank
	}
	return a.off < b.off
}

var ordInf = ordKey{math.MaxInt, math.MaxUint64}

// epochRanks ranks the epochs of each channel by when they were first
// seen.
type epochRanks map[string]map[string]int

func rankEpochs(recs []pubRecord, subs []subView) epochRanks {
	first := make(map[string]map[string]time.Duration)
	see := func(ch, epoch string, at time.Duration) {
		if epoch == "" {
			return
		}
		m := first[ch]
		if m == nil {
			m = make(map[string]time.Duration)
			first[ch] = m
		}
		if t, ok := m[epoch]; !ok || at < t {
			m[epoch] = at
		}
	}
	for _, r := range recs {
		if r.acked {
			see(r.channel, r.pos.Epoch, r.ackAt)
		}
	}
	for _, s := range subs {
		for _, e := range s.events {
			see(s.channel, e.pos.Epoch, e.at)
			see(s.channel, e.top.Epoch, e.at)
		}
	}
	ranks := make(epochRanks)
	for ch, m := range first {
		eps := make([]string, 0, len(m))
		for e := range m {
			eps = append(eps, e)
		}
		sort.Slice(eps, func(i, j int) bool {
			if m[eps[i]] != m[eps[j]] {
				return m[eps[i]] < m[eps[j]]
			}
			return eps[i] < eps[j]
		})
		r := make(map[string]int, len(eps))
		for i, e := range eps {
			r[e] = i
		}
		ranks[ch] = r
	}
	return ranks
}

func (r epochRanks) key(ch string, p pos) ordKey {
	if p.Epoch == "" {
		return ordKey{-1, p.Offset}
	}
	return ordKey{r[ch][p.Epoch], p.Offset}
}

// subView is what classification needs of a subscriber.
type subView struct {
	id        int
	transport string
	channel   string
	events    []event
}

// phase is a stretch of the run: from start until the next phase starts.
type phase struct {
	name  string
	start time.Duration
}

// counts is one row of the table.
type counts struct {
	pubs       int // acknowledged publications (for a row of phases)
	checked    int // acknowledged publication × subscriber
	inOrder    int
	outOfOrder int // received once, after a later position
	toldGap    int // missed, covered by a gap notice
	toldLost   int // missed, covered by a subscribe reply recovered:false
	silent     int // missed and never told
	silentTail int // of silent: after the last position the subscriber reached
	dup        int // received more than once
	conflict   int // another publication arrived at the acknowledged position
}

func (c *counts) add(o counts) {
	c.pubs += o.pubs
	c.checked += o.checked
	c.inOrder += o.inOrder
	c.outOfOrder += o.outOfOrder
	c.toldGap += o.toldGap
	c.toldLost += o.toldLost
	c.silent += o.silent
	c.silentTail += o.silentTail
	c.dup += o.dup
	c.conflict += o.conflict
}

// extra counts deliveries of positions that the publisher never had
// acknowledged there.
type extra struct {
	neverAcked      int // a publication never acknowledged (outcome unknown, then retried or given up)
	twiceSameEpoch  int // a publication acknowledged at another position of the same epoch: published twice
	twiceOtherEpoch int // acknowledged in another epoch (the first stream was lost, the retry published again)
	foreign         int // data that is not one of the publisher's
	twicePubs       int // distinct publications published twice in one epoch
}

// report is the outcome of a run.
type report struct {
	phases          []phase
	byPhase         []counts
	byTrans         map[string]*counts
	total           counts
	extra           extra
	losses          []string       // silent loss ranges, for the log
	seen            map[string]int // what the subscribers saw, by kind (and reason)
	dupSamples      []string
	conflictSamples []string
}

type window struct {
	lo, hi ordKey
	incl   bool // hi is covered too
	lost   bool // a recovered:false reply (else a gap notice)
}

func (w window) covers(k ordKey) bool {
	return w.lo.less(k) && (k.less(w.hi) || w.incl && k == w.hi)
}

// classify checks every acknowledged publication against every
// subscriber of its channel.
func classify(recs []pubRecord, subs []subView, phases []phase) *report {
	ranks := rankEpochs(recs, subs)
	rep := &report{phases: phases, byPhase: make([]counts, len(phases)), byTrans: make(map[string]*counts),
		seen: make(map[string]int)}
	phaseOf := func(at time.Duration) int {
		i := sort.Search(len(phases), func(i int) bool { return phases[i].start > at }) - 1
		return max(i, 0)
	}
	acked := make(map[string]map[pos]int64) // channel → position → seq
	bySeq := make(map[int64]*pubRecord, len(recs))
	byChan := make(map[string][]*pubRecord)
	for i := range recs {
		r := &recs[i]
		bySeq[r.seq] = r
		if !r.acked {
			continue
		}
		if acked[r.channel] == nil {
			acked[r.channel] = make(map[pos]int64)
		}
		acked[r.channel][r.pos] = r.seq
		byChan[r.channel] = append(byChan[r.channel], r)
		rep.byPhase[phaseOf(r.ackAt)].pubs++
	}
	for ch, pubs := range byChan {
		sort.Slice(pubs, func(i, j int) bool { return ranks.key(ch, pubs[i].pos).less(ranks.key(ch, pubs[j].pos)) })
	}
	twice := make(map[int64]bool)
	for _, s := range subs {
		tc := rep.byTrans[s.transport]
		if tc == nil {
			tc = &counts{}
			rep.byTrans[s.transport] = tc
		}
		key := func(p pos) ordKey { return ranks.key(s.channel, p) }

		// Walk what the subscriber saw, in order.
		var (
			start    *ordKey
			windows  []window
			received = make(map[pos]int)
			firstSeq = make(map[pos]int64)
			late     = make(map[pos]bool)
			maxSeen  ordKey
		)
		type openW struct {
			lo       ordKey
			lost     bool
			epochEnd bool // up to the start of the next push's epoch
		}
		var open []openW
		for _, e := range s.events {
			rep.seen[e.kind.describe(e.reason)]++
			switch e.kind {
			case evStart:
				if start == nil {
					k := key(e.top)
					start, maxSeen = &k, k
				}
			case evPush:
				k := key(e.pos)
				for _, o := range open {
					if o.epochEnd {
						windows = append(windows, window{lo: o.lo, hi: ordKey{k.rank, 0}, incl: true, lost: o.lost})
					} else {
						windows = append(windows, window{lo: o.lo, hi: k, lost: o.lost})
					}
				}
				open = open[:0]
				received[e.pos]++
				if received[e.pos] == 1 {
					firstSeq[e.pos] = e.seq
					if k.less(maxSeen) {
						late[e.pos] = true
					}
				}
				if maxSeen.less(k) {
					maxSeen = k
				}
			case evGap:
				open = append(open, openW{lo: key(e.pos)})
			case evLost:
				if e.top.Epoch == "" {
					open = append(open, openW{lo: key(e.pos), lost: true, epochEnd: true})
				} else {
					windows = append(windows, window{lo: key(e.pos), hi: key(e.top), incl: true, lost: true})
				}
			}
		}
		for _, o := range open {
			windows = append(windows, window{lo: o.lo, hi: ordInf, lost: o.lost})
		}

		// Every acknowledged publication of the channel.
		var lostRun []string
		flush := func(from, to pos, n int, ph int) {
			lostRun = append(lostRun, fmt.Sprintf("sub %d (%s, %s): %d lost silently, %s .. %s (acked in %q)",
				s.id, s.transport, s.channel, n, from, to, phases[ph].name))
		}
		var runFrom, runTo pos
		runN, runPh := 0, 0
		for _, r := range byChan[s.channel] {
			k := key(r.pos)
			if start != nil && !start.less(k) {
				continue // before the subscriber's first subscribe
			}
			var c counts
			c.checked = 1
			silent := false
			switch n := received[r.pos]; {
			case n > 0 && firstSeq[r.pos] != r.seq:
				c.conflict = 1
				if len(rep.conflictSamples) < 10 {
					rep.conflictSamples = append(rep.conflictSamples, fmt.Sprintf("sub %d (%s): %s acknowledged to publication %d, received publication %d there",
						s.id, s.transport, r.pos, r.seq, firstSeq[r.pos]))
				}
			case n > 1:
				c.dup = 1
				if len(rep.dupSamples) < 10 {
					rep.dupSamples = append(rep.dupSamples, fmt.Sprintf("sub %d (%s): %s received %d times", s.id, s.transport, r.pos, n))
				}
			case n == 1 && late[r.pos]:
				c.outOfOrder = 1
			case n == 1:
				c.inOrder = 1
			default:
				// A gap notice, when there was one, is what told first.
				byGap := slices.ContainsFunc(windows, func(w window) bool { return !w.lost && w.covers(k) })
				byLost := slices.ContainsFunc(windows, func(w window) bool { return w.lost && w.covers(k) })
				switch {
				case byGap:
					c.toldGap = 1
				case byLost:
					c.toldLost = 1
				default:
					c.silent = 1
					silent = true
					if maxSeen.less(k) {
						c.silentTail = 1
					}
				}
			}
			ph := phaseOf(r.ackAt)
			rep.byPhase[ph].add(c)
			tc.add(c)
			rep.total.add(c)
			// Runs of silent losses, for the log.
			if silent {
				if runN > 0 && r.pos.Epoch == runTo.Epoch && r.pos.Offset == runTo.Offset+1 {
					runTo = r.pos
					runN++
				} else {
					if runN > 0 {
						flush(runFrom, runTo, runN, runPh)
					}
					runFrom, runTo, runN, runPh = r.pos, r.pos, 1, ph
				}
			}
		}
		if runN > 0 {
			flush(runFrom, runTo, runN, runPh)
		}
		rep.losses = append(rep.losses, lostRun...)

		// Deliveries of positions not acknowledged there.
		for p, seq := range firstSeq {
			if _, ok := acked[s.channel][p]; ok {
				continue
			}
			r := bySeq[seq]
			switch {
			case r == nil:
				rep.extra.foreign++
			case !r.acked:
				rep.extra.neverAcked++
			case r.pos.Epoch == p.Epoch:
				rep.extra.twiceSameEpoch++
				twice[seq] = true
			default:
				rep.extra.twiceOtherEpoch++
			}
		}
	}
	rep.total.pubs = 0
	for _, c := range rep.byPhase {
		rep.total.pubs += c.pubs
	}
	rep.extra.twicePubs = len(twice)
	return rep
}

// table formats the report.
func (rep *report) table() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tacked pubs\tchecked (pub×sub)\tin order\tout of order\ttold: gap\ttold: recovered:false\tLOST SILENTLY\t(of which never reached)\tduplicated\tconflicting\t")
	row := func(name string, c counts, pubs bool) {
		p := "-"
		if pubs {
			p = fmt.Sprint(c.pubs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", name, p, c.checked, c.inOrder, c.outOfOrder,
			c.toldGap, c.toldLost, c.silent, c.silentTail, c.dup, c.conflict)
	}
	for i, ph := range rep.phases {
		row(fmt.Sprintf("%d. %s (from %.1fs)", i, ph.name, ph.start.Seconds()), rep.byPhase[i], true)
	}
	names := make([]string, 0, len(rep.byTrans))
	for n := range rep.byTrans {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		row("transport "+n, *rep.byTrans[n], false)
	}
	row("TOTAL", rep.total, true)
	tw.Flush()
	e := rep.extra
	fmt.Fprintf(&b, "deliveries of positions never acknowledged there: %d of publications never acknowledged (outcome unknown), "+
		"%d published twice in one epoch (%d publications: a retry the key did not catch), "+
		"%d published again in a new epoch after the first stream was lost, %d foreign\n",
		e.neverAcked, e.twiceSameEpoch, e.twicePubs, e.twiceOtherEpoch, e.foreign)
	kinds := make([]string, 0, len(rep.seen))
	for k := range rep.seen {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	b.WriteString("what the subscribers saw:\n")
	for _, k := range kinds {
		fmt.Fprintf(&b, "  %7d  %s\n", rep.seen[k], k)
	}
	return b.String()
}

// describe names an event kind for the summary; reasons of gaps and
// failed recoveries are kept, disconnect reasons are too varied.
func (k evKind) describe(reason string) string {
	switch k {
	case evStart:
		return "first subscribe"
	case evPush:
		return "pushes"
	case evGap:
		return fmt.Sprintf("gap notice %q", reason)
	case evLost:
		return fmt.Sprintf("recovered:false %q", reason)
	case evRecovered:
		return "recovered:true"
	case evDiscard:
		return "pushes dropped while recovering from a gap"
	case evDisconnect:
		return "disconnect " + strconv.Quote(normalize(reason))
	}
	return "?"
}

var (
	reAddr = regexp.MustCompile(`127\.0\.0\.1:[0-9]+|\[::1\]:[0-9]+`)
	rePoll = regexp.MustCompile(`/poll/[A-Za-z0-9_-]+(\?[^"]*)?`)
	reNum  = regexp.MustCompile(`[0-9]+(\.[0-9]+)?(ms|s)\b`)
)

// normalize makes disconnect reasons countable: no addresses, no durations.
func normalize(reason string) string {
	reason = reAddr.ReplaceAllString(reason, "ADDR")
	reason = rePoll.ReplaceAllString(reason, "/poll/ID")
	reason = reNum.ReplaceAllString(reason, "N")
	if len(reason) > 100 {
		reason = reason[:100] + "…"
	}
	return reason
}
