//go:build unix

package ws

import "syscall"

// wait blocks until the socket has bytes to read, an end of stream or an
// error, without reading anything.
func (r *rawReader) wait() error {
	return r.rc.Read(peekReady)
}

// peekReady reports whether a read of fd would not block: it peeks at one
// byte, which stays in the socket. A package-level function, so that
// passing it to RawConn.Read does not allocate.
func peekReady(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		return true
	}
}
