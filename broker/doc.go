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
// Package redisbroker (broker/redisbroker) implements the same interface
// for several nodes sharing one Redis server, a Redis Cluster or a
// Sentinel-managed master; it is the only package that links go-redis.
// Package brokertest is the conformance suite both pass.
//
// # Positions
//
// A channel's stream has an epoch, a random string fixed for the lifetime of
// the stream, and an offset that increases by exactly one per publication.
// The first publication creates the stream (offset 1); reading a channel
// creates nothing, and a channel without a stream reads as {"", 0}. When a
// stream is lost (the memory broker's process restarts, the Redis server
// loses its data, or a stream with nothing in its history is dropped after
// EmptyStreamTTL), the next publication starts a new epoch, so a client
// holding an old position learns that it cannot be served
// ([ErrEpochChanged]) instead of silently missing messages.
//
// # Continuity
//
// A Handler receives every publication of a subscribed channel once, in
// offset order, or is told with [Handler.HandleGap] before the next one
// that it may have missed some: a broker that lost its link to the store,
// or dropped messages from a full queue, repairs the hole from history and
// reports a gap only when history cannot fill it.
//
// # Publish outcome
//
// A Publish error wrapping [ErrOutcomeUnknown] means the publication may
// exist; any other error means it does not. A publisher that retries with
// the same [PublishOptions.IdempotencyKey] within its TTL gets the first
// publication's position and publishes nothing, on any node.
//
// # Concurrency
//
// All methods of a Broker are safe for concurrent use. A Handler receives the
// publications of one channel in offset order; it must not block for long and
// must not call back into the broker for the same channel while handling.
package broker
