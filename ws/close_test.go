package ws

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"
)

// serverFunc starts an httptest server that upgrades and hands the
// connection to fn; the connection is closed when fn returns.
func serverFunc(t *testing.T, opts *AcceptOptions, fn func(c *Conn)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, opts)
		if err != nil {
			return
		}
		defer c.CloseNow()
		fn(c)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestCloseFromClient(t *testing.T) {
	got := make(chan error, 1)
	srv := serverFunc(t, nil, func(c *Conn) {
		_, _, err := c.ReadMessage(context.Background(), nil)
		got <- err
	})
	c, _, err := Dial(context.Background(), wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(4000, "bye now"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	err = <-got
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 4000 || ce.Reason != "bye now" || ce.Local {
		t.Fatalf("server read %v, want the peer's CloseError 4000 \"bye now\"", err)
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done not closed after Close")
	}
	if err := c.WriteMessage(context.Background(), MessageText, []byte("x")); err == nil {
		t.Error("write after Close succeeded")
	}
}

func TestCloseFromServer(t *testing.T) {
	closed := make(chan error, 1)
	srv := serverFunc(t, nil, func(c *Conn) {
		closed <- c.Close(StatusGoingAway, "shutting down")
	})
	c, _, err := Dial(context.Background(), wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_, _, err = c.ReadMessage(context.Background(), nil)
	if CloseStatus(err) != StatusGoingAway {
		t.Fatalf("client read %v, want 1001", err)
	}
	var ce *CloseError
	if errors.As(err, &ce); ce.Reason != "shutting down" {
		t.Errorf("reason %q", ce.Reason)
	}
	if err := <-closed; err != nil {
		t.Errorf("server Close: %v", err)
	}
	// Later reads keep returning the close.
	if _, _, err := c.ReadMessage(context.Background(), nil); CloseStatus(err) != StatusGoingAway {
		t.Errorf("second read %v", err)
	}
}

// TestCloseWithReader: Close while another goroutine reads hands the
// peer's close to that reader.
func TestCloseWithReader(t *testing.T) {
	srv := echoServer(t, nil)
	c, _, err := Dial(context.Background(), wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		for {
			if _, _, err := c.ReadMessage(context.Background(), nil); err != nil {
				read <- err
				return
			}
		}
	}()
	c.WriteMessage(context.Background(), MessageText, []byte("x"))
	if err := c.Close(StatusNormalClosure, "done"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-read; CloseStatus(err) != StatusNormalClosure {
		t.Fatalf("reader got %v", err)
	}
}

// TestCloseBoundedWait: a peer that never answers the close frame cannot
// hold Close for longer than closeTimeout.
func TestCloseBoundedWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := newConn(a, true, 0)
		go io.Copy(io.Discard, b) // reads, never answers
		start := time.Now()
		err := c.Close(StatusNormalClosure, "")
		var ce *CloseError
		if !errors.As(err, &ce) || ce.Code != StatusAbnormalClosure || !ce.Local || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close = %v, want a local 1006 CloseError (no ctx was involved)", err)
		}
		if d := time.Since(start); d != closeTimeout {
			t.Errorf("Close took %v, want %v", d, closeTimeout)
		}
		b.Close()
	})
}

// TestCloseBoundedWaitWithReader: the same when a reader holds the read
// side and the peer stays silent.
func TestCloseBoundedWaitWithReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := newConn(a, true, 0)
		go io.Copy(io.Discard, b)
		read := make(chan error, 1)
		go func() {
			_, _, err := c.ReadMessage(context.Background(), nil)
			read <- err
		}()
		synctest.Wait()
		start := time.Now()
		c.Close(StatusNormalClosure, "")
		if d := time.Since(start); d > closeTimeout {
			t.Errorf("Close took %v, want at most %v", d, closeTimeout)
		}
		if err := <-read; err == nil {
			t.Error("reader got no error")
		}
		b.Close()
	})
}

func TestCloseCodesOnWire(t *testing.T) {
	for _, tc := range []struct {
		code StatusCode
		want []byte // the close frame's payload
	}{
		{StatusNormalClosure, []byte{0x03, 0xe8, 'r'}},
		{4999, []byte{0x13, 0x87, 'r'}},
		{3000, []byte{0x0b, 0xb8, 'r'}},
		{StatusNoStatusRcvd, nil}, // an empty close frame
		{StatusAbnormalClosure, []byte{0x03, 0xf3, 'r'}},
		{StatusTLSHandshake, []byte{0x03, 0xf3, 'r'}},
		{999, []byte{0x03, 0xf3, 'r'}},
		{1004, []byte{0x03, 0xf3, 'r'}},
		{1016, []byte{0x03, 0xf3, 'r'}},
		{2999, []byte{0x03, 0xf3, 'r'}},
		{5000, []byte{0x03, 0xf3, 'r'}},
		{0, []byte{0x03, 0xf3, 'r'}},
		{-1, []byte{0x03, 0xf3, 'r'}},
		{70000, []byte{0x03, 0xf3, 'r'}},
	} {
		t.Run(itoa(int(tc.code)), func(t *testing.T) {
			t.Parallel()
			srv := serverFunc(t, nil, func(c *Conn) { c.Close(tc.code, "r") })
			nc, br := rawClient(t, srv)
			h, p := readServerFrame(t, br)
			if h.op != opClose || string(p) != string(tc.want) {
				t.Fatalf("got %v %x, want close %x", h.op, p, tc.want)
			}
			nc.Write(clientFrame(bitFin|byte(opClose), p))
		})
	}
}

func TestClosePayloadReason(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		wantLen      int
	}{
		{"short", "ok", 2},
		{"exactly 123", strings.Repeat("a", 123), 123},
		{"124 ascii", strings.Repeat("a", 124), 123},
		{"two-byte runes", strings.Repeat("é", 100), 122},
		{"two-byte runes offset", "a" + strings.Repeat("é", 100), 123},
		{"three-byte runes", strings.Repeat("€", 50), 123},
		{"three-byte runes offset", "a" + strings.Repeat("€", 50), 121},
		{"four-byte runes", strings.Repeat("😀", 40), 120},
		{"four-byte runes offset 3", "abc" + strings.Repeat("😀", 40), 123},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := appendClosePayload(nil, StatusNormalClosure, tc.reason)
			if len(p) > maxControlPayload {
				t.Fatalf("payload of %d bytes", len(p))
			}
			code, reason, err := parseClosePayload(p)
			if err != nil || code != StatusNormalClosure {
				t.Fatalf("parse: %d %v", code, err)
			}
			if len(reason) != tc.wantLen || !utf8.ValidString(reason) || !strings.HasPrefix(tc.reason, reason) {
				t.Fatalf("reason of %d bytes %q, want a %d-byte valid prefix", len(reason), reason, tc.wantLen)
			}
		})
	}
	// And on the wire, through Close.
	got := make(chan error, 1)
	srv := serverFunc(t, nil, func(c *Conn) {
		_, _, err := c.ReadMessage(context.Background(), nil)
		got <- err
	})
	c, _, err := Dial(context.Background(), wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close(StatusNormalClosure, strings.Repeat("é", 100))
	var ce *CloseError
	if err := <-got; !errors.As(err, &ce) || ce.Reason != strings.Repeat("é", 61) {
		t.Fatalf("server got %v", err)
	}
}

func TestParseClosePayload(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    string
		code StatusCode
		ok   bool
	}{
		{"empty", "", StatusNoStatusRcvd, true},
		{"one byte", "\x03", 0, false},
		{"normal", "\x03\xe8", StatusNormalClosure, true},
		{"normal with reason", "\x03\xe8bye", StatusNormalClosure, true},
		{"1004 reserved", "\x03\xec", 0, false},
		{"1005", "\x03\xed", 0, false},
		{"1006", "\x03\xee", 0, false},
		{"1014", "\x03\xf6", StatusBadGateway, true},
		{"1015", "\x03\xf7", 0, false},
		{"2999", "\x0b\xb7", 0, false},
		{"3000", "\x0b\xb8", 3000, true},
		{"4999", "\x13\x87", 4999, true},
		{"5000", "\x13\x88", 0, false},
		{"bad utf8", "\x03\xe8\xc3", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, err := parseClosePayload([]byte(tc.p))
			if (err == nil) != tc.ok || (tc.ok && code != tc.code) {
				t.Fatalf("got %d, %v; want %d ok=%v", code, err, tc.code, tc.ok)
			}
		})
	}
}

// pingCounter plays the client side of a net.Pipe by hand: it counts the
// server's pings and answers them when pong is set.
func pingCounter(nc net.Conn, pong bool, pings chan<- time.Time) {
	defer close(pings)
	var hb [maxHeaderSize]byte
	for {
		if _, err := io.ReadFull(nc, hb[:2]); err != nil {
			return
		}
		n := headerLen(hb[1])
		if _, err := io.ReadFull(nc, hb[2:n]); err != nil {
			return
		}
		h, _, _ := parseHeader(hb[:n])
		p := make([]byte, h.length)
		if _, err := io.ReadFull(nc, p); err != nil {
			return
		}
		switch h.op {
		case opPing:
			pings <- time.Now()
			if pong {
				nc.Write(clientFrame(bitFin|byte(opPong), p))
			}
		case opClose:
			return
		}
	}
}

func TestKeepAlive(t *testing.T) {
	const interval = 10 * time.Second
	t.Run("answered", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, b := net.Pipe()
			c := newConn(a, true, 0)
			pings := make(chan time.Time, 100)
			go pingCounter(b, true, pings)
			read := make(chan error, 1)
			go func() {
				_, _, err := c.ReadMessage(context.Background(), nil)
				read <- err
			}()
			c.startKeepAlive(interval)
			time.Sleep(10*interval + interval/2)
			select {
			case <-c.Done():
				t.Fatal("connection closed although every ping was answered")
			default:
			}
			if n := len(pings); n < 4 {
				t.Errorf("%d pings in %v, want about 5", n, 10*interval)
			}
			c.CloseNow()
			<-read
			b.Close()
		})
	})
	t.Run("unanswered", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, b := net.Pipe()
			c := newConn(a, true, 0)
			pings := make(chan time.Time, 100)
			go pingCounter(b, false, pings)
			read := make(chan error, 1)
			go func() {
				_, _, err := c.ReadMessage(context.Background(), nil)
				read <- err
			}()
			start := time.Now()
			c.startKeepAlive(interval)
			<-c.Done()
			if d := time.Since(start); d != 2*interval {
				t.Errorf("closed after %v, want %v", d, 2*interval)
			}
			if err := <-read; err == nil {
				t.Error("reader got no error")
			}
			var got []time.Time
			for p := range pings {
				got = append(got, p)
			}
			if len(got) != 1 || got[0].Sub(start) != interval {
				t.Errorf("pings at %v, want one after %v", got, interval)
			}
		})
	})
	t.Run("traffic counts as life", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, b := net.Pipe()
			c := newConn(a, true, 0)
			go io.Copy(io.Discard, b)
			go func() {
				for {
					if _, _, err := c.ReadMessage(context.Background(), nil); err != nil {
						return
					}
				}
			}()
			c.startKeepAlive(interval)
			for range 30 {
				time.Sleep(interval / 3)
				if _, err := b.Write(clientFrame(bitFin|byte(opText), []byte("tick"))); err != nil {
					t.Fatalf("connection closed while the peer was talking: %v", err)
				}
			}
			c.CloseNow()
			b.Close()
		})
	})
}

// TestKeepAliveStopsAfterClose: a keepalive run that is under way when
// the connection closes (here: stuck writing its ping to a peer that does
// not read) must not schedule another one. Without the guard in
// keepAlive.rearm, the run rearms the timer of a dead connection.
func TestKeepAliveStopsAfterClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = time.Second
		a, b := net.Pipe() // b never reads: the ping write blocks
		c := newConn(a, true, 0)
		c.startKeepAlive(interval)
		time.Sleep(interval)
		synctest.Wait() // the first run is blocked in its ping write
		c.CloseNow()
		synctest.Wait() // the run has seen its write fail and finished
		c.ka.mu.Lock()
		rearmed := c.ka.t.Stop()
		c.ka.mu.Unlock()
		if rearmed {
			t.Error("keepalive timer rearmed after CloseNow")
		}
		b.Close()
	})
}
