package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hotline-rt/hotline/loadtest"
)

const benchSynopsis = `Usage: hotline bench [flags]

Measures a hotline server over each transport in turn with the same load:
-clients subscribers on one channel, -rate publications per second in
total for -duration. Every message carries its send time and a sequence
number, so each client measures latency and checks that it got them all.

At the end a table on stdout gives, per transport: deliveries per second,
latency p50/p99/max (publish request to delivery), bytes on the wire per
delivered message (the subscribers' TCP bytes both ways, headers
included), HTTP requests per delivered message, and the server's CPU time
with -server-pid. The exit status is 1 if any published message did not
reach every client.

Publications go through POST /api/publish with -api-key, or else over a
superchat WebSocket connection (op publish): the channel's namespace must
then allow client publishing, as "bench" does on hotline serve.

Example:
  hotline bench -url http://127.0.0.1:8080 -clients 100 -rate 20 -duration 10s \
      -transport ws,longpoll,poll -plot out.svg`

func bench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderrOf(ctx))
	var cfg loadtest.Config
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "server base URL (http:// or https://)")
	fs.IntVar(&cfg.Clients, "clients", 100, "subscribing clients per transport")
	fs.Float64Var(&cfg.Rate, "rate", 20, "publications per second, in total")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long each transport is published to")
	transports := fs.String("transport", "ws,longpoll,poll", "transports to measure, comma-separated, in order: ws, longpoll, poll")
	fs.DurationVar(&cfg.PollInterval, "poll-interval", time.Second, "ajax polling: time between polls")
	fs.StringVar(&cfg.APIKey, "api-key", "", "publish with POST /api/publish and this key; empty: over WebSocket")
	fs.StringVar(&cfg.Token, "token", "", "bearer token every client sends (servers with JWT auth)")
	secret := fs.String("jwt-secret", "", "mint an HS256 token per client with this secret (instead of -token)")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "pid of a server on this machine: report its CPU time (Linux /proc)")
	plot := fs.String("plot", "", "write a chart of latency and bytes per message to this .svg file")
	fs.StringVar(&cfg.Channel, "channel", "", `channel to subscribe to; empty: "bench:" and a random run id`)
	fs.IntVar(&cfg.Size, "size", 0, "pad each message's data to about this many bytes; 0: no padding (~60 bytes)")
	fs.DurationVar(&cfg.Drain, "drain", 0, "how long to wait for the last deliveries after publishing; 0: 5s plus two poll intervals")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", 30*time.Second, "time allowed to connect and subscribe all clients")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "accept any TLS certificate from an https:// -url (self-signed test certificates)")
	fs.BoolVar(&cfg.Compress, "compress", false, "WebSocket clients offer permessage-deflate")
	fs.IntVar(&cfg.Publishers, "publishers", 8, "publish requests in flight at once over the HTTP API")
	withEnvHelp(fs, benchSynopsis)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench takes no arguments, got %q", fs.Args())
	}
	cfg.JWTSecret = []byte(*secret)
	list, err := benchTransports(*transports)
	if err != nil {
		return err
	}
	switch {
	case cfg.Clients <= 0:
		return errors.New("-clients must be at least 1")
	case cfg.Rate <= 0:
		return errors.New("-rate must be positive")
	case cfg.Duration <= 0:
		return errors.New("-duration must be positive")
	}
	if ext := strings.ToLower(filepath.Ext(*plot)); *plot != "" && ext != ".svg" {
		return fmt.Errorf("-plot %q: only .svg is supported", *plot)
	}

	pr := newProgressPrinter(stderrOf(ctx))
	cfg.OnProgress, cfg.ProgressInterval = pr.print, pr.interval
	var results []*loadtest.Result
	var failed []error
	for _, tr := range list {
		cfg.Transport = tr
		res, err := loadtest.Run(ctx, cfg)
		pr.end()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", tr, err))
			continue
		}
		results = append(results, res)
		if err := res.Err(); err != nil {
			failed = append(failed, err)
		}
		if res.Duplicates > 0 {
			fmt.Fprintf(stderrOf(ctx), "%s: %d duplicate deliveries\n", tr, res.Duplicates)
		}
		if res.ClientErrors > 0 {
			fmt.Fprintf(stderrOf(ctx), "%s: %d client(s) failed, first: %s\n", tr, res.ClientErrors, res.ClientError)
		}
	}
	if len(results) > 0 {
		fmt.Printf("%d clients, %g publications/s for %s, %s\n\n", cfg.Clients, cfg.Rate, cfg.Duration, publishVia(cfg))
		if err := loadtest.WriteTable(stdoutOf(ctx), results); err != nil {
			return err
		}
	}
	if *plot != "" && len(results) > 0 {
		if err := writePlot(*plot, results); err != nil {
			return err
		}
	}
	for _, err := range failed {
		fmt.Fprintln(stderrOf(ctx), "hotline bench:", err)
	}
	if len(failed) > 0 {
		return exitError(1)
	}
	return nil
}

// benchTransports parses -transport, accepting "websocket" for ws.
func benchTransports(s string) ([]string, error) {
	var out []string
	for _, t := range splitList(s) {
		switch t = strings.ToLower(t); t {
		case "websocket":
			t = loadtest.WebSocket
		case loadtest.WebSocket, loadtest.LongPolling, loadtest.Polling:
		default:
			return nil, fmt.Errorf("-transport: unknown transport %q (want ws, longpoll or poll)", t)
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, errors.New("-transport: name at least one transport")
	}
	return out, nil
}

func publishVia(cfg loadtest.Config) string {
	if cfg.APIKey != "" {
		return "published with POST /api/publish"
	}
	return "published over WebSocket"
}

func writePlot(name string, results []*loadtest.Result) error {
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("-plot: %w", err)
	}
	if err := loadtest.WriteSVG(f, results); err != nil {
		f.Close()
		return fmt.Errorf("-plot: %w", err)
	}
	return f.Close()
}

// progressPrinter shows loadtest progress on a terminal as one redrawn
// line, or elsewhere as a plain line a second and at each phase change.
type progressPrinter struct {
	w        io.Writer
	tty      bool
	interval time.Duration
	width    int

	drawn   bool // a bar is on the line (tty)
	phase   string
	printed time.Time
}

func newProgressPrinter(w io.Writer) *progressPrinter {
	p := &progressPrinter{w: w, interval: time.Second, width: 79}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty, p.interval = true, 100*time.Millisecond
		}
	}
	return p
}

// print is Config.OnProgress: it runs on Run's goroutine.
func (p *progressPrinter) print(pg loadtest.Progress) {
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", pg.Bar(p.width))
		p.drawn = true
		return
	}
	if pg.Phase == p.phase && time.Since(p.printed) < p.interval*9/10 {
		return
	}
	p.phase, p.printed = pg.Phase, time.Now()
	fmt.Fprintln(p.w, pg.String())
}

// end finishes the line of one transport.
func (p *progressPrinter) end() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
	p.phase = ""
}
