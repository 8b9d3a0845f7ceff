package ws

import (
	"encoding/binary"
	"errors"
)

// MessageType is the type of a data message: text (UTF-8) or binary.
// Control frames are not messages: the connection handles them itself
// (Ping sends one), so no call takes a control opcode.
type MessageType byte

// The data message types; their values are those of the frame opcodes.
const (
	MessageText   MessageType = 1
	MessageBinary MessageType = 2
)

func (t MessageType) String() string {
	switch t {
	case MessageText:
		return "text"
	case MessageBinary:
		return "binary"
	}
	return "MessageType(" + itoa(int(t)) + ")"
}

// valid reports whether t is text or binary, the only types a message
// can have: anything else came from a conversion.
func (t MessageType) valid() bool { return t == MessageText || t == MessageBinary }

// opcode is the kind of a WebSocket frame (RFC 6455, section 5.2).
type opcode byte

// Opcodes defined by RFC 6455. The others are reserved.
const (
	opContinuation opcode = 0x0
	opText         opcode = 0x1
	opBinary       opcode = 0x2
	opClose        opcode = 0x8
	opPing         opcode = 0x9
	opPong         opcode = 0xA
)

func (op opcode) String() string {
	switch op {
	case opContinuation:
		return "continuation"
	case opText:
		return "text"
	case opBinary:
		return "binary"
	case opClose:
		return "close"
	case opPing:
		return "ping"
	case opPong:
		return "pong"
	}
	return "reserved(" + itoa(int(op)) + ")"
}

// IsControl reports whether op is a control opcode (close, ping, pong or a
// reserved control opcode).
func (op opcode) IsControl() bool { return op&0x8 != 0 }

func (op opcode) isReserved() bool {
	return (op > opBinary && op < opClose) || op > opPong
}

// Header bits of the first byte.
const (
	bitFin  = 0x80
	bitRsv1 = 0x40
	bitRsv2 = 0x20
	bitRsv3 = 0x10
	bitMask = 0x80
)

// maxHeaderSize is the longest frame header: 2 bytes, 8 of extended
// length and 4 of masking key.
const maxHeaderSize = 14

// maxControlPayload is the largest payload of a control frame.
const maxControlPayload = 125

// header is a decoded frame header. The codec in this file does no I/O, so
// that a blocking reader and an event loop can drive it alike.
type header struct {
	fin    bool
	rsv    byte // the three RSV bits, in their wire positions (0x70 mask)
	op     opcode
	masked bool
	key    uint32 // masking key, in wire byte order read as little endian
	length int64
}

// errShortHeader means the buffer holds only part of a header.
var errShortHeader = errors.New("short frame header")

// parseHeader decodes the frame header at the start of b. It returns the
// header size, or errShortHeader when b is too short to tell. It checks only
// what the wire format itself forbids (a 64-bit length with its top bit set,
// a non-minimal length encoding is allowed by RFC 6455); the protocol rules
// (masking direction, RSV bits, control frame limits) belong to the caller.
func parseHeader(b []byte) (header, int, error) {
	var h header
	if len(b) < 2 {
		return h, 0, errShortHeader
	}
	h.fin = b[0]&bitFin != 0
	h.rsv = b[0] & (bitRsv1 | bitRsv2 | bitRsv3)
	h.op = opcode(b[0] & 0x0f)
	h.masked = b[1]&bitMask != 0
	n := 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return h, 0, errShortHeader
		}
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, errShortHeader
		}
		v := binary.BigEndian.Uint64(b[2:])
		if v>>63 != 0 {
			return h, 0, errors.New("frame length has its most significant bit set")
		}
		h.length = int64(v)
		n = 10
	default:
		h.length = int64(l)
	}
	if h.masked {
		if len(b) < n+4 {
			return h, 0, errShortHeader
		}
		h.key = binary.LittleEndian.Uint32(b[n:])
		n += 4
	}
	return h, n, nil
}

// appendHeader appends the wire form of h to dst, using the shortest
// length encoding.
func appendHeader(dst []byte, h header) []byte {
	b0 := byte(h.op) | h.rsv
	if h.fin {
		b0 |= bitFin
	}
	var b1 byte
	if h.masked {
		b1 = bitMask
	}
	switch {
	case h.length <= 125:
		dst = append(dst, b0, b1|byte(h.length))
	case h.length <= 0xffff:
		dst = append(dst, b0, b1|126, byte(h.length>>8), byte(h.length))
	default:
		dst = append(dst, b0, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(h.length))
	}
	if h.masked {
		dst = binary.LittleEndian.AppendUint32(dst, h.key)
	}
	return dst
}

// headerLen is the size of a header whose second byte is b1.
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n = 4
	case 127:
		n = 10
	}
	if b1&bitMask != 0 {
		n += 4
	}
	return n
}

// itoa avoids strconv in the few error paths that format small numbers.
func itoa(v int) string {
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := v < 0
	if neg {
		v = -v
	}
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
