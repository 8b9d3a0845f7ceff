package ws

import "unicode/utf8"

// utf8Validator checks that a text message is valid UTF-8 while it arrives
// in pieces (frames, or reads within a frame). It fails on the first byte
// that can never be part of valid UTF-8, not only at the end of the
// message, as RFC 6455 section 8.1 asks.
type utf8Validator struct {
	pend [utf8.UTFMax]byte // bytes of an incomplete sequence carried over
	n    int               // len of pend in use
}

// write validates the next piece of the message. It reports false once the
// stream cannot be valid UTF-8.
func (v *utf8Validator) write(p []byte) bool {
	if v.n > 0 {
		// Complete the sequence that the last piece cut.
		need := seqLen(v.pend[0])
		for v.n < need && len(p) > 0 {
			v.pend[v.n] = p[0]
			v.n++
			p = p[1:]
			if !validPrefix(v.pend[:v.n]) {
				return false
			}
		}
		if v.n < need {
			return true
		}
		v.n = 0
	}
	// Set aside a sequence cut by the end of p, then let utf8.Valid,
	// which has its own ASCII fast path, check the rest in one pass.
	cut := len(p)
	for i := len(p) - 1; i >= 0 && i >= len(p)-3; i-- {
		if c := p[i]; c < utf8.RuneSelf {
			break
		} else if c >= 0xc0 {
			if len(p)-i < seqLen(c) {
				cut = i
			}
			break
		}
	}
	if !utf8.Valid(p[:cut]) {
		return false
	}
	if tail := p[cut:]; len(tail) > 0 {
		if !validPrefix(tail) {
			return false
		}
		v.n = copy(v.pend[:], tail)
	}
	return true
}

// done reports whether the message ended on a complete sequence, and
// resets v for the next message.
func (v *utf8Validator) done() bool {
	ok := v.n == 0
	v.n = 0
	return ok
}

// seqLen is the length of the UTF-8 sequence that starts with b, or 1 for a
// byte that cannot start one (validPrefix rejects those).
func seqLen(b byte) int {
	switch {
	case b >= 0xc2 && b <= 0xdf:
		return 2
	case b >= 0xe0 && b <= 0xef:
		return 3
	case b >= 0xf0 && b <= 0xf4:
		return 4
	}
	return 1
}

// validPrefix reports whether p (shorter than the sequence its first byte
// starts) can still be completed into valid UTF-8: the ranges of the second
// byte exclude overlong forms, surrogates and code points past U+10FFFF.
func validPrefix(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	lo, hi := byte(0x80), byte(0xbf)
	switch b := p[0]; {
	case b >= 0xc2 && b <= 0xdf:
	case b == 0xe0:
		lo = 0xa0
	case b == 0xed:
		hi = 0x9f
	case b >= 0xe1 && b <= 0xef:
	case b == 0xf0:
		lo = 0x90
	case b == 0xf4:
		hi = 0x8f
	case b >= 0xf1 && b <= 0xf3:
	default:
		return false
	}
	if len(p) > 1 && (p[1] < lo || p[1] > hi) {
		return false
	}
	for i := 2; i < len(p); i++ {
		if p[i] < 0x80 || p[i] > 0xbf {
			return false
		}
	}
	return len(p) < seqLen(p[0])+1
}
