package main

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// conn is the load generator's side of one connection: a WebSocket
// client written on a raw socket (or, for the raw TCP server, the same
// messages as a 4-byte length and the payload), so that every server
// meets the same client, and one that costs little CPU: a frame is masked
// once and written many times where the payload does not change.
type conn struct {
	nc      net.Conn
	br      *bufio.Reader
	raw     bool
	deflate bool // permessage-deflate negotiated
	mask    [4]byte
	buf     []byte // payload read, reused
	hdr     [14]byte

	inflated int64 // messages read compressed

	inflater io.ReadCloser
	out      bytes.Buffer
	src      bytes.Reader
}

const (
	opText   = 1
	opBinary = 2
	opClose  = 8
	opPing   = 9
	opPong   = 10
)

const deflateOffer = "permessage-deflate; client_no_context_takeover; server_no_context_takeover"

// dial opens a connection to path ("/echo" or "/broadcast") on addr.
func dial(addr, path string, raw, deflate bool, timeout time.Duration) (*conn, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10), raw: raw}
	_ = nc.SetDeadline(time.Now().Add(timeout))
	defer func() { _ = nc.SetDeadline(time.Time{}) }()
	if raw {
		mode := byte('e')
		if path == "/broadcast" {
			mode = 'b'
		}
		if _, err := nc.Write([]byte{mode}); err != nil {
			nc.Close()
			return nil, err
		}
		return c, nil
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	_, _ = rand.Read(c.mask[:])
	k := base64.StdEncoding.EncodeToString(key[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + k + "\r\n"
	if deflate {
		req += "Sec-WebSocket-Extensions: " + deflateOffer + "\r\n"
	}
	if _, err := io.WriteString(nc, req+"\r\n"); err != nil {
		nc.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		nc.Close()
		return nil, err
	}
	h := sha1.Sum([]byte(k + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(h[:]) {
		nc.Close()
		return nil, fmt.Errorf("handshake: %s", resp.Status)
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); strings.HasPrefix(ext, "permessage-deflate") {
		if !deflate {
			nc.Close()
			return nil, fmt.Errorf("handshake: extension %q not offered", ext)
		}
		if strings.Contains(ext, "max_window_bits") {
			nc.Close()
			return nil, fmt.Errorf("handshake: extension parameters %q not supported by this client", ext)
		}
		c.deflate = true
	}
	return c, nil
}

// frame appends one message to dst as the client sends it. With
// compressed set, payload is already deflated and the frame carries RSV1.
func (c *conn) frame(dst []byte, op byte, payload []byte, compressed bool) []byte {
	if c.raw {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
		return append(dst, payload...)
	}
	b0 := 0x80 | op
	if compressed {
		b0 |= 0x40
	}
	n := len(payload)
	switch {
	case n < 126:
		dst = append(dst, b0, 0x80|byte(n))
	case n < 1<<16:
		dst = append(dst, b0, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, c.mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	for i := range payload {
		dst[start+i] ^= c.mask[i&3]
	}
	return dst
}

// compress deflates one message as permessage-deflate without context
// takeover sends it: a fresh compressor, the final empty stored block's
// tail removed.
func compress(p []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestSpeed)
	_, _ = w.Write(p)
	_ = w.Flush()
	out := b.Bytes()
	return bytes.TrimSuffix(out, []byte{0, 0, 0xff, 0xff})
}

var errClosed = errors.New("peer closed")

// read returns the next data message's payload (inflated if it was
// compressed, its fragments joined), valid until the next read. It
// answers nothing: the servers under test never ping.
func (c *conn) read() ([]byte, error) {
	if c.raw {
		var h [4]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return nil, err
		}
		return c.appendPayload(c.buf[:0], int(binary.BigEndian.Uint32(h[:])))
	}
	msg := c.buf[:0]
	compressed, started := false, false
	for {
		b0, err := c.br.ReadByte()
		if err != nil {
			return nil, err
		}
		b1, err := c.br.ReadByte()
		if err != nil {
			return nil, err
		}
		if b1&0x80 != 0 {
			return nil, errors.New("masked server frame")
		}
		n := int(b1 & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(c.br, c.hdr[:2]); err != nil {
				return nil, err
			}
			n = int(binary.BigEndian.Uint16(c.hdr[:2]))
		case 127:
			if _, err := io.ReadFull(c.br, c.hdr[:8]); err != nil {
				return nil, err
			}
			n = int(binary.BigEndian.Uint64(c.hdr[:8]))
		}
		op := b0 & 0x0f
		if op >= opClose { // a control frame, maybe between fragments
			if _, err := c.br.Discard(n); err != nil {
				return nil, err
			}
			if op == opClose {
				return nil, errClosed
			}
			continue
		}
		if started != (op == 0) {
			return nil, fmt.Errorf("unexpected frame: opcode %d", op)
		}
		if !started {
			started, compressed = true, b0&0x40 != 0
		}
		if msg, err = c.appendPayload(msg, n); err != nil {
			return nil, err
		}
		c.buf = msg
		if b0&0x80 != 0 {
			if compressed {
				return c.inflate(msg)
			}
			return msg, nil
		}
	}
}

// appendPayload reads n bytes onto msg.
func (c *conn) appendPayload(msg []byte, n int) ([]byte, error) {
	msg = slices.Grow(msg, n)
	_, err := io.ReadFull(c.br, msg[len(msg):len(msg)+n])
	msg = msg[:len(msg)+n]
	c.buf = msg
	return msg, err
}

// inflate decompresses one message without context takeover.
func (c *conn) inflate(p []byte) ([]byte, error) {
	if !c.deflate {
		return nil, errors.New("compressed frame without the extension")
	}
	// The tail RFC 7692 strips, then an empty final stored block so that
	// the reader ends cleanly.
	p = append(p, 0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff)
	c.src.Reset(p)
	if c.inflater == nil {
		c.inflater = flate.NewReader(&c.src)
	} else {
		_ = c.inflater.(flate.Resetter).Reset(&c.src, nil)
	}
	c.out.Reset()
	if _, err := c.out.ReadFrom(c.inflater); err != nil {
		return nil, err
	}
	c.inflated++
	return c.out.Bytes(), nil
}

func (c *conn) close() { _ = c.nc.Close() }
