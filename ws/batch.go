package ws

import (
	"context"
	"errors"
	"net"
	"sync"
)

// WriteMessages sends each of msgs as a message of type typ, in order,
// each in a frame of its own (compressed as WriteMessage would), with as
// few writes to the socket as it can: on the server side, small frames
// are gathered into one buffer and large payloads join them in one
// writev, so that a burst of messages to a connection costs one system
// call instead of one per message. It returns how many messages went out
// whole; past an error the connection is closed, as after any failed
// write.
//
// ctx and the WriteTimeout bound the whole call, not each message: a
// caller that needs a bound per message passes fewer messages per call.
// Other messages wait until the call is done, and so do control frames
// (pongs, pings, the close frame): a caller that writes large batches
// delays them by as much, so it bounds what it passes per call.
func (c *Conn) WriteMessages(ctx context.Context, typ MessageType, msgs [][]byte) (int, error) {
	if !typ.valid() {
		return 0, errors.New("ws: WriteMessages of " + typ.String())
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	op := opcode(typ)
	stop, err := c.begin(ctx)
	if err != nil {
		return 0, err
	}
	c.msgMu.Lock()
	c.armWrite()
	var n int
	if c.server {
		n, err = c.writeBatch(op, msgs)
	} else {
		for ; n < len(msgs) && err == nil; n++ {
			if err = c.writeData(op, msgs[n]); err != nil {
				break
			}
		}
	}
	err = c.disarmWrite(err)
	c.msgMu.Unlock()
	if err = c.unwatch(ctx, stop, err); err != nil {
		return n, err
	}
	return n, nil
}

// writeData writes p as one message; msgMu is held.
func (c *Conn) writeData(op opcode, p []byte) error {
	if c.deflate != nil && c.deflate.compressWrite(len(p)) {
		return c.writeCompressed(op, p)
	}
	return c.writeFrame(true, op, 0, p)
}

// batchSize is the buffer that a batch of frames is gathered in; it is
// taken from a pool for one WriteMessages call only.
const batchSize = 16 << 10

// batchCopyMax is the largest payload copied into the batch buffer; a
// larger one goes out from where it is, as an element of the writev.
const batchCopyMax = 2 << 10

// batchMaxVec bounds the elements of one writev. The socket keeps the
// iovec array of its largest writev for its life, so few elements keep
// every connection small.
const batchMaxVec = 8

// batch gathers frames for one write.
type batch struct {
	buf  [batchSize]byte
	n    int // buf[:n] is in use
	mark int // buf[mark:n] is not in vec yet
	vec  [][]byte
	bufs net.Buffers // vec as WriteTo consumes it; a field so it does not escape per call
	msgs int         // messages in vec and buf[mark:n], not yet written
}

var batchPool = sync.Pool{New: func() any { return &batch{vec: make([][]byte, 0, batchMaxVec)} }}

// cut closes the run of bytes gathered in buf since the last cut as one
// element of vec.
func (b *batch) cut() {
	if b.n > b.mark {
		b.vec = append(b.vec, b.buf[b.mark:b.n])
		b.mark = b.n
	}
}

// writeBatch writes msgs on the server side; msgMu is held. It returns
// the number of messages written whole.
func (c *Conn) writeBatch(op opcode, msgs [][]byte) (int, error) {
	if err := c.lockWriter(); err != nil {
		return 0, err
	}
	b := batchPool.Get().(*batch)
	written := 0
	var err error
	for _, p := range msgs {
		if c.deflate != nil && c.deflate.compressWrite(len(p)) {
			err = c.batchCompressed(b, op, p, &written)
		} else {
			err = c.batchFrame(b, header{fin: true, op: op, length: int64(len(p))}, p, false, &written)
		}
		if err != nil {
			break
		}
	}
	if err == nil && b.msgs > 0 {
		err = c.flushBatch(b, &written)
	}
	b.n, b.mark, b.msgs = 0, 0, 0
	clear(b.vec)
	b.vec = b.vec[:0]
	batchPool.Put(b)
	return written, c.unlockWriter(err)
}

// batchFrame adds one frame to b, writing what b holds first if it is
// full. A payload that must not outlive the call (mustCopy) and does not
// fit in b is written at once.
func (c *Conn) batchFrame(b *batch, h header, p []byte, mustCopy bool, written *int) error {
	frame := maxHeaderSize + len(p)
	small := len(p) <= batchCopyMax || mustCopy && frame <= batchSize
	need := frame
	if !small {
		need = maxHeaderSize
	}
	// Room for this frame's bytes in buf, and for up to two more
	// elements of vec (the bytes gathered so far, the payload).
	if batchSize-b.n < need || len(b.vec)+2 > batchMaxVec {
		if err := c.flushBatch(b, written); err != nil {
			return err
		}
	}
	b.n = len(appendHeader(b.buf[:b.n], h))
	if small {
		b.n += copy(b.buf[b.n:], p)
		b.msgs++
		return nil
	}
	b.cut()
	b.vec = append(b.vec, p)
	b.msgs++
	if mustCopy {
		return c.flushBatch(b, written)
	}
	return nil
}

// batchCompressed compresses p and adds it to b as one frame with RSV1.
func (c *Conn) batchCompressed(b *batch, op opcode, p []byte, written *int) error {
	d := c.deflate
	s := &d.sink
	if d.writeTakeover {
		if d.fw == nil {
			d.fw = getFlateWriter(d.level, s)
		}
		defer d.sink.reset()
	} else {
		s = sinkPool.Get().(*sink)
		defer sinkPool.Put(s)
	}
	var fw = d.fw
	if !d.writeTakeover {
		fw = nil
	}
	out, err := compressMessage(fw, d.level, s, p)
	if err != nil {
		return err
	}
	return c.batchFrame(b, header{fin: true, rsv: bitRsv1, op: op, length: int64(len(out))}, out, true, written)
}

// flushBatch writes what b holds in one write (one writev with several
// elements) and counts its messages as written.
func (c *Conn) flushBatch(b *batch, written *int) error {
	b.cut()
	var err error
	switch len(b.vec) {
	case 0:
	case 1:
		_, err = c.nc.Write(b.vec[0])
	default:
		b.bufs = b.vec
		_, err = b.bufs.WriteTo(c.nc)
		b.bufs = nil
	}
	clear(b.vec)
	b.vec = b.vec[:0]
	b.n, b.mark = 0, 0
	if err != nil {
		b.msgs = 0
		return c.wrote(0, err)
	}
	*written += b.msgs
	b.msgs = 0
	return nil
}
