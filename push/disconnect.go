package push

import (
	"errors"
	"fmt"
)

// Disconnect is the error that ends a session. The transport closes the
// connection with Code (a WebSocket close code) and Reason.
type Disconnect struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

func (d *Disconnect) Error() string {
	return fmt.Sprintf("push: disconnect %d: %s", d.Code, d.Reason)
}

// Close codes used by the engine (RFC 6455 section 7.4.1).
const (
	CodeNormal          = 1000
	CodeGoingAway       = 1001
	CodePolicyViolation = 1008
	CodeTryAgainLater   = 1013
)

// Reasons the engine ends sessions with; compare Disconnect.Reason to them.
const (
	ReasonShutdown     = "server shutting down"
	ReasonSlowConsumer = "slow consumer: outbound queue full"
	ReasonExpired      = "session expired"
)

var (
	// ErrTooManySessions: Config.MaxSessions reached. Transports answer 503
	// with Retry-After.
	ErrTooManySessions = errors.New("push: too many sessions")
	// ErrClosed: the engine was shut down.
	ErrClosed = errors.New("push: engine shut down")
	// ErrInvalidChannel: an empty or too long channel name.
	ErrInvalidChannel = errors.New("push: invalid channel")
	// ErrUnknownNamespace: a channel in a namespace that is not configured.
	ErrUnknownNamespace = errors.New("push: unknown namespace")
	// ErrForbidden: the identity or the namespace does not allow it.
	ErrForbidden = errors.New("push: forbidden")
	// ErrPresenceDisabled: presence asked of a namespace without it.
	ErrPresenceDisabled = errors.New("push: presence disabled")
	// ErrBadRequest: a superchat envelope that cannot be decoded.
	ErrBadRequest = errors.New("push: bad request")
)
