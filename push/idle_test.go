package push

import (
	"context"
	"testing"
	"time"
)

// TestQueueIdleMemory: a queue nobody waits on holds no notify channel;
// the first wait makes one and a later push wakes it; compact gives back
// the array an empty queue keeps after ack, and keeps a non-empty one.
func TestQueueIdleMemory(t *testing.T) {
	var q queue
	q.init(10, 1000)
	q.push(Outbound{Data: []byte("a")})
	q.ack(1)
	if q.notify != nil {
		t.Fatal("a queue without a waiter made its notify channel")
	}
	if cap(q.items) == 0 {
		t.Fatal("ack gave back the spare array (a stream of deliveries would allocate)")
	}
	q.compact()
	if q.items != nil {
		t.Fatalf("compact kept an array of %d items", cap(q.items))
	}
	q.push(Outbound{Data: []byte("b")})
	q.compact()
	if got := q.pending(0, nil); len(got) != 1 || string(got[0].Data) != "b" {
		t.Fatalf("compact of a non-empty queue: %v", got)
	}
	q.ack(2)

	woke := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		woke <- q.wait(ctx, 2)
	}()
	for i := 0; ; i++ {
		q.mu.Lock()
		made := q.notify != nil
		q.mu.Unlock()
		if made {
			break
		}
		if i == 5000 {
			t.Fatal("the waiter made no notify channel")
		}
		time.Sleep(time.Millisecond)
	}
	q.push(Outbound{Data: []byte("c")})
	if err := <-woke; err != nil {
		t.Fatalf("wait: %v", err)
	}
}

// TestTurn: one message of a session is handled at a time; a second waits
// for the turn (on a channel made only then) until it is given back, its
// ctx ends, or the session ends.
func TestTurn(t *testing.T) {
	e := newEngine(t, Config{})
	s := connect(t, e, ProtocolSuperchat, "u").s
	if err := s.takeTurn(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.takeTurn(ctx); err != context.DeadlineExceeded {
		t.Fatalf("second turn while the first is held: %v, want the ctx's end", err)
	}
	got := make(chan error, 2)
	for range 2 {
		go func() {
			err := s.takeTurn(context.Background())
			got <- err
		}()
	}
	select {
	case err := <-got:
		t.Fatalf("a turn was taken while held: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	s.endTurn()
	if err := <-got; err != nil { // one takes it
		t.Fatal(err)
	}
	select {
	case err := <-got:
		t.Fatalf("two messages hold the turn: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	s.Close(CodeNormal, "bye") // the waiter learns the session ended
	if err := <-got; err == nil {
		t.Fatal("a waiter of an ended session took the turn")
	}
	s.endTurn()
	if s.turnFree != nil {
		t.Fatal("the turn's channel outlived its waiters")
	}
}

// TestSubSet: a session's subscriptions by channel, in a slice while few
// and a map past subSetSlice, give the same answers either way.
func TestSubSet(t *testing.T) {
	var ss subSet
	want := map[string]*subscription{}
	check := func() {
		t.Helper()
		if ss.len() != len(want) {
			t.Fatalf("len %d, want %d", ss.len(), len(want))
		}
		n := 0
		for sub := range ss.all() {
			if want[sub.channel] != sub {
				t.Fatalf("all yields %s, not in the set", sub.channel)
			}
			n++
		}
		if n != len(want) {
			t.Fatalf("all yields %d, want %d", n, len(want))
		}
		for ch, sub := range want {
			if ss.get(ch) != sub {
				t.Fatalf("get %s", ch)
			}
		}
		if ss.get("none") != nil {
			t.Fatal("get of a channel not in the set")
		}
	}
	for i := range 2*subSetSlice + 1 {
		sub := &subscription{channel: "c:" + string(rune('a'+i))}
		ss.put(sub)
		want[sub.channel] = sub
		check()
		if i == 1 {
			ss.del("c:a")
			delete(want, "c:a")
			check()
		}
	}
	for ch := range want {
		ss.del(ch)
		delete(want, ch)
		check()
	}
	var small subSet
	small.put(&subscription{channel: "x"})
	small.del("x")
	if small.list != nil || small.m != nil {
		t.Fatal("an emptied small set keeps its slice")
	}
}
