//go:build linux

package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/ws"
)

// TestEventLoop runs the WebSocket protocol tests of this package again
// with Config.EventLoop (newServer turns it on for every test under
// TestEventLoop/), then the checks of the event loop's own.
func TestEventLoop(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"ChatRoomOrder", TestChatRoomOrder},
		{"Recovery", TestRecovery},
		{"SlowConsumer", TestSlowConsumer},
		{"HandshakeRefusals", TestHandshakeRefusals},
		{"SuperchatErrorsKeepConnection", TestSuperchatErrorsKeepConnection},
		{"API", TestAPI},
		{"ShutdownGoingAway", TestShutdownGoingAway},
		{"TokenExpiryOverWebSocket", TestTokenExpiryOverWebSocket},
		{"CloseCodes", testEventLoopCloseCodes},
		{"KeepAlive", testEventLoopKeepAlive},
		{"FramesBehindHandshake", testEventLoopFramesBehindHandshake},
		{"NoGoroutinePerConnection", testEventLoopNoGoroutines},
		{"Fragmented", testEventLoopFragmented},
		{"ReplayLargerThanQueue", testEventLoopReplayLargerThanQueue},
	} {
		t.Run(tc.name, tc.f)
	}
}

// testEventLoopCloseCodes: the client's close ends the session (1000) or
// keeps it for resuming (4xxx), and a broken stream gets the close status
// RFC 6455 asks for.
func testEventLoopCloseCodes(t *testing.T) {
	srv, base := start(t, Config{ReadLimit: 1024, SessionGrace: time.Minute})
	tok := token(t, "u", "U", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c := dial(t, base, "/chat", "superchat", tok)
	c.send(`{"id":1,"op":"subscribe","channel":"chat:lobby"}`)
	c.next(reply(1))
	if err := c.c.Close(ws.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close handshake: %v", err)
	}
	waitFor(t, "the session to end after a clean close", func() bool { return srv.Engine().Stats().Sessions == 0 })

	c = dial(t, base, "/chat", "superchat", tok)
	c.send(`{"id":1,"op":"subscribe","channel":"chat:lobby"}`)
	c.next(reply(1))
	if err := c.c.Close(4000, "brb"); err != nil {
		t.Fatalf("close handshake: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := srv.Engine().Stats().Sessions; n != 1 {
		t.Fatalf("after close 4000: %d sessions, want 1 (in its grace period)", n)
	}

	for _, tc := range []struct {
		name string
		send func(c *ws.Conn) error
		want ws.StatusCode
	}{
		{"binary", func(c *ws.Conn) error { return c.WriteMessage(ctx, ws.MessageBinary, []byte{1, 2}) }, ws.StatusUnsupportedData},
		{"too big", func(c *ws.Conn) error { return c.WriteMessage(ctx, ws.MessageText, bytes.Repeat([]byte("x"), 2048)) }, ws.StatusMessageTooBig},
		{"bad utf-8", func(c *ws.Conn) error { return c.WriteMessage(ctx, ws.MessageText, []byte{'a', 0xff}) }, ws.StatusInvalidFramePayloadData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, base, "/chat", "chat", tok)
			if err := tc.send(c.c); err != nil {
				t.Fatal(err)
			}
			_, _, err := c.c.ReadMessage(ctx, nil)
			if got := ws.CloseStatus(err); got != tc.want {
				t.Fatalf("got %v, want close %d", err, tc.want)
			}
		})
	}

	// An unmasked frame (raw bytes: ws.Dial always masks) gets 1002.
	nc := rawUpgrade(t, base, tok, nil)
	nc.Write([]byte{0x81, 0x02, 'h', 'i'})
	if code := readClose(t, nc); code != ws.StatusProtocolError {
		t.Fatalf("unmasked frame: close %d, want 1002", code)
	}
}

// testEventLoopKeepAlive: a silent client is pinged; one that answers
// (ws.Conn does, while reading) stays, one that does not is closed with
// 1008.
func testEventLoopKeepAlive(t *testing.T) {
	_, base := start(t, Config{KeepAlive: 200 * time.Millisecond})
	tok := token(t, "u", "U", time.Hour)
	alive := dial(t, base, "/chat", "chat", tok)
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		_, _, err := alive.c.ReadMessage(ctx, nil)
		errc <- err
	}()

	nc := rawUpgrade(t, base, tok, nil)
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	var pinged bool
	for {
		op, payload := readFrame(t, nc)
		if op == 0x9 {
			pinged = true
			continue
		}
		if op != 0x8 {
			t.Fatalf("frame %#x", op)
		}
		if !pinged {
			t.Fatal("closed without a ping first")
		}
		if code := binary.BigEndian.Uint16(payload); code != uint16(ws.StatusPolicyViolation) {
			t.Fatalf("close %d, want 1008", code)
		}
		break
	}
	if err := <-errc; err != context.DeadlineExceeded {
		t.Fatalf("the client that answers pings: %v, want it still open at its deadline", err)
	}
}

// testEventLoopFramesBehindHandshake: frames that arrive in the same
// packet as the handshake (net/http has buffered them) are not lost.
func testEventLoopFramesBehindHandshake(t *testing.T) {
	_, base := start(t, Config{})
	tok := token(t, "u", "U", time.Hour)
	frame := maskedFrame(0x1, []byte(`{"id":5,"op":"subscribe","channel":"chat:lobby"}`))
	nc := rawUpgrade(t, base, tok, frame)
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	op, payload := readFrame(t, nc)
	if op != 0x1 || !strings.Contains(string(payload), `"id":5`) {
		t.Fatalf("got %#x %q, want the reply to id 5", op, payload)
	}
}

// testEventLoopFragmented: a message in several frames, split across
// writes at every byte, with a ping in between, arrives whole.
func testEventLoopFragmented(t *testing.T) {
	_, base := start(t, Config{})
	tok := token(t, "u", "U", time.Hour)
	nc := rawUpgrade(t, base, tok, nil)
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte(`{"id":6,"op":"subscribe","channel":"chat:lobby","x":"héllo ✓"}`)
	var stream []byte
	stream = append(stream, maskedFrameFin(0x1, msg[:20], false)...)
	stream = append(stream, maskedFrame(0x9, []byte("p"))...)
	stream = append(stream, maskedFrameFin(0x0, msg[20:55], false)...)
	stream = append(stream, maskedFrameFin(0x0, msg[55:], true)...)
	for i := range stream {
		nc.Write(stream[i : i+1])
		if i%7 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	var gotPong, gotReply bool
	for !gotPong || !gotReply {
		op, payload := readFrame(t, nc)
		switch op {
		case 0xA:
			gotPong = string(payload) == "p"
		case 0x1:
			gotReply = strings.Contains(string(payload), `"id":6`)
		default:
			t.Fatalf("frame %#x %q", op, payload)
		}
	}
}

// testEventLoopNoGoroutines is the point of the mode: 200 idle subscribed
// clients add no goroutine to the server.
func testEventLoopNoGoroutines(t *testing.T) {
	srv, base := start(t, Config{MaxUserSessions: -1})
	tok := token(t, "u", "U", time.Hour)
	warm := dial(t, base, "/chat", "superchat", tok)
	warm.send(`{"id":1,"op":"subscribe","channel":"chat:lobby"}`)
	warm.next(reply(1))
	before := runtime.NumGoroutine()
	const n = 200
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = rawUpgrade(t, base, tok, maskedFrame(0x1, []byte(`{"id":1,"op":"subscribe","channel":"chat:lobby"}`)))
	}
	for _, nc := range conns {
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		readFrame(t, nc)
	}
	if s := srv.Engine().Stats().Sessions; s != n+1 {
		t.Fatalf("%d sessions, want %d", s, n+1)
	}
	// Each client's own goroutines are on the test side: count them out
	// by allowing none per connection on the server's.
	time.Sleep(50 * time.Millisecond)
	if after := runtime.NumGoroutine(); after-before > 10 {
		t.Fatalf("%d goroutines for %d idle clients", after-before, n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// rawUpgrade opens a superchat WebSocket by hand, sending extra right
// behind the request in the same write.
func rawUpgrade(t *testing.T, base, tok string, extra []byte) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	req := "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: superchat\r\nAuthorization: Bearer " + tok + "\r\n\r\n"
	if _, err := nc.Write(append([]byte(req), extra...)); err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	// Read the response head byte by byte, so that no frame is taken.
	var head []byte
	b := make([]byte, 1)
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if _, err := nc.Read(b); err != nil {
			t.Fatalf("handshake: %v (%q)", err, head)
		}
		head = append(head, b[0])
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 101")) {
		t.Fatalf("handshake: %q", head)
	}
	return nc
}

func maskedFrame(op byte, p []byte) []byte { return maskedFrameFin(op, p, true) }

func maskedFrameFin(op byte, p []byte, fin bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch {
	case len(p) < 126:
		out = append(out, 0x80|byte(len(p)))
	default:
		out = append(out, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	key := [4]byte{1, 2, 3, 4}
	out = append(out, key[:]...)
	for i, c := range p {
		out = append(out, c^key[i%4])
	}
	return out
}

// readFrame reads one unmasked server frame.
func readFrame(t *testing.T, nc net.Conn) (byte, []byte) {
	t.Helper()
	var h [2]byte
	if _, err := readFull(nc, h[:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		readFull(nc, e[:])
		n = int(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		readFull(nc, e[:])
		n = int(binary.BigEndian.Uint64(e[:]))
	}
	p := make([]byte, n)
	if _, err := readFull(nc, p); err != nil {
		t.Fatalf("read payload: %v", err)
	}
	return h[0] & 0x0f, p
}

func readFull(nc net.Conn, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := nc.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// readClose reads frames until the close frame and returns its code.
func readClose(t *testing.T, nc net.Conn) ws.StatusCode {
	t.Helper()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	for {
		op, p := readFrame(t, nc)
		if op == 0x8 {
			if len(p) < 2 {
				return ws.StatusNoStatusRcvd
			}
			return ws.StatusCode(binary.BigEndian.Uint16(p))
		}
	}
}

// testEventLoopReplayLargerThanQueue: a recovery whose replay is longer
// than the session's queue waits in Handle (on a read worker) for room,
// which only the connection's writer makes: the writers are a pool of
// their own, so the replay completes, in order.
func testEventLoopReplayLargerThanQueue(t *testing.T) {
	srv, base := start(t, Config{QueueMessages: 8, Namespaces: map[string]push.NamespaceOptions{
		"news": {HistorySize: 200},
	}})
	ctx := context.Background()
	first, err := srv.Engine().Publish(ctx, push.PublishRequest{Channel: "news:x", Data: []byte(`0`)})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 100; i++ {
		if _, err := srv.Engine().Publish(ctx, push.PublishRequest{Channel: "news:x", Data: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	c := dial(t, base, "/chat", "superchat", token(t, "u", "U", time.Hour))
	c.send(fmt.Sprintf(`{"id":1,"op":"subscribe","channel":"news:x","since":{"epoch":%q,"offset":%d}}`, first.Epoch, first.Offset))
	for i := 1; i <= 100; i++ {
		m := c.next(publication)
		if string(m.Push.Data) != strconv.Itoa(i) {
			t.Fatalf("replay: got %s, want %d", m.Push.Data, i)
		}
	}
}
