package push

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/broker"
)

// Protocol is what a session's messages mean.
type Protocol int

const (
	// ProtocolChat: plain text lines relayed to one room. The zero
	// Protocol means chat, as a client that offers no subprotocol gets chat.
	ProtocolChat Protocol = iota
	// ProtocolSuperchat: JSON envelopes (docs/protocol.md).
	ProtocolSuperchat
)

// String returns the WebSocket subprotocol name: "chat" or "superchat".
func (p Protocol) String() string {
	switch p {
	case ProtocolChat:
		return "chat"
	case ProtocolSuperchat:
		return "superchat"
	}
	return fmt.Sprintf("Protocol(%d)", int(p))
}

// ParseProtocol maps a subprotocol name to a Protocol; transports use it to
// pick one from Sec-WebSocket-Protocol.
func ParseProtocol(name string) (Protocol, bool) {
	switch name {
	case "chat":
		return ProtocolChat, true
	case "superchat":
		return ProtocolSuperchat, true
	}
	return 0, false
}

// NamespaceOptions configure the channels of one namespace: the part of a
// channel name before the first ':' ("news" in "news:eu"; a name without ':'
// is in the "" namespace). The zero value keeps no history, tracks no
// presence, and lets only the server publish.
type NamespaceOptions struct {
	HistorySize   int           // publications kept for recovery and history; 0 keeps none
	HistoryTTL    time.Duration // how long each is kept; 0: until pushed out by HistorySize
	HistoryBytes  int           // bytes of data kept in history, oldest dropped first; 0: no bound
	Presence      bool          // track who is subscribed
	JoinLeave     bool          // push join and leave events to superchat subscribers
	ClientPublish bool          // clients may publish; the server API always may
}

// Default options of the namespaces that exist without configuration.
var (
	// ChatNamespace is "chat", the rooms of the chat protocol.
	ChatNamespace = NamespaceOptions{HistorySize: 100, HistoryTTL: 10 * time.Minute, HistoryBytes: 1 << 20, Presence: true, JoinLeave: true, ClientPublish: true}
	// DefaultNamespace is "", for channels without ':'. Only the server
	// publishes there unless configured otherwise.
	DefaultNamespace = NamespaceOptions{HistorySize: 100, HistoryTTL: 10 * time.Minute, HistoryBytes: 1 << 20, Presence: true}
)

// Config configures an Engine. The zero value is ready to use.
type Config struct {
	// Broker stores and fans out publications. nil: a broker.NewMemory,
	// which Shutdown closes; a Broker given here is left open.
	Broker broker.Broker
	// Logger receives the engine's logs. nil: nothing is logged.
	Logger *slog.Logger
	// Namespaces configures channels by namespace. nil: "" (DefaultNamespace)
	// and "chat" (ChatNamespace). If given and "chat" is missing,
	// ChatNamespace is added. Channels in other namespaces are refused
	// (ErrUnknownNamespace).
	Namespaces map[string]NamespaceOptions
	// MaxSessions bounds the sessions of this engine; past it Connect
	// returns ErrTooManySessions. 0: unlimited.
	MaxSessions int
	// MaxUserSessions bounds the sessions of one user (Identity.UserID) on
	// this engine, counting those in their grace period; past it Connect
	// returns ErrTooManyUserSessions. 0: 20. Negative: unlimited.
	MaxUserSessions int
	// MaxSubscriptions bounds the channels one session subscribes to;
	// past it a subscribe is answered 429. 0: 128.
	MaxSubscriptions int
	// MaxBatch bounds the requests of one Session.HandleBatch (a polling
	// POST); a larger batch fails with ErrBatchTooLarge. 0: 32.
	MaxBatch int
	// MaxHistoryReply bounds the publications of one history reply (and of
	// HistoryPage); a reply also holds at most a quarter of QueueBytes.
	// A cut reply says "more". 0: 100.
	MaxHistoryReply int
	// MaxPresenceReply bounds the users of one presence reply (and of
	// PresencePage); a reply also holds at most a quarter of QueueBytes.
	// A cut reply says "truncated". 0: 1000.
	MaxPresenceReply int
	// QueueMessages bounds each session's outbound queue in items.
	// 0: 1024.
	QueueMessages int
	// QueueBytes bounds each session's outbound queue in bytes. 0: 1 MiB.
	QueueBytes int
	// PublishRate is the publications per second a user may make (chat
	// lines and superchat publish), over all of that user's sessions on
	// this engine. 0: unlimited.
	PublishRate float64
	// PublishBurst is how many publications a user may make at once
	// within PublishRate. 0: PublishRate rounded up, at least 1.
	PublishBurst int
	// IdempotencyTTL is how long a publish's idempotency key is
	// remembered: a retry with the same key within it returns the first
	// position and publishes nothing. 0: 2m.
	IdempotencyTTL time.Duration
	// Verifier checks the token of a superchat "refresh" request, which
	// moves a session's expiry (a session ends when its identity's
	// Expires passes). nil: refresh is refused.
	Verifier auth.Verifier
	// SessionGrace is how long a session outlives its last detached
	// transport, so a client can come back with its subscriptions and
	// positions. 0: 30s. Negative: a detached session ends at once.
	SessionGrace time.Duration
	// PresenceTTL is how long a presence entry lives in the broker without
	// being refreshed; the engine refreshes at a third of it. 0: 60s.
	PresenceTTL time.Duration
	// BrokerTimeout bounds each broker call the engine makes (subscribe,
	// unsubscribe, history reads, presence, join and leave), on top of
	// the caller's ctx. 0: 5s.
	BrokerTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	ns := make(map[string]NamespaceOptions, len(c.Namespaces)+2)
	if c.Namespaces == nil {
		ns[""] = DefaultNamespace
	}
	for k, v := range c.Namespaces {
		ns[k] = v
	}
	if _, ok := ns["chat"]; !ok {
		ns["chat"] = ChatNamespace
	}
	c.Namespaces = ns
	if c.QueueMessages <= 0 {
		c.QueueMessages = 1024
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = 1 << 20
	}
	if c.PublishRate > 0 && c.PublishBurst <= 0 {
		c.PublishBurst = max(1, int(c.PublishRate+0.999999))
	}
	if c.SessionGrace == 0 {
		c.SessionGrace = 30 * time.Second
	}
	if c.PresenceTTL <= 0 {
		c.PresenceTTL = 60 * time.Second
	}
	if c.MaxUserSessions == 0 {
		c.MaxUserSessions = 20
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = 128
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 32
	}
	if c.MaxHistoryReply <= 0 {
		c.MaxHistoryReply = 100
	}
	if c.MaxPresenceReply <= 0 {
		c.MaxPresenceReply = 1000
	}
	if c.IdempotencyTTL <= 0 {
		c.IdempotencyTTL = 2 * time.Minute
	}
	if c.BrokerTimeout <= 0 {
		c.BrokerTimeout = 5 * time.Second
	}
	return c
}

// replyBytes is the byte budget of one history or presence reply: a
// quarter of the queue, so that a reply never ends the session that asked
// for it.
func (c Config) replyBytes() int { return c.QueueBytes / 4 }

func (c Config) validate() error {
	for name := range c.Namespaces {
		if strings.Contains(name, ":") {
			return fmt.Errorf("push: namespace %q contains ':'", name)
		}
	}
	if c.PublishRate < 0 {
		return fmt.Errorf("push: negative PublishRate %v", c.PublishRate)
	}
	if c.MaxSessions < 0 {
		return fmt.Errorf("push: negative MaxSessions %d", c.MaxSessions)
	}
	for name, o := range c.Namespaces {
		if o.HistorySize < 0 || o.HistoryTTL < 0 || o.HistoryBytes < 0 {
			return fmt.Errorf("push: namespace %q: negative history bound", name)
		}
	}
	return nil
}

// maxChannelLen bounds channel names.
const maxChannelLen = 255

// namespace returns the options of channel's namespace.
func (e *Engine) namespace(channel string) (NamespaceOptions, error) {
	if channel == "" || len(channel) > maxChannelLen {
		return NamespaceOptions{}, fmt.Errorf("%w: %q", ErrInvalidChannel, channel)
	}
	name, _, ok := strings.Cut(channel, ":")
	if !ok {
		name = ""
	}
	opts, found := e.cfg.Namespaces[name]
	if !found {
		return NamespaceOptions{}, fmt.Errorf("%w: %q", ErrUnknownNamespace, name)
	}
	return opts, nil
}

func (o NamespaceOptions) publishOptions() broker.PublishOptions {
	return broker.PublishOptions{HistorySize: o.HistorySize, HistoryTTL: o.HistoryTTL, HistoryBytes: o.HistoryBytes}
}
