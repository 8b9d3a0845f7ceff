package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/server"
)

// parseNamespace reads one -namespace flag value:
//
//	NAME:history=N,ttl=DURATION,presence,joinleave,publish
//
// A bare option turns it on; "presence=false" turns it off. Unknown
// options are errors, so that a typo does not silently change nothing.
func parseNamespace(v string) (string, push.NamespaceOptions, error) {
	var o push.NamespaceOptions
	name, opts, _ := strings.Cut(v, ":")
	if strings.ContainsAny(name, " ,=") {
		return "", o, fmt.Errorf("-namespace %q: want NAME:option,option (e.g. news:history=100,ttl=10m,presence)", v)
	}
	for _, opt := range strings.Split(opts, ",") {
		opt = strings.TrimSpace(opt)
		if opt == "" {
			continue
		}
		key, val, hasVal := strings.Cut(opt, "=")
		on := true
		if hasVal && key != "history" && key != "ttl" {
			b, err := strconv.ParseBool(val)
			if err != nil {
				return "", o, fmt.Errorf("-namespace %q: %s=%q is not a boolean", v, key, val)
			}
			on = b
		}
		switch key {
		case "history":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return "", o, fmt.Errorf("-namespace %q: history must be a count of publications", v)
			}
			o.HistorySize = n
		case "ttl":
			d, err := time.ParseDuration(val)
			if err != nil || d < 0 {
				return "", o, fmt.Errorf("-namespace %q: ttl must be a duration such as 10m", v)
			}
			o.HistoryTTL = d
		case "presence":
			o.Presence = on
		case "joinleave":
			o.JoinLeave = on
		case "publish":
			o.ClientPublish = on
		default:
			return "", o, fmt.Errorf("-namespace %q: unknown option %q (have history, ttl, presence, joinleave, publish)", v, key)
		}
	}
	return name, o, nil
}

// namespaces builds the engine's namespaces: the defaults of a server,
// then the -namespace flags over them.
func namespaces(flags []string) (map[string]push.NamespaceOptions, error) {
	if len(flags) == 0 {
		return nil, nil // the server's defaults
	}
	m := server.DefaultNamespaces()
	for _, f := range flags {
		name, o, err := parseNamespace(f)
		if err != nil {
			return nil, err
		}
		m[name] = o
	}
	return m, nil
}
