package ws

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"testing"
	"unicode/utf8"
)

var benchSizes = []int{16, 1 << 10, 64 << 10}

func BenchmarkMask(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			p := make([]byte, size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				mask(0x12345678, 1, p)
			}
		})
	}
}

func BenchmarkUTF8(b *testing.B) {
	for _, tc := range []struct {
		name string
		text []byte
	}{
		{"ascii", bytes.Repeat([]byte("hello, world "), 1<<10/13+1)[:1<<10]},
		{"mixed", bytes.Repeat([]byte("héllo wörld ✓ "), 1<<10/17+1)},
	} {
		b.Run(tc.name+"/validator", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.text)))
			var v utf8Validator
			for b.Loop() {
				if !v.write(tc.text) || !v.done() {
					b.Fatal("invalid")
				}
			}
		})
		b.Run(tc.name+"/utf8.Valid", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.text)))
			for b.Loop() {
				if !utf8.Valid(tc.text) {
					b.Fatal("invalid")
				}
			}
		})
	}
}

func BenchmarkFrameHeader(b *testing.B) {
	h := header{fin: true, op: opBinary, masked: true, key: 0xdeadbeef, length: 1 << 10}
	var buf [maxHeaderSize]byte
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			appendHeader(buf[:0], h)
		}
	})
	enc := appendHeader(nil, h)
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := parseHeader(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// discardConn is a net.Conn that swallows writes, to measure framing alone.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }
func (discardConn) Close() error                { return nil }

func BenchmarkWriteMessage(b *testing.B) {
	for _, server := range []bool{true, false} {
		side := map[bool]string{true: "server", false: "client"}[server]
		for _, size := range benchSizes {
			b.Run(side+"/"+strconv.Itoa(size), func(b *testing.B) {
				c := newConn(discardConn{}, server, 0)
				p := make([]byte, size)
				b.ReportAllocs()
				b.SetBytes(int64(size))
				for b.Loop() {
					if err := c.WriteMessage(context.Background(), MessageBinary, p); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkWritePrepared(b *testing.B) {
	conns := make([]*Conn, 100)
	for i := range conns {
		conns[i] = newConn(discardConn{}, true, 0)
	}
	pm := NewPreparedMessage(MessageText, bytes.Repeat([]byte("x"), 64))
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range conns {
			if err := c.WritePrepared(context.Background(), pm); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(conns)), "ns/conn")
}

// loopbackPair returns a server and a client Conn joined over a real
// loopback TCP connection.
func loopbackPair(tb testing.TB) (server, client *Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		c, err := AcceptConn(nc, nil)
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, _, err = Dial(context.Background(), "ws://"+ln.Addr().String()+"/", nil)
	if err != nil {
		tb.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		tb.Fatal("accept failed")
	}
	tb.Cleanup(func() { client.CloseNow(); server.CloseNow() })
	return server, client
}

// BenchmarkEcho measures a round trip over loopback: the client writes,
// the server reads and writes back, the client reads.
func BenchmarkEcho(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			srv, cli := loopbackPair(b)
			go func() {
				var buf []byte
				for {
					op, msg, err := srv.ReadMessage(context.Background(), buf[:0])
					if err != nil {
						return
					}
					if srv.WriteMessage(context.Background(), op, msg) != nil {
						return
					}
					buf = msg
				}
			}()
			p := bytes.Repeat([]byte("a"), size)
			var buf []byte
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := cli.WriteMessage(context.Background(), MessageText, p); err != nil {
					b.Fatal(err)
				}
				_, msg, err := cli.ReadMessage(context.Background(), buf[:0])
				if err != nil {
					b.Fatal(err)
				}
				buf = msg
			}
		})
	}
}

// TestEchoAllocatesNothing locks in the zero-allocation hot path: a server
// that reads into a reused buffer and writes back, over a real socket.
func TestEchoAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector; ./test.sh runs this test without it too")
	}
	srv, cli := loopbackPair(t)
	p := bytes.Repeat([]byte("a"), 1<<10)
	var sbuf, cbuf []byte
	round := func() {
		if err := cli.WriteMessage(context.Background(), MessageText, p); err != nil {
			t.Fatal(err)
		}
		op, msg, err := srv.ReadMessage(context.Background(), sbuf[:0])
		if err != nil {
			t.Fatal(err)
		}
		sbuf = msg
		if err := srv.WriteMessage(context.Background(), op, msg); err != nil {
			t.Fatal(err)
		}
		if _, cbuf, err = cli.ReadMessage(context.Background(), cbuf[:0]); err != nil {
			t.Fatal(err)
		}
	}
	round() // warm the buffers and pools
	if n := testing.AllocsPerRun(200, round); n != 0 {
		t.Fatalf("echo round trip allocates %v times, want 0", n)
	}
	pm := NewPreparedMessage(MessageText, p)
	srv.WritePrepared(context.Background(), pm)
	cli.ReadMessage(context.Background(), cbuf[:0])
	if n := testing.AllocsPerRun(200, func() {
		srv.WritePrepared(context.Background(), pm)
		cli.ReadMessage(context.Background(), cbuf[:0])
	}); n != 0 {
		t.Fatalf("WritePrepared allocates %v times, want 0", n)
	}
}

// jsonText is compressible JSON-like text of n bytes.
func jsonText(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		b.WriteString(`{"id":` + strconv.Itoa(i) + `,"user":"user-` + strconv.Itoa(i%37) + `","text":"message number ` + strconv.Itoa(i) + ` says hello"},`)
	}
	return b.Bytes()[:n]
}

// benchDeflateConn is a server Conn with permessage-deflate negotiated, without
// context takeover, writing to nowhere.
func benchDeflateConn(nc net.Conn) *Conn {
	c := newConn(nc, true, 0)
	c.deflate = newDeflateState(deflateParams{serverNoContextTakeover: true, clientNoContextTakeover: true}, true, nil)
	c.rsvAllowed = bitRsv1
	return c
}

func BenchmarkDeflate(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10} {
		p := jsonText(size)
		b.Run("compress/"+strconv.Itoa(size), func(b *testing.B) {
			c := benchDeflateConn(discardConn{})
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := c.WriteMessage(context.Background(), MessageText, p); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("decompress/"+strconv.Itoa(size), func(b *testing.B) {
			// One compressed client frame, replayed forever.
			var s sink
			out, err := compressMessage(nil, 1, &s, p)
			if err != nil {
				b.Fatal(err)
			}
			frame := clientFrame(bitFin|bitRsv1|byte(opText), out)
			c := benchDeflateConn(&loopConn{frame: frame})
			var buf []byte
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				_, msg, err := c.ReadMessage(context.Background(), buf[:0])
				if err != nil {
					b.Fatal(err)
				}
				buf = msg
			}
		})
		b.Run("prepared-broadcast-100/"+strconv.Itoa(size), func(b *testing.B) {
			conns := make([]*Conn, 100)
			for i := range conns {
				conns[i] = benchDeflateConn(discardConn{})
			}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				pm := NewPreparedMessage(MessageText, p) // compressed once, written 100 times
				for _, c := range conns {
					if err := c.WritePrepared(context.Background(), pm); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// loopConn reads the same frame forever and discards writes.
type loopConn struct {
	net.Conn
	frame []byte
	off   int
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := copy(p, c.frame[c.off:])
	c.off = (c.off + n) % len(c.frame)
	return n, nil
}
func (c *loopConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *loopConn) Close() error                { return nil }
