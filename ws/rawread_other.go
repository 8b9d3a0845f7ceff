//go:build !unix

package ws

import "net"

// rawReader is unix only; elsewhere connections read through net.Conn and
// hold their read buffer while they wait.
type rawReader struct{}

func newRawReader(net.Conn) *rawReader { return nil }

func (*rawReader) fill(*[bufSize]byte, int, bool) (*[bufSize]byte, int, error) {
	panic("ws: rawReader is unix only")
}
