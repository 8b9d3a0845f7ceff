package loadtest

import (
	"fmt"
	"strings"
	"time"
)

// Phases of a run, in order, as Progress.Phase names them.
const (
	PhaseConnect = "connect" // clients connecting and subscribing
	PhasePublish = "publish" // the publisher sending at the rate
	PhaseDrain   = "drain"   // waiting for the last deliveries
	PhaseDone    = "done"
)

// Progress is a snapshot of a running measurement, for a progress bar.
type Progress struct {
	Transport string
	Phase     string
	Clients   int // subscribers wanted
	Connected int // subscribers subscribed so far

	Elapsed  time.Duration // since publishing started
	Duration time.Duration // of the publish phase
	Messages int           // to publish
	Sent     int           // publish requests made
	Accepted int64         // publications the server confirmed

	Delivered int64 // distinct deliveries so far
	// Expected is Accepted × Clients. It can lag Delivered: a subscriber
	// may get a publication before the publisher gets its reply. Due
	// corrects for that; the progress shows Due.
	Expected int64
}

// Due is the deliveries known to be due so far: Clients for each
// publication known to be published. The server confirmed Accepted of
// them, and a publication delivered before its publish reply came back
// is published too: at least ceil(Delivered / Clients) distinct
// publications have been delivered, as each brings at most one delivery
// per client. So Due is never below Delivered, and the progress never
// shows more than 100%.
func (p Progress) Due() int64 {
	if p.Clients <= 0 {
		return max(p.Expected, p.Delivered)
	}
	c := int64(p.Clients)
	return max(p.Expected, max(p.Accepted, (p.Delivered+c-1)/c)*c)
}

// Fraction is how far the current phase has gone, from 0 to 1.
func (p Progress) Fraction() float64 {
	var f float64
	switch p.Phase {
	case PhaseConnect:
		if p.Clients > 0 {
			f = float64(p.Connected) / float64(p.Clients)
		}
	case PhasePublish:
		if p.Duration > 0 {
			f = float64(p.Elapsed) / float64(p.Duration)
		}
	case PhaseDrain:
		f = 1
		if due := p.Due(); due > 0 {
			f = float64(p.Delivered) / float64(due)
		}
	case PhaseDone:
		f = 1
	}
	return min(1, max(0, f))
}

// String is the progress as a plain line, for logs and pipes.
func (p Progress) String() string {
	switch p.Phase {
	case PhaseConnect:
		return fmt.Sprintf("%s: connect %d/%d clients", p.Transport, p.Connected, p.Clients)
	default:
		return fmt.Sprintf("%s: %s %s/%s, published %d/%d, delivered %d/%d%s",
			p.Transport, p.Phase, roundDuration(p.Elapsed), roundDuration(p.Duration),
			p.Accepted, p.Messages, p.Delivered, p.Due(), percent(p.Delivered, p.Due()))
	}
}

// Bar is the progress as one terminal line of at most width columns: the
// transport, a bar of the phase's fraction, and the counts that fit.
func (p Progress) Bar(width int) string {
	head := fmt.Sprintf("%-8s %-7s ", p.Transport, p.Phase)
	var tail string
	if p.Phase == PhaseConnect {
		tail = fmt.Sprintf(" %*d/%d clients", digits(int64(p.Clients)), p.Connected, p.Clients)
	} else {
		// Widths fixed for the run, so the bar does not jitter.
		nw, dw := digits(int64(p.Messages)), digits(int64(p.Messages)*int64(p.Clients))
		tail = fmt.Sprintf(" %6s/%s pub %*d recv %*d/%*d", roundDuration(p.Elapsed), roundDuration(p.Duration), nw, p.Accepted, dw, p.Delivered, dw, p.Due())
	}
	inner := width - len(head) - len(tail) - 2
	if inner > 40 {
		inner = 40
	}
	if inner < 10 {
		// Too narrow for a bar: as much of the plain line as fits.
		s := head + fmt.Sprintf("%3.0f%%", 100*p.Fraction()) + tail
		if len(s) > width {
			s = s[:max(0, width)]
		}
		return s
	}
	fill := int(p.Fraction()*float64(inner) + 0.5)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", inner-fill)
	if fill > 0 && fill < inner {
		bar = bar[:fill-1] + ">" + bar[fill:]
	}
	return head + "[" + bar + "]" + tail
}

func roundDuration(d time.Duration) time.Duration {
	if d >= 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

func percent(n, of int64) string {
	if of == 0 {
		return ""
	}
	return fmt.Sprintf(" (%.1f%%)", 100*float64(n)/float64(of))
}

func digits(n int64) int { return len(fmt.Sprint(n)) }
