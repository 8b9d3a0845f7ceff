package ws

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// evStreamConn is a net.Conn whose reads replay one stream of frames forever,
// so that a benchmark of the read path measures the codec, not a socket.
type evStreamConn struct {
	net.Conn
	stream []byte
	pos    int
}

func (c *evStreamConn) Read(p []byte) (int, error) {
	n := copy(p, c.stream[c.pos:])
	c.pos = (c.pos + n) % len(c.stream)
	return n, nil
}
func (c *evStreamConn) Close() error                     { return nil }
func (c *evStreamConn) SetDeadline(time.Time) error      { return nil }
func (c *evStreamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *evStreamConn) SetWriteDeadline(time.Time) error { return nil }

// clientFrames is n masked text frames of size bytes each.
func clientFrames(n, size int) []byte {
	var b []byte
	p := bytes.Repeat([]byte("héllo, "), size/8+1)[:size]
	for range n {
		b = appendHeader(b, header{fin: true, op: opText, masked: true, key: 0x01020304, length: int64(size)})
		m := append([]byte(nil), p...)
		mask(0x01020304, 0, m)
		b = append(b, m...)
	}
	return b
}

// BenchmarkReadMessageCodec is the blocking read path (frame header,
// header rules, unmasking, UTF-8) without a socket: the cost that the
// Decoder's shared headerRule must not raise.
func BenchmarkReadMessageCodec(b *testing.B) {
	for _, size := range []int{16, 1024} {
		b.Run(itoa(size), func(b *testing.B) {
			c := newConn(&evStreamConn{stream: clientFrames(64, size)}, true, 0)
			var buf []byte
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				_, msg, err := c.readMessage(buf[:0])
				if err != nil {
					b.Fatal(err)
				}
				buf = msg
			}
		})
	}
}
