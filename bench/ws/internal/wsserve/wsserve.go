// Package wsserve is the plumbing every benchmark server shares, so that
// the servers' own files hold only their library's code: the flags, the
// listener, the garbage collection on request that the memory scenarios
// use, and the exit on SIGTERM.
//
// A server prints "listening <addr>" on stdout once it accepts
// connections. On SIGUSR1 it runs the garbage collector, returns freed
// memory to the kernel and prints "gc" on stdout, so that the harness
// reads a resident set size without garbage in it.
package wsserve

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
)

// Config is what the harness sets on every server, the same for all.
type Config struct {
	// Addr is the listen address.
	Addr string
	// ReadLimit is the largest message a server accepts, in bytes.
	ReadLimit int64
	// Deflate turns on permessage-deflate without context takeover
	// where the library has it.
	Deflate bool
	// Fresh has the net/http servers (hotline, gorilla, coder) serve
	// each /echo connection on a goroutine of its own after the upgrade,
	// so that the handler's goroutine, and the stack it grew while
	// net/http parsed the request, ends. The others already do.
	Fresh bool
	// Queue is the capacity of each connection's outgoing queue in the
	// broadcast hubs that keep one.
	Queue int
}

// Flags parses the command line into a Config.
func Flags() Config {
	var c Config
	flag.StringVar(&c.Addr, "addr", "127.0.0.1:0", "listen address")
	flag.Int64Var(&c.ReadLimit, "read-limit", 1<<20, "largest message accepted, bytes")
	flag.BoolVar(&c.Deflate, "deflate", false, "negotiate permessage-deflate (no context takeover)")
	flag.BoolVar(&c.Fresh, "fresh", false, "serve /echo connections on a fresh goroutine after the upgrade (net/http servers)")
	flag.IntVar(&c.Queue, "queue", 1024, "outgoing messages queued per broadcast connection")
	flag.Parse()
	return c
}

// out serializes the lines the harness reads.
var out sync.Mutex

func say(s string) {
	out.Lock()
	defer out.Unlock()
	fmt.Fprintln(os.Stdout, s)
}

// Listen opens the listener and starts the signal handlers.
func Listen(c Config) net.Listener {
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range sig {
			if s != syscall.SIGUSR1 {
				os.Exit(0)
			}
			runtime.GC()
			debug.FreeOSMemory()
			say("gc")
		}
	}()
	say("listening " + ln.Addr().String())
	return ln
}

// Go runs serve(c) on the handler's goroutine, or on a fresh one with
// c.Fresh.
func Go[C any](cfg Config, serve func(C), c C) {
	if cfg.Fresh {
		go serve(c)
		return
	}
	serve(c)
}

// ServeHTTP serves h on c.Addr until the process ends. The http.Server
// is net/http's default one but for its handler.
func ServeHTTP(c Config, h http.Handler) {
	ln := Listen(c)
	err := (&http.Server{Handler: h}).Serve(ln)
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
