package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig says where the Redis broker keeps its state.
type RedisConfig struct {
	// Addr is the Redis server's host:port.
	Addr string
	// Password authenticates to the server; "" for none.
	Password string
	// DB selects the database.
	DB int
	// Prefix starts every key and Pub/Sub channel name, so several
	// deployments can share one server. "": "hotline:".
	Prefix string
	// Timeout bounds each dial, read and write of a call to Redis, so a
	// server that stopped answering fails a Publish in seconds rather
	// than holding the publisher. 0 means 3 s.
	Timeout time.Duration
}

// Redis is the broker for several nodes sharing one Redis server. Streams,
// history and presence live in Redis, so any node can serve any client;
// publications and join/leave events travel over Redis Pub/Sub to the nodes
// subscribed to their channel.
//
// Keys (with the default prefix) are hotline:meta:<channel> (a hash with the
// stream's epoch and offset), hotline:history:<channel> (a list of
// publications, oldest first) and hotline:presence:<channel> (a hash of
// client id to {info, expires}); Pub/Sub channels are hotline:pub:<channel>
// and hotline:ev:<channel>.
//
// Times (publication times, presence expiry) come from the Redis server's
// clock, so nodes with skewed clocks agree. A stream idle for a day with
// nothing left in its history expires; its next publication starts a new
// epoch, as with Memory.
//
// # When Redis goes away
//
// Calls that need the server (Publish, History, presence, a first
// Subscribe) fail with its error; the push engine answers them as errors.
// The Pub/Sub connection reconnects and subscribes again by itself
// (go-redis). Publications made while this node was cut off are then
// caught up from history: on the resubscription, and whenever a channel's
// next publication shows a gap after the last one delivered, the missing
// ones are read from history and handed to the Handler first, so it still
// sees each publication once, in offset order. What history no longer
// holds (HistorySize 0, trimmed, expired, or a channel with no publication
// delivered yet on this node) is not delivered; clients learn of it when
// they recover by position (ErrHistoryTrimmed). If the server itself lost
// its data (restarted without persistence), streams start new epochs and
// clients holding old positions get ErrEpochChanged. Join and leave events
// sent while cut off are lost; presence itself is stored and refreshed, so
// a presence read is right again once the server is back.
type Redis struct {
	client *redis.Client
	prefix string

	// ctx ends with Close; it bounds the history reads of catch-ups.
	ctx    context.Context
	cancel context.CancelFunc

	smu sync.Mutex // serializes Subscribe and Unsubscribe

	mu      sync.Mutex
	handler Handler
	ps      *redis.PubSub
	closed  bool
	subs    map[string]int             // channel -> Subscribe count
	last    map[string]Position        // subscribed channel -> last publication handed to the handler
	waiters map[string][]chan struct{} // kind+" "+Redis channel -> (UN)SUBSCRIBEs awaiting confirmation, in order

	qmu    sync.Mutex
	qcond  *sync.Cond
	queue  []item // received, not yet handled
	qclose bool

	done chan struct{} // closed by Close
	wg   sync.WaitGroup
}

var _ Broker = (*Redis)(nil)

// item is what receive queues for dispatch: a Pub/Sub message, or the
// channel whose subscription go-redis renewed after a reconnect.
type item struct {
	msg   *redis.Message
	resub string
}

// catchUpTimeout bounds one history read that fills a gap in fan-out.
const catchUpTimeout = 5 * time.Second

// redisDialTimeout bounds NewRedis's first contact with the server.
const redisDialTimeout = 5 * time.Second

// NewRedis connects to the Redis server of cfg and returns a broker for this
// node. It fails if the server does not answer PING.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	if cfg.Addr == "" {
		return nil, errors.New("broker: redis address is empty")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "hotline:"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	c := redis.NewClient(&redis.Options{
		Addr:         cfg.Addr,
		Password:     cfg.Password,
		DB:           cfg.DB,
		DialTimeout:  cfg.Timeout,
		ReadTimeout:  cfg.Timeout,
		WriteTimeout: cfg.Timeout,
		// A command whose connection broke after it was sent is not
		// sent again: the publish script may have run, and running
		// it twice would publish twice. Dialing is still retried.
		MaxRetries: -1,
	})
	ctx, cancel := context.WithTimeout(context.Background(), redisDialTimeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("broker: redis %s: %w", cfg.Addr, err)
	}
	r := &Redis{
		client:  c,
		prefix:  cfg.Prefix,
		subs:    make(map[string]int),
		waiters: make(map[string][]chan struct{}),
		last:    make(map[string]Position),
		done:    make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.qcond = sync.NewCond(&r.qmu)
	return r, nil
}

func (r *Redis) metaKey(channel string) string     { return r.prefix + "meta:" + channel }
func (r *Redis) historyKey(channel string) string  { return r.prefix + "history:" + channel }
func (r *Redis) presenceKey(channel string) string { return r.prefix + "presence:" + channel }
func (r *Redis) pubChannel(channel string) string  { return r.prefix + "pub:" + channel }
func (r *Redis) evChannel(channel string) string   { return r.prefix + "ev:" + channel }

func (r *Redis) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Start implements Broker. It opens the node's Pub/Sub connection and starts
// the goroutines that read it and run the handler.
func (r *Redis) Start(h Handler) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if r.ps != nil {
		return errors.New("broker: redis broker already started")
	}
	r.handler = h
	r.ps = r.client.Subscribe(context.Background())
	r.wg.Add(2)
	go r.receive(r.ps)
	go r.dispatch()
	return nil
}

// receive reads the Pub/Sub connection: it confirms subscriptions at once
// and queues messages for dispatch, so a handler that waits for a Subscribe
// (the push engine holds a lock around both) never blocks the reader.
func (r *Redis) receive(ps *redis.PubSub) {
	defer r.wg.Done()
	defer func() {
		r.qmu.Lock()
		r.qclose = true
		r.qmu.Unlock()
		r.qcond.Broadcast()
	}()
	for {
		msg, err := ps.Receive(context.Background())
		if err != nil {
			select {
			case <-r.done:
				return
			case <-time.After(100 * time.Millisecond):
				// go-redis reconnects and resubscribes on the
				// next Receive.
				continue
			}
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if r.confirm(m.Kind+" "+m.Channel) || m.Kind != "subscribe" {
				break
			}
			// Nobody waits: go-redis subscribed again after a
			// reconnect. Catch up what was published meanwhile.
			if ch, ok := strings.CutPrefix(m.Channel, r.prefix+"pub:"); ok {
				r.enqueue(item{resub: ch})
			}
		case *redis.Message:
			r.enqueue(item{msg: m})
		}
	}
}

func (r *Redis) enqueue(it item) {
	r.qmu.Lock()
	r.queue = append(r.queue, it)
	r.qmu.Unlock()
	r.qcond.Signal()
}

// confirm wakes the oldest waiter for key (kind and Redis channel) and
// reports whether there was one.
func (r *Redis) confirm(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ws := r.waiters[key]
	if len(ws) == 0 {
		return false
	}
	close(ws[0])
	if len(ws) == 1 {
		delete(r.waiters, key)
	} else {
		r.waiters[key] = ws[1:]
	}
	return true
}

// expect registers waiters for the confirmations of one (UN)SUBSCRIBE of
// rchs. r.mu is held.
func (r *Redis) expectLocked(kind string, rchs ...string) []chan struct{} {
	ws := make([]chan struct{}, len(rchs))
	for i, rch := range rchs {
		ws[i] = make(chan struct{})
		k := kind + " " + rch
		r.waiters[k] = append(r.waiters[k], ws[i])
	}
	return ws
}

// forget removes the waiters ws of a command that was never sent, so no
// later confirmation is matched to them.
func (r *Redis) forget(kind string, ws []chan struct{}, rchs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, rch := range rchs {
		k := kind + " " + rch
		q := slices.DeleteFunc(r.waiters[k], func(w chan struct{}) bool { return w == ws[i] })
		if len(q) == 0 {
			delete(r.waiters, k)
		} else {
			r.waiters[k] = q
		}
	}
}

// await waits for the confirmations ws. A confirmation that arrives after
// ctx is done goes to the waiter left in the queue, which keeps later
// waiters matched to their own.
func (r *Redis) await(ctx context.Context, ws []chan struct{}) error {
	for _, w := range ws {
		select {
		case <-w:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.done:
			return ErrClosed
		}
	}
	return nil
}

// dispatch hands queued messages to the handler in the order received.
func (r *Redis) dispatch() {
	defer r.wg.Done()
	var batch []item
	for {
		r.qmu.Lock()
		for len(r.queue) == 0 && !r.qclose {
			r.qcond.Wait()
		}
		if len(r.queue) == 0 {
			r.qmu.Unlock()
			return
		}
		batch, r.queue = r.queue, batch[:0]
		r.qmu.Unlock()
		for i, it := range batch {
			r.handle(it)
			batch[i] = item{}
		}
	}
}

// wireEvent is a join or leave on the ev: Pub/Sub channel.
type wireEvent struct {
	Join bool       `json:"join"`
	Info ClientInfo `json:"info"`
}

// handle decodes one Pub/Sub message and calls the handler, or catches a
// resubscribed channel up. Every message received was published while this
// node was subscribed: Unsubscribe waits until Redis has stopped sending.
// It runs on the dispatch goroutine only.
func (r *Redis) handle(it item) {
	var channel string
	var pub bool
	if m := it.msg; m != nil {
		switch rest, _ := strings.CutPrefix(m.Channel, r.prefix); {
		case strings.HasPrefix(rest, "pub:"):
			channel, pub = rest[len("pub:"):], true
		case strings.HasPrefix(rest, "ev:"):
			channel = rest[len("ev:"):]
		default:
			return
		}
	} else {
		channel = it.resub
	}
	r.mu.Lock()
	h := r.handler
	last, known := r.last[channel]
	r.mu.Unlock()
	if h == nil {
		return
	}
	if it.msg == nil {
		if known {
			r.catchUp(h, channel, last, 0)
		}
		return
	}
	m := it.msg
	if pub {
		p, err := decodePublication([]byte(m.Payload))
		if err != nil || p.Channel != channel {
			return // not ours; nothing sensible to do with it
		}
		if known && last.Epoch == p.Epoch {
			if p.Offset <= last.Offset {
				return // handed over by a catch-up already
			}
			if p.Offset > last.Offset+1 {
				r.catchUp(h, channel, last, p.Offset)
			}
		}
		r.setLast(channel, p.Position)
		h.HandlePublication(p)
		return
	}
	var ev wireEvent
	if err := json.Unmarshal([]byte(m.Payload), &ev); err != nil {
		return
	}
	if ev.Join {
		h.HandleJoin(channel, ev.Info)
	} else {
		h.HandleLeave(channel, ev.Info)
	}
}

// catchUp hands the handler the publications of channel after last and
// before offset upto (0: up to the top) that this node missed while its
// Pub/Sub connection was down, read from history. If history cannot serve
// them (trimmed, new epoch, Redis away) nothing is handed over: clients
// find the gap when they recover by position.
func (r *Redis) catchUp(h Handler, channel string, last Position, upto uint64) {
	ctx, cancel := context.WithTimeout(r.ctx, catchUpTimeout)
	defer cancel()
	res, err := r.History(ctx, channel, HistoryRequest{Since: &last, Limit: -1})
	if err != nil {
		return
	}
	for _, p := range res.Publications {
		if upto != 0 && p.Offset >= upto {
			break
		}
		r.setLast(channel, p.Position)
		h.HandlePublication(p)
	}
}

// setLast records the last publication of channel handed to the handler.
// It is kept only while the node is subscribed to channel: a new
// subscription starts where the stream is, not where an old one stopped.
func (r *Redis) setLast(channel string, pos Position) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.subs[channel] > 0 {
		r.last[channel] = pos
	}
}

// Subscribe implements Broker. The first Subscribe of a channel subscribes
// the node's Pub/Sub connection and returns once Redis has confirmed it.
func (r *Redis) Subscribe(ctx context.Context, channel string) error {
	r.smu.Lock()
	defer r.smu.Unlock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	if r.ps == nil {
		r.mu.Unlock()
		return errors.New("broker: redis broker not started")
	}
	n := r.subs[channel]
	r.subs[channel] = n + 1
	if n > 0 {
		r.mu.Unlock()
		return nil
	}
	delete(r.last, channel) // a new subscription starts where the stream is
	pc, ec := r.pubChannel(channel), r.evChannel(channel)
	ws := r.expectLocked("subscribe", pc, ec)
	ps := r.ps
	r.mu.Unlock()

	err := ps.Subscribe(ctx, pc, ec)
	if err == nil {
		err = r.await(ctx, ws)
	} else {
		r.forget("subscribe", ws, pc, ec)
	}
	if err == nil || errors.Is(err, ErrClosed) {
		return err
	}
	// Undo.
	r.mu.Lock()
	if r.subs[channel] <= 1 {
		delete(r.subs, channel)
	} else {
		r.subs[channel]--
	}
	last := r.subs[channel] == 0
	var uws []chan struct{}
	if last {
		// Nobody waits; the waiters keep the queues in step.
		uws = r.expectLocked("unsubscribe", pc, ec)
	}
	r.mu.Unlock()
	if last {
		if ps.Unsubscribe(context.WithoutCancel(ctx), pc, ec) != nil {
			r.forget("unsubscribe", uws, pc, ec)
		}
	}
	return fmt.Errorf("broker: redis subscribe %s: %w", channel, err)
}

// Unsubscribe implements Broker. The last Unsubscribe of a channel
// unsubscribes the node's Pub/Sub connection and returns once Redis has
// confirmed it; publications made before then may still reach the handler.
func (r *Redis) Unsubscribe(ctx context.Context, channel string) error {
	r.smu.Lock()
	defer r.smu.Unlock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	n := r.subs[channel]
	if n > 1 {
		r.subs[channel] = n - 1
		r.mu.Unlock()
		return nil
	}
	delete(r.subs, channel)
	delete(r.last, channel)
	ps := r.ps
	if n == 0 || ps == nil {
		r.mu.Unlock()
		return nil
	}
	pc, ec := r.pubChannel(channel), r.evChannel(channel)
	ws := r.expectLocked("unsubscribe", pc, ec)
	r.mu.Unlock()
	err := ps.Unsubscribe(ctx, pc, ec)
	if err == nil {
		err = r.await(ctx, ws)
	} else {
		r.forget("unsubscribe", ws, pc, ec)
	}
	if err != nil && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("broker: redis unsubscribe %s: %w", channel, err)
	}
	return err
}

// redisIdleTTL is how long a stream's meta key outlives its last
// publication when there is no history to keep it (see streamIdleTTL).
const redisIdleTTL = streamIdleTTL

// publishScript assigns the next position, stores and fans out one
// publication.
//
// KEYS: meta, history. ARGV: epoch for a new stream, history size, history
// TTL (ms), idle TTL (ms), Pub/Sub channel, the publication's JSON after its
// position and time (`"channel":...}`).
var publishScript = redis.NewScript(`
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
	epoch = ARGV[1]
	redis.call('DEL', KEYS[2])
	redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local t = redis.call('TIME')
local us = t[1] .. string.format('%06d', tonumber(t[2]))
local size = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local idle = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'ttl', ARGV[3])
local msg = '{"epoch":' .. cjson.encode(epoch) .. ',"offset":' .. string.format('%d', offset) .. ',"time":' .. us .. ',' .. ARGV[6]
if size > 0 then
	redis.call('RPUSH', KEYS[2], msg)
	redis.call('LTRIM', KEYS[2], -size, -1)
	if ttl > 0 then
		redis.call('PEXPIRE', KEYS[2], ttl)
	else
		redis.call('PERSIST', KEYS[2])
	end
else
	redis.call('DEL', KEYS[2])
end
if size > 0 and ttl == 0 then
	redis.call('PERSIST', KEYS[1])
else
	redis.call('PEXPIRE', KEYS[1], math.max(ttl, idle))
end
redis.call('PUBLISH', ARGV[5], msg)
return {epoch, offset}
`)

// historyScript reads a stream, creating it (with a new epoch) if it does
// not exist.
//
// KEYS: meta, history. ARGV: epoch for a new stream, idle TTL (ms), "1" to
// return the kept publications. Returns epoch, offset, history TTL (ms),
// server time (s, µs), then the publications oldest first.
var historyScript = redis.NewScript(`
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
	epoch = ARGV[1]
	redis.call('DEL', KEYS[2])
	redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
	redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local m = redis.call('HMGET', KEYS[1], 'offset', 'ttl')
local t = redis.call('TIME')
local res = {epoch, m[1] or '0', m[2] or '0', t[1], t[2]}
if ARGV[3] == '1' then
	local items = redis.call('LRANGE', KEYS[2], 0, -1)
	for i = 1, #items do
		res[#res + 1] = items[i]
	end
end
return res
`)

// addPresenceScript stores presence entries that expire ttl from now (by
// the server's clock) and keeps the hash at least that long.
//
// KEYS: presence. ARGV: ttl (ms), then client, info JSON, client, info
// JSON, ...
var addPresenceScript = redis.NewScript(`
local t = redis.call('TIME')
local ttl = tonumber(ARGV[1])
local expires = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl)
for i = 2, #ARGV - 1, 2 do
	redis.call('HSET', KEYS[1], ARGV[i], '{"info":' .. ARGV[i + 1] .. ',"expires":' .. expires .. '}')
end
if redis.call('PTTL', KEYS[1]) < ttl then
	redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
`)

// presenceScript returns the live entries of a presence hash (client,
// entry, client, entry, ...) and deletes the expired ones.
//
// KEYS: presence.
var presenceScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
	local ok, e = pcall(cjson.decode, all[i + 1])
	if ok and type(e) == 'table' and tonumber(e.expires) and tonumber(e.expires) > now then
		out[#out + 1] = all[i]
		out[#out + 1] = all[i + 1]
	else
		redis.call('HDEL', KEYS[1], all[i])
	end
end
return out
`)

// wirePublication is a publication as stored and sent: JSON, with the time
// in Unix microseconds.
type wirePublication struct {
	Epoch   string          `json:"epoch"`
	Offset  uint64          `json:"offset"`
	Time    int64           `json:"time"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	Info    *ClientInfo     `json:"info"`
}

func decodePublication(b []byte) (*Publication, error) {
	var w wirePublication
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	return &Publication{
		Channel:  w.Channel,
		Position: Position{Epoch: w.Epoch, Offset: w.Offset},
		Data:     w.Data,
		Info:     w.Info,
		Time:     time.UnixMicro(w.Time),
	}, nil
}

func ms(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	if n := d.Milliseconds(); n > 0 {
		return n
	}
	return 1
}

// Publish implements Broker: one script assigns the position, stores the
// publication and publishes it to the nodes subscribed to channel.
func (r *Redis) Publish(ctx context.Context, channel string, data json.RawMessage, info *ClientInfo, opts PublishOptions) (Position, error) {
	if r.isClosed() {
		return Position{}, ErrClosed
	}
	if !json.Valid(data) {
		return Position{}, errors.New("broker: publication data is not valid JSON")
	}
	ch, err := json.Marshal(channel)
	if err != nil {
		return Position{}, err
	}
	in := []byte("null")
	if info != nil {
		if in, err = json.Marshal(info); err != nil {
			return Position{}, err
		}
	}
	var tail strings.Builder
	tail.Grow(len(ch) + len(data) + len(in) + 32)
	tail.WriteString(`"channel":`)
	tail.Write(ch)
	tail.WriteString(`,"data":`)
	tail.Write(data)
	tail.WriteString(`,"info":`)
	tail.Write(in)
	tail.WriteByte('}')
	size := max(opts.HistorySize, 0)
	res, err := publishScript.Run(ctx, r.client,
		[]string{r.metaKey(channel), r.historyKey(channel)},
		newEpoch(), size, ms(opts.HistoryTTL), ms(redisIdleTTL), r.pubChannel(channel), tail.String(),
	).Slice()
	if err != nil {
		return Position{}, fmt.Errorf("broker: redis publish to %s: %w", channel, err)
	}
	if len(res) != 2 {
		return Position{}, fmt.Errorf("broker: redis publish to %s: unexpected reply %v", channel, res)
	}
	epoch, _ := res[0].(string)
	off, ok := res[1].(int64)
	if epoch == "" || !ok || off <= 0 {
		return Position{}, fmt.Errorf("broker: redis publish to %s: unexpected reply %v", channel, res)
	}
	return Position{Epoch: epoch, Offset: uint64(off)}, nil
}

// PublishJoin implements Broker.
func (r *Redis) PublishJoin(ctx context.Context, channel string, info ClientInfo) error {
	return r.event(ctx, channel, info, true)
}

// PublishLeave implements Broker.
func (r *Redis) PublishLeave(ctx context.Context, channel string, info ClientInfo) error {
	return r.event(ctx, channel, info, false)
}

func (r *Redis) event(ctx context.Context, channel string, info ClientInfo, join bool) error {
	if r.isClosed() {
		return ErrClosed
	}
	b, err := json.Marshal(wireEvent{Join: join, Info: info})
	if err != nil {
		return err
	}
	if err := r.client.Publish(ctx, r.evChannel(channel), b).Err(); err != nil {
		return fmt.Errorf("broker: redis publish event to %s: %w", channel, err)
	}
	return nil
}

// History implements Broker, with the same answers and errors as Memory.
// A publication older than the stream's history TTL (as of its latest
// publication) counts as trimmed.
func (r *Redis) History(ctx context.Context, channel string, req HistoryRequest) (HistoryResult, error) {
	if r.isClosed() {
		return HistoryResult{}, ErrClosed
	}
	items := "1"
	if req.Since == nil && req.Limit == 0 {
		items = "0" // only the top
	}
	raw, err := historyScript.Run(ctx, r.client,
		[]string{r.metaKey(channel), r.historyKey(channel)},
		newEpoch(), ms(redisIdleTTL), items,
	).StringSlice()
	if err != nil {
		return HistoryResult{}, fmt.Errorf("broker: redis history of %s: %w", channel, err)
	}
	if len(raw) < 5 {
		return HistoryResult{}, fmt.Errorf("broker: redis history of %s: short reply", channel)
	}
	top, err1 := strconv.ParseUint(raw[1], 10, 64)
	ttl, err2 := strconv.ParseInt(raw[2], 10, 64)
	sec, err3 := strconv.ParseInt(raw[3], 10, 64)
	usec, err4 := strconv.ParseInt(raw[4], 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return HistoryResult{}, fmt.Errorf("broker: redis history of %s: %w", channel, err)
	}
	now := time.Unix(sec, usec*1000)
	epoch := raw[0]
	res := HistoryResult{Top: Position{Epoch: epoch, Offset: top}}

	pubs := make([]*Publication, 0, len(raw)-5)
	for _, s := range raw[5:] {
		p, err := decodePublication([]byte(s))
		if err != nil {
			return res, fmt.Errorf("broker: redis history of %s: %w", channel, err)
		}
		pubs = append(pubs, p)
	}
	// Drop what is past the TTL, and anything not of this stream
	// (which a consistent store never holds).
	drop := 0
	for drop < len(pubs) {
		p := pubs[drop]
		if p.Epoch == epoch && p.Offset <= top && (ttl <= 0 || now.Sub(p.Time) < time.Duration(ttl)*time.Millisecond) {
			break
		}
		drop++
	}
	pubs = pubs[drop:]

	first := top + 1 // offset of pubs[0]
	if len(pubs) > 0 {
		first = pubs[0].Offset
	}
	lo, hi := 0, len(pubs) // candidates pubs[lo:hi]
	if s := req.Since; s != nil {
		if s.Epoch != epoch || s.Offset > top {
			return res, ErrEpochChanged
		}
		if req.Reverse {
			if s.Offset <= first {
				hi = 0
			} else {
				hi = int(min(s.Offset-first, uint64(len(pubs))))
			}
		} else {
			if s.Offset+1 < first {
				return res, ErrHistoryTrimmed
			}
			lo = int(min(s.Offset+1-first, uint64(len(pubs))))
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
			out[i] = pubs[hi-1-i]
		}
	} else {
		copy(out, pubs[lo:lo+n])
	}
	res.Publications = out
	return res, nil
}

// wirePresence is a presence entry as stored: expires is Unix milliseconds
// by the Redis server's clock.
type wirePresence struct {
	Info    ClientInfo `json:"info"`
	Expires int64      `json:"expires"`
}

// AddPresence implements Broker.
func (r *Redis) AddPresence(ctx context.Context, channel, client string, info ClientInfo, ttl time.Duration) error {
	if r.isClosed() {
		return ErrClosed
	}
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	if err := addPresenceScript.Run(ctx, r.client, []string{r.presenceKey(channel)}, ms(ttl), client, b).Err(); err != nil {
		return fmt.Errorf("broker: redis add presence in %s: %w", channel, err)
	}
	return nil
}

// RefreshPresence implements Broker: one script stores every entry.
func (r *Redis) RefreshPresence(ctx context.Context, channel string, entries map[string]ClientInfo, ttl time.Duration) error {
	if r.isClosed() {
		return ErrClosed
	}
	if len(entries) == 0 {
		return nil
	}
	args := make([]any, 0, 1+2*len(entries))
	args = append(args, ms(ttl))
	for client, info := range entries {
		b, err := json.Marshal(info)
		if err != nil {
			return err
		}
		args = append(args, client, b)
	}
	if err := addPresenceScript.Run(ctx, r.client, []string{r.presenceKey(channel)}, args...).Err(); err != nil {
		return fmt.Errorf("broker: redis refresh presence in %s: %w", channel, err)
	}
	return nil
}

// RemovePresence implements Broker.
func (r *Redis) RemovePresence(ctx context.Context, channel, client string) error {
	if r.isClosed() {
		return ErrClosed
	}
	if err := r.client.HDel(ctx, r.presenceKey(channel), client).Err(); err != nil {
		return fmt.Errorf("broker: redis remove presence in %s: %w", channel, err)
	}
	return nil
}

// Presence implements Broker. Expired entries are deleted as it reads.
func (r *Redis) Presence(ctx context.Context, channel string) (map[string]ClientInfo, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	kv, err := presenceScript.Run(ctx, r.client, []string{r.presenceKey(channel)}).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("broker: redis presence in %s: %w", channel, err)
	}
	out := make(map[string]ClientInfo, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		var e wirePresence
		if err := json.Unmarshal([]byte(kv[i+1]), &e); err != nil {
			continue
		}
		out[kv[i]] = e.Info
	}
	return out, nil
}

// Close implements Broker: it stops fan-out, waits for the handler to return
// and closes the connections. Later calls fail with ErrClosed; Close itself
// is idempotent. Presence entries of this node are left to expire.
func (r *Redis) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.done)
	r.cancel()
	ps := r.ps
	r.handler = nil
	r.subs = map[string]int{}
	r.last = map[string]Position{}
	r.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
	wait := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(wait)
	}()
	var err error
	select {
	case <-wait:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if cerr := r.client.Close(); err == nil && cerr != nil && !errors.Is(cerr, redis.ErrClosed) {
		err = cerr
	}
	return err
}
