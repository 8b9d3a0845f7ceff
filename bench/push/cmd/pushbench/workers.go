package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// workers are the load generator processes of one scenario.
type workers struct {
	procs []*workerProc
}

type workerProc struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *json.Decoder
	done chan struct{}
}

// spawn starts enough worker processes to hold clients with at most
// perProc sockets each (the open-files limit is per process), pinned to
// cpu; clients are spread evenly, client g in room g % rooms.
func (e *env) spawn(server, addr, run string, clients, rooms, conc, perProc int, cpu string) (*workers, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	n := max(1, (clients+perProc-1)/perProc)
	ws := &workers{}
	first := 0
	for i := range n {
		share := clients / n
		if i < clients%n {
			share++
		}
		argv := []string{self, "load", "-server", server, "-addr", addr, "-run", run,
			"-clients", strconv.Itoa(share), "-first", strconv.Itoa(first), "-rooms", strconv.Itoa(rooms),
			"-conc", strconv.Itoa(max(1, conc/n))}
		if cpu != "" {
			argv = append([]string{"taskset", "-c", cpu}, argv...)
		}
		first += share
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stderr = e.log
		in, err := cmd.StdinPipe()
		if err != nil {
			ws.quit()
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			ws.quit()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			ws.quit()
			return nil, err
		}
		p := &workerProc{cmd: cmd, in: in, out: json.NewDecoder(bufio.NewReader(out)), done: make(chan struct{})}
		ws.procs = append(ws.procs, p)
	}
	return ws, nil
}

// call sends line to every worker at once, then decodes each one's reply
// with into(i).
func (ws *workers) call(line string, into func(i int) any) error {
	for _, p := range ws.procs {
		if _, err := io.WriteString(p.in, line+"\n"); err != nil {
			return fmt.Errorf("worker %d: %w", p.cmd.Process.Pid, err)
		}
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs error
	)
	for i, p := range ws.procs {
		wg.Go(func() {
			if err := p.out.Decode(into(i)); err != nil {
				mu.Lock()
				errs = fmt.Errorf("worker %d: %s: %w", p.cmd.Process.Pid, line, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs
}

// quit tells every worker to close its clients and waits for it; a
// worker that does not exit in 10 s is killed by its PID.
func (ws *workers) quit() {
	var wg sync.WaitGroup
	for _, p := range ws.procs {
		wg.Go(func() {
			io.WriteString(p.in, "quit\n")
			p.in.Close()
			exited := make(chan struct{})
			go func() { p.cmd.Wait(); close(exited) }()
			select {
			case <-exited:
			case <-timeAfter(10):
				p.cmd.Process.Kill()
				<-exited
			}
		})
	}
	wg.Wait()
}

func (ws *workers) pids() []int {
	var out []int
	for _, p := range ws.procs {
		out = append(out, p.cmd.Process.Pid)
	}
	return out
}

func timeAfter(seconds int) <-chan time.Time { return time.After(time.Duration(seconds) * time.Second) }
