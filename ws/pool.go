package ws

import "sync"

// bufSize is the size of the pooled buffers that a connection borrows
// while it reads or writes a message. Larger payloads bypass them.
const bufSize = 4096

// bufPool holds *[bufSize]byte: pointers to arrays, so that Put does not
// allocate. A connection takes a buffer only while a read or write is under
// way and gives it back when it has nothing buffered, so an idle connection
// holds none.
var bufPool = sync.Pool{New: func() any { return new([bufSize]byte) }}

func getBuf() *[bufSize]byte  { return bufPool.Get().(*[bufSize]byte) }
func putBuf(b *[bufSize]byte) { bufPool.Put(b) }
