package netpoll

import "sync"

// Task is work for a Pool. A connection is its own Task (a pointer in an
// interface), so submitting one allocates nothing.
type Task interface{ Run() }

// Pool runs Tasks on a fixed number of goroutines. Its queue is a growing
// ring: callers bound it by submitting each connection's task at most once
// until it has run (a flag in the connection), so it holds at most one
// entry per connection and role.
type Pool struct {
	mu      sync.Mutex
	cond    sync.Cond
	q       []Task // ring
	head, n int
	closed  bool
	wg      sync.WaitGroup
}

// NewPool starts workers goroutines (at least 1).
func NewPool(workers int) *Pool {
	p := &Pool{q: make([]Task, 64)}
	p.cond.L = &p.mu
	for range max(workers, 1) {
		p.wg.Go(p.work)
	}
	return p
}

// Submit queues t. It never blocks; after Close it drops t.
func (p *Pool) Submit(t Task) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	if p.n == len(p.q) {
		q := make([]Task, 2*len(p.q))
		for i := range p.n {
			q[i] = p.q[(p.head+i)%len(p.q)]
		}
		p.q, p.head = q, 0
	}
	p.q[(p.head+p.n)%len(p.q)] = t
	p.n++
	p.mu.Unlock()
	p.cond.Signal()
}

func (p *Pool) work() {
	for {
		p.mu.Lock()
		for p.n == 0 && !p.closed {
			p.cond.Wait()
		}
		if p.n == 0 {
			p.mu.Unlock()
			return
		}
		t := p.q[p.head]
		p.q[p.head] = nil
		p.head = (p.head + 1) % len(p.q)
		p.n--
		p.mu.Unlock()
		t.Run()
	}
}

// Close lets the workers finish what is queued and waits for them.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
	p.wg.Wait()
}
