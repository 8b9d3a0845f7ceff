package ws

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countConn is a recordConn that counts the calls to Write.
type countConn struct {
	*recordConn
	writes atomic.Int64
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.recordConn.Write(p)
}

// TestWriteMessagesOneWrite checks that a burst of small messages costs
// one write to the socket, where a WriteMessage per message costs one
// write each, and that each message is still a frame of its own.
func TestWriteMessagesOneWrite(t *testing.T) {
	ctx := context.Background()
	cc := &countConn{recordConn: newRecordConn()}
	c := newConn(cc, true, 0)
	defer c.CloseNow()
	var msgs [][]byte
	for i := range 100 {
		msgs = append(msgs, fmt.Appendf(nil, `{"push":{"channel":"chat:lobby","pub":{"data":"line %d"}}}`, i))
	}
	n, err := c.WriteMessages(ctx, MessageText, msgs)
	if err != nil || n != len(msgs) {
		t.Fatalf("WriteMessages = %d, %v; want %d, nil", n, err, len(msgs))
	}
	if w := cc.writes.Load(); w != 1 {
		t.Errorf("%d writes for a burst of %d small messages, want 1", w, len(msgs))
	}
	frames := cc.frames(t)
	if len(frames) != len(msgs) {
		t.Fatalf("%d frames on the wire, want %d", len(frames), len(msgs))
	}
	for i, f := range frames {
		if !f.h.fin || f.h.op != opText || f.h.rsv != 0 || f.h.masked || !bytes.Equal(f.payload, msgs[i]) {
			t.Fatalf("frame %d: %+v %q, want a final text frame %q", i, f.h, f.payload, msgs[i])
		}
	}

	// The same burst message by message: one write each.
	cc.writes.Store(0)
	for _, m := range msgs {
		if err := c.WriteMessage(ctx, MessageText, m); err != nil {
			t.Fatal(err)
		}
	}
	if w := cc.writes.Load(); w != int64(len(msgs)) {
		t.Errorf("WriteMessage: %d writes for %d messages", w, len(msgs))
	}
}

// TestWriteMessagesSizes writes bursts of small, medium, large and empty
// messages, plain and compressed (with and without context takeover),
// through real sockets, and checks that the client reads each one back
// whole and in order.
func TestWriteMessagesSizes(t *testing.T) {
	sizes := []int{0, 10, 200, 2 << 10, (2 << 10) + 1, 5000, 16 << 10, 40 << 10, 64, 300}
	var msgs [][]byte
	for round := range 3 {
		for i, n := range sizes {
			m := []byte(strings.Repeat(fmt.Sprintf("%d-%d ", round, i), n/4+1)[:n])
			msgs = append(msgs, m)
		}
	}
	// Many small ones: several batch buffers' worth.
	for i := range 2000 {
		msgs = append(msgs, fmt.Appendf(nil, "small message %d with some padding to make it longer", i))
	}
	for _, tc := range []struct {
		name string
		opts *CompressionOptions
	}{
		{"plain", nil},
		{"deflate", &CompressionOptions{}},
		{"deflate-takeover", &CompressionOptions{ContextTakeover: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan error, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := Upgrade(w, r, &AcceptOptions{Compression: tc.opts, WriteTimeout: 10 * time.Second})
				if err != nil {
					got <- err
					return
				}
				defer c.CloseNow()
				// Bursts of growing length.
				for i, k := 0, 1; i < len(msgs); i, k = i+k, k+1 {
					part := msgs[i:min(i+k, len(msgs))]
					n, err := c.WriteMessages(context.Background(), MessageText, part)
					if err != nil || n != len(part) {
						got <- fmt.Errorf("WriteMessages = %d, %v; want %d", n, err, len(part))
						return
					}
				}
				got <- nil
				c.ReadMessage(context.Background(), nil) // until the client closes
			}))
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, _, err := Dial(ctx, wsURL(srv), &DialOptions{Compression: tc.opts})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if tc.opts != nil && c.Extensions() == "" {
				t.Fatal("compression not negotiated")
			}
			for i, want := range msgs {
				op, m, err := c.ReadMessage(ctx, nil)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if op != MessageText || !bytes.Equal(m, want) {
					t.Fatalf("message %d: %v %d bytes %.30q, want %d bytes %.30q", i, op, len(m), m, len(want), want)
				}
			}
			if err := <-got; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestWriteMessagesAllocs checks that a burst costs no allocation on the
// server side, plain or compressed without context takeover.
func TestWriteMessagesAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	ctx := context.Background()
	small := []byte(`{"push":{"channel":"chat:lobby","pub":{"data":"hello"}}}`)
	large := bytes.Repeat([]byte("x"), 8<<10)
	msgs := [][]byte{small, small, large, small}
	for _, compress := range []bool{false, true} {
		rc := newRecordConn()
		c := newConn(rc, true, 0)
		if compress {
			c, rc = deflateConn(t, true, "permessage-deflate; server_no_context_takeover; client_no_context_takeover", nil)
		}
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := c.WriteMessages(ctx, MessageText, msgs); err != nil {
				t.Fatal(err)
			}
			rc.take()
		})
		// take clones what was written: one allocation.
		if allocs > 1 {
			t.Errorf("compress=%v: %v allocations per burst", compress, allocs)
		}
		c.CloseNow()
	}
}
