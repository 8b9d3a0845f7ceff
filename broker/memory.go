package broker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"sync"
	"time"
)

// Memory is the embedded broker: one process, everything in memory. Its
// epochs are random per stream, so a restarted process starts new epochs and
// clients holding old positions learn that they must resync.
//
// An idle stream (no publication for a day and nothing left in its history)
// is dropped; its next publication starts a new epoch.
type Memory struct {
	mu      sync.RWMutex
	handler Handler
	closed  bool
	streams map[string]*stream
	subs    map[string]int // channel -> Subscribe count
	swept   time.Time      // last sweep of idle streams

	pmu      sync.Mutex
	presence map[string]map[string]presenceEntry // channel -> client -> entry
}

// streamIdleTTL is how long an empty stream is kept after its last
// publication.
const streamIdleTTL = 24 * time.Hour

// sweepEvery bounds how often Publish looks for idle streams to drop.
const sweepEvery = time.Minute

type stream struct {
	mu     sync.Mutex // held while fanning out, which keeps offset order
	epoch  string
	offset uint64
	pubs   []*Publication // pubs[i].Offset == offset-len(pubs)+1+i
	opts   PublishOptions
	last   time.Time // last publication, or creation
	dead   bool      // dropped by a sweep; look the channel up again
}

type presenceEntry struct {
	info    ClientInfo
	expires time.Time
}

var _ Broker = (*Memory)(nil)

// NewMemory returns an empty in-memory broker.
func NewMemory() *Memory {
	return &Memory{
		streams:  make(map[string]*stream),
		subs:     make(map[string]int),
		presence: make(map[string]map[string]presenceEntry),
	}
}

// Start implements Broker.
func (m *Memory) Start(h Handler) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.handler = h
	return nil
}

// Subscribe implements Broker.
func (m *Memory) Subscribe(ctx context.Context, channel string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.subs[channel]++
	return nil
}

// Unsubscribe implements Broker.
func (m *Memory) Unsubscribe(ctx context.Context, channel string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if n := m.subs[channel]; n > 1 {
		m.subs[channel] = n - 1
	} else {
		delete(m.subs, channel)
	}
	return nil
}

// stream returns the stream of channel, creating it with a new epoch.
func (m *Memory) stream(channel string) (*stream, Handler, bool, error) {
	m.mu.RLock()
	st, ok := m.streams[channel]
	h, subscribed, closed := m.handler, m.subs[channel] > 0, m.closed
	m.mu.RUnlock()
	if closed {
		return nil, nil, false, ErrClosed
	}
	if ok {
		return st, h, subscribed, nil
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, nil, false, ErrClosed
	}
	if st, ok = m.streams[channel]; !ok {
		st = &stream{epoch: newEpoch(), last: now}
		m.streams[channel] = st
	}
	if now.Sub(m.swept) >= sweepEvery {
		m.swept = now
		m.sweepLocked(now)
	}
	return st, m.handler, m.subs[channel] > 0, nil
}

// lockStream returns the locked, live stream of channel.
func (m *Memory) lockStream(channel string) (*stream, Handler, bool, error) {
	for {
		st, h, subscribed, err := m.stream(channel)
		if err != nil {
			return nil, nil, false, err
		}
		st.mu.Lock()
		if !st.dead {
			return st, h, subscribed, nil
		}
		st.mu.Unlock()
	}
}

// sweepLocked drops idle, empty streams. m.mu is held.
func (m *Memory) sweepLocked(now time.Time) {
	for ch, st := range m.streams {
		if !st.mu.TryLock() {
			continue // busy, so not idle
		}
		st.trim(now)
		idle := len(st.pubs) == 0 && now.Sub(st.last) > streamIdleTTL
		st.dead = idle
		st.mu.Unlock()
		if idle {
			delete(m.streams, ch)
		}
	}
}

// Publish implements Broker. The handler runs before Publish returns.
func (m *Memory) Publish(ctx context.Context, channel string, data json.RawMessage, info *ClientInfo, opts PublishOptions) (Position, error) {
	if info != nil {
		c := *info
		info = &c
	}
	st, _, _, err := m.lockStream(channel)
	if err != nil {
		return Position{}, err
	}
	defer st.mu.Unlock()
	// Decide the fan-out under the stream's lock: a Subscribe that returned
	// before this publication's offset is assigned must see it.
	m.mu.RLock()
	h, subscribed := m.handler, m.subs[channel] > 0
	m.mu.RUnlock()
	now := time.Now()
	st.offset++
	st.last = now
	st.opts = opts
	pub := &Publication{
		Channel:  channel,
		Position: Position{Epoch: st.epoch, Offset: st.offset},
		Data:     data,
		Info:     info,
		Time:     now,
	}
	if opts.HistorySize > 0 {
		st.pubs = append(st.pubs, pub)
	}
	st.trim(now)
	if subscribed && h != nil {
		h.HandlePublication(pub)
	}
	return pub.Position, nil
}

// trim drops publications beyond the size bound or past their age. st.mu is
// held.
func (st *stream) trim(now time.Time) {
	drop := 0
	if n := len(st.pubs) - st.opts.HistorySize; n > 0 {
		drop = n
	}
	if ttl := st.opts.HistoryTTL; ttl > 0 {
		for drop < len(st.pubs) && now.Sub(st.pubs[drop].Time) >= ttl {
			drop++
		}
	}
	if drop == 0 {
		return
	}
	clear(st.pubs[:drop])
	st.pubs = st.pubs[drop:]
	if len(st.pubs) == 0 {
		st.pubs = nil
	}
}

// PublishJoin implements Broker.
func (m *Memory) PublishJoin(ctx context.Context, channel string, info ClientInfo) error {
	return m.event(channel, info, true)
}

// PublishLeave implements Broker.
func (m *Memory) PublishLeave(ctx context.Context, channel string, info ClientInfo) error {
	return m.event(channel, info, false)
}

func (m *Memory) event(channel string, info ClientInfo, join bool) error {
	m.mu.RLock()
	h, subscribed, closed := m.handler, m.subs[channel] > 0, m.closed
	m.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if !subscribed || h == nil {
		return nil
	}
	if join {
		h.HandleJoin(channel, info)
	} else {
		h.HandleLeave(channel, info)
	}
	return nil
}

// History implements Broker.
func (m *Memory) History(ctx context.Context, channel string, req HistoryRequest) (HistoryResult, error) {
	st, _, _, err := m.lockStream(channel)
	if err != nil {
		return HistoryResult{}, err
	}
	defer st.mu.Unlock()
	st.trim(time.Now())
	res := HistoryResult{Top: Position{Epoch: st.epoch, Offset: st.offset}}
	first := st.offset - uint64(len(st.pubs)) + 1 // offset of st.pubs[0]
	lo, hi := 0, len(st.pubs)                     // candidates st.pubs[lo:hi]
	if s := req.Since; s != nil {
		if s.Epoch != st.epoch || s.Offset > st.offset {
			return res, ErrEpochChanged
		}
		if req.Reverse {
			// Publications before s.Offset: paging back needs no
			// completeness, what is kept is what there is.
			if s.Offset <= first {
				hi = 0
			} else {
				hi = int(s.Offset - first)
			}
		} else {
			if s.Offset+1 < first {
				return res, ErrHistoryTrimmed
			}
			lo = int(s.Offset + 1 - first)
		}
	}
	n := hi - lo
	if req.Limit >= 0 && req.Limit < n {
		n = req.Limit
	}
	if n <= 0 {
		return res, nil
	}
	out := make([]*Publication, n)
	if req.Reverse {
		for i := range out {
			out[i] = st.pubs[hi-1-i]
		}
	} else {
		copy(out, st.pubs[lo:lo+n])
	}
	res.Publications = out
	return res, nil
}

// AddPresence implements Broker.
func (m *Memory) AddPresence(ctx context.Context, channel, client string, info ClientInfo, ttl time.Duration) error {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	if m.isClosed() {
		return ErrClosed
	}
	cs := m.presence[channel]
	if cs == nil {
		cs = make(map[string]presenceEntry)
		m.presence[channel] = cs
	}
	cs[client] = presenceEntry{info: info, expires: time.Now().Add(ttl)}
	return nil
}

// RefreshPresence implements Broker.
func (m *Memory) RefreshPresence(ctx context.Context, channel string, entries map[string]ClientInfo, ttl time.Duration) error {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	if m.isClosed() {
		return ErrClosed
	}
	if len(entries) == 0 {
		return nil
	}
	cs := m.presence[channel]
	if cs == nil {
		cs = make(map[string]presenceEntry, len(entries))
		m.presence[channel] = cs
	}
	expires := time.Now().Add(ttl)
	for client, info := range entries {
		cs[client] = presenceEntry{info: info, expires: expires}
	}
	return nil
}

// RemovePresence implements Broker.
func (m *Memory) RemovePresence(ctx context.Context, channel, client string) error {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	if m.isClosed() {
		return ErrClosed
	}
	if cs := m.presence[channel]; cs != nil {
		delete(cs, client)
		if len(cs) == 0 {
			delete(m.presence, channel)
		}
	}
	return nil
}

// Presence implements Broker. Expired entries are dropped as it reads.
func (m *Memory) Presence(ctx context.Context, channel string) (map[string]ClientInfo, error) {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	if m.isClosed() {
		return nil, ErrClosed
	}
	now := time.Now()
	cs := m.presence[channel]
	out := make(map[string]ClientInfo, len(cs))
	for id, e := range cs {
		if !now.Before(e.expires) {
			delete(cs, id)
			continue
		}
		out[id] = e.info
	}
	if cs != nil && len(cs) == 0 {
		delete(m.presence, channel)
	}
	return out, nil
}

func (m *Memory) isClosed() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.closed
}

// Close implements Broker. Later calls fail with ErrClosed; Close itself is
// idempotent.
func (m *Memory) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	m.handler = nil
	m.streams = map[string]*stream{}
	m.subs = map[string]int{}
	m.mu.Unlock()
	m.pmu.Lock()
	m.presence = map[string]map[string]presenceEntry{}
	m.pmu.Unlock()
	return nil
}

// newEpoch returns a short random stream name.
func newEpoch() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand docs)
	return base64.RawURLEncoding.EncodeToString(b[:])
}
