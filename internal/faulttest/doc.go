// Package faulttest checks hotline's delivery promise under injected
// faults: every publication the server acknowledged reaches every
// subscriber in order, or the subscriber is told plainly that it missed
// it. Nothing is lost silently and nothing arrives twice.
//
// The test drives real parts only: the hotline binary built from this
// module, a real redis-server, two "hotline serve -broker redis" nodes,
// subscribers over WebSocket, long polling and ajax polling that recover
// after each disconnect, and a publisher that posts to /api/publish with an
// idempotency key and retries with the same key. Between them it injects
// faults: a node killed and restarted, Redis restarted with and without
// persistence, Redis stopped, Pub/Sub links killed, a node stopped while
// its link is cut.
//
// The count is made from the publisher's acknowledgements, not from what
// arrives: each acknowledged position is checked against each subscriber.
// The test subscribers never repair a non-contiguous push themselves (as a
// browser client would), so that a jump the server did not announce shows
// as a silent loss instead of being hidden.
//
//	go test ./internal/faulttest -run Scripted -v
//	go test ./internal/faulttest -run Random -fault.duration=10m -fault.seed=42 -v
//
// The table of each run is logged and written under build/faulttest/.
package faulttest
