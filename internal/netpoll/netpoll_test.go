//go:build linux

package netpoll

import (
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

type countTask struct{ n *atomic.Int64 }

func (t countTask) Run() { t.n.Add(1) }

// TestPoolRunsEverything: tasks submitted past the ring's first size all
// run, and Close waits for them.
func TestPoolRunsEverything(t *testing.T) {
	p := NewPool(3)
	var n atomic.Int64
	for range 1000 {
		p.Submit(countTask{&n})
	}
	p.Close()
	if n.Load() != 1000 {
		t.Fatalf("%d of 1000 tasks ran", n.Load())
	}
	p.Submit(countTask{&n}) // after Close: dropped, no panic
}

type chanHandler chan int

func (h chanHandler) Ready(ev int) {
	select {
	case h <- ev:
	default:
	}
}

// TestPollerEdges: a registered socket is reported writable at once and
// readable when data arrives (edge-triggered: once per arrival), and not
// at all after Remove.
func TestPollerEdges(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	h := make(chanHandler, 16)
	if err := p.Add(fds[0], h); err != nil {
		t.Fatal(err)
	}
	if p.Len() != 1 {
		t.Fatalf("Len %d", p.Len())
	}
	next := func() int {
		select {
		case ev := <-h:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no readiness reported")
			return 0
		}
	}
	if ev := next(); ev&Writable == 0 {
		t.Fatalf("first report %b, want writable", ev)
	}
	syscall.Write(fds[1], []byte("x"))
	for ev := next(); ev&Readable == 0; ev = next() {
	}
	var buf [8]byte
	if n, _ := syscall.Read(fds[0], buf[:]); n != 1 {
		t.Fatalf("read %d", n)
	}
	p.Remove(fds[0])
	if p.Len() != 0 {
		t.Fatalf("Len %d after Remove", p.Len())
	}
	for len(h) > 0 {
		<-h
	}
	syscall.Write(fds[1], []byte("y"))
	select {
	case ev := <-h:
		t.Fatalf("reported %b after Remove", ev)
	case <-time.After(100 * time.Millisecond):
	}
	var seen int
	p.Each(func(Handler) { seen++ })
	if seen != 0 {
		t.Fatalf("Each saw %d handlers after Remove", seen)
	}
}
