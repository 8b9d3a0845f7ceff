package redisbroker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// ParseAddr reads where Redis is, as the -redis-addr flag takes it, into
// the Addrs, Username, Password, DB and TLS of a Config:
//
//   - host:port, or several comma-separated (seeds of a cluster);
//   - redis://[user:password@]host:port[,host:port...][/db], or rediss://
//     for TLS (verified against the system's roots, server name from the
//     first host).
func ParseAddr(s string) (Config, error) {
	var cfg Config
	s = strings.TrimSpace(s)
	if s == "" {
		return cfg, errors.New("empty address")
	}
	rest := s
	scheme, after, isURL := strings.Cut(s, "://")
	if isURL {
		switch scheme {
		case "redis":
		case "rediss":
			cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		default:
			return cfg, fmt.Errorf("%q: scheme %q, want redis or rediss", redact(s), scheme)
		}
		// Split by hand: url.Parse does not take a list of hosts.
		rest = after
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			userinfo := rest[:at]
			rest = rest[at+1:]
			user, pass, hasPass := strings.Cut(userinfo, ":")
			var err error
			if cfg.Username, err = url.PathUnescape(user); err != nil {
				return cfg, fmt.Errorf("%q: user: %w", redact(s), err)
			}
			if hasPass {
				if cfg.Password, err = url.PathUnescape(pass); err != nil {
					return cfg, fmt.Errorf("%q: password: %w", redact(s), err)
				}
			} else {
				// redis://password@host is how many tools write a
				// password without a user.
				cfg.Password, cfg.Username = cfg.Username, ""
			}
		}
		if q := strings.IndexByte(rest, '?'); q >= 0 {
			return cfg, fmt.Errorf("%q: query parameters are not supported", redact(s))
		}
		if slash := strings.IndexByte(rest, '/'); slash >= 0 {
			db := rest[slash+1:]
			rest = rest[:slash]
			if db != "" {
				n, err := strconv.Atoi(db)
				if err != nil || n < 0 {
					return cfg, fmt.Errorf("%q: database %q is not a number", redact(s), db)
				}
				cfg.DB = n
			}
		}
	}
	for _, a := range strings.Split(rest, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" || port == "" {
			return cfg, fmt.Errorf("%q: %q is not host:port", redact(s), a)
		}
		cfg.Addrs = append(cfg.Addrs, a)
	}
	if len(cfg.Addrs) == 0 {
		return cfg, fmt.Errorf("%q: no host:port", redact(s))
	}
	if cfg.TLS != nil {
		cfg.TLS.ServerName, _, _ = net.SplitHostPort(cfg.Addrs[0])
	}
	return cfg, nil
}

// redact hides the password of a URL in an error message.
func redact(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return scheme + "://xxx@" + rest[at+1:]
	}
	return scheme + "://" + user + ":xxx@" + rest[at+1:]
}
