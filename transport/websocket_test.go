package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/ws"
)

// newWSServer serves wst (given its Engine and Verifier here) on /chat and
// /chat/{room} over loopback.
func newWSServer(t *testing.T, wst *WebSocket) (*httptest.Server, *push.Engine) {
	t.Helper()
	e, err := push.New(push.Config{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.New(auth.Config{Secret: pollSecret})
	if err != nil {
		t.Fatal(err)
	}
	wst.Engine, wst.Verifier = e, v
	mux := http.NewServeMux()
	mux.Handle("GET /chat", wst)
	mux.Handle("GET /chat/{room}", wst)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := wst.Wait(ctx); err != nil {
			t.Error(err)
		}
	})
	return srv, e
}

func dialWS(t *testing.T, srv *httptest.Server, path, user string, opts *ws.DialOptions) *ws.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	c, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+path+sep+"token="+pollToken(t, user), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// TestSilentClientOutlivesWriteTimeout: a receive-only chat client that
// never writes a frame of its own (it answers pings, as browsers do) in a
// quiet room stays connected for 12 keepalive periods, 6 write timeouts,
// and then receives a message. (200 ms periods: shorter ones let a
// scheduling hiccup under -race on a busy machine pass for a lost pong.) The transport's write bound used to be a
// socket deadline set per batch and never cleared: the first keepalive
// ping after it had passed failed and the client was dropped.
func TestSilentClientOutlivesWriteTimeout(t *testing.T) {
	const keepAlive, writeTimeout = 200 * time.Millisecond, 400 * time.Millisecond
	srv, _ := newWSServer(t, &WebSocket{
		Accept:       ws.AcceptOptions{KeepAlive: keepAlive},
		WriteTimeout: writeTimeout,
	})
	silent := dialWS(t, srv, "/chat/quiet", "silent", nil)
	msgs := make(chan string, 64)
	readErr := make(chan error, 1)
	go func() {
		for {
			_, msg, err := silent.ReadMessage(context.Background(), nil)
			if err != nil {
				readErr <- err
				return
			}
			msgs <- string(msg)
		}
	}()
	talker := dialWS(t, srv, "/chat/quiet", "talker", nil)
	go func() { // answers the keepalive pings
		for {
			if _, _, err := talker.ReadMessage(context.Background(), nil); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	await := func(text string) {
		t.Helper()
		if err := talker.WriteMessage(ctx, ws.MessageText, []byte(text)); err != nil {
			t.Fatal(err)
		}
		for {
			select {
			case m := <-msgs:
				if strings.Contains(m, text) {
					return
				}
			case err := <-readErr:
				t.Fatalf("silent client dropped: %v", err)
			case <-ctx.Done():
				t.Fatalf("%q did not reach the silent client", text)
			}
		}
	}
	await("hello") // a batch written to the silent client, then silence
	select {
	case err := <-readErr:
		t.Fatalf("silent client dropped while idle: %v", err)
	case <-time.After(12 * keepAlive):
	}
	await("still there?")
}

// TestSubprotocolAgreement: the transport and ws choose the subprotocol
// with the same function. "superchat\u00a0" is not the token superchat
// (only spaces and tabs are trimmed): offered with chat, both sides speak
// chat; offered alone, the handshake is refused. The transport used to
// trim with strings.TrimSpace and ran a superchat session on a connection
// where ws had negotiated no subprotocol.
func TestSubprotocolAgreement(t *testing.T) {
	srv, _ := newWSServer(t, &WebSocket{})
	c := dialWS(t, srv, "/chat/agree", "u1", &ws.DialOptions{Subprotocols: []string{"superchat\u00a0", "chat"}})
	if c.Subprotocol() != "chat" {
		t.Fatalf("negotiated %q, want chat", c.Subprotocol())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WriteMessage(ctx, ws.MessageText, []byte("plain line")); err != nil {
		t.Fatal(err)
	}
	for {
		_, msg, err := c.ReadMessage(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(string(msg), "{") {
			t.Fatalf("got a superchat envelope on a chat connection: %s", msg)
		}
		if strings.Contains(string(msg), "plain line") {
			break
		}
	}

	_, resp, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/chat/agree?token="+pollToken(t, "u2"),
		&ws.DialOptions{Subprotocols: []string{"superchat\u00a0"}})
	var he *ws.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != http.StatusBadRequest {
		t.Fatalf("offering only superchat\\u00a0: %v (%v), want 400", err, resp)
	}
}

// superchatSession dials superchat and returns the connection and its
// session, found by the id that connect returns.
func superchatSession(t *testing.T, srv *httptest.Server, e *push.Engine, user string) (*ws.Conn, *push.Session) {
	t.Helper()
	c := dialWS(t, srv, "/chat", user, &ws.DialOptions{Subprotocols: []string{"superchat"}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WriteMessage(ctx, ws.MessageText, []byte(`{"id":1,"op":"connect"}`)); err != nil {
		t.Fatal(err)
	}
	for {
		_, msg, err := c.ReadMessage(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var reply struct {
			ID     int `json:"id"`
			Result struct {
				Session string `json:"session"`
			} `json:"result"`
		}
		if json.Unmarshal(msg, &reply) == nil && reply.ID == 1 {
			s, ok := e.Session(reply.Result.Session)
			if !ok {
				t.Fatalf("no session %q", reply.Result.Session)
			}
			return c, s
		}
	}
}

// TestCleanCloseEndsSession: a client that closes with 1000 or 1001 ends
// its push session at once; one that drops keeps it for the grace period
// (here an hour), so that it can resume.
func TestCleanCloseEndsSession(t *testing.T) {
	wst := &WebSocket{}
	srv, e := newWSServer(t, wst)
	for _, code := range []ws.StatusCode{ws.StatusNormalClosure, ws.StatusGoingAway} {
		c, s := superchatSession(t, srv, e, "clean")
		if err := c.Close(code, "bye"); err != nil {
			t.Fatalf("close %d: %v", code, err)
		}
		select {
		case <-s.Done():
		case <-time.After(10 * time.Second): // the grace period is 30 s
			t.Fatalf("session still live after the client closed with %d", code)
		}
	}
	c, s := superchatSession(t, srv, e, "dropped")
	c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := wst.Wait(ctx); err != nil { // the connection is fully served
		t.Fatal(err)
	}
	select {
	case <-s.Done():
		t.Fatal("a dropped client's session ended without its grace period")
	default:
	}
}

// TestWaitFollowsConnections: Wait returns when the last connection has
// been served, and not before.
func TestWaitFollowsConnections(t *testing.T) {
	wst := &WebSocket{}
	srv, _ := newWSServer(t, wst)
	c := dialWS(t, srv, "/chat/w", "w", nil)
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := wst.Wait(short); err == nil {
		t.Fatal("Wait returned with a connection open")
	}
	if wst.Len() != 1 {
		t.Fatalf("Len = %d", wst.Len())
	}
	c.Close(ws.StatusNormalClosure, "")
	ctx, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := wst.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if wst.Len() != 0 {
		t.Fatalf("Len = %d after Wait", wst.Len())
	}
}

// TestSlowConsumerGetsCloseFirst: a client that stops reading under a
// steady stream is ended as a slow consumer (1008). Its close frame (and,
// in superchat, the disconnect notice) goes out ahead of the data still
// queued for it, as soon as the message being written when the session
// ended is through: when the client reads again it finds the messages
// already on the wire, the notice, then the close 1008, and not the whole
// queue (1 MiB) first. The client is raw TCP with a small receive buffer
// that reads nothing until the session has ended.
func TestSlowConsumerGetsCloseFirst(t *testing.T) {
	for _, proto := range []string{"chat", "superchat"} {
		t.Run(proto, func(t *testing.T) { testSlowConsumerGetsCloseFirst(t, proto) })
	}
}

// clientText is a masked text frame (key 0: the payload reads as is).
func clientText(p string) []byte {
	b := []byte{0x81, 0x80 | 126, byte(len(p) >> 8), byte(len(p)), 0, 0, 0, 0}
	return append(b, p...)
}

func testSlowConsumerGetsCloseFirst(t *testing.T, proto string) {
	srv, e := newWSServer(t, &WebSocket{})
	nc, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.(*net.TCPConn).SetReadBuffer(32 << 10)
	fmt.Fprintf(nc, "GET /chat/flood?token=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
		pollToken(t, "slow"), proto)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	// readFrame returns the next frame's opcode and payload.
	readFrame := func() (byte, []byte) {
		t.Helper()
		var h [10]byte
		if _, err := io.ReadFull(br, h[:2]); err != nil {
			t.Fatalf("read: %v (no close frame)", err)
		}
		n := int64(h[1] & 0x7f)
		switch n {
		case 126:
			io.ReadFull(br, h[2:4])
			n = int64(binary.BigEndian.Uint16(h[2:4]))
		case 127:
			io.ReadFull(br, h[2:10])
			n = int64(binary.BigEndian.Uint64(h[2:10]))
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			t.Fatal(err)
		}
		return h[0] & 0x0f, p
	}
	if proto == "superchat" {
		nc.Write(clientText(`{"id":1,"op":"connect"}`))
		nc.Write(clientText(`{"id":2,"op":"subscribe","channel":"chat:flood"}`))
		for {
			if _, p := readFrame(); strings.HasPrefix(string(p), `{"id":2,`) {
				break
			}
		}
	}

	// Publish 16 KiB messages until the session is ended as slow.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pad := strings.Repeat("x", 16<<10)
	published := 0
	for e.Stats().SlowConsumers == 0 {
		if published == 5000 {
			t.Fatal("no slow consumer after 5000 messages of 16 KiB")
		}
		published++
		data, _ := json.Marshal(fmt.Sprintf("%d|%s", published, pad))
		if _, err := e.Publish(ctx, push.PublishRequest{Channel: "chat:flood", Data: data}); err != nil {
			t.Fatal(err)
		}
	}

	// Now read: data frames, then the close frame.
	index := regexp.MustCompile(`(\d+)\|x`)
	last, code, lastText := 0, 0, ""
	for code == 0 {
		switch op, p := readFrame(); op {
		case 0x1:
			lastText = string(p)
			if m := index.FindStringSubmatch(lastText); m != nil {
				last, _ = strconv.Atoi(m[1])
			}
		case 0x8:
			code = int(binary.BigEndian.Uint16(p))
			t.Logf("close %d %q after message %d of %d published", code, p[2:], last, published)
		}
	}
	if code != int(ws.StatusPolicyViolation) {
		t.Fatalf("close code %d, want 1008", code)
	}
	// The queue held 1 MiB (64 messages) when the session ended: they
	// must not all have been written ahead of the close.
	if last > published-32 {
		t.Errorf("got message %d of %d before the close: the queue was flushed first", last, published)
	}
	if proto == "superchat" && !strings.Contains(lastText, `"disconnect"`) {
		t.Errorf("last text before the close is not the disconnect notice: %.80s", lastText)
	}
}
