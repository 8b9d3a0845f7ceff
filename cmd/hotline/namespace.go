package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/server"
)

// defaultHistoryBytes bounds the history of a namespace whose flag keeps
// history but sets no bytes=: a few large publications must not pin
// memory in every node (and in Redis) nor make replies huge.
const defaultHistoryBytes = 1 << 20

// parseNamespace reads one -namespace flag value:
//
//	NAME:history=N,ttl=DURATION,bytes=SIZE,presence,joinleave,publish
//
// A bare option turns it on; "presence=false" turns it off. SIZE is bytes,
// or a number with KiB or MiB; history without bytes= keeps at most
// defaultHistoryBytes, bytes=0 lifts the bound. Unknown options are errors,
// so that a typo does not silently change nothing.
func parseNamespace(v string) (string, push.NamespaceOptions, error) {
	var o push.NamespaceOptions
	name, opts, _ := strings.Cut(v, ":")
	if strings.ContainsAny(name, " ,=") {
		return "", o, fmt.Errorf("-namespace %q: want NAME:option,option (e.g. news:history=100,ttl=10m,presence)", v)
	}
	haveBytes := false
	for _, opt := range strings.Split(opts, ",") {
		opt = strings.TrimSpace(opt)
		if opt == "" {
			continue
		}
		key, val, hasVal := strings.Cut(opt, "=")
		on := true
		if hasVal && key != "history" && key != "ttl" && key != "bytes" {
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
		case "bytes":
			n, err := parseSize(val)
			if err != nil {
				return "", o, fmt.Errorf("-namespace %q: bytes must be a size such as 65536, 512KiB or 1MiB", v)
			}
			o.HistoryBytes, haveBytes = n, true
		case "presence":
			o.Presence = on
		case "joinleave":
			o.JoinLeave = on
		case "publish":
			o.ClientPublish = on
		default:
			return "", o, fmt.Errorf("-namespace %q: unknown option %q (have history, ttl, bytes, presence, joinleave, publish)", v, key)
		}
	}
	if !haveBytes && o.HistorySize > 0 {
		o.HistoryBytes = defaultHistoryBytes
	}
	return name, o, nil
}

// parseSize reads a byte count: "65536", "512KiB", "1MiB".
func parseSize(v string) (int, error) {
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}} {
		if num, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = num, u.mult
			break
		}
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("bad size %q", v)
	}
	return n * mult, nil
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
