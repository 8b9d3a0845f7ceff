//lint:file-ignore SA1019 x/net/http2.Transport: net/http's client in Go 1.26 cannot send an extended CONNECT (see ws/h2dial.go).

package interop

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/http2"

	"github.com/hotline-rt/hotline/ws"
)

func TestPythonClientHTTP2(t *testing.T) { testPeerClientH2(t, pythonPeer) }
func TestNodeClientHTTP2(t *testing.T)   { testPeerClientH2(t, nodePeer) }

// testPeerClientH2 runs every conversation with the peer's client and
// hotline's server over HTTP/2: the peer speaks HTTP/1.1 to a byte relay
// (h2Bridge) that opens an extended CONNECT stream to hotline's server
// and copies the WebSocket bytes unchanged both ways. So every frame the
// peer writes (its masks, fragments, pings, invalid UTF-8, closes) crosses
// an HTTP/2 stream as it is, and hotline's server handles it there.
func testPeerClientH2(t *testing.T, p peer) {
	requirePeer(t, p)
	for _, cv := range conversations {
		t.Run(cv.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), caseTimeout)
			defer cancel()
			type accepted struct {
				c     *ws.Conn
				proto int
				err   error
			}
			conns := make(chan accepted, 1)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := ws.Upgrade(w, r, &ws.AcceptOptions{Subprotocols: cv.serverProtocols})
				select {
				case conns <- accepted{c, r.ProtoMajor, err}:
				default:
					if c != nil {
						_ = c.CloseNow()
					}
				}
				if c != nil && c.HTTP2() {
					<-c.Done() // the stream is the handler's
				}
			}))
			srv.EnableHTTP2 = true
			srv.StartTLS()
			t.Cleanup(srv.Close)
			br := startH2Bridge(t, srv)

			pr := startPeer(t, p, "client", "ws://"+br.addr()+"/"+cv.name, cv.name)
			var c *ws.Conn
			select {
			case a := <-conns:
				if a.err != nil {
					t.Fatalf("Upgrade: %v", a.err)
				}
				if a.proto != 2 || !a.c.HTTP2() {
					t.Fatalf("the WebSocket came over HTTP/%d", a.proto)
				}
				c = a.c
			case <-pr.done:
				_, err := pr.wait(ctx)
				t.Fatalf("peer exited before the upgrade: %v\n%s", err, pr.log())
			case <-ctx.Done():
				t.Fatalf("no upgrade: %v\n%s", ctx.Err(), pr.log())
			}
			converse(ctx, t, p, cv, c, pr)
		})
	}
}

// h2Bridge accepts one HTTP/1.1 WebSocket client at a time and carries
// its connection over an HTTP/2 extended CONNECT stream to a server.
type h2Bridge struct {
	ln  net.Listener
	tr  *http2.Transport
	dst *url.URL
	wg  sync.WaitGroup
}

func startH2Bridge(t *testing.T, srv *httptest.Server) *h2Bridge {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dst, _ := url.Parse(srv.URL)
	b := &h2Bridge{ln: ln, dst: dst, tr: &http2.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	b.wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			b.wg.Go(func() {
				if err := b.relay(nc); err != nil {
					t.Logf("bridge: %v", err)
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		b.tr.CloseIdleConnections()
		b.wg.Wait()
	})
	return b
}

func (b *h2Bridge) addr() string { return b.ln.Addr().String() }

// relay answers the client's upgrade with what the server answered its
// extended CONNECT, then copies bytes until both directions end.
func (b *h2Bridge) relay(nc net.Conn) error {
	defer nc.Close()
	brd := bufio.NewReader(nc)
	req, err := http.ReadRequest(brd)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	u := *b.dst
	u.Path = req.URL.Path
	h := http.Header{":protocol": {"websocket"}}
	for _, k := range []string{"Sec-WebSocket-Version", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "Origin"} {
		if v := req.Header.Values(k); len(v) > 0 {
			h[k] = v
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h2req := (&http.Request{Method: http.MethodConnect, URL: &u, Host: u.Host, Header: h, Body: pr, ContentLength: -1}).WithContext(ctx)
	resp, err := b.tr.RoundTrip(h2req)
	if err != nil {
		fmt.Fprintf(nc, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(nc, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", resp.StatusCode, http.StatusText(resp.StatusCode))
		return nil
	}
	var head strings.Builder
	head.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
	head.WriteString("Sec-WebSocket-Accept: " + ws.AcceptKey(req.Header.Get("Sec-WebSocket-Key")) + "\r\n")
	for _, k := range []string{"Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"} {
		if v := resp.Header.Get(k); v != "" {
			head.WriteString(k + ": " + v + "\r\n")
		}
	}
	head.WriteString("\r\n")
	if _, err := io.WriteString(nc, head.String()); err != nil {
		return err
	}
	up := make(chan struct{})
	go func() {
		defer close(up)
		io.Copy(pw, brd) // what the client sent, buffered bytes first
		pw.Close()       // END_STREAM
	}()
	io.Copy(nc, resp.Body) // until the server ends the stream
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	nc.Close()
	<-up
	return nil
}
