package ws

import (
	"errors"
	"strconv"
	"strings"
)

// extension is one element of a Sec-WebSocket-Extensions list: a name and
// its parameters, in order (RFC 6455 section 9.1).
type extension struct {
	name   string
	params []extensionParam
}

type extensionParam struct {
	name, value string
	hasValue    bool
}

// parseExtensions parses the values of the Sec-WebSocket-Extensions
// headers. Parameter values may be tokens or quoted strings.
func parseExtensions(values []string) ([]extension, error) {
	var exts []extension
	for _, v := range values {
		s := v
		for {
			s = trimOWS(s)
			if s == "" {
				break
			}
			if s[0] == ',' { // empty list elements are allowed
				s = s[1:]
				continue
			}
			var e extension
			var ok bool
			if e.name, s, ok = cutToken(s); !ok {
				return nil, errors.New("ws: malformed extension name in " + strconv.Quote(v))
			}
			for {
				s = trimOWS(s)
				if s == "" || s[0] == ',' {
					break
				}
				if s[0] != ';' {
					return nil, errors.New("ws: malformed extension list " + strconv.Quote(v))
				}
				s = trimOWS(s[1:])
				var p extensionParam
				if p.name, s, ok = cutToken(s); !ok {
					return nil, errors.New("ws: malformed extension parameter in " + strconv.Quote(v))
				}
				s = trimOWS(s)
				if s != "" && s[0] == '=' {
					s = trimOWS(s[1:])
					p.hasValue = true
					if s != "" && s[0] == '"' {
						p.value, s, ok = cutQuoted(s)
					} else {
						p.value, s, ok = cutToken(s)
					}
					if !ok {
						return nil, errors.New("ws: malformed extension parameter value in " + strconv.Quote(v))
					}
				}
				e.params = append(e.params, p)
			}
			exts = append(exts, e)
		}
	}
	return exts, nil
}

func trimOWS(s string) string { return strings.TrimLeft(s, " \t") }

// isTokenChar reports whether c may appear in an HTTP token (RFC 7230).
func isTokenChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	return !strings.ContainsRune("\"(),/:;<=>?@[\\]{}", rune(c))
}

func cutToken(s string) (tok, rest string, ok bool) {
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return s[:i], s[i:], i > 0
}

// cutQuoted reads a quoted-string; RFC 6455 asks that its content, once
// unescaped, be a token too.
func cutQuoted(s string) (val, rest string, ok bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			v := b.String()
			if _, r, ok := cutToken(v); !ok || r != "" {
				return "", "", false
			}
			return v, s[i+1:], true
		case '\\':
			i++
			if i == len(s) {
				return "", "", false
			}
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}

// deflateParams are the negotiated parameters of permessage-deflate
// (RFC 7692 section 7.1).
type deflateParams struct {
	serverNoContextTakeover bool
	clientNoContextTakeover bool
	serverMaxWindowBits     int // 0: not given (15)
	clientMaxWindowBits     int // 0: not given; -1: given without a value (offer only)
}

const deflateName = "permessage-deflate"

// parseDeflateParams validates the parameters of one permessage-deflate
// element: each at most once, known names only, window bits 8 to 15. A
// client_max_window_bits without a value is valid only in an offer.
func parseDeflateParams(params []extensionParam, offer bool) (deflateParams, error) {
	var d deflateParams
	seen := map[string]bool{}
	for _, p := range params {
		name := strings.ToLower(p.name)
		if seen[name] {
			return d, errors.New("ws: permessage-deflate parameter " + name + " given twice")
		}
		seen[name] = true
		switch name {
		case "server_no_context_takeover", "client_no_context_takeover":
			if p.hasValue {
				return d, errors.New("ws: permessage-deflate parameter " + name + " takes no value")
			}
			if name == "server_no_context_takeover" {
				d.serverNoContextTakeover = true
			} else {
				d.clientNoContextTakeover = true
			}
		case "server_max_window_bits", "client_max_window_bits":
			bits := -1
			if p.hasValue {
				// 1*DIGIT without leading zeros (RFC 7692 section
				// 7.1.2): Atoi alone would take "+10".
				n, err := strconv.Atoi(p.value)
				if err != nil || n < 8 || n > 15 || p.value[0] < '1' || p.value[0] > '9' {
					return d, errors.New("ws: permessage-deflate " + name + " must be 8 to 15, not " + strconv.Quote(p.value))
				}
				bits = n
			} else if name == "server_max_window_bits" || !offer {
				return d, errors.New("ws: permessage-deflate " + name + " needs a value")
			}
			if name == "server_max_window_bits" {
				d.serverMaxWindowBits = bits
			} else {
				d.clientMaxWindowBits = bits
			}
		default:
			return d, errors.New("ws: unknown permessage-deflate parameter " + strconv.Quote(p.name))
		}
	}
	return d, nil
}

// String formats the parameters as a Sec-WebSocket-Extensions element.
func (d deflateParams) String() string {
	s := deflateName
	if d.serverNoContextTakeover {
		s += "; server_no_context_takeover"
	}
	if d.clientNoContextTakeover {
		s += "; client_no_context_takeover"
	}
	if d.serverMaxWindowBits > 0 {
		s += "; server_max_window_bits=" + strconv.Itoa(d.serverMaxWindowBits)
	}
	switch {
	case d.clientMaxWindowBits > 0:
		s += "; client_max_window_bits=" + strconv.Itoa(d.clientMaxWindowBits)
	case d.clientMaxWindowBits < 0:
		s += "; client_max_window_bits"
	}
	return s
}

// negotiateDeflate picks the first acceptable permessage-deflate offer and
// returns the parameters of the response. With takeover false the server
// asks both sides to drop their context after each message, which keeps
// compression state out of idle connections. Offers with unknown or
// invalid parameters are declined, as RFC 7692 section 5 asks.
func negotiateDeflate(exts []extension, takeover bool) (deflateParams, bool) {
	for _, e := range exts {
		if !strings.EqualFold(e.name, deflateName) {
			continue
		}
		offer, err := parseDeflateParams(e.params, true)
		if err != nil {
			continue
		}
		resp := deflateParams{
			serverNoContextTakeover: offer.serverNoContextTakeover || !takeover,
			clientNoContextTakeover: offer.clientNoContextTakeover || !takeover,
			// A smaller server window is accepted by never compressing
			// what this side sends: compress/flate always uses 32 KiB.
			serverMaxWindowBits: offer.serverMaxWindowBits,
		}
		if offer.clientMaxWindowBits > 0 {
			resp.clientMaxWindowBits = offer.clientMaxWindowBits
		}
		return resp, true
	}
	return deflateParams{}, false
}
