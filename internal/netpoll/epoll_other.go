//go:build !linux

package netpoll

import "errors"

const (
	Readable = 1 << iota
	Writable
)

type Handler interface{ Ready(events int) }

// Poller is only implemented on Linux.
type Poller struct{}

func New() (*Poller, error) { return nil, errors.New("netpoll: the event loop needs Linux (epoll)") }

func (p *Poller) Add(fd int, h Handler) error { return errors.New("netpoll: unsupported") }
func (p *Poller) Remove(fd int)               {}
func (p *Poller) Len() int                    { return 0 }
func (p *Poller) Each(f func(Handler))        {}
func (p *Poller) Close() error                { return nil }
