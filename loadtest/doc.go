// Package loadtest measures a hotline server the way its users see it: N
// clients subscribe to one channel over one transport (WebSocket, long
// polling or ajax polling), a publisher sends at a fixed total rate for a
// while, and every client checks that it got every message and how late.
//
// Run does one transport; hotline bench calls it once per transport with
// the same load and prints the Results with WriteTable and WriteSVG.
//
// Every published message carries the run's id, a sequence number and its
// send time (Unix nanoseconds, taken just before the publish request is
// written), so latency is measured from the client's own clock at both
// ends and completeness by sequence number, whatever order messages
// arrive in.
//
// Wire bytes are counted at the net.Conn level of the subscribing clients
// (both directions, below TLS, HTTP and WebSocket headers included, from
// the first handshake to the last close); the publisher's traffic, the
// same for every transport, is not counted.
package loadtest
