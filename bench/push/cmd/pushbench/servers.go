package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Peers, pinned. Each is installed by the harness into the cache
// directory on first use.
const (
	centrifugoModule  = "github.com/centrifugal/centrifugo/v6"
	centrifugoVersion = "v6.9.1"
	socketioVersion   = "4.8.1"
	apiKey            = "pushbench-api-key"
)

//go:embed socketio.js
var socketioServer []byte

// A peer is one server under test.
type peer struct {
	name    string
	version string
	config  string // what was configured, for the README
	// argv starts the server on addr (the harness prefixes taskset).
	argv func(addr string) []string
	env  []string
	// publish sends body to room through the server's HTTP API.
	publish func(ctx context.Context, hc *http.Client, addr string, room int, body []byte) error
	// gc asks the server to collect garbage before an RSS reading, if it
	// can be asked.
	gc func(ctx context.Context, hc *http.Client, addr string)
}

type env struct {
	repo  string // hotline's module root
	cache string // installed peers, built binaries
	log   io.Writer
}

func (e *env) run(dir string, extraEnv []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), extraEnv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	fmt.Fprintf(e.log, "+ (cd %s && %s %s)\n", dir, name, strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.Bytes())
	}
	return nil
}

// hotlinePeer builds cmd/hotline from the repository at its current state.
func (e *env) hotlinePeer() (*peer, error) {
	bin := filepath.Join(e.cache, "bin", "hotline")
	if err := e.run(e.repo, nil, "go", "build", "-o", bin, "./cmd/hotline"); err != nil {
		return nil, err
	}
	rev := "unknown"
	if out, err := exec.Command("git", "-C", e.repo, "describe", "--always", "--dirty").Output(); err == nil {
		rev = strings.TrimSpace(string(out))
	}
	ns := "bench:history=100,ttl=10m"
	return &peer{
		name:    "hotline",
		version: rev,
		config: "`hotline serve -addr ADDR -api-key KEY -namespace " + ns + " -log-level warn`: development mode " +
			"(anonymous clients), namespace `bench` with history (100 publications, 10 min) and recovery as `chat` has, " +
			"no presence or join/leave (they would add a message per subscriber per join), the API key for /api/publish; " +
			"everything else at its default",
		argv: func(addr string) []string {
			return []string{bin, "serve", "-addr", addr, "-api-key", apiKey, "-namespace", ns, "-log-level", "warn"}
		},
		publish: func(ctx context.Context, hc *http.Client, addr string, room int, body []byte) error {
			return post(ctx, hc, "http://"+addr+"/api/publish", apiPublishBody(room, body), "Authorization", "apikey "+apiKey)
		},
	}, nil
}

func apiPublishBody(room int, data []byte) []byte {
	b := make([]byte, 0, len(data)+40)
	b = append(b, `{"channel":"`...)
	b = append(b, channelName(room)...)
	b = append(b, `","data":`...)
	b = append(b, data...)
	return append(b, '}')
}

// centrifugoConfig is the configuration the harness writes, and why:
// anonymous clients may connect and subscribe (hotline's development
// mode), the namespace keeps history with recovery like hotline's chat
// namespace (history and positions are what makes the comparison fair:
// both servers keep a stream per channel), and the HTTP API has a key.
// Nothing else is changed from Centrifugo's defaults.
func centrifugoConfig(port int) []byte {
	cfg := map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "error"},
		"client": map[string]any{
			"allow_anonymous_connect_without_token": true,
			"allowed_origins":                       []string{"*"},
		},
		"channel": map[string]any{
			"namespaces": []map[string]any{{
				"name":                          "bench",
				"history_size":                  100,
				"history_ttl":                   "600s",
				"force_recovery":                true,
				"allow_subscribe_for_anonymous": true,
				"allow_subscribe_for_client":    true,
			}},
		},
		"http_api": map[string]any{"key": apiKey},
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	return b
}

func (e *env) centrifugoPeer() (*peer, error) {
	bin := filepath.Join(e.cache, "bin", "centrifugo-"+centrifugoVersion)
	if _, err := os.Stat(bin); err != nil {
		gobin := filepath.Join(e.cache, "gobin-centrifugo")
		if err := e.run(e.cache, []string{"GOBIN=" + gobin, "GOFLAGS=-mod=mod"}, "go", "install", centrifugoModule+"@"+centrifugoVersion); err != nil {
			return nil, err
		}
		if err := os.Rename(filepath.Join(gobin, "centrifugo"), bin); err != nil {
			return nil, err
		}
	}
	dir := filepath.Join(e.cache, "centrifugo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &peer{
		name:    "centrifugo",
		version: centrifugoVersion,
		config: "config written by the harness (`" + filepath.Join(dir, "config-PORT.json") + "`): anonymous connect " +
			"(`client.allow_anonymous_connect_without_token`), namespace `bench` with `history_size` 100, `history_ttl` 600s " +
			"and `force_recovery` (as hotline's chat namespace keeps history and recovers), `allow_subscribe_for_anonymous`, " +
			"`http_api.key`, log level error; everything else at its default (memory engine)",
		argv: func(addr string) []string {
			_, p, _ := net.SplitHostPort(addr)
			port, _ := strconv.Atoi(p)
			file := filepath.Join(dir, "config-"+p+".json")
			os.WriteFile(file, centrifugoConfig(port), 0o644)
			return []string{bin, "--config", file}
		},
		publish: func(ctx context.Context, hc *http.Client, addr string, room int, body []byte) error {
			return post(ctx, hc, "http://"+addr+"/api/publish", apiPublishBody(room, body), "X-API-Key", apiKey)
		},
	}, nil
}

func (e *env) socketioPeer() (*peer, error) {
	dir := filepath.Join(e.cache, "socketio")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "socket.io", "package.json")); err != nil {
		if err := e.run(dir, nil, "npm", "install", "--no-audit", "--no-fund", "--no-save", "socket.io@"+socketioVersion); err != nil {
			return nil, err
		}
	}
	var pkg struct{ Version string }
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", "socket.io", "package.json"))
	if err == nil {
		err = json.Unmarshal(b, &pkg)
	}
	if err != nil || pkg.Version != socketioVersion {
		return nil, fmt.Errorf("socket.io in %s: version %q, want %s (%v); remove the directory to reinstall", dir, pkg.Version, socketioVersion, err)
	}
	script := filepath.Join(dir, "server.js")
	if err := os.WriteFile(script, socketioServer, 0o644); err != nil {
		return nil, err
	}
	nodeVersion := "node"
	if out, err := exec.Command("node", "--version").Output(); err == nil {
		nodeVersion = "node " + strings.TrimSpace(string(out))
	}
	return &peer{
		name:    "socketio",
		version: socketioVersion + " (" + nodeVersion + ")",
		config: "`node --expose-gc server.js` (bench/push/cmd/pushbench/socketio.js, 15 lines): `transports: ['websocket']`, " +
			"each client joins the room named in its URL, POST /publish?room=R emits the JSON body to the room; " +
			"Socket.IO's defaults otherwise (no per-message deflate, ping every 25 s). It keeps no history: it has none",
		argv: func(addr string) []string { return []string{"node", "--expose-gc", script} },
		env:  nil, // PORT is set by start
		publish: func(ctx context.Context, hc *http.Client, addr string, room int, body []byte) error {
			return post(ctx, hc, "http://"+addr+"/publish?room=r"+strconv.Itoa(room), body)
		},
		gc: func(ctx context.Context, hc *http.Client, addr string) {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/gc", nil)
			if resp, err := hc.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		},
	}, nil
}

func post(ctx context.Context, hc *http.Client, url string, body []byte, header ...string) error {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != 200 {
		return fmt.Errorf("publish: %s: %.200s", resp.Status, b)
	}
	if bytes.Contains(b, []byte(`"error"`)) { // Centrifugo answers 200 with an error object
		return fmt.Errorf("publish: %.200s", b)
	}
	return nil
}

// running is a started server.
type running struct {
	p    *peer
	addr string
	cmd  *exec.Cmd
	pid  int
	done chan struct{}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// start runs p pinned to cpu (taskset) and waits until it accepts
// connections.
func (e *env) start(p *peer, cpu string) (*running, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	argv := p.argv(addr)
	if cpu != "" {
		argv = append([]string{"taskset", "-c", cpu}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	_, port, _ := net.SplitHostPort(addr)
	cmd.Env = append(os.Environ(), "PORT="+port)
	cmd.Env = append(cmd.Env, p.env...)
	logf, err := os.Create(filepath.Join(e.cache, p.name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	r := &running{p: p, addr: addr, cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(r.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return r, nil
		}
		select {
		case <-r.done:
			return nil, fmt.Errorf("%s exited at start; see %s", p.name, logf.Name())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("%s does not listen on %s after 30 s", p.name, addr)
		}
	}
}

// stop ends the server by its PID: SIGTERM, then SIGKILL after 5 s.
func (r *running) stop() {
	r.cmd.Process.Signal(os.Interrupt)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
	}
}
