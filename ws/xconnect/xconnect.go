// Package xconnect turns on extended CONNECT (RFC 8441) in Go's HTTP/2
// server, so that browsers and ws.Dial open WebSockets over HTTP/2. Import
// it for its effect, in package main:
//
//	import _ "github.com/hotline-rt/hotline/ws/xconnect"
//
// Why a package: Go's HTTP/2 server sends SETTINGS_ENABLE_CONNECT_PROTOCOL
// (and accepts a :protocol pseudo-header) only if the GODEBUG environment
// variable holds http2xconnect=1 when net/http is initialized; it is off
// by default since Go 1.24 (golang/go#71128), and Go 1.26 has no API for
// it (proposal golang/go#53208). net/http reads the variable itself with
// os.Getenv in its init, so neither a //go:debug directive (which the go
// command refuses: http2xconnect is not a registered setting, and the
// runtime's defaults are not in the environment anyway) nor os.Setenv in
// main (which runs after net/http's init) can turn it on.
//
// This package's init sets GODEBUG=http2xconnect=1 (added to what GODEBUG
// holds) before net/http's init reads it. That order is the language's:
// since Go 1.21 packages are initialized in import-path order among those
// whose imports are initialized (the spec, "Package initialization").
// This package imports only os and strings, which net/http needs too, so
// it is ready no later than net/http, and its path
// ("github.com/...") sorts before "net/http". It must never import
// net/http (nor anything that does): it would then be initialized after
// it. Its test is an external package for that reason (a test file of
// package xconnect that imports net/http makes the test binary fail), and
// checks the effect on a real HTTP/2 server.
//
// It depends on: the variable's name and meaning in net/http (Go 1.24 to
// 1.26 at least: GODEBUG=http2xconnect=1), and this package's import path
// sorting before "net/http". If GODEBUG already names http2xconnect
// (=0 to refuse), the operator's choice stands. The setting is
// process-wide: every net/http server of the program advertises extended
// CONNECT, and a handler that is not a WebSocket endpoint answers such a
// request like any other CONNECT. It does not change Go's HTTP/2 client,
// which sends an extended CONNECT whenever the server allows it.
package xconnect

import (
	"os"
	"strings"
)

// setting is what GODEBUG gets.
const setting = "http2xconnect=1"

func init() {
	v := os.Getenv("GODEBUG")
	if strings.Contains(v, "http2xconnect=") {
		return
	}
	if v != "" {
		v += ","
	}
	os.Setenv("GODEBUG", v+setting)
}

// Enabled reports whether GODEBUG, as net/http read it at its
// initialization, turns extended CONNECT on (by net/http's own test: it
// holds the setting).
func Enabled() bool { return strings.Contains(os.Getenv("GODEBUG"), setting) }
