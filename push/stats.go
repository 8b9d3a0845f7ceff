package push

import "sync/atomic"

// Stats are the engine's counters, for metrics. Sessions are gauges; the
// rest count since New.
type Stats struct {
	Sessions            int64            // live sessions
	SessionsByTransport map[string]int64 // live sessions by the transport they last attached with
	Connects            int64            // sessions created
	Refused             int64            // Connect calls refused by MaxSessions
	MessagesIn          int64            // messages handed to Session.Handle
	MessagesOut         int64            // items queued to sessions (replies, pushes, notices)
	Publications        int64            // publications accepted by the broker
	SlowConsumers       int64            // sessions ended because their queue was full
	RateLimited         int64            // publishes refused by PublishRate
	GapNotices          int64            // gap notices queued: a subscriber told it may have missed publications
	SubscribeReads      int64            // broker history reads for subscribers' starting positions (concurrent subscribers of a channel share one)
}

// Transports counted by name in Stats.SessionsByTransport; others count as
// "other".
var transports = [...]string{"websocket", "longpoll", "poll", "other"}

type counters struct {
	byTransport   [len(transports)]atomic.Int64
	connects      atomic.Int64
	refused       atomic.Int64
	in            atomic.Int64
	out           atomic.Int64
	publications  atomic.Int64
	slowConsumers atomic.Int64
	rateLimited   atomic.Int64
	gaps          atomic.Int64
	historyReads  atomic.Int64
}

func (c *counters) transport(name string) *atomic.Int64 {
	for i, t := range transports[:len(transports)-1] {
		if t == name {
			return &c.byTransport[i]
		}
	}
	return &c.byTransport[len(transports)-1]
}

// Stats returns a snapshot of the counters. It is cheap: a few atomic loads.
func (e *Engine) Stats() Stats {
	st := Stats{
		SessionsByTransport: make(map[string]int64, len(transports)),
		Connects:            e.stats.connects.Load(),
		Refused:             e.stats.refused.Load(),
		MessagesIn:          e.stats.in.Load(),
		MessagesOut:         e.stats.out.Load(),
		Publications:        e.stats.publications.Load(),
		SlowConsumers:       e.stats.slowConsumers.Load(),
		RateLimited:         e.stats.rateLimited.Load(),
		GapNotices:          e.stats.gaps.Load(),
		SubscribeReads:      e.stats.historyReads.Load(),
	}
	for i, t := range transports {
		n := e.stats.byTransport[i].Load()
		st.SessionsByTransport[t] = n
		st.Sessions += n
	}
	return st
}
