package broker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"
)

// Memory is the embedded broker: one process, everything in memory. Its
// epochs are random per stream, so a restarted process starts new epochs and
// clients holding old positions learn that they must resync.
//
// Reads create nothing: a stream is created by its first publication. A
// stream with nothing in its history and no subscriber is dropped once it
// has been idle for EmptyStreamTTL; its next publication starts a new epoch.
type Memory struct {
	emptyTTL time.Duration
	maxIdem  int

	mu      sync.RWMutex
	handler Handler
	closed  bool
	streams map[string]*stream
	subs    map[string]int // channel -> Subscribe count
	swept   atomic.Int64   // last sweep of idle streams, Unix ns

	pmu      sync.Mutex
	presence map[string]map[string]presenceEntry // channel -> client -> entry
}

// MemoryConfig holds the limits of a Memory broker; the zero value means
// the defaults.
type MemoryConfig struct {
	// EmptyStreamTTL is how long a stream with no history and no
	// subscriber is kept after its last publication. 0 means
	// DefaultEmptyStreamTTL.
	EmptyStreamTTL time.Duration
	// MaxIdempotencyKeys bounds the idempotency keys remembered per
	// channel; past it the oldest are forgotten before their TTL.
	// 0 means 10000.
	MaxIdempotencyKeys int
}

// DefaultMaxIdempotencyKeys is MemoryConfig.MaxIdempotencyKeys's default.
const DefaultMaxIdempotencyKeys = 10000

type stream struct {
	mu     sync.Mutex // held while fanning out, which keeps offset order
	epoch  string
	offset uint64
	pubs   []*Publication // pubs[i].Offset == offset-len(pubs)+1+i
	bytes  int            // size of pubs, as counted by pubSize
	opts   PublishOptions
	last   time.Time // last publication
	dead   bool      // dropped by a sweep; look the channel up again

	idem      map[string]idemEntry // idempotency key -> first publication
	idemOrder []string             // keys by insertion, oldest first
}

type idemEntry struct {
	pos     Position
	expires time.Time
}

type presenceEntry struct {
	info    ClientInfo
	expires time.Time
}

var _ Broker = (*Memory)(nil)

// NewMemory returns an empty in-memory broker with the default limits.
func NewMemory() *Memory {
	return NewMemoryConfig(MemoryConfig{})
}

// NewMemoryConfig returns an empty in-memory broker with the limits of cfg.
func NewMemoryConfig(cfg MemoryConfig) *Memory {
	if cfg.EmptyStreamTTL <= 0 {
		cfg.EmptyStreamTTL = DefaultEmptyStreamTTL
	}
	if cfg.MaxIdempotencyKeys <= 0 {
		cfg.MaxIdempotencyKeys = DefaultMaxIdempotencyKeys
	}
	return &Memory{
		emptyTTL: cfg.EmptyStreamTTL,
		maxIdem:  cfg.MaxIdempotencyKeys,
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

// stream returns the stream of channel, creating it with a new epoch if
// create is set; without create a missing stream is nil.
func (m *Memory) stream(channel string, create bool) (*stream, Handler, bool, error) {
	m.mu.RLock()
	st, ok := m.streams[channel]
	h, subscribed, closed := m.handler, m.subs[channel] > 0, m.closed
	m.mu.RUnlock()
	if closed {
		return nil, nil, false, ErrClosed
	}
	if ok || !create {
		return st, h, subscribed, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, nil, false, ErrClosed
	}
	if st, ok = m.streams[channel]; !ok {
		st = &stream{epoch: NewEpoch(), last: time.Now()}
		m.streams[channel] = st
	}
	return st, m.handler, m.subs[channel] > 0, nil
}

// lockStream returns the locked, live stream of channel, or nil if it has
// none and create is not set.
func (m *Memory) lockStream(channel string, create bool) (*stream, Handler, bool, error) {
	m.maybeSweep()
	for {
		st, h, subscribed, err := m.stream(channel, create)
		if err != nil || st == nil {
			return nil, nil, false, err
		}
		st.mu.Lock()
		if !st.dead {
			return st, h, subscribed, nil
		}
		st.mu.Unlock()
	}
}

// maybeSweep drops idle streams if the last sweep was long enough ago.
func (m *Memory) maybeSweep() {
	now := time.Now()
	every := min(m.emptyTTL/2, time.Minute)
	last := m.swept.Load()
	if now.UnixNano()-last < int64(every) || !m.swept.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.sweepLocked(now)
	}
}

// sweepLocked drops the streams that are empty (no history, no live
// idempotency key), have no subscriber and saw no publication for
// EmptyStreamTTL. m.mu is held.
func (m *Memory) sweepLocked(now time.Time) {
	for ch, st := range m.streams {
		if m.subs[ch] > 0 || !st.mu.TryLock() {
			continue // busy, so not idle
		}
		st.trim(now)
		st.trimIdem(now, 0)
		idle := len(st.pubs) == 0 && len(st.idem) == 0 && now.Sub(st.last) >= m.emptyTTL
		st.dead = idle
		st.mu.Unlock()
		if idle {
			delete(m.streams, ch)
		}
	}
}

// pubSize is what a publication counts against HistoryBytes: its data and
// publisher info.
func pubSize(p *Publication) int {
	n := len(p.Data)
	if p.Info != nil {
		n += len(p.Info.User) + len(p.Info.Name) + len(p.Info.Client)
	}
	return n
}

// Publish implements Broker. The handler runs before Publish returns.
func (m *Memory) Publish(ctx context.Context, channel string, data json.RawMessage, info *ClientInfo, opts PublishOptions) (Position, error) {
	if info != nil {
		c := *info
		info = &c
	}
	st, _, _, err := m.lockStream(channel, true)
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
	idem := ""
	if opts.IdempotencyKey != "" {
		idem = IdempotencyID(opts.IdempotencyKey)
		st.trimIdem(now, 0)
		if e, ok := st.idem[idem]; ok && now.Before(e.expires) {
			return e.pos, nil
		}
	}
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
		st.bytes += pubSize(pub)
	} else {
		clear(st.pubs)
		st.pubs, st.bytes = nil, 0
	}
	st.trim(now)
	if k := idem; k != "" {
		ttl := opts.IdempotencyTTL
		if ttl <= 0 {
			ttl = DefaultIdempotencyTTL
		}
		if st.idem == nil {
			st.idem = make(map[string]idemEntry)
		}
		st.trimIdem(now, m.maxIdem-1)
		st.idem[k] = idemEntry{pos: pub.Position, expires: now.Add(ttl)}
		st.idemOrder = append(st.idemOrder, k)
	}
	if subscribed && h != nil {
		h.HandlePublication(pub)
	}
	return pub.Position, nil
}

// trimIdem forgets expired idempotency keys and, if keep > 0, the oldest
// ones beyond keep. st.mu is held.
func (st *stream) trimIdem(now time.Time, keep int) {
	drop := 0
	for drop < len(st.idemOrder) {
		k := st.idemOrder[drop]
		e, ok := st.idem[k]
		if ok && now.Before(e.expires) && (keep <= 0 || len(st.idem) <= keep) {
			break
		}
		if ok {
			delete(st.idem, k)
		}
		drop++
	}
	if drop == 0 {
		return
	}
	clear(st.idemOrder[:drop])
	st.idemOrder = st.idemOrder[drop:]
	if len(st.idemOrder) == 0 {
		st.idemOrder = nil
	}
}

// trim drops publications beyond the size and byte bounds or past their
// age, oldest first; the newest stays within the size bound. st.mu is
// held.
func (st *stream) trim(now time.Time) {
	drop := 0
	if n := len(st.pubs) - st.opts.HistorySize; n > 0 {
		drop = n
	}
	bytes := st.bytes
	for i := range drop {
		bytes -= pubSize(st.pubs[i])
	}
	for limit := st.opts.HistoryBytes; limit > 0 && drop < len(st.pubs)-1 && bytes > limit; drop++ {
		bytes -= pubSize(st.pubs[drop])
	}
	if ttl := st.opts.HistoryTTL; ttl > 0 {
		for drop < len(st.pubs) && now.Sub(st.pubs[drop].Time) >= ttl {
			bytes -= pubSize(st.pubs[drop])
			drop++
		}
	}
	if drop == 0 {
		return
	}
	st.bytes = bytes
	clear(st.pubs[:drop])
	st.pubs = st.pubs[drop:]
	if len(st.pubs) == 0 {
		st.pubs, st.bytes = nil, 0
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

// History implements Broker. A channel without a stream reads as Top
// {"", 0} and gets none.
func (m *Memory) History(ctx context.Context, channel string, req HistoryRequest) (HistoryResult, error) {
	st, _, _, err := m.lockStream(channel, false)
	if err != nil {
		return HistoryResult{}, err
	}
	if st == nil {
		_, _, err := Window("", 0, 1, req)
		return HistoryResult{}, err
	}
	defer st.mu.Unlock()
	st.trim(time.Now())
	res := HistoryResult{Top: Position{Epoch: st.epoch, Offset: st.offset}}
	first := st.offset - uint64(len(st.pubs)) + 1 // offset of st.pubs[0]
	lo, hi, err := Window(st.epoch, st.offset, first, req)
	if err != nil || lo > hi {
		return res, err
	}
	out := make([]*Publication, hi-lo+1)
	for i := range out {
		if req.Reverse {
			out[i] = st.pubs[hi-first-uint64(i)]
		} else {
			out[i] = st.pubs[lo-first+uint64(i)]
		}
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

// Ready implements Readier: a memory broker is ready until closed.
func (m *Memory) Ready(ctx context.Context) error {
	if m.isClosed() {
		return ErrClosed
	}
	return nil
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

// NewEpoch returns a short random stream name.
func NewEpoch() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand docs)
	return base64.RawURLEncoding.EncodeToString(b[:])
}
