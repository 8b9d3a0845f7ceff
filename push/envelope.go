package push

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/hotline-rt/hotline/broker"
)

// Request is a superchat request envelope (docs/protocol.md). Clients such as
// hotline dial marshal it; the engine decodes it with DecodeRequest.
type Request struct {
	ID      uint64           `json:"id"`
	Op      string           `json:"op"`
	Channel string           `json:"channel,omitempty"`
	Since   *broker.Position `json:"since,omitempty"`   // subscribe, history
	Data    json.RawMessage  `json:"data,omitempty"`    // publish
	Limit   *int             `json:"limit,omitempty"`   // history: nil or negative = the server's page size, 0 = only the top
	Reverse bool             `json:"reverse,omitempty"` // history: newest first
	// IdempotencyKey (publish, at most MaxIdempotencyKey bytes): a retry
	// with the same key returns the first publication's position.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	Token          string `json:"token,omitempty"` // refresh: the new token
}

// maxRequestID is the largest id, so ids survive JavaScript's numbers.
const maxRequestID = 1<<53 - 1

// DecodeRequest decodes one request envelope. Errors wrap ErrBadRequest;
// the returned Request carries the id whenever it could be read, so the
// error reply can name it.
func DecodeRequest(b []byte) (Request, error) {
	var r Request
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return Request{}, fmt.Errorf("%w: not a JSON object", ErrBadRequest)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		// Unmarshal keeps the fields it could fill: report the id only
		// if the id field itself was sound.
		var probe struct {
			ID uint64 `json:"id"`
		}
		if json.Unmarshal(b, &probe) != nil || probe.ID > maxRequestID {
			probe.ID = 0
		}
		return Request{ID: probe.ID}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if r.ID > maxRequestID {
		return Request{}, fmt.Errorf("%w: id above 2^53-1", ErrBadRequest)
	}
	if r.Op == "" {
		return Request{ID: r.ID}, fmt.Errorf("%w: missing op", ErrBadRequest)
	}
	return r, nil
}

// ServerMessage is any envelope the server sends: a reply (ID with Result or
// Error), a push, or a disconnect notice. Clients decode into it.
type ServerMessage struct {
	ID         uint64          `json:"id,omitempty"`
	Result     json.RawMessage `json:"result,omitempty"`
	Error      *ReplyError     `json:"error,omitempty"`
	Push       *Push           `json:"push,omitempty"`
	Disconnect *Disconnect     `json:"disconnect,omitempty"`
	Gap        *Gap            `json:"gap,omitempty"`
}

// Gap tells a subscriber that it may have missed publications of Channel
// after the last one it was given, Epoch and Offset: the position to pass
// as since when it subscribes again to recover. The subscription goes on
// with the next publication.
type Gap struct {
	Channel string `json:"channel"`
	Epoch   string `json:"epoch"`
	Offset  uint64 `json:"offset"`
	Reason  string `json:"reason"`
}

// ReplyError is the error of a failed request. Codes: 400 bad request, 401
// bad token (refresh), 403 forbidden, 404 unknown op, 429 a limit of the
// session or user (publish rate, subscriptions), 500 server failure, 503
// not published, 504 publish outcome unknown.
type ReplyError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// Push is a publication or a join/leave event of a channel.
type Push struct {
	Channel string          `json:"channel"`
	Epoch   string          `json:"epoch,omitempty"`
	Offset  uint64          `json:"offset,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	Info    *UserInfo       `json:"info,omitempty"` // publisher; absent for the server
	Join    *UserInfo       `json:"join,omitempty"`
	Leave   *UserInfo       `json:"leave,omitempty"`
}

// UserInfo names a user in pushes and presence. Session ids are never shown.
type UserInfo struct {
	User string `json:"user"`
	Name string `json:"name,omitempty"`
}

// PresenceClient is one user present in a channel.
type PresenceClient struct {
	User  string `json:"user"`
	Name  string `json:"name,omitempty"`
	Conns int    `json:"conns"` // sessions of this user in the channel
}

func userInfo(ci *broker.ClientInfo) *UserInfo {
	if ci == nil {
		return nil
	}
	return &UserInfo{User: ci.User, Name: ci.Name}
}

func pushOf(pub *broker.Publication) Push {
	return Push{Channel: pub.Channel, Epoch: pub.Epoch, Offset: pub.Offset, Data: pub.Data, Info: userInfo(pub.Info)}
}

// encodePush returns the superchat push of pub: {"push":{...}}.
func encodePush(pub *broker.Publication) []byte {
	p := pushOf(pub)
	type envelope struct {
		Push *Push `json:"push"`
	}
	b, err := json.Marshal(envelope{&p})
	if err != nil {
		// Not valid JSON (another node's broker client may not check):
		// deliver it as a string rather than lose it.
		p.Data = mustMarshal(string(pub.Data))
		b = mustMarshal(envelope{&p})
	}
	return b
}

// encodePushObject returns the JSON of pub's Push (without the envelope),
// as a history reply lists it.
func encodePushObject(pub *broker.Publication) []byte {
	p := pushOf(pub)
	b, err := json.Marshal(&p)
	if err != nil {
		p.Data = mustMarshal(string(pub.Data)) // as encodePush does
		b = mustMarshal(&p)
	}
	return b
}

// encodeChat returns what a chat client sees of a publication: the content
// of a JSON string, or else the JSON itself.
func encodeChat(data json.RawMessage) []byte {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if json.Unmarshal(data, &s) == nil {
			return []byte(s)
		}
	}
	return data
}

func encodeEvent(channel string, info broker.ClientInfo, join bool) []byte {
	p := Push{Channel: channel}
	if join {
		p.Join = userInfo(&info)
	} else {
		p.Leave = userInfo(&info)
	}
	return mustMarshal(struct {
		Push *Push `json:"push"`
	}{&p})
}

func encodeDisconnect(d *Disconnect) []byte {
	return mustMarshal(struct {
		Disconnect *Disconnect `json:"disconnect"`
	}{d})
}

func encodeResult(id uint64, result any) []byte {
	return mustMarshal(struct {
		ID     uint64 `json:"id"`
		Result any    `json:"result"`
	}{id, result})
}

func encodeError(id uint64, code int, msg string) []byte {
	return mustMarshal(struct {
		ID    uint64     `json:"id"`
		Error ReplyError `json:"error"`
	}{id, ReplyError{Code: code, Message: msg}})
}

// mustMarshal marshals values whose types cannot fail to encode (all
// RawMessages in them hold valid JSON from the broker or the decoder).
func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("push: encode envelope: " + err.Error())
	}
	return b
}
