package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	"github.com/hotline-rt/hotline/superchat"
	"github.com/hotline-rt/hotline/ws"
)

// A protocol is one server's client side over WebSocket: how to connect
// and subscribe to a room, and which control messages need an answer. The
// publications themselves are found by scanning each message for the
// payload (see scanPayloads), whatever envelope the server wraps it in.
type protocol interface {
	// dialURL is the WebSocket URL of a client of room.
	dialURL(addr string, room int) string
	subprotocols() []string
	// subscribe sends what the client sends after the handshake.
	subscribe(ctx context.Context, c *ws.Conn, room int) error
	// control inspects one message before it is scanned: it reports
	// whether msg ends the subscribe handshake, and answers pings. A
	// non-nil error (a refusal, a disconnect notice) ends the client.
	control(c *ws.Conn, msg []byte) (subscribed bool, err error)
}

func channelName(room int) string { return "bench:r" + strconv.Itoa(room) }

func protocolOf(name string) (protocol, error) {
	switch name {
	case "hotline":
		return hotlineProto{}, nil
	case "centrifugo":
		return centrifugoProto{}, nil
	case "socketio":
		return socketioProto{}, nil
	}
	return nil, fmt.Errorf("unknown server %q (hotline, centrifugo, socketio)", name)
}

// hotlineProto: superchat on /chat.
type hotlineProto struct{}

func (hotlineProto) dialURL(addr string, _ int) string { return "ws://" + addr + "/chat" }
func (hotlineProto) subprotocols() []string            { return []string{"superchat"} }

func (hotlineProto) subscribe(ctx context.Context, c *ws.Conn, room int) error {
	b, _ := json.Marshal(superchat.Request{ID: 1, Op: superchat.OpSubscribe, Channel: channelName(room)})
	return c.WriteMessage(ctx, ws.MessageText, b)
}

var (
	hotlinePush       = []byte(`{"push":`)
	hotlineDisconnect = []byte(`{"disconnect":`)
)

func (hotlineProto) control(_ *ws.Conn, msg []byte) (bool, error) {
	if bytes.HasPrefix(msg, hotlinePush) {
		return false, nil // the hot path: no decoding
	}
	if bytes.HasPrefix(msg, hotlineDisconnect) || bytes.HasPrefix(msg, []byte(`{"id":`)) {
		var m superchat.ServerMessage
		if err := json.Unmarshal(msg, &m); err != nil {
			return false, fmt.Errorf("hotline: bad envelope %.80q", msg)
		}
		switch {
		case m.Disconnect != nil:
			return false, m.Disconnect
		case m.ID == 1 && m.Error != nil:
			return false, m.Error
		case m.ID == 1:
			return true, nil
		}
	}
	return false, nil
}

// centrifugoProto: Centrifugo's JSON protocol (client protocol v2) on
// /connection/websocket: connect, subscribe, then pushes. Several replies
// may share one frame, one JSON object a line. The server pings with an
// empty command {} and waits for {} back.
type centrifugoProto struct{}

func (centrifugoProto) dialURL(addr string, _ int) string {
	return "ws://" + addr + "/connection/websocket"
}
func (centrifugoProto) subprotocols() []string { return nil }

func (centrifugoProto) subscribe(ctx context.Context, c *ws.Conn, room int) error {
	cmds := fmt.Sprintf(`{"id":1,"connect":{}}`+"\n"+`{"id":2,"subscribe":{"channel":%q}}`, channelName(room))
	return c.WriteMessage(ctx, ws.MessageText, []byte(cmds))
}

var centrifugoPush = []byte(`{"push":`)

func (centrifugoProto) control(c *ws.Conn, msg []byte) (bool, error) {
	if bytes.HasPrefix(msg, centrifugoPush) && !bytes.Contains(msg, []byte("\n")) {
		return false, nil // the hot path: one push, no decoding
	}
	subscribed := false
	for line := range bytes.SplitSeq(msg, []byte("\n")) {
		switch {
		case len(line) == 0 || bytes.HasPrefix(line, centrifugoPush):
		case bytes.Equal(line, []byte("{}")):
			if err := c.WriteMessage(context.Background(), ws.MessageText, []byte("{}")); err != nil {
				return false, err
			}
		default:
			var r struct {
				ID    uint64          `json:"id"`
				Error json.RawMessage `json:"error"`
			}
			if json.Unmarshal(line, &r) != nil {
				return false, fmt.Errorf("centrifugo: bad reply %.80q", line)
			}
			if r.Error != nil {
				return false, fmt.Errorf("centrifugo: reply %d: %s", r.ID, r.Error)
			}
			if r.ID == 2 {
				subscribed = true
			}
		}
	}
	return subscribed, nil
}

// socketioProto: Engine.IO v4 / Socket.IO v5 packets over WebSocket only.
// The server opens with "0{...}", the client connects to the default
// namespace with "40", the bench server joins it to its room (from the
// query) and emits "joined". Pings are "2", answered "3"; events are
// 42["m",{payload}].
type socketioProto struct{}

func (socketioProto) dialURL(addr string, room int) string {
	return "ws://" + addr + "/socket.io/?EIO=4&transport=websocket&room=" + url.QueryEscape("r"+strconv.Itoa(room))
}
func (socketioProto) subprotocols() []string { return nil }

func (socketioProto) subscribe(ctx context.Context, c *ws.Conn, _ int) error {
	return c.WriteMessage(ctx, ws.MessageText, []byte("40"))
}

var socketioJoined = []byte(`42["joined"`)

func (socketioProto) control(c *ws.Conn, msg []byte) (bool, error) {
	switch {
	case len(msg) == 1 && msg[0] == '2':
		return false, c.WriteMessage(context.Background(), ws.MessageText, []byte("3"))
	case bytes.HasPrefix(msg, socketioJoined):
		return true, nil
	case bytes.HasPrefix(msg, []byte("44")), bytes.HasPrefix(msg, []byte("41")), len(msg) > 0 && msg[0] == '1':
		return false, fmt.Errorf("socket.io: %.80q", msg)
	}
	return false, nil
}

// payloadPrefix is how every publication's data starts; the marker lets
// one scan find it in any envelope. The run id keeps strays out.
func payloadPrefix(run string) []byte { return []byte(`{"r":"` + run + `","g":`) }

// makePayload is the data of publication seq of publisher g: JSON the
// servers pass on as it is (integers below 2^53, so JavaScript keeps
// them), padded.
func makePayload(run string, g int, seq uint64, sentMicros int64, pad string) []byte {
	b := make([]byte, 0, 80+len(pad))
	b = append(b, payloadPrefix(run)...)
	b = strconv.AppendInt(b, int64(g), 10)
	b = append(b, `,"s":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, sentMicros, 10)
	b = append(b, `,"p":"`...)
	b = append(b, pad...)
	b = append(b, `"}`...)
	return b
}

// scanPayloads calls f for every payload in msg: its publisher, sequence
// number and send time (Unix microseconds).
func scanPayloads(msg, prefix []byte, f func(g int, seq uint64, sent int64)) {
	for {
		i := bytes.Index(msg, prefix)
		if i < 0 {
			return
		}
		msg = msg[i+len(prefix):]
		var g, seq, sent uint64
		var ok bool
		if g, msg, ok = field(msg, nil); !ok {
			continue
		}
		if seq, msg, ok = field(msg, []byte(`,"s":`)); !ok {
			continue
		}
		if sent, msg, ok = field(msg, []byte(`,"t":`)); !ok {
			continue
		}
		f(int(g), seq, int64(sent))
	}
}

// field parses the unsigned integer after key at the start of b.
func field(b, key []byte) (uint64, []byte, bool) {
	if !bytes.HasPrefix(b, key) {
		return 0, b, false
	}
	b = b[len(key):]
	var v uint64
	n := 0
	for n < len(b) && n < 19 && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + uint64(b[n]-'0')
		n++
	}
	return v, b[n:], n > 0
}
