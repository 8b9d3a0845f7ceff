package redisbroker

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hotline-rt/hotline/broker"
)

// Config says where the Redis broker keeps its state: one server (Addr or
// one of Addrs), a Redis Cluster (any of its nodes in Addrs; cluster mode
// is detected), or a master watched by Sentinel (SentinelAddrs and
// SentinelMaster).
type Config struct {
	// Addr is the Redis server's host:port; the same as Addrs with one
	// address.
	Addr string
	// Addrs are seed addresses (host:port). Several, or one node of a
	// cluster, make a cluster client: New asks the first seed that
	// answers whether it runs in cluster mode (INFO cluster), so the
	// mode is never configured wrong.
	Addrs []string
	// SentinelAddrs, with SentinelMaster, make the broker find the
	// master through these Sentinels and follow its failovers; Addr
	// and Addrs are then unused.
	SentinelAddrs  []string
	SentinelMaster string
	// SentinelPassword authenticates to the Sentinels; "" for none.
	SentinelPassword string
	// Username and Password authenticate to the servers (an ACL user,
	// or only a password for the default user); "" for none.
	Username string
	Password string
	// DB selects the database (one server or Sentinel; a cluster has
	// only 0).
	DB int
	// TLS, if set, makes every connection use TLS with this config.
	TLS *tls.Config
	// MinReplicas, if above 0, makes a Publish wait (Redis WAIT, up to
	// Timeout/2) until that many replicas of the master acknowledged
	// it; a publication the replicas did not confirm fails with
	// ErrOutcomeUnknown, since a failover could lose it. 0: do not wait
	// (Redis replicates asynchronously; a failover may then lose
	// publications acknowledged just before it, which the subscribers
	// that got them live do not get again, and a later reader sees a
	// gap or a new epoch).
	MinReplicas int
	// Logger receives the broker's and go-redis's log lines. go-redis
	// has one process-wide logger: the last New with a Logger sets it.
	// nil: go-redis keeps its own.
	Logger *slog.Logger
	// Prefix starts every key and Pub/Sub channel name, so several
	// deployments can share one server. "": "hotline:".
	Prefix string
	// Timeout bounds each dial, read and write of a call to Redis, so a
	// server that stopped answering fails a Publish in seconds rather
	// than holding the publisher. 0 means 3 s.
	Timeout time.Duration
	// EmptyStreamTTL is how long a stream with nothing in its history is
	// kept after its last publication (or after its history expired);
	// its next publication then starts a new epoch. 0 means 5 minutes.
	EmptyStreamTTL time.Duration
	// QueueSize bounds the Pub/Sub messages received but not yet handed
	// to the Handler (and, separately, those held while their channel
	// catches up). Past it, messages are dropped and their channels are
	// repaired from history, or reported with HandleGap. 0 means 8192.
	QueueSize int
	// QueueBytes bounds the payload bytes of those messages, in the
	// queue and, separately, held; past it they are dropped and repaired
	// the same way. 0 means 64 MiB.
	QueueBytes int
	// CatchUps bounds the history reads that fill gaps at one time.
	// 0 means 8.
	CatchUps int
	// PingInterval is how long the Pub/Sub link may stay silent before
	// a PING checks it; with no answer within another interval the link
	// is replaced (and every channel caught up). It finds a connection
	// that died without closing. 0 means 5 s.
	PingInterval time.Duration
	// PoolSize bounds the connections to each Redis server for calls
	// (publish, history, presence; the Pub/Sub links are apart). A call
	// that finds them all busy waits up to PoolTimeout for one, then
	// fails with redis.ErrPoolTimeout (nothing was sent). 0 means 10 per
	// CPU (GOMAXPROCS), go-redis's default.
	PoolSize int
	// PoolTimeout is how long a call waits for a free connection. 0
	// means Timeout + 1 s, go-redis's default.
	PoolTimeout time.Duration
}

// Defaults of Config.
const (
	DefaultQueueSize    = 8192
	DefaultQueueBytes   = 64 << 20
	DefaultCatchUps     = 8
	DefaultPingInterval = 5 * time.Second
)

// Broker is the broker for several nodes sharing Redis. Streams, history
// and presence live in Redis, so any node can serve any client;
// publications and join/leave events travel over Redis Pub/Sub to the nodes
// subscribed to their channel.
//
// Every key and Pub/Sub channel of a hotline channel carries the same hash
// tag, {<channel>} (or {#<sha256 of it>} for a name that is empty or has a
// brace), so in a Redis Cluster they all live in one hash slot: a publish
// stays one atomic script, and its fan-out (SPUBLISH, sharded Pub/Sub)
// travels only through the shard that owns the channel. With the default
// prefix: hotline:{<channel>}:meta (a hash with the stream's epoch, offset,
// history TTL and history bytes), hotline:{<channel>}:history (a list of
// publications, oldest first), hotline:{<channel>}:presence (a hash of
// client id to {info, expires}) and hotline:{<channel>}:idem:<key> (the
// position of a publication by idempotency key; a key longer than 64 bytes
// as its SHA-256); Pub/Sub channels are hotline:{<channel>}:pub and
// hotline:{<channel>}:ev (followed by ":<channel>" when the tag is a
// hash). Reads create no key.
//
// In a cluster a node opens one sharded Pub/Sub connection per hash slot
// it has subscribers in (go-redis renews a sharded subscription with one
// SSUBSCRIBE of all its channels, which Redis refuses across slots), each
// with its own PING check; a shard that fails over, or a slot that moves
// (MOVED, or the server ending the subscription), gets a new connection to
// the slot's owner and its channels are caught up as after any reconnect.
//
// Times (publication times, presence expiry) come from the Redis server's
// clock, so nodes with skewed clocks agree. A stream with nothing in its
// history expires EmptyStreamTTL after its last publication or after its
// history expired; its next publication starts a new epoch, as with Memory.
//
// # When Redis goes away
//
// Calls that need the server (Publish, History, presence, a first
// Subscribe) fail with its error; a Publish error wraps ErrOutcomeUnknown
// when the command may have reached the server. The Pub/Sub connection
// reconnects and subscribes again by itself (go-redis); one that went
// silent without closing is found by a PING (PingInterval) and replaced. Each channel is
// then caught up from history, on its own, while the others keep flowing:
// the publications this node missed are handed to the Handler first, so
// it sees each once and in offset order. When history cannot fill the hole
// (trimmed, expired, HistorySize 0, a new epoch after the server lost its
// data) the Handler gets HandleGap before the next publication of that
// channel, never a silent jump. The same repair follows when the queue
// between the Pub/Sub reader and the Handler overflows. Join and leave
// events lost meanwhile are not repaired; presence itself is stored and
// refreshed, so a presence read is right again once the server is back.
//
// # Failover
//
// When a master fails (Sentinel or Cluster promotes its replica), calls to
// it fail until the new master is found: with a dial error (not published,
// the API's 503) or, for a command that was sent, ErrOutcomeUnknown (504).
// A cluster client reloads its slot map every second while in use and at
// once after such a failure; a Sentinel client asks the Sentinels. The
// Pub/Sub links reconnect to the new master and every channel is caught up
// from history, as after any reconnect. Redis replicates asynchronously:
// a publication acknowledged just before the master died may be missing
// on the promoted replica, which then gives its offset to the next
// publication. Set MinReplicas to acknowledge only what a replica has.
type Broker struct {
	client   redis.UniversalClient
	single   *redis.Client        // client when it is one server or Sentinel's master
	cluster  *redis.ClusterClient // client in cluster mode
	prefix   string
	emptyMS  int64 // EmptyStreamTTL in ms
	mode     string
	replicas int   // Config.MinReplicas
	waitMS   int64 // WAIT's timeout

	// ctx ends with Close; it bounds the history reads of catch-ups.
	ctx    context.Context
	cancel context.CancelFunc

	ps pubsub // the Pub/Sub state machine (pubsub.go)

	done chan struct{} // closed by Close
	wg   sync.WaitGroup
}

var _ broker.Broker = (*Broker)(nil)

// redisDialTimeout bounds New's first contact with the server.
const redisDialTimeout = 5 * time.Second

// New connects to the Redis of cfg and returns a broker for this node. It
// fails if the server (every cluster master, or the master Sentinel names)
// does not answer PING.
func New(cfg Config) (*Broker, error) {
	// go-redis appends to the address slice it is given: each client
	// gets its own copy, so brokers made from one Config share nothing.
	addrs := slices.Clip(slices.Clone(cfg.Addrs))
	if cfg.Addr != "" {
		addrs = slices.Clip(append([]string{cfg.Addr}, addrs...))
	}
	sentinel := len(cfg.SentinelAddrs) > 0 || cfg.SentinelMaster != ""
	switch {
	case sentinel && (len(cfg.SentinelAddrs) == 0 || cfg.SentinelMaster == ""):
		return nil, errors.New("broker: redis sentinel needs both its addresses and the master name")
	case !sentinel && len(addrs) == 0:
		return nil, errors.New("broker: redis address is empty")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "hotline:"
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return nil, fmt.Errorf("broker: redis prefix %q has a brace: it would break the hash tags", cfg.Prefix)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.EmptyStreamTTL <= 0 {
		cfg.EmptyStreamTTL = broker.DefaultEmptyStreamTTL
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = DefaultQueueBytes
	}
	if cfg.CatchUps <= 0 {
		cfg.CatchUps = DefaultCatchUps
	}
	cfg.PoolSize = max(cfg.PoolSize, 0)
	cfg.PoolTimeout = max(cfg.PoolTimeout, 0)
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.Logger != nil {
		redis.SetLogger(slogLogger{cfg.Logger})
	}
	r := &Broker{
		prefix:   cfg.Prefix,
		emptyMS:  ms(cfg.EmptyStreamTTL),
		replicas: max(cfg.MinReplicas, 0),
		waitMS:   max(ms(cfg.Timeout/2), 1),
		done:     make(chan struct{}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisDialTimeout)
	defer cancel()
	var err error
	switch {
	case sentinel:
		r.mode = "sentinel"
		r.single = redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       cfg.SentinelMaster,
			SentinelAddrs:    slices.Clip(slices.Clone(cfg.SentinelAddrs)),
			SentinelPassword: cfg.SentinelPassword,
			Username:         cfg.Username,
			Password:         cfg.Password,
			DB:               cfg.DB,
			TLSConfig:        cfg.TLS,
			DialTimeout:      cfg.Timeout,
			ReadTimeout:      cfg.Timeout,
			WriteTimeout:     cfg.Timeout,
			PoolSize:         cfg.PoolSize,
			PoolTimeout:      cfg.PoolTimeout,
			MaxRetries:       -1,
		})
		r.client = r.single
		err = r.single.Ping(ctx).Err()
	default:
		var isCluster bool
		if isCluster, err = clusterMode(ctx, addrs, cfg); err != nil {
			break
		}
		if isCluster {
			if cfg.DB != 0 {
				return nil, errors.New("broker: a redis cluster has only database 0")
			}
			r.mode = "cluster"
			r.cluster = redis.NewClusterClient(&redis.ClusterOptions{
				Addrs:        addrs,
				Username:     cfg.Username,
				Password:     cfg.Password,
				TLSConfig:    cfg.TLS,
				DialTimeout:  cfg.Timeout,
				ReadTimeout:  cfg.Timeout,
				WriteTimeout: cfg.Timeout,
				PoolSize:     cfg.PoolSize,
				PoolTimeout:  cfg.PoolTimeout,
				MaxRetries:   -1,
				// go-redis reloads the slot map on MOVED, not when
				// a master stops answering: a short interval finds
				// the promoted replica soon (and failed calls ask
				// for a reload at once, see reloadOnError).
				ClusterStateReloadInterval: clusterReload,
			})
			r.client = r.cluster
			err = r.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
				return c.Ping(ctx).Err()
			})
			break
		}
		r.mode = "server"
		r.single = redis.NewClient(r.options(addrs[0], cfg))
		r.client = r.single
		err = r.single.Ping(ctx).Err()
	}
	if err != nil {
		if r.client != nil {
			_ = r.client.Close()
		}
		where := strings.Join(addrs, ",")
		if sentinel {
			where = "sentinel master " + cfg.SentinelMaster
		}
		return nil, fmt.Errorf("broker: redis %s: %w", where, err)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.ps.init(r, cfg.QueueSize, cfg.QueueBytes, cfg.CatchUps, cfg.PingInterval)
	return r, nil
}

// clusterReload is the cluster client's slot map reload interval.
const clusterReload = time.Second

// reloadOnError asks a cluster client for a fresh slot map after a call
// failed without a Redis reply (the master may be gone, and its replica
// promoted); it returns err.
func (r *Broker) reloadOnError(err error) error {
	var rerr redis.Error
	if err != nil && r.cluster != nil && !errors.As(err, &rerr) {
		r.cluster.ReloadState(context.Background())
	}
	return err
}

// options are the connection options of one server.
func (r *Broker) options(addr string, cfg Config) *redis.Options {
	return &redis.Options{
		Addr:         addr,
		Username:     cfg.Username,
		Password:     cfg.Password,
		DB:           cfg.DB,
		TLSConfig:    cfg.TLS,
		DialTimeout:  cfg.Timeout,
		ReadTimeout:  cfg.Timeout,
		WriteTimeout: cfg.Timeout,
		PoolSize:     cfg.PoolSize,
		PoolTimeout:  cfg.PoolTimeout,
		// A command whose connection broke after it was sent is not
		// sent again: the publish script may have run, and running
		// it twice would publish twice. Dialing is still retried.
		MaxRetries: -1,
	}
}

// clusterMode asks the seeds, in order, whether they run in cluster mode
// (INFO cluster) and returns the first answer.
func clusterMode(ctx context.Context, addrs []string, cfg Config) (bool, error) {
	var errs []error
	for _, a := range addrs {
		c := redis.NewClient((&Broker{}).options(a, cfg))
		info, err := c.Info(ctx, "cluster").Result()
		_ = c.Close()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return strings.Contains(info, "cluster_enabled:1"), nil
	}
	return false, errors.Join(errs...)
}

// Mode says what the broker talks to: "server" (one Redis server),
// "cluster" or "sentinel".
func (r *Broker) Mode() string { return r.mode }

// Ready implements broker.Readier: nil if Redis answers PING (in a
// cluster, every master).
func (r *Broker) Ready(ctx context.Context) error {
	if r.isClosed() {
		return broker.ErrClosed
	}
	var err error
	if r.cluster != nil {
		err = r.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.Ping(ctx).Err()
		})
	} else {
		err = r.single.Ping(ctx).Err()
	}
	if err != nil {
		return fmt.Errorf("broker: redis %s unreachable: %w", r.mode, err)
	}
	return nil
}

// tag is the hash tag of channel's keys: the channel itself, or, for a
// name a tag cannot hold (empty, or with a brace), "#" and its SHA-256.
func tag(channel string) string {
	if channel != "" && !strings.ContainsAny(channel, "{}") {
		return channel
	}
	sum := sha256.Sum256([]byte(channel))
	return "#" + hex.EncodeToString(sum[:])
}

// key names one key of channel: the prefix, the hash tag, then what.
func (r *Broker) key(channel, what string) string {
	return r.prefix + "{" + tag(channel) + "}:" + what
}

func (r *Broker) metaKey(channel string) string     { return r.key(channel, "meta") }
func (r *Broker) historyKey(channel string) string  { return r.key(channel, "history") }
func (r *Broker) presenceKey(channel string) string { return r.key(channel, "presence") }
func (r *Broker) pubChannel(channel string) string  { return r.psName(channel, "pub") }
func (r *Broker) evChannel(channel string) string   { return r.psName(channel, "ev") }

// psName names a Pub/Sub channel of channel; a hashed tag is followed by
// the channel's name, so that receive can tell which channel it is.
func (r *Broker) psName(channel, what string) string {
	t := tag(channel)
	if t == channel {
		return r.prefix + "{" + t + "}:" + what
	}
	return r.prefix + "{" + t + "}:" + what + ":" + channel
}

// parsePSName is the inverse of psName: the channel and whether the
// message is a publication ("pub"), for a name with this broker's prefix.
func (r *Broker) parsePSName(name string) (channel string, pub, ok bool) {
	rest, ok := strings.CutPrefix(name, r.prefix+"{")
	if !ok {
		return "", false, false
	}
	t, rest, ok := strings.Cut(rest, "}:")
	if !ok {
		return "", false, false
	}
	what, ch, hashed := strings.Cut(rest, ":")
	if !hashed {
		ch = t
	}
	switch what {
	case "pub":
		return ch, true, true
	case "ev":
		return ch, false, true
	}
	return "", false, false
}

// idemKey names the key that remembers a publication by idempotency key;
// the tag ends at its brace, so channel and key cannot run into each other.
func (r *Broker) idemKey(channel, key string) string {
	return r.key(channel, "idem:"+broker.IdempotencyID(key))
}

// slogLogger routes go-redis's log lines to a slog logger.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Printf(ctx context.Context, format string, v ...any) {
	s.l.WarnContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

func (r *Broker) isClosed() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// Start implements Broker. It opens the node's Pub/Sub connection and starts
// the goroutines that read it and run the handler.
func (r *Broker) Start(h broker.Handler) error {
	return r.ps.start(h)
}

// Subscribe implements Broker. The first Subscribe of a channel subscribes
// the node's Pub/Sub connection and returns once Redis has confirmed it.
func (r *Broker) Subscribe(ctx context.Context, channel string) error {
	return r.ps.subscribe(ctx, channel)
}

// Unsubscribe implements Broker. The last Unsubscribe of a channel
// unsubscribes the node's Pub/Sub connection and returns once Redis has
// confirmed it; nothing of the channel reaches the handler after that.
func (r *Broker) Unsubscribe(ctx context.Context, channel string) error {
	return r.ps.unsubscribe(ctx, channel)
}

// Publish implements Broker: one script assigns the position, stores the
// publication and publishes it to the nodes subscribed to channel. An
// error wraps ErrOutcomeUnknown unless the command surely did not reach
// Redis (no connection, pool exhausted, or an error reply).
func (r *Broker) Publish(ctx context.Context, channel string, data json.RawMessage, info *broker.ClientInfo, opts broker.PublishOptions) (broker.Position, error) {
	if r.isClosed() {
		return broker.Position{}, broker.ErrClosed
	}
	if !json.Valid(data) {
		return broker.Position{}, errors.New("broker: publication data is not valid JSON")
	}
	ch, err := json.Marshal(channel)
	if err != nil {
		return broker.Position{}, err
	}
	in := []byte("null")
	if info != nil {
		if in, err = json.Marshal(info); err != nil {
			return broker.Position{}, err
		}
	}
	if err := ctx.Err(); err != nil {
		return broker.Position{}, fmt.Errorf("broker: redis publish to %s: %w", channel, err)
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
	keys := []string{r.metaKey(channel), r.historyKey(channel)}
	idemTTL := opts.IdempotencyTTL
	if opts.IdempotencyKey != "" {
		keys = append(keys, r.idemKey(channel, opts.IdempotencyKey))
		if idemTTL <= 0 {
			idemTTL = broker.DefaultIdempotencyTTL
		}
	}
	pubCmd := "PUBLISH"
	if r.cluster != nil {
		pubCmd = "SPUBLISH"
	}
	args := []any{
		broker.NewEpoch(), max(opts.HistorySize, 0), ms(opts.HistoryTTL), max(opts.HistoryBytes, 0),
		r.emptyMS, ms(idemTTL), r.pubChannel(channel), tail.String(), pubCmd,
	}
	var res []any
	if r.replicas > 0 {
		res, err = r.publishWait(ctx, keys, args)
	} else {
		res, err = publishScript.Run(ctx, r.client, keys, args...).Slice()
	}
	if err != nil {
		return broker.Position{}, publishError(channel, r.reloadOnError(err))
	}
	if len(res) != 3 {
		return broker.Position{}, fmt.Errorf("broker: redis publish to %s: unexpected reply %v", channel, res)
	}
	epoch, _ := res[0].(string)
	off, ok := res[1].(int64)
	if epoch == "" || !ok || off <= 0 {
		return broker.Position{}, fmt.Errorf("broker: redis publish to %s: unexpected reply %v", channel, res)
	}
	return broker.Position{Epoch: epoch, Offset: uint64(off)}, nil
}

// publishWait runs the publish script and WAIT for the replicas in one
// pipeline on the master that owns channel's slot, and fails with
// ErrOutcomeUnknown if fewer than MinReplicas confirmed it.
func (r *Broker) publishWait(ctx context.Context, keys []string, args []any) ([]any, error) {
	node := r.single
	if r.cluster != nil {
		var err error
		if node, err = r.cluster.MasterForKey(ctx, keys[0]); err != nil {
			return nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		pipe := node.Pipeline()
		ev := publishScript.EvalSha(ctx, pipe, keys, args...)
		wait := pipe.Do(ctx, "WAIT", r.replicas, r.waitMS)
		_, _ = pipe.Exec(ctx)
		res, err := ev.Slice()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0 {
			// Not run: load it and try once more.
			if err := publishScript.Load(ctx, node).Err(); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		n, err := wait.Int()
		if err != nil {
			return nil, fmt.Errorf("%w: wait for replicas: %w", broker.ErrOutcomeUnknown, err)
		}
		if n < r.replicas {
			return nil, fmt.Errorf("%w: %d of %d replicas confirmed it", broker.ErrOutcomeUnknown, n, r.replicas)
		}
		return res, nil
	}
}

// publishError wraps err in ErrOutcomeUnknown unless the publish command
// surely never ran: no connection could be had (dial failed, pool timed
// out or closed, ctx ended while waiting for one), or Redis answered with
// an error (the script fails before it writes). Anything else (a read
// timeout, EOF or reset after the command was written, a failed write of
// part of it) may have left the publication in Redis.
func publishError(channel string, err error) error {
	if errors.Is(err, broker.ErrOutcomeUnknown) {
		return fmt.Errorf("broker: redis publish to %s: %w", channel, err)
	}
	var opErr *net.OpError
	var rerr redis.Error
	switch {
	case errors.As(err, &opErr) && opErr.Op == "dial",
		errors.Is(err, redis.ErrPoolTimeout),
		errors.Is(err, redis.ErrPoolExhausted),
		errors.Is(err, redis.ErrClosed),
		errors.As(err, &rerr),
		errors.Is(err, context.Canceled) && !errors.As(err, new(net.Error)),
		errors.Is(err, context.DeadlineExceeded) && !errors.As(err, new(net.Error)):
		return fmt.Errorf("broker: redis publish to %s: %w", channel, err)
	}
	return fmt.Errorf("broker: redis publish to %s: %w: %w", channel, broker.ErrOutcomeUnknown, err)
}

// PublishJoin implements Broker.
func (r *Broker) PublishJoin(ctx context.Context, channel string, info broker.ClientInfo) error {
	return r.event(ctx, channel, info, true)
}

// PublishLeave implements Broker.
func (r *Broker) PublishLeave(ctx context.Context, channel string, info broker.ClientInfo) error {
	return r.event(ctx, channel, info, false)
}

func (r *Broker) event(ctx context.Context, channel string, info broker.ClientInfo, join bool) error {
	if r.isClosed() {
		return broker.ErrClosed
	}
	b, err := json.Marshal(wireEvent{Join: join, Info: info})
	if err != nil {
		return err
	}
	var err2 error
	if r.cluster != nil {
		err2 = r.cluster.SPublish(ctx, r.evChannel(channel), b).Err()
	} else {
		err2 = r.single.Publish(ctx, r.evChannel(channel), b).Err()
	}
	if err := err2; err != nil {
		return fmt.Errorf("broker: redis publish event to %s: %w", channel, err)
	}
	return nil
}

// History implements Broker, with the same answers and errors as Memory:
// both select with broker.Window. It takes two round trips (where the
// stream is, then the range selected), each a script; only the
// publications returned travel. A publication older than the stream's
// history TTL (as of its latest publication) counts as trimmed. If the
// range was trimmed between the two, the read starts over (a few times).
func (r *Broker) History(ctx context.Context, channel string, req broker.HistoryRequest) (broker.HistoryResult, error) {
	if r.isClosed() {
		return broker.HistoryResult{}, broker.ErrClosed
	}
	keys := []string{r.metaKey(channel), r.historyKey(channel)}
	for range historyTries {
		meta, err := historyMetaScript.Run(ctx, r.client, keys).Slice()
		if err != nil {
			r.reloadOnError(err)
			return broker.HistoryResult{}, fmt.Errorf("broker: redis history of %s: %w", channel, err)
		}
		epoch, top, first, ok := historyMeta(meta)
		if !ok {
			return broker.HistoryResult{}, fmt.Errorf("broker: redis history of %s: unexpected reply %v", channel, meta)
		}
		res := broker.HistoryResult{Top: broker.Position{Epoch: epoch, Offset: top}}
		lo, hi, err := broker.Window(epoch, top, first, req)
		if err != nil || lo > hi {
			return res, err
		}
		raw, err := historyRangeScript.Run(ctx, r.client, keys, epoch, lo, hi).StringSlice()
		if err != nil {
			return res, fmt.Errorf("broker: redis history of %s: %w", channel, err)
		}
		if len(raw) == 0 || raw[0] != "ok" {
			continue // trimmed (or a new epoch) meanwhile: read again
		}
		items := raw[1:]
		if uint64(len(items)) != hi-lo+1 {
			return res, fmt.Errorf("broker: redis history of %s: %d publications for [%d, %d]", channel, len(items), lo, hi)
		}
		out := make([]*broker.Publication, len(items))
		for i, s := range items {
			p, err := decodePublication([]byte(s))
			if err != nil {
				return res, fmt.Errorf("broker: redis history of %s: %w", channel, err)
			}
			if p.Epoch != epoch || p.Channel != channel || p.Offset != lo+uint64(i) {
				return res, fmt.Errorf("broker: redis history of %s: inconsistent store at %s/%d", channel, p.Epoch, p.Offset)
			}
			j := i
			if req.Reverse {
				j = len(items) - 1 - i
			}
			out[j] = p
		}
		res.Publications = out
		return res, nil
	}
	return broker.HistoryResult{}, fmt.Errorf("broker: redis history of %s: trimmed while read %d times", channel, historyTries)
}

// bumpEpoch moves channel's stream from epoch old, which a node found
// rolled back, to a new epoch (see bumpEpochScript). It returns the
// stream's epoch afterwards: the new one, or the one another node moved it
// to first ("" if the stream is gone), and whether this call moved it.
func (r *Broker) bumpEpoch(ctx context.Context, channel, old string) (string, bool, error) {
	keys := []string{r.metaKey(channel), r.historyKey(channel)}
	res, err := bumpEpochScript.Run(ctx, r.client, keys, old, broker.NewEpoch()).Slice()
	if err != nil {
		r.reloadOnError(err)
		return "", false, fmt.Errorf("broker: redis new epoch of %s: %w", channel, err)
	}
	if len(res) != 2 {
		return "", false, fmt.Errorf("broker: redis new epoch of %s: unexpected reply %v", channel, res)
	}
	e, ok := res[0].(string)
	n, ok2 := res[1].(int64)
	if !ok || !ok2 {
		return "", false, fmt.Errorf("broker: redis new epoch of %s: unexpected reply %v", channel, res)
	}
	return e, n == 1, nil
}

// historyTries bounds the reads of History when its range is trimmed
// between its two round trips (publications arrive faster than a round
// trip, on a short history).
const historyTries = 3

// historyMeta decodes historyMetaScript's reply.
func historyMeta(v []any) (epoch string, top, first uint64, ok bool) {
	if len(v) != 3 {
		return "", 0, 0, false
	}
	epoch, ok1 := v[0].(string)
	t, ok2 := v[1].(int64)
	f, ok3 := v[2].(int64)
	if !ok1 || !ok2 || !ok3 || t < 0 || f < 1 {
		return "", 0, 0, false
	}
	return epoch, uint64(t), uint64(f), true
}

// AddPresence implements Broker.
func (r *Broker) AddPresence(ctx context.Context, channel, client string, info broker.ClientInfo, ttl time.Duration) error {
	if r.isClosed() {
		return broker.ErrClosed
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
func (r *Broker) RefreshPresence(ctx context.Context, channel string, entries map[string]broker.ClientInfo, ttl time.Duration) error {
	if r.isClosed() {
		return broker.ErrClosed
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
func (r *Broker) RemovePresence(ctx context.Context, channel, client string) error {
	if r.isClosed() {
		return broker.ErrClosed
	}
	if err := r.client.HDel(ctx, r.presenceKey(channel), client).Err(); err != nil {
		return fmt.Errorf("broker: redis remove presence in %s: %w", channel, err)
	}
	return nil
}

// Presence implements Broker. Expired entries are deleted as it reads.
func (r *Broker) Presence(ctx context.Context, channel string) (map[string]broker.ClientInfo, error) {
	if r.isClosed() {
		return nil, broker.ErrClosed
	}
	kv, err := presenceScript.Run(ctx, r.client, []string{r.presenceKey(channel)}).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("broker: redis presence in %s: %w", channel, err)
	}
	out := make(map[string]broker.ClientInfo, len(kv)/2)
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
func (r *Broker) Close(ctx context.Context) error {
	if !r.ps.close() {
		return nil
	}
	close(r.done)
	r.cancel()
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
