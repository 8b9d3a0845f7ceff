package push

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Outbound is one item of a session's outbound queue.
type Outbound struct {
	// Seq numbers the session's items: 1, 2, 3, ... without gaps.
	Seq uint64
	// Data is what to send: a text line (chat) or a JSON envelope
	// (superchat). It is shared with other sessions: never modify it.
	Data []byte
	// Time is when the broker accepted the publication this item carries
	// (zero for replies and notices): the transport may observe
	// publish-to-write latency with it.
	Time time.Time
}

// queue is a session's outbound queue: bounded in items and bytes, grown
// only as needed, and emptied by Ack. It also holds the session's end state
// (err, done) so that Wait sees both under one lock.
type queue struct {
	mu       sync.Mutex
	items    []Outbound // items[i].Seq == next-len(items)+i
	next     uint64     // Seq of the next item
	bytes    int
	maxItems int
	maxBytes int
	err      *Disconnect   // set once, when the session ends
	done     chan struct{} // closed when err is set
	// notify (cap 1) wakes a wait: something was queued or the session
	// ended. Made by the first wait (a polling transport); nil until
	// then, so that a session served over WebSocket holds no channel for
	// it and a delivery sends on none.
	notify chan struct{}
	room   chan struct{} // made by a waiting pushWait, closed by ack; else nil

	onSignal atomic.Pointer[func()] // the session's wake function (SetWake), or nil
}

// keepCap is the largest item capacity a drained queue keeps for reuse; a
// bigger backing array is given back so an idle session stays small.
const keepCap = 16

func (q *queue) init(maxItems, maxBytes int) {
	q.next = 1
	q.maxItems, q.maxBytes = maxItems, maxBytes
	q.done = make(chan struct{})
}

// signal wakes a waiter (notify is q.notify, read under q.mu) and calls the
// session's wake function.
func (q *queue) signal(notify chan struct{}) {
	if notify != nil {
		select {
		case notify <- struct{}{}:
		default:
		}
	}
	if f := q.onSignal.Load(); f != nil {
		(*f)()
	}
}

// push queues o unless the session has ended. full reports that o would
// exceed a bound; nothing is queued then and the caller ends the session.
func (q *queue) push(o Outbound) (ok, full bool) {
	q.mu.Lock()
	if q.err != nil {
		q.mu.Unlock()
		return false, false
	}
	if len(q.items)+1 > q.maxItems || q.bytes+len(o.Data) > q.maxBytes {
		q.mu.Unlock()
		return false, true
	}
	o.Seq = q.next
	q.next++
	q.bytes += len(o.Data)
	q.items = append(q.items, o)
	notify := q.notify
	q.mu.Unlock()
	q.signal(notify)
	return true, false
}

// pushWait queues o, waiting while the queue has no room for it, until
// ctx ends (ctx.Err()) or the session ends (its *Disconnect). An item
// larger than the bounds is queued once the queue is empty, so a big item
// is delivered rather than waiting forever. Only a sender that can afford
// to wait uses it (a recovery replay); the publication path never does.
func (q *queue) pushWait(ctx context.Context, o Outbound) error {
	for {
		q.mu.Lock()
		if q.err != nil {
			err := q.err
			q.mu.Unlock()
			return err
		}
		if len(q.items) == 0 || len(q.items)+1 <= q.maxItems && q.bytes+len(o.Data) <= q.maxBytes {
			o.Seq = q.next
			q.next++
			q.bytes += len(o.Data)
			q.items = append(q.items, o)
			notify := q.notify
			q.mu.Unlock()
			q.signal(notify)
			return nil
		}
		if q.room == nil {
			q.room = make(chan struct{})
		}
		room := q.room
		q.mu.Unlock()
		select {
		case <-room:
		case <-q.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// close ends the session with d, queueing notice (if any) past the bounds
// so a polling client can still be told. It reports whether this call ended
// the session.
func (q *queue) close(d *Disconnect, notice []byte) bool {
	q.mu.Lock()
	if q.err != nil {
		q.mu.Unlock()
		return false
	}
	q.err = d
	if notice != nil {
		q.items = append(q.items, Outbound{Seq: q.next, Data: notice})
		q.next++
		q.bytes += len(notice)
	}
	close(q.done)
	notify := q.notify
	q.mu.Unlock()
	q.signal(notify)
	return true
}

func (q *queue) ended() *Disconnect {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// wait blocks until an item with Seq > after is queued, ctx ends, or the
// session ends. Queued items are reported before the end, so a transport can
// flush them.
func (q *queue) wait(ctx context.Context, after uint64) error {
	woke := false
	for {
		q.mu.Lock()
		has := len(q.items) > 0 && q.next-1 > after
		err := q.err
		if q.notify == nil && !has && err == nil {
			q.notify = make(chan struct{}, 1)
		}
		notify := q.notify
		q.mu.Unlock()
		if has {
			if woke {
				q.signal(notify) // pass the wake-up on to another waiter
			}
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-notify:
			woke = true
		case <-q.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// pending appends the items with Seq > after to dst.
func (q *queue) pending(after uint64, dst []Outbound) []Outbound {
	q.mu.Lock()
	defer q.mu.Unlock()
	first := q.next - uint64(len(q.items))
	if after+1 <= first {
		return append(dst, q.items...)
	}
	i := after + 1 - first
	if i >= uint64(len(q.items)) {
		return dst
	}
	return append(dst, q.items[i:]...)
}

// hasPending reports whether an item with Seq > after is queued.
func (q *queue) hasPending(after uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) > 0 && q.next-1 > after
}

// ack drops the items with Seq <= seq.
func (q *queue) ack(seq uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	first := q.next - uint64(len(q.items))
	if seq < first {
		return
	}
	k := len(q.items)
	if d := seq + 1 - first; d < uint64(k) {
		k = int(d)
	}
	for _, o := range q.items[:k] {
		q.bytes -= len(o.Data)
	}
	if q.room != nil && k > 0 {
		close(q.room) // wake the pushWait callers
		q.room = nil
	}
	if k == len(q.items) {
		if cap(q.items) > keepCap {
			q.items = nil
		} else {
			clear(q.items)
			q.items = q.items[:0]
		}
		return
	}
	n := copy(q.items, q.items[k:])
	clear(q.items[n:])
	q.items = q.items[:n]
}

// compact gives back the items array of an empty queue.
func (q *queue) compact() {
	q.mu.Lock()
	if len(q.items) == 0 {
		q.items = nil
	}
	q.mu.Unlock()
}

// size reports the queued items and bytes.
func (q *queue) size() (items, bytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items), q.bytes
}
