// Command hotline is a WebSocket push server and its tools:
//
//	hotline serve   run the server (chat page, push API, /echo, /broadcast)
//	hotline dial    a command-line WebSocket client
//	hotline bench   load-test a hotline server over each transport
//	hotline token   mint a development token
//
// Run "hotline <command> -h" for the flags of each. Every flag can also be
// set through the environment as HOTLINE_<FLAG>, with dashes as
// underscores (HOTLINE_ADDR, HOTLINE_JWT_SECRET); a flag on the command
// line wins. "hotline -version" prints the version the binary was built
// from.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

const usage = `hotline: WebSocket push server with long-polling fallback

Usage:
  hotline serve [flags]        run the server (default http://localhost:8080)
  hotline dial [flags] URL     talk to a WebSocket server from the terminal
  hotline bench [flags]        measure a server over WebSocket and polling
  hotline token [flags]        mint an HS256 token for development
  hotline -version             the version this binary was built from

Run "hotline <command> -h" for each command's flags. Flags can also be set
as HOTLINE_<FLAG> environment variables (e.g. HOTLINE_ADDR=:9000).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args (without the program name) with its
// output on stdout and stderr, until it is done or ctx ends (a signal),
// and returns the exit status. Tests call it in process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runIO(ctx, args, os.Stdin, stdout, stderr)
}

// runIO is run with the input of "hotline dial" given.
func runIO(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx = context.WithValue(ctx, stdioKey{}, stdio{in: stdin, out: stdout, err: stderr})
	var err error
	switch cmd, args := args[0], args[1:]; cmd {
	case "serve":
		err = serve(ctx, args)
	case "dial":
		err = dial(ctx, args)
	case "bench":
		err = bench(ctx, args)
	case "token":
		err = token(ctx, args)
	case "-version", "--version", "version":
		fmt.Fprintln(stdout, version())
		return 0
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "hotline: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return int(ee)
	}
	if err != nil {
		fmt.Fprintln(stderr, "hotline:", err)
		return 1
	}
	return 0
}

// exitError ends the program with a status and no further message (the
// command has said what went wrong).
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// stdio is where a command reads and writes: the process's own, or a
// test's. It travels in the command's context.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

type stdioKey struct{}

func stdioOf(ctx context.Context) stdio {
	if s, ok := ctx.Value(stdioKey{}).(stdio); ok {
		return s
	}
	return stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr}
}

func stdinOf(ctx context.Context) io.Reader  { return stdioOf(ctx).in }
func stdoutOf(ctx context.Context) io.Writer { return stdioOf(ctx).out }
func stderrOf(ctx context.Context) io.Writer { return stdioOf(ctx).err }

// version describes the build from the module's build info: the module
// version ("v0.3.0" when installed with go install ...@v0.3.0, "(devel)"
// for a build in a checkout), the VCS revision and time when the build
// recorded them, and the Go version.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "hotline (no build information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+modified"
			}
		}
	}
	parts := []string{"hotline", v}
	if rev != "" {
		parts = append(parts, "commit "+rev[:min(len(rev), 12)]+dirty)
	}
	if at != "" {
		parts = append(parts, at)
	}
	parts = append(parts, bi.GoVersion)
	return strings.Join(parts, " ")
}
