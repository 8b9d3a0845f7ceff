// Package interop tests hotline's ws package against WebSocket
// implementations written by others: Python websockets (Debian's
// python3-websockets, scripts in testdata/) and Node ws (pinned in
// node/package-lock.json). Each peer's client talks to a ws.Upgrade server
// and ws.Dial talks to each peer's server, over loopback, without and with
// permessage-deflate (deflate_test.go). Headless Chromium, driven through
// chromedp, checks the browser's permessage-deflate offer against
// ws.Upgrade (chromium_test.go). The peers' clients also talk to the
// event-loop mode's machinery (transport.EventLoop.ServeEcho:
// eventloop_test.go), which shares no reading or writing code with ws.Conn.
//
// The package has tests only. ./test.sh installs the peers first; run alone,
// a test skips when its peer is missing, unless the environment variable CI
// is set, when it fails.
package interop
