// Package broker is where publications meet: it assigns every publication a
// position in its channel's stream, keeps a bounded history per channel, fans
// publications out to every node subscribed to the channel, and stores
// presence (who is in a channel) with a time to live so that a crashed node's
// entries expire on their own.
//
// The [Broker] interface is written for several nodes: a node asks the broker
// for the channels its local sessions care about ([Broker.Subscribe]) and
// receives their publications through the [Handler] it registered with
// [Broker.Start]. Positions and history belong to the broker, never to a node,
// so any node can serve a client's recovery request.
//
// [NewMemory] returns the embedded single-process broker used by default.
// A Redis broker for several nodes implements the same interface.
//
// # Positions
//
// A channel's stream has an epoch, a random string fixed for the lifetime of
// the stream, and an offset that increases by exactly one per publication.
// When a stream is lost (the memory broker's process restarts, or an idle
// stream is dropped), the next publication starts a new epoch, so a client
// holding an old position learns that it cannot be served ([ErrEpochChanged])
// instead of silently missing messages.
//
// # Concurrency
//
// All methods of a Broker are safe for concurrent use. A Handler receives the
// publications of one channel in offset order; it must not block for long and
// must not call back into the broker for the same channel while handling.
package broker
