package push

// OnQueue makes the session call f each time it queues something or ends,
// for a transport that does not keep a goroutine blocked in Wait (the
// event-loop WebSocket transport): f then schedules the write of Pending.
// f runs on the publication path, possibly under a channel's lock, and so
// must not block or call back into the session; it typically sets a flag
// and hands the work to another goroutine. nil removes it.
//
// Items queued before OnQueue are not announced: call f once after
// setting it.
func (s *Session) OnQueue(f func()) {
	if f == nil {
		s.q.onSignal.Store(nil)
		return
	}
	s.q.onSignal.Store(&f)
}
