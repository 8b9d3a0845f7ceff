// Package redisbroker is the broker.Broker for several hotline nodes that
// share their channels through Redis: one server, a Redis Cluster (keys of
// a channel in one hash slot, fan-out with sharded Pub/Sub), or a master
// watched by Redis Sentinel. It is the only hotline package that links
// go-redis; the engine (package push) sees only the broker interface.
//
// Files: redis.go holds the Broker type and its calls, scripts.go the Lua
// scripts and the JSON codecs of what is stored, pubsub.go the Pub/Sub
// state machine (subscribe and confirm, receive, dispatch, catch-up) with
// its ownership rules at the top, slot.go the cluster hash slot of a
// channel, addr.go ParseAddr (what -redis-addr takes).
package redisbroker
