//go:build unix

package ws

import (
	"net"
	"syscall"
)

// rawReader reads from a socket without holding a buffer while the socket
// has nothing to read: the buffer is taken from the pool inside the
// readiness callback and given back if the read would block. This is what
// lets an idle goroutine-per-connection server keep no read buffer.
type rawReader struct {
	rc syscall.RawConn
	cb func(fd uintptr) bool // r.read, bound once so fill does not allocate

	// Arguments and results of one fill, kept here for the same reason.
	buf   *[bufSize]byte
	off   int
	empty bool
	n     int
	errno error
}

func newRawReader(nc net.Conn) *rawReader {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawReader{rc: rc}
	r.cb = r.read
	return r
}

func (r *rawReader) read(fd uintptr) bool {
	if r.buf == nil {
		r.buf = getBuf()
	}
	for {
		r.n, r.errno = syscall.Read(int(fd), r.buf[r.off:])
		if r.errno != syscall.EINTR {
			break
		}
	}
	if r.errno == syscall.EAGAIN {
		if r.empty {
			putBuf(r.buf)
			r.buf = nil
		}
		return false
	}
	return true
}

// fill reads into buf[off:], taking a buffer from the pool if buf is nil.
// When the read would block and the buffer holds nothing (empty), the
// buffer goes back to the pool while the connection waits. It returns the
// buffer now in use and the number of bytes read; 0 with a nil error means
// end of stream.
func (r *rawReader) fill(buf *[bufSize]byte, off int, empty bool) (*[bufSize]byte, int, error) {
	r.buf, r.off, r.empty, r.n, r.errno = buf, off, empty, 0, nil
	err := r.rc.Read(r.cb)
	buf, r.buf = r.buf, nil
	if err != nil {
		return buf, 0, err
	}
	if r.errno != nil {
		return buf, 0, &net.OpError{Op: "read", Net: "tcp", Err: r.errno}
	}
	return buf, max(r.n, 0), nil
}
