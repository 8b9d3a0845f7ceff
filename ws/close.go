package ws

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// StatusCode is a close status code (RFC 6455, section 7.4).
type StatusCode int

// Status codes registered by RFC 6455 and IANA. Codes 1005, 1006 and 1015
// are never sent on the wire: they describe what happened locally.
const (
	StatusNormalClosure           StatusCode = 1000
	StatusGoingAway               StatusCode = 1001
	StatusProtocolError           StatusCode = 1002
	StatusUnsupportedData         StatusCode = 1003
	StatusNoStatusRcvd            StatusCode = 1005
	StatusAbnormalClosure         StatusCode = 1006
	StatusInvalidFramePayloadData StatusCode = 1007
	StatusPolicyViolation         StatusCode = 1008
	StatusMessageTooBig           StatusCode = 1009
	StatusMandatoryExtension      StatusCode = 1010
	StatusInternalError           StatusCode = 1011
	StatusServiceRestart          StatusCode = 1012
	StatusTryAgainLater           StatusCode = 1013
	StatusBadGateway              StatusCode = 1014
	StatusTLSHandshake            StatusCode = 1015
)

func (s StatusCode) String() string {
	switch s {
	case StatusNormalClosure:
		return "normal closure"
	case StatusGoingAway:
		return "going away"
	case StatusProtocolError:
		return "protocol error"
	case StatusUnsupportedData:
		return "unsupported data"
	case StatusNoStatusRcvd:
		return "no status received"
	case StatusAbnormalClosure:
		return "abnormal closure"
	case StatusInvalidFramePayloadData:
		return "invalid frame payload data"
	case StatusPolicyViolation:
		return "policy violation"
	case StatusMessageTooBig:
		return "message too big"
	case StatusMandatoryExtension:
		return "mandatory extension"
	case StatusInternalError:
		return "internal error"
	case StatusServiceRestart:
		return "service restart"
	case StatusTryAgainLater:
		return "try again later"
	case StatusBadGateway:
		return "bad gateway"
	case StatusTLSHandshake:
		return "TLS handshake"
	}
	return "status " + itoa(int(s))
}

// validOnWire reports whether s may appear in a close frame: the codes
// defined for use (1000-1003, 1007-1014), and the ranges for libraries
// and applications (3000-4999).
func (s StatusCode) validOnWire() bool {
	switch {
	case s >= 1000 && s <= 1003, s >= 1007 && s <= 1014:
		return true
	case s >= 3000 && s <= 4999:
		return true
	}
	return false
}

// CloseError says how a connection ended: the status and reason that the
// peer sent in its close frame, or, with Local set, a status that this
// side decided: the one it sent when it failed the connection over the
// peer's protocol violation, or 1006 (abnormal closure, never sent) when
// the connection ended without a closing handshake.
type CloseError struct {
	Code   StatusCode
	Reason string
	Local  bool // the status comes from this side, not from a peer's close frame
}

func (e *CloseError) Error() string {
	who := "peer closed"
	switch {
	case e.Local && e.Code == StatusAbnormalClosure:
		who = "connection lost"
	case e.Local:
		who = "closed by this side"
	}
	if e.Reason == "" {
		return fmt.Sprintf("ws: %s: %d (%v)", who, int(e.Code), e.Code)
	}
	return fmt.Sprintf("ws: %s: %d (%v): %s", who, int(e.Code), e.Code, e.Reason)
}

// CloseStatus returns the status code of the *CloseError in err's chain,
// or -1 if there is none.
func CloseStatus(err error) StatusCode {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

// ErrClosed is returned by writes after the close handshake has started
// and by every call after the connection is closed.
var ErrClosed = errors.New("ws: connection closed")

// maxCloseReason is the longest reason that fits in a control frame.
const maxCloseReason = maxControlPayload - 2

// parseClosePayload decodes and validates a close frame's payload.
func parseClosePayload(p []byte) (StatusCode, string, error) {
	switch {
	case len(p) == 0:
		return StatusNoStatusRcvd, "", nil
	case len(p) == 1:
		return 0, "", errors.New("close frame payload of 1 byte")
	}
	code := StatusCode(binary.BigEndian.Uint16(p))
	if !code.validOnWire() {
		return 0, "", fmt.Errorf("invalid close code %d", int(code))
	}
	if !utf8.Valid(p[2:]) {
		return 0, "", errors.New("close reason is not valid UTF-8")
	}
	return code, string(p[2:]), nil
}

// closePayload returns a close frame's payload.
func closePayload(code StatusCode, reason string) []byte {
	return appendClosePayload(make([]byte, 0, maxControlPayload), code, reason)
}

// appendClosePayload appends a close payload, cutting the reason on a rune
// boundary so that the frame stays within the control frame limit.
func appendClosePayload(dst []byte, code StatusCode, reason string) []byte {
	if code == StatusNoStatusRcvd {
		return dst
	}
	// The peer fails the connection with 1007 over a reason that is not
	// UTF-8: send the replacement character instead.
	reason = strings.ToValidUTF8(reason, "\uFFFD")
	if len(reason) > maxCloseReason {
		n := maxCloseReason
		for n > 0 && !utf8.RuneStart(reason[n]) {
			n--
		}
		reason = reason[:n]
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}
