package ws

import (
	"context"
	"sync"
)

// PreparedMessage is a message encoded once and written to many
// connections, for broadcast: the server frame (and its compressed form)
// is built on first use and shared by every connection that writes it.
// Connections that keep a compression context, and clients (which mask
// each frame differently), encode it for themselves.
type PreparedMessage struct {
	typ  MessageType
	data []byte

	mu         sync.Mutex
	plain      []byte // header and payload, unmasked
	compressed []byte // RSV1 frame compressed without context
	level      int
}

// NewPreparedMessage prepares data as a message of type typ. data must not
// change while the prepared message is in use. It panics if typ is
// neither MessageText nor MessageBinary, which only a conversion can
// produce.
func NewPreparedMessage(typ MessageType, data []byte) *PreparedMessage {
	if !typ.valid() {
		panic("ws: NewPreparedMessage of " + typ.String())
	}
	return &PreparedMessage{typ: typ, data: data}
}

// Data returns the message's payload.
func (pm *PreparedMessage) Data() []byte { return pm.data }

// frame returns the server frame for a connection, compressed or not.
func (pm *PreparedMessage) frame(d *deflateState) ([]byte, error) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	if d == nil || !d.compressWrite(len(pm.data)) {
		if pm.plain == nil {
			h := header{fin: true, op: opcode(pm.typ), length: int64(len(pm.data))}
			pm.plain = append(appendHeader(make([]byte, 0, maxHeaderSize+len(pm.data)), h), pm.data...)
		}
		return pm.plain, nil
	}
	if pm.compressed == nil || pm.level != d.level {
		var s sink
		// Not d's own compressor: WritePrepared does not hold msgMu
		// here, and a shared frame must not depend on any context.
		out, err := compressMessage(nil, d.level, &s, pm.data)
		if err != nil {
			return nil, err
		}
		h := header{fin: true, rsv: bitRsv1, op: opcode(pm.typ), length: int64(len(out))}
		pm.compressed = append(appendHeader(make([]byte, 0, maxHeaderSize+len(out)), h), out...)
		pm.level = d.level
	}
	return pm.compressed, nil
}

// WritePrepared writes a prepared message. On the server side it costs
// one write of the shared frame and no allocation.
func (c *Conn) WritePrepared(ctx context.Context, pm *PreparedMessage) error {
	if !c.server || (c.deflate != nil && c.deflate.writeTakeover && c.deflate.compressWrite(len(pm.data))) {
		return c.WriteMessage(ctx, pm.typ, pm.data)
	}
	frame, err := pm.frame(c.deflate)
	if err != nil {
		return err
	}
	stop, err := c.begin(ctx)
	if err != nil {
		return err
	}
	c.msgMu.Lock()
	c.armWrite()
	err = c.disarmWrite(c.writeRaw(frame))
	c.msgMu.Unlock()
	return c.unwatch(ctx, stop, err)
}

// writeRaw writes a whole encoded frame.
func (c *Conn) writeRaw(frame []byte) error {
	if err := c.lockWriter(); err != nil {
		return err
	}
	return c.unlockWriter(c.wrote(c.nc.Write(frame)))
}
