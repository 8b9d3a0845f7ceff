//go:build linux

package main

import (
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
)

// BenchmarkLoopbackFanout is the floor under a node's cost per delivery:
// one goroutine writes a 200-byte message (about a superchat push of 100
// bytes of data) to each of 1,000 loopback TCP connections in turn, and a
// goroutine per connection reads it, as a node and its subscribers do,
// without WebSocket, sessions or queues. It reports the process's CPU per
// message (both ends, user and kernel apart): compare with the harness's
// "CPU per delivery" of nodes plus clients.
//
//	cd bench && go test -run - -bench LoopbackFanout ./scale
func BenchmarkLoopbackFanout(b *testing.B) {
	const conns, size = 1000, 200
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	writers := make([]net.Conn, 0, conns)
	var readers sync.WaitGroup
	for range conns {
		w, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		r, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		writers = append(writers, w)
		readers.Go(func() {
			defer r.Close()
			buf := make([]byte, size)
			for {
				if _, err := io.ReadFull(r, buf); err != nil {
					return
				}
			}
		})
	}
	msg := make([]byte, size)
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := writers[i%conns].Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	for _, w := range writers {
		w.Close() // the readers end once they have read everything
	}
	readers.Wait()
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	us := func(t syscall.Timeval) float64 { return float64(t.Sec)*1e6 + float64(t.Usec) }
	user := us(after.Utime) - us(before.Utime)
	sys := us(after.Stime) - us(before.Stime)
	b.ReportMetric((user+sys)/float64(b.N), "cpu-µs/msg")
	b.ReportMetric(sys/float64(b.N), "sys-µs/msg")
}
