package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"
)

// Position is the place of a publication in its channel's stream.
type Position struct {
	// Epoch names the stream; it changes when the stream is lost and
	// restarted, which makes older offsets meaningless.
	Epoch string `json:"epoch"`
	// Offset is 1 for the first publication of an epoch and grows by one per
	// publication. The zero offset is the position before the first one.
	Offset uint64 `json:"offset"`
}

// ClientInfo says who published or who is present.
type ClientInfo struct {
	User   string `json:"user"`             // user id (the token's sub)
	Name   string `json:"name,omitempty"`   // display name
	Client string `json:"client,omitempty"` // session id; never shown to other clients
}

// Publication is one message published to a channel. A Publication handed out
// by a broker is shared by every reader and must not be modified.
type Publication struct {
	Channel string
	Position
	Data json.RawMessage // valid JSON
	Info *ClientInfo     // publisher; nil for server-side publications
	Time time.Time       // when the broker accepted it
}

// PublishOptions say how long a channel keeps its publications.
type PublishOptions struct {
	// HistorySize is how many publications the channel keeps for recovery
	// and history reads; 0 keeps none (positions are still assigned).
	HistorySize int
	// HistoryTTL is how long a publication is kept; 0 means until it is
	// pushed out by HistorySize.
	HistoryTTL time.Duration
	// HistoryBytes bounds the total size of the publications a channel
	// keeps (their data and publisher info as stored); the oldest go
	// first. 0 means no byte bound. The newest publication is kept even
	// if it alone is larger.
	HistoryBytes int
	// IdempotencyKey, if set, makes a retried Publish safe: a Publish
	// with a key already used on the channel within IdempotencyTTL
	// returns the position of the first one and publishes nothing.
	IdempotencyKey string
	// IdempotencyTTL is how long a key is remembered; 0 with a key set
	// means one minute.
	IdempotencyTTL time.Duration
}

// HistoryRequest selects publications of one channel.
type HistoryRequest struct {
	// Since, if set, selects publications after this position (or, with
	// Reverse, before it). If the position cannot be served the read fails
	// with ErrEpochChanged or ErrHistoryTrimmed.
	Since *Position
	// Limit is the most publications returned: 0 returns none (only the
	// stream top, which is how a subscriber learns where a stream is), a
	// negative value returns all that are kept.
	Limit int
	// Reverse returns the newest publications first.
	Reverse bool
}

// HistoryResult is the answer to a history read.
type HistoryResult struct {
	// Publications in offset order (newest first with Reverse).
	Publications []*Publication
	// Top is the position of the latest publication in the stream, set even
	// when the read fails with ErrEpochChanged or ErrHistoryTrimmed, so the
	// caller can start over from there.
	Top Position
}

var (
	// ErrEpochChanged means a requested position belongs to another epoch
	// of the stream (or lies beyond its top): the publications since then
	// are unknown.
	ErrEpochChanged = errors.New("broker: epoch changed")
	// ErrHistoryTrimmed means some publications after a requested position
	// were already dropped from history (by size or age).
	ErrHistoryTrimmed = errors.New("broker: history trimmed")
	// ErrClosed is returned by a broker after Close.
	ErrClosed = errors.New("broker: closed")
	// ErrOutcomeUnknown wraps a Publish error when the request may have
	// reached the broker: the publication may or may not exist.
	ErrOutcomeUnknown = errors.New("broker: publish outcome unknown")
)

// Handler receives what a broker fans out to this node. The engine in package
// push registers one with Broker.Start.
type Handler interface {
	// HandlePublication is called once per publication in a channel the node
	// is subscribed to, in offset order per channel.
	HandlePublication(pub *Publication)
	// HandleJoin and HandleLeave carry presence events of a channel.
	HandleJoin(channel string, info ClientInfo)
	HandleLeave(channel string, info ClientInfo)
	// HandleGap says that the node may have missed publications of channel
	// after the last one it passed to HandlePublication (its link to the
	// broker dropped and history could not fill the hole, or its queue
	// overflowed). It is called in order with HandlePublication for that
	// channel. reason is shown to clients.
	HandleGap(channel string, reason string)
}

// Broker moves and stores messages between nodes. See the package
// documentation for the guarantees an implementation gives.
type Broker interface {
	// Start registers the handler that receives this node's fan-out. It is
	// called once, before any other method.
	Start(h Handler) error
	// Subscribe makes this node receive the publications and join/leave
	// events of channel; once it returns, every later publication reaches
	// the handler. Subscriptions are counted: each Subscribe needs one
	// Unsubscribe.
	Subscribe(ctx context.Context, channel string) error
	// Unsubscribe undoes one Subscribe.
	Unsubscribe(ctx context.Context, channel string) error

	// Publish assigns the next position of channel to data, keeps it in
	// history per opts and fans it out. info may be nil.
	Publish(ctx context.Context, channel string, data json.RawMessage, info *ClientInfo, opts PublishOptions) (Position, error)
	// PublishJoin and PublishLeave fan a presence event out to the nodes
	// subscribed to channel. Nothing is stored.
	PublishJoin(ctx context.Context, channel string, info ClientInfo) error
	PublishLeave(ctx context.Context, channel string, info ClientInfo) error
	// History reads the stream of channel. A channel that has no stream
	// (nobody published to it, or it expired) has Top {"", 0}; reading it
	// creates nothing, and its first publication starts a new epoch at
	// offset 1.
	History(ctx context.Context, channel string, req HistoryRequest) (HistoryResult, error)

	// AddPresence records (or refreshes) client in channel for ttl. The
	// caller refreshes it before ttl runs out; entries of a crashed node
	// expire.
	AddPresence(ctx context.Context, channel, client string, info ClientInfo, ttl time.Duration) error
	// RefreshPresence is AddPresence for many clients of one channel (by
	// client id) in one round trip.
	RefreshPresence(ctx context.Context, channel string, entries map[string]ClientInfo, ttl time.Duration) error
	// RemovePresence forgets client in channel.
	RemovePresence(ctx context.Context, channel, client string) error
	// Presence lists the live entries of channel by client (session) id.
	Presence(ctx context.Context, channel string) (map[string]ClientInfo, error)

	// Close stops fan-out and releases resources.
	Close(ctx context.Context) error
}

// Readier is a Broker that can tell whether it can serve now: its store is
// reachable. A server's /readyz asks it, so a load balancer stops sending
// clients to a node that cannot reach its broker. A Broker without it is
// taken as always ready.
type Readier interface {
	// Ready returns nil if the broker can serve, else why not.
	Ready(ctx context.Context) error
}

// maxIdemKey is the longest idempotency key a broker stores as it is; a
// longer one is stored as its SHA-256, so what a client sends does not
// decide how much a broker keeps per key.
const maxIdemKey = 64

// IdempotencyID is the form of an idempotency key that a broker stores.
func IdempotencyID(key string) string {
	if len(key) <= maxIdemKey {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Defaults shared by the brokers.
const (
	// DefaultEmptyStreamTTL is how long a stream with nothing in its
	// history is kept after its last publication, unless configured.
	DefaultEmptyStreamTTL = 5 * time.Minute
	// DefaultIdempotencyTTL is used for a Publish with an
	// IdempotencyKey and no IdempotencyTTL.
	DefaultIdempotencyTTL = time.Minute
)
