package push

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/superchat"
)

// DecodeRequest decodes one superchat request envelope. Errors wrap
// ErrBadRequest; the returned Request carries the id whenever it could be
// read, so the error reply can name it.
func DecodeRequest(b []byte) (superchat.Request, error) {
	var r superchat.Request
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return superchat.Request{}, fmt.Errorf("%w: not a JSON object", ErrBadRequest)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		// Unmarshal keeps the fields it could fill: report the id only
		// if the id field itself was sound.
		var probe struct {
			ID uint64 `json:"id"`
		}
		if json.Unmarshal(b, &probe) != nil || probe.ID > superchat.MaxID {
			probe.ID = 0
		}
		return superchat.Request{ID: probe.ID}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if r.ID > superchat.MaxID {
		return superchat.Request{}, fmt.Errorf("%w: id above 2^53-1", ErrBadRequest)
	}
	if r.Op == "" {
		return superchat.Request{ID: r.ID}, fmt.Errorf("%w: missing op", ErrBadRequest)
	}
	return r, nil
}

// PresenceClient is one user present in a channel, as Engine.Presence
// lists them: the superchat type, named here because it is the engine's
// own API too (the HTTP API answers with it).
type PresenceClient = superchat.PresenceClient

// PresencePage is who is in a channel, bounded: Engine.PresencePage's
// result, which the presence op and the HTTP API send as it is.
type PresencePage = superchat.PresenceResult

func userInfo(ci *broker.ClientInfo) *superchat.UserInfo {
	if ci == nil {
		return nil
	}
	return &superchat.UserInfo{User: ci.User, Name: ci.Name}
}

func pushOf(pub *broker.Publication) superchat.Push {
	return superchat.Push{Channel: pub.Channel, Epoch: pub.Epoch, Offset: pub.Offset, Data: pub.Data, Info: userInfo(pub.Info)}
}

// encodePush returns the superchat push of pub: {"push":{...}}.
func encodePush(pub *broker.Publication) []byte {
	p := pushOf(pub)
	type envelope struct {
		Push *superchat.Push `json:"push"`
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
	p := superchat.Push{Channel: channel}
	if join {
		p.Join = userInfo(&info)
	} else {
		p.Leave = userInfo(&info)
	}
	return mustMarshal(struct {
		Push *superchat.Push `json:"push"`
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
		ID    uint64          `json:"id"`
		Error superchat.Error `json:"error"`
	}{id, superchat.Error{Code: code, Message: msg}})
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

// brokerPosition is a request's since as the broker takes it.
func brokerPosition(p *superchat.Position) *broker.Position {
	if p == nil {
		return nil
	}
	return &broker.Position{Epoch: p.Epoch, Offset: p.Offset}
}
