package redisbroker

import (
	"encoding/json"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hotline-rt/hotline/broker"
)

// This file holds what the Redis broker stores and how: the Lua scripts
// that run each operation atomically on the server, and the JSON codecs of
// what they store. The Pub/Sub state machine is in pubsub.go.
//
// A stream is two keys: meta (a hash: epoch, offset, ttl = the history TTL
// in ms set by the latest publication, bytes = the total size of the
// history list while a byte bound is in use) and history (a list of publications, oldest first). The
// list always ends at the stream's top and its offsets are contiguous, so
// the offset of item i is top-len+1+i: a read fetches only the range it
// needs. Publications older than the history TTL are a prefix of the list;
// reads skip them (found by a binary search on their times), publishes
// drop them.

// publishScript assigns the next position, stores and fans out one
// publication, or returns the position of an earlier one with the same
// idempotency key.
//
// KEYS: meta, history, and the idempotency key if there is one.
// ARGV: 1 epoch for a new stream, 2 history size, 3 history TTL (ms),
// 4 history bytes (0: no bound), 5 meta TTL of a stream without history
// (ms), 6 idempotency TTL (ms), 7 Pub/Sub channel, 8 the publication's
// JSON after its position and time (`"channel":...}`), 9 the command that
// fans it out: PUBLISH, or SPUBLISH in a cluster (sharded Pub/Sub).
// Returns epoch, offset, and 1 if it was an earlier publication.
var publishScript = redis.NewScript(`
if #KEYS >= 3 then
	local prev = redis.call('GET', KEYS[3])
	if prev then
		local e, o = string.match(prev, '^(.*) (%d+)$')
		if e then
			return {e, tonumber(o), 1}
		end
	end
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
	epoch = ARGV[1]
	redis.call('DEL', KEYS[2])
	redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local t = redis.call('TIME')
local us = t[1] .. string.format('%06d', tonumber(t[2]))
local size = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local maxbytes = tonumber(ARGV[4])
local empty = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'ttl', ARGV[3])
local msg = '{"epoch":' .. cjson.encode(epoch) .. ',"offset":' .. string.format('%d', offset) .. ',"time":' .. us .. ',' .. ARGV[8]
if size > 0 then
	local n = redis.call('RPUSH', KEYS[2], msg)
	if maxbytes > 0 then
		-- bytes is the size of the list, kept only while a byte bound
		-- is in use: counted afresh when missing or the list is new.
		local bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '-1')
		if bytes < 0 or n == 1 then
			bytes = 0
			for _, it in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
				bytes = bytes + #it
			end
		else
			bytes = bytes + #msg
		end
		local cutoff = tonumber(t[1]) * 1000000 + tonumber(t[2]) - ttl * 1000
		while n > 1 do
			local drop = n > size or bytes > maxbytes
			if not drop and ttl > 0 then
				local head = redis.call('LINDEX', KEYS[2], 0)
				local tm = tonumber(string.match(head, '"time":(%d+)'))
				drop = tm ~= nil and tm <= cutoff
			end
			if not drop then
				break
			end
			local old = redis.call('LPOP', KEYS[2])
			bytes = bytes - #old
			n = n - 1
		end
		redis.call('HSET', KEYS[1], 'bytes', bytes)
	else
		if n > size then
			redis.call('LTRIM', KEYS[2], -size, -1)
		end
		redis.call('HDEL', KEYS[1], 'bytes')
	end
	if ttl > 0 then
		redis.call('PEXPIRE', KEYS[2], ttl)
		redis.call('PEXPIRE', KEYS[1], ttl + empty)
	else
		redis.call('PERSIST', KEYS[2])
		redis.call('PERSIST', KEYS[1])
	end
else
	redis.call('DEL', KEYS[2])
	redis.call('HDEL', KEYS[1], 'bytes')
	redis.call('PEXPIRE', KEYS[1], empty)
end
if #KEYS >= 3 then
	redis.call('SET', KEYS[3], epoch .. ' ' .. string.format('%d', offset), 'PX', ARGV[6])
end
redis.call(ARGV[9], ARGV[7], msg)
return {epoch, offset, 0}
`)

// A history read takes two scripts: historyMetaScript says where the
// stream is (epoch, top, oldest kept offset), broker.Window decides what
// the read selects (the one windowing function every broker uses), and
// historyRangeScript fetches that range, provided the stream still holds
// it. Neither writes, so reading a channel that has no stream creates none.

// historyMetaScript returns the epoch ("" for no stream), the top offset,
// and the offset of the oldest publication kept and not past the history
// TTL (top+1 when none).
//
// KEYS: meta, history.
var historyMetaScript = redis.NewScript(`
local m = redis.call('HMGET', KEYS[1], 'epoch', 'offset', 'ttl')
if not m[1] then
	return {'', 0, 1}
end
local top, ttl = tonumber(m[2]), tonumber(m[3] or '0')
local len = redis.call('LLEN', KEYS[2])
local n = math.min(len, top)
local first = top - n + 1
if ttl > 0 and n > 0 then
	local t = redis.call('TIME')
	local cutoff = tonumber(t[1]) * 1000000 + tonumber(t[2]) - ttl * 1000
	local lo, hi = len - n, len
	while lo < hi do
		local mid = math.floor((lo + hi) / 2)
		local tm = tonumber(string.match(redis.call('LINDEX', KEYS[2], mid), '"time":(%d+)'))
		if tm ~= nil and tm <= cutoff then
			lo = mid + 1
		else
			hi = mid
		end
	end
	first = first + lo - (len - n)
end
return {m[1], top, first}
`)

// historyRangeScript returns "ok" and the publications at offsets lo to hi
// (oldest first), or "moved" if the stream is no longer in epoch or no
// longer keeps lo (trimmed since historyMetaScript looked).
//
// KEYS: meta, history. ARGV: 1 epoch, 2 lo, 3 hi.
var historyRangeScript = redis.NewScript(`
local m = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
local lo, hi = tonumber(ARGV[2]), tonumber(ARGV[3])
if m[1] ~= ARGV[1] then
	return {'moved'}
end
local top = tonumber(m[2])
local len = redis.call('LLEN', KEYS[2])
if hi > top or lo < top - math.min(len, top) + 1 then
	return {'moved'}
end
local res = {'ok'}
local items = redis.call('LRANGE', KEYS[2], len - 1 - (top - lo), len - 1 - (top - hi))
for i = 1, #items do
	res[#res + 1] = items[i]
end
return res
`)

// bumpEpochScript moves a rolled-back stream to a new epoch: a failover to
// a replica that had not received the latest publications left the meta
// behind, and new publications took the offsets of the lost ones in the
// same epoch. Only if the meta is still in the epoch the caller saw rolled
// back does it change anything (compare-and-set on the epoch: of nodes
// that notice at once, the first moves it, the others find the new epoch).
// The new epoch starts at offset 0, as a new stream does, and its history
// is empty: what the list held is under the old epoch (each stored
// publication carries its epoch), and a since in the old epoch is answered
// "epoch changed" from now on, so no reader is told it missed nothing.
// The top is not compared: once an offset of the epoch was handed over as
// one publication and is now another (or gone), the epoch is wrong for
// good, whatever was published since.
//
// KEYS: meta, history. ARGV: 1 the epoch seen rolled back, 2 the new
// epoch. Returns the stream's epoch afterwards ("" if it has no stream)
// and 1 if this call moved it.
var bumpEpochScript = redis.NewScript(`
local e = redis.call('HGET', KEYS[1], 'epoch')
if e ~= ARGV[1] then
	return {e or '', 0}
end
redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'offset', 0)
redis.call('HDEL', KEYS[1], 'bytes')
redis.call('DEL', KEYS[2])
return {ARGV[2], 1}
`)

// addPresenceScript stores presence entries that expire ttl from now (by
// the server's clock) and keeps the hash at least that long.
//
// KEYS: presence. ARGV: ttl (ms), then client, info JSON, client, info
// JSON, ...
var addPresenceScript = redis.NewScript(`
local t = redis.call('TIME')
local ttl = tonumber(ARGV[1])
local expires = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl)
for i = 2, #ARGV - 1, 2 do
	redis.call('HSET', KEYS[1], ARGV[i], '{"info":' .. ARGV[i + 1] .. ',"expires":' .. expires .. '}')
end
if redis.call('PTTL', KEYS[1]) < ttl then
	redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
`)

// presenceScript returns the live entries of a presence hash (client,
// entry, client, entry, ...) and deletes the expired ones.
//
// KEYS: presence.
var presenceScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
	local ok, e = pcall(cjson.decode, all[i + 1])
	if ok and type(e) == 'table' and tonumber(e.expires) and tonumber(e.expires) > now then
		out[#out + 1] = all[i]
		out[#out + 1] = all[i + 1]
	else
		redis.call('HDEL', KEYS[1], all[i])
	end
end
return out
`)

// wirePublication is a publication as stored and sent: JSON, with the time
// in Unix microseconds.
type wirePublication struct {
	Epoch   string             `json:"epoch"`
	Offset  uint64             `json:"offset"`
	Time    int64              `json:"time"`
	Channel string             `json:"channel"`
	Data    json.RawMessage    `json:"data"`
	Info    *broker.ClientInfo `json:"info"`
}

func decodePublication(b []byte) (*broker.Publication, error) {
	var w wirePublication
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	return &broker.Publication{
		Channel:  w.Channel,
		Position: broker.Position{Epoch: w.Epoch, Offset: w.Offset},
		Data:     w.Data,
		Info:     w.Info,
		Time:     time.UnixMicro(w.Time),
	}, nil
}

// wireEvent is a join or leave on the ev: Pub/Sub channel.
type wireEvent struct {
	Join bool              `json:"join"`
	Info broker.ClientInfo `json:"info"`
}

// wirePresence is a presence entry as stored: expires is Unix milliseconds
// by the Redis server's clock.
type wirePresence struct {
	Info    broker.ClientInfo `json:"info"`
	Expires int64             `json:"expires"`
}

func ms(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	if n := d.Milliseconds(); n > 0 {
		return n
	}
	return 1
}
