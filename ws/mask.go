package ws

import (
	"encoding/binary"
	"math/bits"
)

// mask XORs b with the masking key, starting at byte pos of the key stream
// (pos is the number of payload bytes already masked in this frame). It
// returns the position after b, so a payload can be masked in pieces.
// The bulk of the work goes a machine word at a time.
func mask(key uint32, pos int, b []byte) int {
	// Rotate the key so that its first byte lines up with b[0].
	k := bits.RotateLeft32(key, -8*(pos&3))
	if len(b) >= 16 {
		k64 := uint64(k) | uint64(k)<<32
		for len(b) >= 32 {
			v0 := binary.LittleEndian.Uint64(b) ^ k64
			v1 := binary.LittleEndian.Uint64(b[8:]) ^ k64
			v2 := binary.LittleEndian.Uint64(b[16:]) ^ k64
			v3 := binary.LittleEndian.Uint64(b[24:]) ^ k64
			binary.LittleEndian.PutUint64(b, v0)
			binary.LittleEndian.PutUint64(b[8:], v1)
			binary.LittleEndian.PutUint64(b[16:], v2)
			binary.LittleEndian.PutUint64(b[24:], v3)
			b = b[32:]
			pos += 32
		}
		for len(b) >= 8 {
			binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k64)
			b = b[8:]
			pos += 8
		}
	}
	for len(b) >= 4 {
		binary.LittleEndian.PutUint32(b, binary.LittleEndian.Uint32(b)^k)
		b = b[4:]
		pos += 4
	}
	for i := range b {
		b[i] ^= byte(k)
		k = bits.RotateLeft32(k, -8)
	}
	return pos + len(b)
}
