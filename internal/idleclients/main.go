// Command idleclients holds many idle, subscribed superchat WebSocket
// clients open against a hotline server, for the idle-memory measurement
// of the event-loop mode (server.TestIdleMemory). Each client upgrades
// with raw bytes, subscribes to one channel, waits for the reply, then
// only answers pings. It prints "ready N" once all are subscribed and
// holds them until killed or stdin closes.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "server address")
	n := flag.Int("n", 1000, "clients")
	channel := flag.String("channel", "chat:idle", "channel to subscribe to")
	parallel := flag.Int("parallel", 32, "handshakes at once")
	flag.Parse()

	sub := frame(0x1, []byte(`{"id":1,"op":"subscribe","channel":"`+*channel+`"}`))
	req := []byte("GET /chat HTTP/1.1\r\nHost: " + *addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: superchat\r\n\r\n")
	req = append(req, sub...)

	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range *parallel {
		wg.Go(func() {
			for range jobs {
				if err := open(*addr, req); err != nil {
					if failed.Add(1) <= 5 {
						fmt.Fprintln(os.Stderr, "idleclients:", err)
					}
					continue
				}
				ok.Add(1)
			}
		})
	}
	for i := range *n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	fmt.Printf("ready %d failed %d\n", ok.Load(), failed.Load())
	io.Copy(io.Discard, os.Stdin)
}

// open makes one client and leaves a goroutine answering its pings.
func open(addr string, req []byte) error {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := nc.Write(req); err != nil {
		nc.Close()
		return err
	}
	br := bufio.NewReaderSize(nc, 512)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			nc.Close()
			return fmt.Errorf("handshake: %w", err)
		}
		if bytes.HasPrefix(line, []byte("HTTP/1.1 ")) && !bytes.HasPrefix(line, []byte("HTTP/1.1 101")) {
			nc.Close()
			return fmt.Errorf("handshake: %q", line)
		}
		if len(line) == 2 {
			break
		}
	}
	op, p, err := readFrame(br)
	if err != nil || op != 0x1 || !bytes.Contains(p, []byte(`"id":1`)) {
		nc.Close()
		return fmt.Errorf("subscribe reply: %#x %q %v", op, p, err)
	}
	nc.SetDeadline(time.Time{})
	go func() {
		defer nc.Close()
		for {
			op, p, err := readFrame(br)
			if err != nil {
				return
			}
			switch op {
			case 0x9:
				nc.Write(frame(0xA, p))
			case 0x8:
				nc.Write(frame(0x8, p))
				return
			}
		}
	}()
	return nil
}

func frame(op byte, p []byte) []byte {
	out := []byte{0x80 | op}
	switch {
	case len(p) < 126:
		out = append(out, 0x80|byte(len(p)))
	default:
		out = append(out, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	key := [4]byte{7, 1, 9, 3}
	out = append(out, key[:]...)
	for i, c := range p {
		out = append(out, c^key[i%4])
	}
	return out
}

func readFrame(br *bufio.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		if _, err := io.ReadFull(br, e[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err := io.ReadFull(br, e[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint64(e[:]))
	}
	p := make([]byte, n)
	_, err := io.ReadFull(br, p)
	return h[0] & 0x0f, p, err
}
