package ws

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// This file holds what an event-loop server needs from the codec: a frame
// Decoder that is pushed bytes as they arrive (it never reads), the
// encoders of server frames, and an upgrade that hands over the raw
// socket instead of a Conn. The frame rules are those of the blocking
// reader (parseHeader, headerRule, mask, the UTF-8 validator and the close
// payload checks), so both paths accept and refuse the same streams.

// EventKind is what Decoder.Next found.
type EventKind uint8

const (
	// EventMore: the buffered bytes end inside a frame; read more.
	EventMore EventKind = iota
	// EventMessage: a whole data message (Event.Type, Event.Data).
	EventMessage
	// EventPing: a ping whose payload (Event.Data) the pong must carry.
	EventPing
	// EventPong: a pong arrived.
	EventPong
	// EventClose: the peer's close frame (Event.Code, Event.Reason); the
	// server echoes it and closes the TCP connection.
	EventClose
	// EventError: the stream broke a rule of RFC 6455 or the read limit.
	// The server sends a close frame with Event.Code and Event.Reason
	// and closes; every later Next returns the same event.
	EventError
)

// Event is one result of Decoder.Next. Data is valid until the next call
// of Next or Release.
type Event struct {
	Kind   EventKind
	Type   MessageType
	Data   []byte
	Code   StatusCode
	Reason string
}

// Decoder is the read side of a server connection for an event loop: the
// loop reads whatever the socket has into Space, reports it with Advance,
// and takes events with Next until EventMore, then calls Release. Between
// messages (an idle connection) it holds no buffer: its size is a few
// dozen bytes. It does not support permessage-deflate: an event-loop
// server refuses to negotiate it (UpgradeDetached).
//
// A Decoder is used by one goroutine at a time.
type Decoder struct {
	rbuf      *[bufSize]byte // pooled; nil while nothing is buffered
	rpos      int
	rend      int
	readLimit int64
	frame     header
	remain    int64  // payload bytes of the current frame not yet taken
	maskPos   int    // bytes of the current frame unmasked so far
	msgOp     opcode // message in progress, 0 between messages
	msgLen    int64
	msg       []byte // a message assembled from several pieces
	utf8      utf8Validator
	err       *Event // sticky EventError
}

// NewDecoder returns the Decoder of a server connection that accepts
// messages up to readLimit bytes (0: DefaultReadLimit).
func NewDecoder(readLimit int64) Decoder {
	if readLimit <= 0 {
		readLimit = DefaultReadLimit
	}
	return Decoder{readLimit: readLimit}
}

// Space returns where to read the next bytes: the free end of a pooled
// buffer, taken if the Decoder holds none. It is never empty.
func (d *Decoder) Space() []byte {
	if d.rbuf == nil {
		d.rbuf = getBuf()
		d.rpos, d.rend = 0, 0
	}
	if d.rpos > 0 {
		// What is left is less than a header or a control frame, or
		// nothing: move it to the front.
		d.rend = copy(d.rbuf[:], d.rbuf[d.rpos:d.rend])
		d.rpos = 0
	}
	return d.rbuf[d.rend:]
}

// Advance records n bytes read into Space.
func (d *Decoder) Advance(n int) { d.rend += n }

// Release gives the buffer back to the pool when nothing is left in it,
// and the buffer of an assembled message once it has been delivered. Call
// it when Next has said EventMore and the Data of the last event is no
// longer needed.
func (d *Decoder) Release() {
	if d.rbuf != nil && d.rpos == d.rend {
		putBuf(d.rbuf)
		d.rbuf = nil
		d.rpos, d.rend = 0, 0
	}
	if d.msgOp == 0 {
		d.msg = nil
	}
}

// Buffered reports how many bytes are buffered and not yet decoded.
func (d *Decoder) Buffered() int { return d.rend - d.rpos }

func (d *Decoder) fail(code StatusCode, reason string) Event {
	d.err = &Event{Kind: EventError, Code: code, Reason: reason}
	return *d.err
}

// Next decodes the next event from the buffered bytes.
func (d *Decoder) Next() Event {
	if d.err != nil {
		return *d.err
	}
	if d.msgOp == 0 {
		d.msg = d.msg[:0]
	}
	for {
		if d.remain == 0 && (d.msgOp == 0 || !d.frame.fin) {
			ev, ok := d.header()
			if !ok || ev.Kind != EventMore {
				return ev
			}
			if d.remain > 0 || !d.frame.fin || d.msgOp == 0 {
				continue
			}
			// An empty final frame: the message ends here.
		}
		if d.remain > 0 {
			avail := int64(d.rend - d.rpos)
			if avail == 0 {
				return Event{Kind: EventMore}
			}
			k := min(avail, d.remain)
			p := d.rbuf[d.rpos : d.rpos+int(k)]
			d.maskPos = mask(d.frame.key, d.maskPos, p)
			d.rpos += int(k)
			d.remain -= k
			if d.msgOp == opText && !d.utf8.write(p) {
				return d.fail(StatusInvalidFramePayloadData, "invalid UTF-8 in text message")
			}
			if d.remain == 0 && d.frame.fin && len(d.msg) == 0 && int64(len(p)) == d.msgLen {
				// The whole message in one piece: no copy.
				return d.end(p)
			}
			d.msg = append(d.msg, p...)
			if d.remain > 0 || !d.frame.fin {
				continue
			}
		}
		return d.end(d.msg)
	}
}

// end finishes the message whose payload is p.
func (d *Decoder) end(p []byte) Event {
	op := d.msgOp
	if op == opText && !d.utf8.done() {
		return d.fail(StatusInvalidFramePayloadData, "text message ends inside a UTF-8 sequence")
	}
	d.msgOp, d.msgLen = 0, 0
	return Event{Kind: EventMessage, Type: MessageType(op), Data: p}
}

// header decodes the next frame header. For a data frame it sets up the
// frame and returns (EventMore, true); a control frame is decoded whole
// (it is taken only once all of it is buffered) and returned as its event.
// ok is false when the header or control frame is not all buffered yet.
func (d *Decoder) header() (Event, bool) {
	b := d.rbuf
	if b == nil {
		return Event{Kind: EventMore}, false
	}
	h, n, err := parseHeader(b[d.rpos:d.rend])
	if err == errShortHeader {
		return Event{Kind: EventMore}, false
	}
	if err != nil {
		return d.fail(StatusProtocolError, err.Error()), true
	}
	if code, reason := headerRule(h, true, d.msgOp, 0); code != 0 {
		return d.fail(code, reason), true
	}
	if h.op.IsControl() {
		if d.rend-d.rpos < n+int(h.length) {
			return Event{Kind: EventMore}, false
		}
		p := b[d.rpos+n : d.rpos+n+int(h.length)]
		d.rpos += n + int(h.length)
		mask(h.key, 0, p)
		switch h.op {
		case opPing:
			return Event{Kind: EventPing, Data: p}, true
		case opPong:
			return Event{Kind: EventPong, Data: p}, true
		}
		code, reason, err := parseClosePayload(p)
		if err != nil {
			status := StatusProtocolError
			if len(p) >= 2 && StatusCode(int(p[0])<<8|int(p[1])).validOnWire() {
				status = StatusInvalidFramePayloadData
			}
			return d.fail(status, err.Error()), true
		}
		return Event{Kind: EventClose, Code: code, Reason: reason}, true
	}
	d.rpos += n
	if h.op != opContinuation {
		d.msgOp = h.op
	}
	d.msgLen += h.length
	if d.msgLen > d.readLimit {
		return d.fail(StatusMessageTooBig, fmt.Sprintf("message larger than the limit of %d bytes", d.readLimit)), true
	}
	d.frame, d.remain, d.maskPos = h, h.length, 0
	return Event{Kind: EventMore}, true
}

// AppendFrame appends a whole unmasked (server) data frame carrying p.
func AppendFrame(dst []byte, typ MessageType, p []byte) []byte {
	dst = appendHeader(dst, header{fin: true, op: opcode(typ), length: int64(len(p))})
	return append(dst, p...)
}

// AppendHeader appends the header of an unmasked (server) data frame of
// n payload bytes; the payload goes right after it.
func AppendHeader(dst []byte, typ MessageType, n int) []byte {
	return appendHeader(dst, header{fin: true, op: opcode(typ), length: int64(n)})
}

// AppendPing, AppendPong and AppendClose append unmasked control frames:
// a ping with no payload, a pong echoing p (at most 125 bytes), a close
// frame with code and reason (cut to fit; StatusNoStatusRcvd: no payload).
func AppendPing(dst []byte) []byte {
	return appendHeader(dst, header{fin: true, op: opPing})
}

func AppendPong(dst, p []byte) []byte {
	p = p[:min(len(p), maxControlPayload)]
	dst = appendHeader(dst, header{fin: true, op: opPong, length: int64(len(p))})
	return append(dst, p...)
}

func AppendClose(dst []byte, code StatusCode, reason string) []byte {
	var p []byte
	if code != StatusNoStatusRcvd {
		if !code.validOnWire() {
			code = StatusInternalError
		}
		var tmp [maxControlPayload]byte
		p = appendClosePayload(tmp[:0], code, reason)
	}
	dst = appendHeader(dst, header{fin: true, op: opClose, length: int64(len(p))})
	return append(dst, p...)
}

// UpgradeDetached runs the server side of the opening handshake as Upgrade
// does (the same checks and refusals: origin, version, subprotocol
// choice), but instead of a Conn it returns the hijacked connection, with
// the bytes the client sent behind its handshake already moved into d, so
// that an event loop can take the socket over. net/http's buffers of the
// connection are not kept: the returned nc and d are all that is left.
//
// permessage-deflate is never negotiated (opts.Compression is ignored):
// the Decoder does not inflate. opts.KeepAlive and opts.WriteTimeout are
// the event loop's to apply.
func UpgradeDetached(w http.ResponseWriter, r *http.Request, opts *AcceptOptions, d *Decoder) (nc net.Conn, subprotocol string, err error) {
	if opts == nil {
		opts = &AcceptOptions{}
	}
	o := *opts
	o.Compression = nil
	resp, herr := prepareResponse(r, &o)
	if herr != nil {
		if herr.StatusCode == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		if herr.StatusCode == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", http.MethodGet)
		}
		http.Error(w, herr.Reason, herr.StatusCode)
		return nil, "", herr
	}
	if resp.h2 {
		// h2: an HTTP/2 stream has no socket of its own to detach.
		herr := &HandshakeError{StatusCode: http.StatusHTTPVersionNotSupported, Reason: "this endpoint takes WebSocket over HTTP/1.1 only"}
		http.Error(w, herr.Reason, herr.StatusCode)
		return nil, "", herr
	}
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot take over the connection for WebSocket", http.StatusInternalServerError)
		return nil, "", fmt.Errorf("ws: hijack: %w", err)
	}
	var b strings.Builder
	b.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ")
	b.WriteString(resp.accept)
	b.WriteString("\r\n")
	if resp.subprotocol != "" {
		b.WriteString("Sec-WebSocket-Protocol: " + resp.subprotocol + "\r\n")
	}
	for k, vs := range o.Header {
		for _, v := range vs {
			if strings.ContainsAny(k+v, "\r\n") {
				continue
			}
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	if _, err := nc.Write([]byte(b.String())); err != nil {
		nc.Close()
		return nil, "", fmt.Errorf("ws: write handshake response: %w", err)
	}
	if n := brw.Reader.Buffered(); n > 0 {
		if n > bufSize {
			nc.Close()
			return nil, "", errors.New("ws: too much data behind the handshake")
		}
		p, _ := brw.Reader.Peek(n)
		d.Advance(copy(d.Space(), p))
	}
	if d.readLimit == 0 {
		d.readLimit = opts.ReadLimit
		if d.readLimit <= 0 {
			d.readLimit = DefaultReadLimit
		}
	}
	return nc, resp.subprotocol, nil
}
