package loadtest

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Transport names, as hotline bench's -transport takes them.
const (
	WebSocket   = "ws"
	LongPolling = "longpoll"
	Polling     = "poll"
)

// Transports lists every transport in the order bench runs them.
var Transports = []string{WebSocket, LongPolling, Polling}

// Config is one measurement: one transport, one load. Fields left zero
// take the default in their comment.
type Config struct {
	// URL is the server's base URL, http:// or https://; the endpoints
	// /chat, /poll/ and /api/publish are found under it.
	URL string
	// Transport is WebSocket, LongPolling or Polling. "": WebSocket.
	Transport string
	// Clients is the number of subscribers. 0: 10.
	Clients int
	// Rate is the total publications per second. 0: 10.
	Rate float64
	// Duration is how long publishing lasts. 0: 5s. Rate×Duration
	// messages are published, at least one.
	Duration time.Duration
	// Channel every client subscribes to. "": "bench:" and the run id.
	// The server's namespace must exist (hotline serve has "bench").
	Channel string
	// Size pads each message's data to about this many bytes. 0: no
	// padding (about 60 bytes).
	Size int

	// Insecure skips the verification of the server's TLS certificate
	// (an https:// URL with a self-signed test certificate).
	Insecure bool

	// Compress offers permessage-deflate on the WebSocket clients'
	// connections; the server decides. Polling is not compressed.
	Compress bool

	// APIKey publishes through POST /api/publish. "": the publisher
	// is a superchat WebSocket client using op publish, so the
	// channel's namespace must allow client publishing.
	APIKey string
	// Token is sent by every client (and the WebSocket publisher) as
	// "Authorization: Bearer". Ignored if JWTSecret is set.
	Token string
	// JWTSecret mints one HS256 token per client (user bench-N) with
	// auth.Sign.
	JWTSecret []byte

	// PollInterval is how often an ajax-polling client asks. 0: 1s.
	PollInterval time.Duration
	// Drain is how long to wait, after the last publication, for the
	// clients to receive everything. 0: 5s plus two poll intervals.
	Drain time.Duration
	// ConnectTimeout bounds connecting and subscribing all clients.
	// 0: 30s.
	ConnectTimeout time.Duration
	// Publishers is how many publish requests may be in flight at once
	// over the HTTP API. 0: 8.
	Publishers int

	// ServerPID, if not 0, is the server's process on this machine:
	// its CPU time during the run is read from /proc.
	ServerPID int

	// OnProgress, if set, is called every ProgressInterval from the
	// goroutine running Run, and once at each phase change.
	OnProgress func(Progress)
	// ProgressInterval: 0 means 200ms.
	ProgressInterval time.Duration
}

func (c Config) withDefaults() Config {
	if c.Transport == "" {
		c.Transport = WebSocket
	}
	if c.Clients == 0 {
		c.Clients = 10
	}
	if c.Rate == 0 {
		c.Rate = 10
	}
	if c.Duration == 0 {
		c.Duration = 5 * time.Second
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.Drain == 0 {
		c.Drain = 5*time.Second + 2*c.PollInterval
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 30 * time.Second
	}
	if c.Publishers == 0 {
		c.Publishers = 8
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = 200 * time.Millisecond
	}
	return c
}

func (c Config) validate() error {
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("loadtest: URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("loadtest: URL %q: want http://host[:port] or https://", c.URL)
	}
	switch c.Transport {
	case WebSocket, LongPolling, Polling:
	default:
		return fmt.Errorf("loadtest: unknown transport %q (want ws, longpoll or poll)", c.Transport)
	}
	switch {
	case c.Clients < 0:
		return errors.New("loadtest: negative Clients")
	case c.Rate < 0:
		return errors.New("loadtest: negative Rate")
	case c.Duration < 0:
		return errors.New("loadtest: negative Duration")
	case c.Size < 0:
		return errors.New("loadtest: negative Size")
	case c.PollInterval < 0, c.Drain < 0, c.ConnectTimeout < 0:
		return errors.New("loadtest: negative interval")
	case c.Publishers < 0:
		return errors.New("loadtest: negative Publishers")
	}
	return nil
}

// messages is how many publications the run makes.
func (c Config) messages() int {
	return max(1, int(c.Rate*c.Duration.Seconds()+0.5))
}
