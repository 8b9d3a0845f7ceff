package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// peer is a WebSocket implementation written by others, driven through a
// script that speaks the same command line in every language:
//
//	<script> client URL CASE
//	<script> server CASE
//
// and prints its events as JSON lines (see event).
type peer struct {
	name string
	// command is the program and the script's leading arguments.
	command []string
	// reportsPings is whether the peer sees the pings it receives (Python
	// websockets answers them without telling).
	reportsPings bool
	// missing reports why the peer cannot run here, or "" when it can.
	missing func() string
}

var (
	pythonPeer = peer{
		name:    "python-websockets",
		command: []string{pythonPath, "testdata/peer.py"},
		missing: func() string {
			out, err := exec.Command(pythonPath, "-c", "import websockets").CombinedOutput()
			if err != nil {
				return fmt.Sprintf("%s cannot import websockets (apt-get install python3-websockets): %v: %s",
					pythonPath, err, bytes.TrimSpace(out))
			}
			return ""
		},
	}
	nodePeer = peer{
		name:         "node-ws",
		command:      []string{"node", "node/peer.js"},
		reportsPings: true,
		missing: func() string {
			if _, err := exec.LookPath("node"); err != nil {
				return "node not found on PATH (apt-get install nodejs)"
			}
			if _, err := os.Stat("node/node_modules/ws/package.json"); err != nil {
				return "Node ws not installed (cd internal/interop/node && npm ci)"
			}
			return ""
		},
	}
)

// pythonPath is Debian's interpreter, which sees Debian's python3-websockets
// whatever python3 comes first on PATH.
const pythonPath = "/usr/bin/python3"

// requirePeer skips the test when the peer is not installed, unless the
// environment variable CI is set: ./test.sh installs every peer, so there a
// missing one is a failure.
func requirePeer(t *testing.T, p peer) {
	t.Helper()
	why := p.missing()
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s: %s (CI is set, so interop tests may not skip)", p.name, why)
	}
	t.Skipf("%s: %s; ./test.sh installs it", p.name, why)
}

// event is one line printed by a peer script.
type event struct {
	Event       string `json:"event"` // listening, open, message, ping, pong, close, error
	Port        int    `json:"port"`
	Subprotocol string `json:"subprotocol"`
	Extensions  string `json:"extensions"` // the Sec-WebSocket-Extensions response, on open
	Type        string `json:"type"`       // text or binary
	Len         int    `json:"len"`
	SHA256      string `json:"sha256"`
	Text        string `json:"text"` // short text messages only
	Hex         string `json:"hex"`  // short binary messages only
	Data        string `json:"data"` // ping and pong payloads
	Code        int    `json:"code"`
	Reason      string `json:"reason"`
	Error       string `json:"error"`
}

func (e event) String() string {
	b, _ := json.Marshal(e)
	return string(b)
}

// proc is a running peer script. Its events are read by a goroutine owned
// by proc, which waits for the process and then closes done.
type proc struct {
	cmd       *exec.Cmd
	stderr    bytes.Buffer // written by exec's copier; read only after done
	listening chan int     // the port of the first listening event
	done      chan struct{}

	mu      sync.Mutex
	events  []event
	waitErr error
}

// startPeer runs the peer's script with args. The process is killed by PID
// when the test ends, if it has not exited by then.
func startPeer(t *testing.T, p peer, args ...string) *proc {
	t.Helper()
	argv := append(append([]string(nil), p.command...), args...)
	pr := &proc{
		cmd:       exec.Command(argv[0], argv[1:]...),
		listening: make(chan int, 1),
		done:      make(chan struct{}),
	}
	pr.cmd.Stderr = &pr.stderr
	stdout, err := pr.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := pr.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go pr.read(stdout)
	t.Cleanup(func() {
		select {
		case <-pr.done:
		default:
			_ = pr.cmd.Process.Kill()
			<-pr.done
		}
	})
	return pr
}

func (pr *proc) read(stdout io.Reader) {
	defer close(pr.done)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			e = event{Event: "error", Error: fmt.Sprintf("unparsable line %q: %v", sc.Text(), err)}
		}
		if e.Event == "listening" {
			select {
			case pr.listening <- e.Port:
			default:
			}
		}
		pr.mu.Lock()
		pr.events = append(pr.events, e)
		pr.mu.Unlock()
	}
	scanErr := sc.Err()
	_, _ = io.Copy(io.Discard, stdout)
	waitErr := pr.cmd.Wait()
	pr.mu.Lock()
	pr.waitErr = errors.Join(scanErr, waitErr)
	pr.mu.Unlock()
}

// port waits for the peer server's listening event.
func (pr *proc) port(ctx context.Context) (int, error) {
	select {
	case port := <-pr.listening:
		return port, nil
	case <-pr.done:
		return 0, fmt.Errorf("peer exited before listening: %v\n%s", pr.waitErr, pr.log())
	case <-ctx.Done():
		return 0, fmt.Errorf("peer did not listen: %w\n%s", ctx.Err(), pr.log())
	}
}

// wait waits for the peer to exit and returns its events; the error is
// set when it exited with a failure or did not exit in time (then it is
// killed).
func (pr *proc) wait(ctx context.Context) ([]event, error) {
	select {
	case <-pr.done:
	case <-ctx.Done():
		_ = pr.cmd.Process.Kill()
		<-pr.done
		return pr.snapshot(), fmt.Errorf("peer did not exit: %w\n%s", ctx.Err(), pr.log())
	}
	pr.mu.Lock()
	err := pr.waitErr
	pr.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("peer failed: %w\n%s", err, pr.log())
	}
	return pr.snapshot(), err
}

func (pr *proc) snapshot() []event {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return append([]event(nil), pr.events...)
}

// log is the peer's output for failure messages.
func (pr *proc) log() string {
	var b strings.Builder
	b.WriteString("peer events:\n")
	for _, e := range pr.snapshot() {
		fmt.Fprintf(&b, "\t%v\n", e)
	}
	select {
	case <-pr.done:
		fmt.Fprintf(&b, "peer stderr:\n%s", pr.stderr.String())
	default:
	}
	return b.String()
}

// caseTimeout bounds one case, 16 MiB each way under -race included.
const caseTimeout = 60 * time.Second
