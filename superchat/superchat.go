package superchat

import (
	"encoding/json"
	"fmt"
)

// Ops a Request may name.
const (
	OpConnect     = "connect"
	OpSubscribe   = "subscribe"
	OpUnsubscribe = "unsubscribe"
	OpPublish     = "publish"
	OpPresence    = "presence"
	OpHistory     = "history"
	OpRefresh     = "refresh"
)

// MaxID is the largest request id, so that ids survive JavaScript's
// numbers (2^53-1).
const MaxID = 1<<53 - 1

// MaxIdempotencyKey bounds the length of a publish's idempotency key.
const MaxIdempotencyKey = 128

// Position is where a publication sits in its channel's stream. Offset is 1
// for the first publication of an epoch and grows by one per publication;
// the zero Position is a channel without a stream. A client keeps the
// Position of the last publication it processed per channel, and passes it
// as Since to recover what it missed.
type Position struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// Next reports whether p directly follows q in a stream: same epoch and
// offset + 1, or offset 1 of any epoch after the zero Position.
func (p Position) Next(q Position) bool {
	if q == (Position{}) {
		return p.Offset == 1
	}
	return p.Epoch == q.Epoch && p.Offset == q.Offset+1
}

// Request is what a client sends: one op, with the fields that op reads.
type Request struct {
	ID      uint64          `json:"id"` // 0 to MaxID; the reply carries it back
	Op      string          `json:"op"`
	Channel string          `json:"channel,omitempty"`
	Since   *Position       `json:"since,omitempty"`   // subscribe, history
	Data    json.RawMessage `json:"data,omitempty"`    // publish: any JSON value
	Limit   *int            `json:"limit,omitempty"`   // history: nil or negative = the server's page size, 0 = only the top
	Reverse bool            `json:"reverse,omitempty"` // history: newest first
	// IdempotencyKey (publish, at most MaxIdempotencyKey bytes): a retry
	// with the same key returns the first publication's position.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	Token          string `json:"token,omitempty"` // refresh: the new token
}

// ServerMessage is any envelope the server sends: a reply (ID with Result or
// Error), a push, a gap notice, or a disconnect notice. Exactly one kind is
// set; a reply to a request whose id could not be read has ID 0.
type ServerMessage struct {
	ID         uint64          `json:"id,omitempty"`
	Result     json.RawMessage `json:"result,omitempty"` // decode into the op's result type
	Error      *Error          `json:"error,omitempty"`
	Push       *Push           `json:"push,omitempty"`
	Disconnect *Disconnect     `json:"disconnect,omitempty"`
	Gap        *Gap            `json:"gap,omitempty"`
}

// Push is a publication (Offset > 0, with Data) or a join/leave event of a
// channel (Join or Leave set, no position).
type Push struct {
	Channel string          `json:"channel"`
	Epoch   string          `json:"epoch,omitempty"`
	Offset  uint64          `json:"offset,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	Info    *UserInfo       `json:"info,omitempty"` // the publisher; absent when the server published
	Join    *UserInfo       `json:"join,omitempty"`
	Leave   *UserInfo       `json:"leave,omitempty"`
}

// Position returns the publication's position.
func (p *Push) Position() Position { return Position{Epoch: p.Epoch, Offset: p.Offset} }

// Gap tells a subscriber that it may have missed publications of Channel
// after the last one it was given, Epoch and Offset: the position to pass
// as Since when it subscribes again to recover. The subscription goes on
// with the next publication. Reason is for display only.
type Gap struct {
	Channel string `json:"channel"`
	Epoch   string `json:"epoch"`
	Offset  uint64 `json:"offset"`
	Reason  string `json:"reason"`
}

// Position returns the position to resume from.
func (g *Gap) Position() Position { return Position{Epoch: g.Epoch, Offset: g.Offset} }

// Disconnect is the notice the server sends before it ends a session;
// Code is also the WebSocket close code that follows (docs/protocol.md
// lists codes and reasons). It is an error, so a client can return it.
type Disconnect struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

func (d *Disconnect) Error() string {
	return fmt.Sprintf("superchat: disconnected %d: %s", d.Code, d.Reason)
}

// Error codes of a failed request (Error.Code).
const (
	CodeBadRequest     = 400 // not a JSON object, bad fields, already/not subscribed, ...
	CodeUnauthorized   = 401 // refresh: invalid or expired token
	CodeForbidden      = 403 // the token or the namespace does not allow it
	CodeUnknownOp      = 404
	CodeLimit          = 429 // a limit of the session or user: publish rate, subscriptions
	CodeInternal       = 500 // the server failed
	CodeNotPublished   = 503 // publish: nothing was published; retry
	CodeOutcomeUnknown = 504 // publish: may exist; retry with the same idempotency key
)

// Error is the error of a failed request. The session stays usable.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("superchat: error %d: %s", e.Code, e.Message)
}

// UserInfo names a user in pushes and presence. Session ids are never shown.
type UserInfo struct {
	User string `json:"user"`
	Name string `json:"name,omitempty"`
}

// ConnectResult is the result of connect.
type ConnectResult struct {
	Session  string `json:"session"` // resumes the session (/chat?session=ID); keep it secret
	User     string `json:"user"`
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol"`
	Exp      int64  `json:"exp,omitempty"` // when the session's token expires, Unix seconds; 0: never
}

// SubscribeResult is the result of subscribe: the channel's top when it was
// read. With Since, Recovered says whether the publications after Since
// follow as pushes (true) or cannot (false, with Reason).
type SubscribeResult struct {
	Epoch     string `json:"epoch"`
	Offset    uint64 `json:"offset"`
	Recovered *bool  `json:"recovered,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// Top returns the channel's position the result names.
func (r *SubscribeResult) Top() Position { return Position{Epoch: r.Epoch, Offset: r.Offset} }

// PublishResult is the result of publish: the publication's position.
type PublishResult = Position

// HistoryResult is the result of history: one page of publications, in
// the order asked, and the channel's top. More says there is more past the
// last one: ask again with Since set to its position.
type HistoryResult struct {
	Epoch        string `json:"epoch"`
	Offset       uint64 `json:"offset"`
	Recovered    *bool  `json:"recovered,omitempty"`
	Reason       string `json:"reason,omitempty"`
	Publications []Push `json:"publications,omitempty"`
	More         bool   `json:"more,omitempty"`
}

// PresenceResult is the result of presence: who is subscribed to a channel,
// one entry per user, sorted by user id.
type PresenceResult struct {
	Clients []PresenceClient `json:"clients"`
	// Total counts the users present, of whom Clients may hold only the
	// first ones (by user id).
	Total int `json:"total"`
	// Truncated says that Clients holds fewer than Total.
	Truncated bool `json:"truncated,omitempty"`
}

// PresenceClient is one user present in a channel.
type PresenceClient struct {
	User  string `json:"user"`
	Name  string `json:"name,omitempty"`
	Conns int    `json:"conns"` // sessions of this user in the channel
}

// RefreshResult is the result of refresh.
type RefreshResult struct {
	Exp int64 `json:"exp,omitempty"` // the new expiry, Unix seconds; 0: never
}
