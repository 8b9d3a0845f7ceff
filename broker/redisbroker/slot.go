package redisbroker

// keySlot is the Redis Cluster hash slot of a key whose hash tag is tag:
// CRC16 (XMODEM: polynomial 0x1021, initial 0) modulo 16384, as the
// cluster specification gives it. The broker needs it to keep one
// sharded Pub/Sub connection per slot; TestKeySlot checks it against
// CLUSTER KEYSLOT of a real cluster.
func keySlot(tag string) uint16 {
	var crc uint16
	for i := 0; i < len(tag); i++ {
		crc ^= uint16(tag[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}
