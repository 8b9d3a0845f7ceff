package netpoll

import (
	"errors"
	"sync"
	"syscall"
)

// Events a Handler is told about.
const (
	Readable = 1 << iota // data, end of stream or an error to read
	Writable             // room in the send buffer
)

// Handler is told of readiness. Ready runs on the poller's goroutine: it
// must not block (it submits work to a Pool and returns).
type Handler interface{ Ready(events int) }

// Poller is one epoll instance, edge-triggered: each socket is registered
// once for reading and writing, and a Handler hears of a change of state,
// so a handler that stops before EAGAIN must come back on its own.
type Poller struct {
	epfd int
	wake [2]int // a pipe that ends Run

	mu      sync.RWMutex
	table   []Handler // by descriptor
	n       int
	closed  bool
	running sync.WaitGroup
}

// New makes a Poller and starts its goroutine.
func New() (*Poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	p := &Poller{epfd: epfd}
	if err := syscall.Pipe2(p.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p.wake[0])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		p.closeFDs()
		return nil, err
	}
	p.running.Go(p.run)
	return p, nil
}

func (p *Poller) closeFDs() {
	syscall.Close(p.wake[0])
	syscall.Close(p.wake[1])
	syscall.Close(p.epfd)
}

const epollET = 1 << 31 // EPOLLET, an untyped constant that overflows int in syscall

// Add registers fd (non-blocking) with h. Readiness may be reported
// before Add returns.
func (p *Poller) Add(fd int, h Handler) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errors.New("netpoll: poller closed")
	}
	if fd >= len(p.table) {
		t := make([]Handler, max(2*len(p.table), fd+1, 1024))
		copy(t, p.table)
		p.table = t
	}
	p.table[fd] = h
	p.n++
	p.mu.Unlock()
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET,
		Fd:     int32(fd),
	}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.forget(fd)
		return err
	}
	return nil
}

// Remove unregisters fd; call it before closing fd. Its Handler is not
// called once Remove has returned, except by an event already being
// delivered (the handler must tolerate one late call).
func (p *Poller) Remove(fd int) {
	syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
	p.forget(fd)
}

func (p *Poller) forget(fd int) {
	p.mu.Lock()
	if fd < len(p.table) && p.table[fd] != nil {
		p.table[fd] = nil
		p.n--
	}
	p.mu.Unlock()
}

// Len returns the number of registered sockets.
func (p *Poller) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.n
}

// Each calls f for every registered Handler, outside the Poller's lock,
// with a copy of the table taken in chunks.
func (p *Poller) Each(f func(Handler)) {
	var chunk [256]Handler
	for start := 0; ; start += len(chunk) {
		p.mu.RLock()
		if start >= len(p.table) {
			p.mu.RUnlock()
			return
		}
		k := copy(chunk[:], p.table[start:])
		p.mu.RUnlock()
		for _, h := range chunk[:k] {
			if h != nil {
				f(h)
			}
		}
		clear(chunk[:])
	}
}

func (p *Poller) run() {
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		p.mu.RLock()
		for i := range events[:n] {
			ev := &events[i]
			fd := int(ev.Fd)
			if fd == p.wake[0] {
				p.mu.RUnlock()
				return
			}
			var h Handler
			if fd < len(p.table) {
				h = p.table[fd]
			}
			if h == nil {
				continue
			}
			var what int
			if ev.Events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
				what |= Readable
			}
			if ev.Events&(syscall.EPOLLOUT|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
				what |= Writable
			}
			h.Ready(what)
		}
		p.mu.RUnlock()
	}
}

// Close stops the poller's goroutine and closes the epoll instance. The
// registered sockets are the caller's to close.
func (p *Poller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	syscall.Write(p.wake[1], []byte{1})
	p.running.Wait()
	p.closeFDs()
	return nil
}
