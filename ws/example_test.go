package ws_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/hotline-rt/hotline/ws"
)

// An echo server with Upgrade, and a client with Dial.
func ExampleUpgrade() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Upgrade(w, r, &ws.AcceptOptions{Subprotocols: []string{"chat"}})
		if err != nil {
			return // Upgrade has answered the request with the reason
		}
		defer c.CloseNow()
		var buf []byte
		for {
			op, msg, err := c.ReadMessage(r.Context(), buf[:0])
			if err != nil {
				return
			}
			if err := c.WriteMessage(r.Context(), op, msg); err != nil {
				return
			}
			buf = msg
		}
	}))
	defer srv.Close()

	ctx := context.Background()
	c, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), &ws.DialOptions{Subprotocols: []string{"chat"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	c.WriteMessage(ctx, ws.MessageText, []byte("hello"))
	_, msg, _ := c.ReadMessage(ctx, nil)
	fmt.Printf("%s over %s\n", msg, c.Subprotocol())
	fmt.Println(c.Close(ws.StatusNormalClosure, "bye"))
	// Output:
	// hello over chat
	// <nil>
}

// A refused handshake tells the client why.
func ExampleDial_refused() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws.Upgrade(w, r, nil) // allows only its own origin
	}))
	defer srv.Close()
	_, _, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), &ws.DialOptions{
		Header: http.Header{"Origin": {"https://elsewhere.example"}},
	})
	fmt.Println(err)
	// Output:
	// ws: handshake refused: 403 Forbidden: origin https://elsewhere.example is not allowed
}

// A broadcast encodes the frame once and writes it to every connection.
func ExamplePreparedMessage() {
	var mu sync.Mutex
	var conns []*ws.Conn
	joined := make(chan struct{}, 3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		joined <- struct{}{}
	}))
	defer srv.Close()

	ctx := context.Background()
	var clients []*ws.Conn
	for range 3 {
		c, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer c.CloseNow()
		clients = append(clients, c)
		<-joined
	}
	pm := ws.NewPreparedMessage(ws.MessageText, []byte("news for everyone"))
	mu.Lock()
	for _, c := range conns {
		c.WritePrepared(ctx, pm)
	}
	mu.Unlock()
	for i, c := range clients {
		_, msg, _ := c.ReadMessage(ctx, nil)
		fmt.Printf("client %d: %s\n", i, msg)
	}
	// Output:
	// client 0: news for everyone
	// client 1: news for everyone
	// client 2: news for everyone
}

// NetConn carries a byte stream over WebSocket messages.
func ExampleNetConn() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		nc := ws.NetConn(c, ws.MessageBinary)
		defer nc.Close()
		io.WriteString(nc, "line one\n")
		io.WriteString(nc, "line two\n")
	}))
	defer srv.Close()
	c, _, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := io.ReadAll(ws.NetConn(c, ws.MessageBinary))
	fmt.Printf("%q %v\n", b, err)
	// Output:
	// "line one\nline two\n" <nil>
}

// AcceptConn runs the handshake on a raw connection, for servers without
// net/http.
func ExampleAcceptConn() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second)) // bound the handshake
		c, err := ws.AcceptConn(nc, nil)
		if err != nil {
			return // AcceptConn has answered with the reason and closed nc
		}
		nc.SetDeadline(time.Time{})
		c.WriteMessage(context.Background(), ws.MessageText, []byte("hello from a raw listener"))
		c.Close(ws.StatusNormalClosure, "")
	}()
	c, _, err := ws.Dial(context.Background(), "ws://"+ln.Addr().String()+"/", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, msg, _ := c.ReadMessage(context.Background(), nil)
	fmt.Println(string(msg))
	_, _, err = c.ReadMessage(context.Background(), nil)
	fmt.Println(ws.CloseStatus(err))
	// Output:
	// hello from a raw listener
	// normal closure
}
