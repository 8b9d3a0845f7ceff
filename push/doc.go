// Package push is hotline's real-time engine: sessions, channels, presence,
// history with positions, recovery, and a bounded outbound queue per session.
// It knows nothing of HTTP or WebSocket frames; a transport (package
// transport) binds a client connection to a [Session] and moves bytes.
//
// # Use
//
// Create one [Engine] per process with [New]. For every client, a transport
// calls [Engine.Connect] with the identity it authenticated (package auth),
// feeds each incoming message to [Session.Handle], and writes what the
// session's outbound queue holds:
//
//	for after := uint64(0); ; {
//		if err := s.Wait(ctx, after); err != nil {
//			return err // *Disconnect: close with its code and reason
//		}
//		buf = s.Pending(after, buf[:0])
//		for _, o := range buf {
//			write(o.Data)
//			after = o.Seq
//		}
//		s.Ack(after)
//	}
//
// A polling transport instead acks what the client says it received, so a
// lost HTTP response loses nothing. Backends publish with [Engine.Publish].
//
// # Protocols
//
// A [ProtocolChat] session is a plain-text chat line client: it is subscribed
// to one room channel ("chat:lobby" by default), every message it sends is
// published there with the sender's identity, and it receives the bare text of
// every publication. A [ProtocolSuperchat] session speaks JSON envelopes
// (docs/protocol.md): requests with ids, replies, pushes with positions.
//
// # Delivery
//
// A publication is encoded once per protocol and the bytes are shared by every
// recipient; fan-out never blocks and allocates nothing per recipient in steady
// state. A session whose queue would exceed Config.QueueMessages or
// Config.QueueBytes is disconnected with code 1008, and everyone else keeps
// receiving.
//
// # Recovery
//
// Every publication has a broker.Position. A superchat client that subscribes
// with the position it last saw receives exactly the publications it missed, in
// order and without duplicates, followed by live ones; or recovered:false with
// the reason, so it can resync.
//
// # Wire
//
// The superchat envelopes (requests, replies, pushes, gap and disconnect
// notices) are the types of package superchat, which clients import
// without the engine; the engine encodes with them.
//
// # Concurrency
//
// All methods of Engine and Session are safe for concurrent use. Outbound
// Data slices are shared between sessions and must not be modified.
package push
