//go:build linux

package transport

import (
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hotline-rt/hotline/internal/netpoll"
	"github.com/hotline-rt/hotline/ws"
)

// echoBacklog bounds the echoes queued for a client that sends faster
// than it reads: past it (and past one message, whatever its size) the
// connection is closed with 1008. The goroutine echo (Echo) reads no
// more instead; an edge-triggered loop has no such pause without a
// buffer per connection.
const echoBacklog = 4 << 20

// echoCounts is what ServeEcho's connections did, for tests and
// diagnostics: they prove that a conversation went through the event
// loop's reader and writer.
type echoCounts struct {
	conns  atomic.Int64
	events [ws.EventError + 1]atomic.Int64
}

func (e *echoCounts) event(k ws.EventKind) {
	if int(k) < len(e.events) {
		e.events[k].Add(1)
	}
}

// ServeEcho upgrades r and serves an echo from the event loop: each data
// message goes back as it came (its type and payload, in one frame),
// pings are answered, and close handshakes, keepalive and protocol errors
// are handled as on /chat. It is ServeHTTP's machinery (UpgradeDetached,
// the poller, the read and write pools, ws.Decoder, the sweeper) without
// a push session, so that the conformance of the event loop can be
// tested with any WebSocket client. It returns the subprotocol chosen, or
// why the upgrade failed (the request has been answered).
func (t *EventLoop) ServeEcho(w http.ResponseWriter, r *http.Request, opts *EchoOptions) (string, error) {
	if opts == nil {
		opts = &EchoOptions{}
	}
	if r.TLS != nil {
		const msg = "the event-loop WebSocket transport serves plain TCP only"
		http.Error(w, msg, http.StatusInternalServerError)
		return "", errors.New("transport: " + msg)
	}
	o := opts.Accept
	c := &elConn{t: t, fd: -1, dec: ws.NewDecoder(o.ReadLimit)}
	t.add()
	nc, sub, err := ws.UpgradeDetached(w, r, &o, &c.dec)
	if err == nil {
		var fd int
		fd, err = detachFD(nc)
		c.fd = int32(fd)
	}
	if err != nil {
		c.dec.Release()
		t.done()
		return "", err
	}
	c.lastSeen.Store(time.Now().UnixNano())
	// Read before Add: from then on the Decoder is the reader's.
	behind := c.dec.Buffered() > 0
	t.echo.conns.Add(1)
	if err := t.poller.Add(int(c.fd), c); err != nil {
		syscall.Close(int(c.fd))
		c.dec.Release()
		t.done()
		return "", fmt.Errorf("transport: echo (event loop): epoll: %w", err)
	}
	if opts.CloseCode != 0 {
		c.queueCtrl(ws.AppendClose(nil, opts.CloseCode, opts.CloseReason), true, false)
	}
	if behind {
		c.Ready(netpoll.Readable)
	}
	return sub, nil
}

// echoMessage queues the echo of a data message. The writer sends it
// with the control frames, in order.
func (c *elConn) echoMessage(ev ws.Event) {
	frame := ws.AppendFrame(nil, ev.Type, ev.Data)
	c.mu.Lock()
	var sub bool
	if len(c.ctrl) > 0 && len(c.ctrl)+len(frame) > echoBacklog {
		sub = c.queueCtrlLocked(ws.AppendClose(nil, ws.StatusPolicyViolation, "echo: the client does not read"), true, false)
	} else {
		sub = c.queueCtrlLocked(frame, false, false)
	}
	c.mu.Unlock()
	if sub {
		c.t.writers.Submit((*writeRole)(c))
	}
}

// EchoConns is how many connections ServeEcho has handed to the poller.
func (t *EventLoop) EchoConns() int64 { return t.echo.conns.Load() }

// EchoEvents is how many events of kind k the Decoders of ServeEcho's
// connections have given (EventMessage, EventPing, EventClose,
// EventError...).
func (t *EventLoop) EchoEvents(k ws.EventKind) int64 {
	if int(k) >= len(t.echo.events) {
		return 0
	}
	return t.echo.events[k].Load()
}
