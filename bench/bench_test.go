package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
)

var sizes = []struct {
	name string
	n    int
}{
	{"16B", 16},
	{"1KiB", 1 << 10},
	{"64KiB", 64 << 10},
}

// broadcastConns is the audience of BenchmarkBroadcast.
const broadcastConns = 100

func payload(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i % 251)
	}
	return p
}

// BenchmarkEcho measures a server's echo of one message over a loopback
// TCP connection: the same raw client (conn_test.go) writes a masked
// frame and reads the answer, so only the server side differs. Allocations
// are the whole process's, the client's being none.
func BenchmarkEcho(b *testing.B) {
	for _, lib := range libraries {
		b.Run(lib.name, func(b *testing.B) {
			srv := httptest.NewServer(lib.echo)
			defer srv.Close()
			for _, size := range sizes {
				b.Run(size.name, func(b *testing.B) {
					c, err := dialRaw(srv.Listener.Addr().String(), "/")
					if err != nil {
						b.Fatal(err)
					}
					defer c.close()
					frame := appendClientFrame(nil, 0x2, payload(size.n))
					b.ReportAllocs()
					b.SetBytes(int64(size.n))
					for b.Loop() {
						if _, p, err := c.roundTrip(frame); err != nil || len(p) != size.n {
							b.Fatalf("echo: %d bytes, %v", len(p), err)
						}
					}
				})
			}
		})
	}
}

// BenchmarkWrite measures writing one binary message on a server
// connection to a conn that discards it: framing alone.
func BenchmarkWrite(b *testing.B) {
	for _, lib := range libraries {
		b.Run(lib.name, func(b *testing.B) {
			for _, size := range sizes {
				b.Run(size.name, func(b *testing.B) {
					c, err := lib.open(newMemConn(nil))
					if err != nil {
						b.Fatal(err)
					}
					defer c.close()
					msg := payload(size.n)
					b.ReportAllocs()
					b.SetBytes(int64(size.n))
					for b.Loop() {
						if err := c.write(msg); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

// BenchmarkRead measures reading one message on a server connection from
// a conn that replays the same masked frame forever: parsing, unmasking
// and copying alone. gws hands each message over a channel (see gwsLib).
func BenchmarkRead(b *testing.B) {
	for _, lib := range libraries {
		b.Run(lib.name, func(b *testing.B) {
			for _, size := range sizes {
				b.Run(size.name, func(b *testing.B) {
					c, err := lib.open(newMemConn(appendClientFrame(nil, 0x2, payload(size.n))))
					if err != nil {
						b.Fatal(err)
					}
					defer c.close()
					b.ReportAllocs()
					b.SetBytes(int64(size.n))
					for b.Loop() {
						if p, err := c.read(); err != nil || len(p) != size.n {
							b.Fatalf("read: %d bytes, %v", len(p), err)
						}
					}
				})
			}
		})
	}
}

// BenchmarkBroadcast measures one message prepared (or compiled) once and
// written to 100 server connections that discard it; bytes per second
// count every copy.
func BenchmarkBroadcast(b *testing.B) {
	for _, lib := range libraries {
		b.Run(lib.name, func(b *testing.B) {
			for _, size := range sizes {
				b.Run(size.name, func(b *testing.B) {
					g := newWriteGroup()
					conns := openAll(b, lib, broadcastConns, g, nil)
					msg := payload(size.n)
					b.ReportAllocs()
					b.SetBytes(int64(size.n * broadcastConns))
					for b.Loop() {
						if err := lib.broadcast(conns, msg, g); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

// openAll opens n server connections on memConns that count their writes
// in g and keep them in outs[i] when outs is not nil; they are closed when
// the test ends.
func openAll(tb testing.TB, lib library, n int, g *writeGroup, outs []*bytes.Buffer) []conn {
	tb.Helper()
	conns := make([]conn, n)
	for i := range conns {
		nc := newMemConn(nil)
		nc.group = g
		if outs != nil {
			nc.out = outs[i]
		}
		c, err := lib.open(nc)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = c.close() })
		conns[i] = c
	}
	return conns
}

// Each adapter, checked once with every size, so that the benchmarks
// compare libraries that work.

func TestEcho(t *testing.T) {
	for _, lib := range libraries {
		t.Run(lib.name, func(t *testing.T) {
			srv := httptest.NewServer(lib.echo)
			defer srv.Close()
			c, err := dialRaw(srv.Listener.Addr().String(), "/")
			if err != nil {
				t.Fatal(err)
			}
			for _, size := range sizes {
				want := payload(size.n)
				op, got, err := c.roundTrip(appendClientFrame(nil, 0x2, want))
				if err != nil || op != 0x2 || !bytes.Equal(got, want) {
					t.Fatalf("%s: echo opcode %d, %d bytes, %v; want opcode 2, %d bytes", size.name, op, len(got), err, len(want))
				}
			}
			if err := c.close(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestWriteRead(t *testing.T) {
	for _, lib := range libraries {
		t.Run(lib.name, func(t *testing.T) {
			for _, size := range sizes {
				want := payload(size.n)
				var out bytes.Buffer
				nc := newMemConn(appendClientFrame(nil, 0x2, want))
				nc.out = &out
				c, err := lib.open(nc)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := c.read(); err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s: read %d bytes, %v; want %d bytes", size.name, len(got), err, len(want))
				}
				if err := c.write(want); err != nil {
					t.Errorf("%s: write: %v", size.name, err)
				}
				if err := c.close(); err != nil {
					t.Errorf("%s: close: %v", size.name, err)
				}
				if err := checkFrame(out.String(), want); err != nil {
					t.Errorf("%s: written: %v", size.name, err)
				}
			}
		})
	}
}

func TestBroadcast(t *testing.T) {
	for _, lib := range libraries {
		t.Run(lib.name, func(t *testing.T) {
			const n = 3
			outs := []*bytes.Buffer{new(bytes.Buffer), new(bytes.Buffer), new(bytes.Buffer)}
			g := newWriteGroup()
			conns := openAll(t, lib, n, g, outs)
			want := payload(1 << 10)
			if err := lib.broadcast(conns, want, g); err != nil {
				t.Fatal(err)
			}
			for i, out := range outs {
				if err := checkFrame(out.String(), want); err != nil {
					t.Errorf("conn %d: %v", i, err)
				}
			}
		})
	}
}

// checkFrame checks that out, what a server wrote, is a handshake response
// followed by one binary frame carrying want.
func checkFrame(out string, want []byte) error {
	_, frames, ok := strings.Cut(out, "\r\n\r\n")
	if !ok {
		return fmt.Errorf("no handshake response in %q", out)
	}
	op, got, err := readServerFrame(bufio.NewReader(strings.NewReader(frames)), nil)
	if err != nil || op != 0x2 || !bytes.Equal(got, want) {
		return fmt.Errorf("frame opcode %d, %d bytes, %v; want opcode 2, %d bytes", op, len(got), err, len(want))
	}
	return nil
}
