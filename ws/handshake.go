package ws

import (
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// acceptGUID is the fixed string of RFC 6455 section 1.3.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey returns the Sec-WebSocket-Accept value for a
// Sec-WebSocket-Key.
func AcceptKey(key string) string {
	h := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// HandshakeError is a refused opening handshake: on the server, the
// status it answered with; on the client, the status the server answered
// with (and the start of its body, as the reason).
type HandshakeError struct {
	StatusCode int
	Reason     string
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("ws: handshake refused: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Reason)
}

// trimBothOWS trims the optional white space of HTTP (RFC 9110 section 5.6.3),
// spaces and tabs: not strings.TrimSpace, which also takes Unicode spaces
// such as U+00A0 and would let "websocket\u00a0" pass for the token.
func trimBothOWS(s string) string { return strings.Trim(s, " \t") }

// headerContainsToken reports whether any of the comma-separated values
// of header name holds token, compared without regard to case.
func headerContainsToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for elem := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(trimBothOWS(elem), token) {
				return true
			}
		}
	}
	return false
}

// headerTokens lists the comma-separated values of header name.
func headerTokens(h http.Header, name string) []string {
	var toks []string
	for _, v := range h.Values(name) {
		for elem := range strings.SplitSeq(v, ",") {
			if t := trimBothOWS(elem); t != "" {
				toks = append(toks, t)
			}
		}
	}
	return toks
}

// checkRequest validates an opening handshake request (RFC 6455 section
// 4.2.1) and returns the refusal's status and reason, or 0.
func checkRequest(r *http.Request) (int, string) {
	switch {
	case r.Method != http.MethodGet:
		return http.StatusMethodNotAllowed, "a WebSocket handshake must use GET, not " + r.Method
	case !r.ProtoAtLeast(1, 1):
		return http.StatusBadRequest, "a WebSocket handshake needs HTTP/1.1 or later, not " + r.Proto
	case !headerContainsToken(r.Header, "Upgrade", "websocket"):
		return http.StatusBadRequest, `missing "Upgrade: websocket": this is a WebSocket endpoint`
	case !headerContainsToken(r.Header, "Connection", "Upgrade"):
		return http.StatusBadRequest, `missing "Connection: Upgrade"`
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return http.StatusUpgradeRequired, "unsupported Sec-WebSocket-Version " + fmt.Sprintf("%q", r.Header.Get("Sec-WebSocket-Version")) + ": this server speaks version 13"
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return http.StatusBadRequest, "exactly one Sec-WebSocket-Key is required"
	}
	if b, err := base64.StdEncoding.DecodeString(keys[0]); err != nil || len(b) != 16 {
		return http.StatusBadRequest, "Sec-WebSocket-Key must be 16 bytes in base64"
	}
	return 0, ""
}

// isExtendedConnect reports whether r asks for a WebSocket over an HTTP/2
// (or later) stream: RFC 8441's extended CONNECT, which Go's server shows
// as r.Method CONNECT with the :protocol pseudo-header kept in r.Header.
func isExtendedConnect(r *http.Request) bool {
	return r.ProtoMajor >= 2 && r.Method == http.MethodConnect && r.Header.Get(":protocol") != ""
}

// checkRequestH2 validates an extended CONNECT opening handshake (RFC 8441
// section 5): :protocol websocket and version 13. It has no
// Sec-WebSocket-Key, no Upgrade and no Connection header (HTTP/2 forbids
// them); the rest (Origin, subprotocols, extensions) is as over HTTP/1.1.
func checkRequestH2(r *http.Request) (int, string) {
	switch {
	case !strings.EqualFold(r.Header.Get(":protocol"), "websocket"):
		return http.StatusBadRequest, "extended CONNECT for protocol " + fmt.Sprintf("%q", r.Header.Get(":protocol")) + ": this is a WebSocket endpoint"
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return http.StatusUpgradeRequired, "unsupported Sec-WebSocket-Version " + fmt.Sprintf("%q", r.Header.Get("Sec-WebSocket-Version")) + ": this server speaks version 13"
	}
	return 0, ""
}

// OriginAllowed reports whether Upgrade accepts r's origin: a request with
// no Origin, one whose Origin host is the request's Host, and one that
// matches a pattern of allowed. Patterns are matched with path.Match,
// without regard to case, against the whole origin
// ("https://*.example.com") and against its host ("*.example.com"); "*"
// allows every origin. Handlers that serve the same clients without
// WebSocket (long polling) use it to apply the same rule.
func OriginAllowed(r *http.Request, allowed []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	origin, host := strings.ToLower(origin), strings.ToLower(u.Host)
	for _, p := range allowed {
		p = strings.ToLower(p)
		if p == "*" || p == origin || p == host {
			return true
		}
		if ok, _ := path.Match(p, origin); ok {
			return true
		}
		if ok, _ := path.Match(p, host); ok {
			return true
		}
	}
	return false
}

// SelectSubprotocol returns the subprotocol that Upgrade chooses for r:
// the first one the client offered (in Sec-WebSocket-Protocol, tokens
// trimmed of spaces and tabs only) that is in supported, or "" for none.
// A handler that must know the subprotocol before upgrading (to set up
// the session that speaks it) calls this, and so agrees with Upgrade.
func SelectSubprotocol(r *http.Request, supported []string) string {
	for _, offered := range headerTokens(r.Header, "Sec-WebSocket-Protocol") {
		for _, s := range supported {
			if offered == s {
				return s
			}
		}
	}
	return ""
}
