package auth

import (
	"path"
	"time"
)

// Identity is who a client is, fixed at connect.
type Identity struct {
	UserID string // the token's sub
	Name   string // display name
	// Subscribe and Publish are channel patterns in path.Match syntax
	// ("chat:*"). nil or empty: whatever the channel's namespace allows.
	Subscribe []string
	Publish   []string
	// Expires is when the token expires; zero if it does not.
	Expires time.Time
	// Denied are channel patterns refused for subscription whatever
	// Subscribe says. A server sets them from its own policy (hotline
	// keeps its stats feed from tokens that do not name it); a token
	// cannot.
	Denied []string
}

// CanSubscribe reports whether the identity's patterns allow subscribing to
// channel.
func (id Identity) CanSubscribe(channel string) bool {
	for _, p := range id.Denied {
		if ok, err := path.Match(p, channel); err != nil || ok {
			return false
		}
	}
	return allowed(id.Subscribe, channel)
}

// CanPublish reports whether the identity's patterns allow publishing to
// channel.
func (id Identity) CanPublish(channel string) bool { return allowed(id.Publish, channel) }

func allowed(patterns []string, channel string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, err := path.Match(p, channel); err == nil && ok {
			return true
		}
	}
	return false
}
