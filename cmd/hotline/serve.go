package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/broker/redisbroker"
	"github.com/hotline-rt/hotline/server"
	"github.com/hotline-rt/hotline/web"
)

const serveSynopsis = `Usage: hotline serve [flags]

Runs the hotline server: the chat page at /, the push endpoint /chat
(WebSocket subprotocols chat and superchat), long polling and ajax polling
fallbacks, the publish API under /api/, /metrics, /healthz, /readyz, and the
diagnostic endpoints /echo and /broadcast (see -diagnostics).

Every limit below has a flag and a default; a client past one is told
(503 or 429 with Retry-After, 413, 431, 408, or a close code).`

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderrOf(ctx)) // client: a test runs serve in process
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (host:port)")
	origins := fs.String("allowed-origins", "", "comma-separated origin patterns allowed besides the same origin,\ne.g. http://example.com,https://*.example.org")
	hosts := fs.String("allowed-hosts", "", "comma-separated host name patterns the server answers to (Host header,\ne.g. chat.example.com,localhost:*); others get 421. Empty: any host.\nSet it against DNS rebinding")
	compress := fs.Bool("compress", true, "negotiate permessage-deflate (without context takeover)")
	readLimit := fs.Int64("read-limit", 64<<10, "largest message accepted from a client, in bytes")
	maxConns := fs.Int("max-conns", 0, "most connections: sessions over all transports (a session in its grace\nperiod counts) plus /echo and /broadcast connections; past it new\nclients get 503 with Retry-After (0: no limit)")
	diagnostics := autoBool{}
	fs.Var(&diagnostics, "diagnostics", "serve the diagnostic endpoints /echo and /broadcast (no token needed);\nauto: on in development mode, off when a JWT key is set")
	readTimeout := fs.Duration("read-timeout", 10*time.Second, "how long a client may take to send a request's headers and body\n(a held long poll and WebSocket connections are not bound by it)")
	idleTimeout := fs.Duration("idle-timeout", 30*time.Second, "how long an idle keep-alive HTTP connection is kept between requests")
	maxHeaderBytes := fs.Int("max-header-bytes", 16<<10, "largest request line and headers, handshakes included; past it 431")
	maxBody := fs.Int64("max-body", 0, "largest polling request body (POST /poll/open, /poll/{id}), in bytes;\npast it 413 (0: -read-limit + 64 KiB; POST /api/publish takes one\nmessage: -read-limit + 1 KiB)")
	publishRate := fs.Float64("publish-rate", 0, "publications per second each user may make, over all of the user's\nsessions (0: no limit)")
	maxUserSessions := fs.Int("max-user-sessions", 20, "most sessions of one user (a session in its grace period counts); past\nit 429 with Retry-After (negative: no limit)")
	maxSubscriptions := fs.Int("max-subscriptions", 128, "most channels one session subscribes to; past it a subscribe gets 429")
	maxBatch := fs.Int("max-batch", 32, "most requests in one POST /poll/{id}; past it 413")
	maxHistoryReply := fs.Int("max-history-reply", 100, "most publications in one history reply (also at most a quarter of\n-queue-bytes); a longer one is paged (\"more\":true)")
	maxPresenceReply := fs.Int("max-presence-reply", 1000, "most users in one presence reply (also at most a quarter of\n-queue-bytes); past it \"truncated\":true with the total")
	idempotencyTTL := fs.Duration("idempotency-ttl", 2*time.Minute, "how long a publish's idempotency key is remembered: a retry within it\nreturns the first position and publishes nothing")
	brokerTimeout := fs.Duration("broker-timeout", 5*time.Second, "bound of each broker call the engine makes (subscribe, history,\npresence, ...)")
	sessionGrace := fs.Duration("session-grace", 30*time.Second, "how long a session outlives its transport so that a client can come\nback to it (a clean close 1000 ends it at once); negative: not at all")
	maxEndedPolls := fs.Int("max-ended-polls", 10000, "most ended polling sessions remembered (a few hundred bytes each, for a\nminute) so that a late poll learns why; past it the oldest is forgotten")
	queueMessages := fs.Int("queue-messages", 1024, "outbound queue bound per client, in messages; a client past it\nis disconnected as a slow consumer (1008)")
	queueBytes := fs.Int("queue-bytes", 1<<20, "outbound queue bound per client, in bytes")
	longPoll := fs.Duration("longpoll-timeout", 25*time.Second, "how long a long poll is held when there is nothing to send")
	maxWaiting := fs.Int("max-waiting", 10000, "most long polls held at once; past it polls get 503 with Retry-After\n(0: no limit)")
	jwtSecret := fs.String("jwt-secret", "", "HS256 secret that client tokens are signed with; without it (and\nwithout -jwt-public-key) the server runs in development mode with\nanonymous users")
	jwtKey := fs.String("jwt-public-key", "", "PEM file with the RS256 or ES256 public key of client tokens")
	brokerName := fs.String("broker", "memory", "where channels live: memory (one node) or redis (several nodes\nsharing one Redis server, a Redis Cluster or a Sentinel-managed master)")
	// redis: where Redis is (one server, a cluster, Sentinel), its credentials and replication.
	redisAddr := fs.String("redis-addr", "127.0.0.1:6379", "Redis for -broker redis: host:port, several comma-separated seed\naddresses, or a URL redis://[user:password@]host:port[,host:port...][/db]\n(rediss:// for TLS); a Redis Cluster is detected (INFO cluster)")
	redisPassword := fs.String("redis-password", "", "Redis password for -broker redis (overrides one in -redis-addr)")
	redisSentinelAddrs := fs.String("redis-sentinel-addrs", "", "comma-separated Sentinel addresses (host:port); with\n-redis-sentinel-master the master is found through them and followed\nacross failovers (-redis-addr is then unused, except a URL's user,\npassword, db and TLS)")
	redisSentinelMaster := fs.String("redis-sentinel-master", "", "name of the master the Sentinels watch (sentinel monitor NAME ...)")
	redisMinReplicas := fs.Int("redis-min-replicas", 0, "replicas that must confirm a publication (Redis WAIT, up to half the\n3 s call timeout) before it is acknowledged; unconfirmed: 504 outcome\nunknown. 0: do not wait (a failover may lose the latest publications)")
	redisPrefix := fs.String("redis-prefix", "hotline:", "prefix of hotline's Redis keys and channels")
	redisQueue := fs.Int("redis-queue-size", redisbroker.DefaultQueueSize, "Pub/Sub messages a node holds for delivery; past it (or past 64 MiB)\nthey are dropped and their channels repaired from history, or\nreported to clients as a gap")
	redisCatchUps := fs.Int("redis-catchups", redisbroker.DefaultCatchUps, "history reads that repair delivery gaps at one time")
	// storm: the Redis connection pool.
	redisPoolSize := fs.Int("redis-pool-size", 0, "connections to each Redis server for calls (publish, history, presence);\na call that finds all busy waits up to 4 s for one, then fails (a\nsubscribe is answered 503, retry). 0: 10 per CPU")
	emptyStreamTTL := fs.Duration("empty-stream-ttl", broker.DefaultEmptyStreamTTL, "how long a channel stream with nothing in its history is kept after\nits last publication; its next publication then starts a new epoch")
	writeTimeout := fs.Duration("write-timeout", 10*time.Second, "how long the write of one message to a WebSocket client may take;\npast it the client is dropped")
	var nsFlags stringList
	fs.Var(&nsFlags, "namespace", "channel namespace options, repeatable:\nNAME:history=N,ttl=D,bytes=SIZE,presence,joinleave,publish (e.g.\nnews:history=100,ttl=10m,presence); history keeps at most bytes=\n(default 1MiB; 0: no bound); chat, stats and bench exist by default,\nand channels in other namespaces are refused")
	apiKey := fs.String("api-key", "", "key for the server API (/api/publish, /api/presence, /api/history),\nsent as 'Authorization: apikey KEY'; empty disables the API")
	keepAlive := fs.Duration("keepalive", 30*time.Second, "WebSocket ping period when a client is silent; 0 disables")
	shutdownTimeout := fs.Duration("shutdown-timeout", 10*time.Second, "how long shutdown waits for queued messages to flush")
	// h2: TLS and HTTP/2
	tlsCert := fs.String("tls-cert", "", "PEM file with the TLS certificate (and chain): with -tls-key the server\nspeaks HTTPS and wss://, HTTP/2 (WebSockets too, RFC 8441) beside\nHTTP/1.1; both files are read again on SIGHUP")
	tlsKey := fs.String("tls-key", "", "PEM file with the private key of -tls-cert")
	h2c := fs.Bool("h2c", false, "also serve HTTP/2 without TLS (prior knowledge), e.g. behind a proxy\nthat terminates TLS and speaks HTTP/2 to hotline")
	h2MaxStreams := fs.Int("h2-max-streams", 250, "most concurrent streams (requests and WebSockets) on one HTTP/2\nconnection")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	// evloop: the event-loop WebSocket transport
	eventLoop := fs.Bool("event-loop", false, "serve /chat from an epoll event loop: an idle WebSocket costs no\ngoroutine and no buffer (Linux, plain TCP: terminate TLS at a proxy;\npermessage-deflate is not negotiated in this mode)")
	withEnvHelp(fs, serveSynopsis)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
	log, err := newLogger(stderrOf(ctx), *logFormat, *logLevel)
	if err != nil {
		return err
	}
	useTLS, err := tlsFlags(*tlsCert, *tlsKey)
	if err != nil {
		return err
	}
	if *eventLoop && useTLS { // evloop
		return fmt.Errorf("-event-loop serves plain TCP only: terminate TLS at a proxy, or drop -tls-cert")
	}
	var certs *certPair
	if useTLS {
		if certs, err = loadCertPair(*tlsCert, *tlsKey); err != nil {
			return err
		}
	}
	ns, err := namespaces(nsFlags)
	if err != nil {
		return err
	}
	var b broker.Broker
	switch *brokerName {
	case "memory":
		m := broker.NewMemoryConfig(broker.MemoryConfig{EmptyStreamTTL: *emptyStreamTTL})
		defer m.Close(context.Background())
		b = m
	case "redis":
		rc, err := redisbroker.ParseAddr(*redisAddr)
		if err != nil {
			return fmt.Errorf("-redis-addr: %w", err)
		}
		if *redisPassword != "" {
			rc.Password = *redisPassword
		}
		rc.SentinelAddrs = splitList(*redisSentinelAddrs)
		rc.SentinelMaster = *redisSentinelMaster
		rc.MinReplicas = *redisMinReplicas
		rc.Prefix = *redisPrefix
		rc.QueueSize = *redisQueue
		rc.CatchUps = *redisCatchUps
		rc.PoolSize = *redisPoolSize
		rc.EmptyStreamTTL = *emptyStreamTTL
		rc.Logger = log
		r, err := redisbroker.New(rc)
		if err != nil {
			return fmt.Errorf("-broker redis: %w", err)
		}
		defer r.Close(context.Background())
		b = r
		log.Info("broker: redis", "mode", r.Mode(), "addrs", rc.Addrs, "sentinels", rc.SentinelAddrs, "prefix", *redisPrefix)
	default:
		return fmt.Errorf("-broker %q: want memory or redis", *brokerName)
	}
	verifier := auth.Anonymous()
	switch {
	case *jwtSecret != "" && *jwtKey != "":
		return errors.New("give -jwt-secret or -jwt-public-key, not both")
	case *jwtSecret != "":
		verifier, err = auth.New(auth.Config{Secret: []byte(*jwtSecret)})
	case *jwtKey != "":
		verifier, err = auth.New(auth.Config{PublicKeyFile: *jwtKey})
	}
	if err != nil {
		return err
	}
	if verifier.Dev() {
		log.Warn("development mode: no -jwt-secret or -jwt-public-key, every client is an anonymous guest")
	}
	srv, err := server.New(server.Config{
		AllowedOrigins:  splitList(*origins),
		AllowedHosts:    splitList(*hosts),
		Compress:        *compress,
		ReadLimit:       *readLimit,
		KeepAlive:       *keepAlive,
		WriteTimeout:    *writeTimeout,
		EventLoop:       *eventLoop,
		MaxConns:        *maxConns,
		Namespaces:      ns,
		Broker:          b,
		PublishRate:     *publishRate,
		QueueMessages:   *queueMessages,
		QueueBytes:      *queueBytes,
		Auth:            verifier,
		APIKey:          *apiKey,
		LongPollTimeout: *longPoll,
		Web:             web.Handler(),
		MaxWaiting:      *maxWaiting,
		Diagnostics:     diagnostics.mode(),

		MaxUserSessions:  *maxUserSessions,
		MaxSubscriptions: *maxSubscriptions,
		MaxBatch:         *maxBatch,
		MaxHistoryReply:  *maxHistoryReply,
		MaxPresenceReply: *maxPresenceReply,
		IdempotencyTTL:   *idempotencyTTL,
		BrokerTimeout:    *brokerTimeout,
		SessionGrace:     *sessionGrace,
		MaxEndedPolls:    *maxEndedPolls,
		ReadTimeout:      *readTimeout,
		IdleTimeout:      *idleTimeout,
		MaxHeaderBytes:   *maxHeaderBytes,
		H2C:              *h2c,
		H2MaxStreams:     *h2MaxStreams,
		MaxBody:          *maxBody,
		Logger:           log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	hs := srv.HTTPServer()
	errc := make(chan error, 1)
	if certs != nil {
		hs.TLSConfig = certs.tlsConfig()
		certs.reloadOnHUP(ctx, log)
		log.Info("hotline serving", append([]any{"addr", "https://" + ln.Addr().String(), "compress", *compress, "http2", true}, certs.describe()...)...)
		go func() { errc <- hs.ServeTLS(ln, "", "") }()
	} else {
		log.Info("hotline serving", "addr", "http://"+ln.Addr().String(), "compress", *compress, "h2c", *h2c)
		go func() { errc <- hs.Serve(ln) }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", *shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
	defer cancel()
	// Together: over HTTP/2 a WebSocket is a stream that hs.Shutdown
	// waits for, and srv.Shutdown is what closes it.
	herr := make(chan error, 1)
	go func() { herr <- hs.Shutdown(sctx) }()
	err = srv.Shutdown(sctx)
	err = errors.Join(<-herr, err)
	if err == nil {
		log.Info("shutdown complete")
	}
	return err
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: %v", level, err)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}

// autoBool is a boolean flag whose default, "auto", leaves the choice to
// the server.
type autoBool struct{ set, on bool }

func (b *autoBool) IsBoolFlag() bool { return true }

func (b *autoBool) String() string {
	if b == nil || !b.set {
		return "auto"
	}
	return strconv.FormatBool(b.on)
}

func (b *autoBool) Set(v string) error {
	if v == "auto" {
		*b = autoBool{}
		return nil
	}
	on, err := strconv.ParseBool(v)
	if err != nil {
		return errors.New("want true, false or auto")
	}
	*b = autoBool{set: true, on: on}
	return nil
}

func (b *autoBool) mode() server.Diagnostics {
	switch {
	case !b.set:
		return server.DiagnosticsAuto
	case b.on:
		return server.DiagnosticsOn
	}
	return server.DiagnosticsOff
}
