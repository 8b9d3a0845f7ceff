// Command hotline is a WebSocket push server and its tools:
//
//	hotline serve   run the server (chat page, push API, /echo, /broadcast)
//	hotline dial    a command-line WebSocket client
//	hotline bench   load-test a hotline server over each transport
//
// Run "hotline <command> -h" for the flags of each. Every flag can also be
// set through the environment as HOTLINE_<FLAG>, with dashes as
// underscores (HOTLINE_ADDR, HOTLINE_JWT_SECRET); a flag on the command
// line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `hotline: WebSocket push server with long-polling fallback

Usage:
  hotline serve [flags]        run the server (default http://localhost:8080)
  hotline dial [flags] URL     talk to a WebSocket server from the terminal
  hotline bench [flags]        measure a server over WebSocket and polling

Run "hotline <command> -h" for each command's flags. Flags can also be set
as HOTLINE_<FLAG> environment variables (e.g. HOTLINE_ADDR=:9000).
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "serve":
		err = serve(ctx, args)
	case "dial":
		err = dial(ctx, args)
	case "bench":
		err = bench(ctx, args)
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "hotline: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	var ee exitError
	if errors.As(err, &ee) {
		os.Exit(int(ee))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hotline:", err)
		os.Exit(1)
	}
}

// exitError ends the program with a status and no further message (the
// command has said what went wrong).
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
