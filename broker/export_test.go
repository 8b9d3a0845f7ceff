package broker

// StoredEntries counts what m holds: streams and presence hashes. Tests use
// it to check that reads create nothing.
func StoredEntries(m *Memory) int {
	m.mu.RLock()
	n := len(m.streams)
	m.mu.RUnlock()
	m.pmu.Lock()
	n += len(m.presence)
	m.pmu.Unlock()
	return n
}
