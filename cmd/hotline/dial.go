package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hotline-rt/hotline/superchat"
	"github.com/hotline-rt/hotline/ws"
)

const dialSynopsis = `Usage: hotline dial [flags] URL

A command-line WebSocket client. Each line on stdin is sent as a text
message; each message received is printed as a line on stdout. The
negotiated subprotocol and the close status go to stderr. The exit status is
1 when the handshake fails (the server's status and reason are printed), 0
after a normal close.

With -protocol superchat, -subscribe CHANNEL subscribes (repeatable), each
push is printed as its JSON envelope, and a stdin line that is not a JSON
object is published to the first subscribed channel.

Examples:
  hotline dial ws://localhost:8080/echo
  hotline dial -protocol chat ws://localhost:8080/chat/lobby
  hotline dial -protocol superchat -subscribe chat:lobby ws://localhost:8080/chat`

func dial(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dial", flag.ContinueOnError)
	fs.SetOutput(stderrOf(ctx))
	var headers stringList
	protocol := fs.String("protocol", "", "subprotocols to offer, comma-separated (e.g. chat or superchat)")
	fs.Var(&headers, "H", "extra request header 'Name: value' (repeatable)")
	origin := fs.String("origin", "", "Origin header to send")
	insecure := fs.Bool("insecure", false, "skip TLS certificate verification (wss:// to a test server)")
	compress := fs.Bool("compress", false, "offer permessage-deflate")
	token := fs.String("token", "", "bearer token sent as Authorization: Bearer")
	var subscribe stringList
	fs.Var(&subscribe, "subscribe", "superchat: channel to subscribe to (repeatable)")
	timeout := fs.Duration("timeout", 10*time.Second, "handshake timeout")
	withEnvHelp(fs, dialSynopsis)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitError(2)
	}
	opts := &ws.DialOptions{Header: http.Header{}, Subprotocols: splitList(*protocol)}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("-H %q: want 'Name: value'", h)
		}
		opts.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	if *origin != "" {
		opts.Header.Set("Origin", *origin)
	}
	if *token != "" {
		opts.Header.Set("Authorization", "Bearer "+*token)
	}
	if *insecure {
		opts.TLSConfig = &tls.Config{InsecureSkipVerify: true}
	}
	if *compress {
		opts.Compression = &ws.CompressionOptions{}
	}
	hctx, cancel := context.WithTimeout(ctx, *timeout)
	c, _, err := ws.Dial(hctx, fs.Arg(0), opts)
	cancel()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderrOf(ctx), "connected to %s (subprotocol %q", fs.Arg(0), c.Subprotocol())
	if c.Extensions() != "" {
		fmt.Fprintf(stderrOf(ctx), ", extensions %q", c.Extensions())
	}
	fmt.Fprintln(stderrOf(ctx), ")")

	isSuper := c.Subprotocol() == "superchat"
	if isSuper {
		for i, ch := range subscribe {
			req, _ := json.Marshal(superchat.Request{ID: uint64(i + 1), Op: superchat.OpSubscribe, Channel: ch})
			if err := c.WriteMessage(ctx, ws.MessageText, req); err != nil {
				return err
			}
		}
	} else if len(subscribe) > 0 {
		return errors.New("-subscribe needs the superchat subprotocol (-protocol superchat)")
	}

	// stdin → messages, in the background; EOF on stdin closes normally.
	go func() {
		sc := bufio.NewScanner(stdinOf(ctx))
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		id := uint64(1000)
		for sc.Scan() {
			line := sc.Text()
			if isSuper && len(subscribe) > 0 && !strings.HasPrefix(strings.TrimSpace(line), "{") {
				id++
				data, _ := json.Marshal(line)
				req, _ := json.Marshal(superchat.Request{ID: id, Op: superchat.OpPublish, Channel: subscribe[0], Data: data})
				line = string(req)
			}
			if err := c.WriteMessage(ctx, ws.MessageText, []byte(line)); err != nil {
				return
			}
		}
		c.Close(ws.StatusNormalClosure, "")
	}()
	go func() {
		<-ctx.Done()
		c.Close(ws.StatusGoingAway, "interrupted")
	}()

	out := bufio.NewWriter(stdoutOf(ctx))
	var buf []byte
	for {
		op, msg, err := c.ReadMessage(context.Background(), buf[:0])
		if err != nil {
			out.Flush()
			return reportClose(stderrOf(ctx), err)
		}
		if op == ws.MessageBinary {
			fmt.Fprintf(out, "[binary %d bytes]\n", len(msg))
		} else {
			out.Write(msg)
			out.WriteByte('\n')
		}
		if err := out.Flush(); err != nil {
			return err
		}
		buf = msg
	}
}

// reportClose prints how the connection ended and picks the exit status.
func reportClose(w io.Writer, err error) error {
	var ce *ws.CloseError
	if errors.As(err, &ce) {
		fmt.Fprintf(w, "closed: %d (%v) %q\n", int(ce.Code), ce.Code, ce.Reason)
		if ce.Code == ws.StatusNormalClosure || ce.Code == ws.StatusGoingAway || ce.Code == ws.StatusNoStatusRcvd {
			return nil
		}
		return exitError(1)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, ws.ErrClosed) {
		return nil
	}
	return err
}
