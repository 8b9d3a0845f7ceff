// Command rawtcp is the floor of the comparison: the same echo and
// broadcast over plain TCP, without WebSocket. A message is a 4-byte
// big-endian length and the payload. The client's first byte picks the
// endpoint: 'e' echo, 'b' broadcast. A goroutine per connection reads
// from a 4 KiB bufio.Reader into a reused buffer and writes each message
// with one Write; broadcast queues one encoded message on every
// connection of the hub, as the WebSocket servers do.
package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"

	"github.com/hotline-rt/hotline/bench/ws/internal/wsserve"
)

func main() {
	cfg := wsserve.Flags()
	ln := wsserve.Listen(cfg)
	hub := wsserve.NewHub[[]byte](cfg.Queue)
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go serve(nc, cfg.ReadLimit, hub)
	}
}

func serve(nc net.Conn, limit int64, hub *wsserve.Hub[[]byte]) {
	defer nc.Close()
	br := bufio.NewReaderSize(nc, 4096)
	mode, err := br.ReadByte()
	if err != nil {
		return
	}
	var buf []byte
	read := func() ([]byte, error) {
		var hdr [4]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return nil, err
		}
		n := int64(binary.BigEndian.Uint32(hdr[:]))
		if n > limit {
			return nil, fmt.Errorf("message of %d bytes", n)
		}
		if int64(cap(buf)) < n+4 {
			buf = make([]byte, n+4)
		}
		buf = buf[:n+4]
		copy(buf, hdr[:])
		_, err := io.ReadFull(br, buf[4:])
		return buf, err
	}
	if mode == 'e' {
		for {
			m, err := read()
			if err != nil {
				return
			}
			if _, err := nc.Write(m); err != nil {
				return
			}
		}
	}
	cl := hub.Join()
	defer hub.Leave(cl)
	go func() {
		for m := range cl.C {
			if _, err := nc.Write(m); err != nil {
				nc.Close()
			}
		}
		nc.Close()
	}()
	for {
		m, err := read()
		if err != nil {
			return
		}
		hub.Send(append([]byte(nil), m...))
	}
}
