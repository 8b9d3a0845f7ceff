package ws

import (
	"bytes"
	"testing"
)

// BenchmarkDecoder is the same stream through the event loop's Decoder.
func BenchmarkDecoder(b *testing.B) {
	for _, size := range []int{16, 1024} {
		b.Run(itoa(size), func(b *testing.B) {
			src := &evStreamConn{stream: clientFrames(64, size)}
			d := NewDecoder(0)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				for {
					ev := d.Next()
					if ev.Kind == EventMessage {
						break
					}
					if ev.Kind != EventMore {
						b.Fatalf("event %+v", ev)
					}
					d.Release()
					n, _ := src.Read(d.Space())
					d.Advance(n)
				}
			}
		})
	}
}

// TestDecoderSplits feeds a stream of fragmented messages and control
// frames to the Decoder one byte at a time and at every chunk size, and
// checks it yields the same events as whole.
func TestDecoderSplits(t *testing.T) {
	var s []byte
	frame := func(fin bool, op opcode, p string) {
		m := []byte(p)
		mask(0x0a0b0c0d, 0, m)
		s = appendHeader(s, header{fin: fin, op: op, masked: true, key: 0x0a0b0c0d, length: int64(len(m))})
		s = append(s, m...)
	}
	frame(true, opText, "one")
	frame(false, opText, "tw")
	frame(true, opPing, "ping!")
	frame(false, opContinuation, "o ✓")
	frame(true, opContinuation, "")
	frame(true, opBinary, string(bytes.Repeat([]byte{7}, 5000)))
	frame(true, opClose, "\x03\xe8bye")
	want := []string{"msg:one", "ping:ping!", "msg:two ✓", "msg:5000", "close:1000:bye"}
	for chunk := 1; chunk <= len(s); chunk = chunk*2 + 1 {
		d := NewDecoder(0)
		var got []string
		for off := 0; off < len(s); {
			n := copy(d.Space(), s[off:min(off+chunk, len(s))])
			d.Advance(n)
			off += n
			for {
				ev := d.Next()
				if ev.Kind == EventMore {
					break
				}
				switch ev.Kind {
				case EventMessage:
					if len(ev.Data) == 5000 {
						got = append(got, "msg:5000")
					} else {
						got = append(got, "msg:"+string(ev.Data))
					}
				case EventPing:
					got = append(got, "ping:"+string(ev.Data))
				case EventClose:
					got = append(got, "close:"+itoa(int(ev.Code))+":"+ev.Reason)
				default:
					t.Fatalf("chunk %d: event %+v", chunk, ev)
				}
			}
			d.Release()
		}
		if len(got) != len(want) {
			t.Fatalf("chunk %d: got %q, want %q", chunk, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("chunk %d: got %q, want %q", chunk, got, want)
			}
		}
		if d.rbuf != nil || d.msg != nil {
			t.Fatalf("chunk %d: the Decoder holds a buffer after the stream", chunk)
		}
	}
}

// TestDecoderRules: the Decoder refuses what the blocking reader refuses.
func TestDecoderRules(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream []byte
		code   StatusCode
	}{
		{"unmasked", []byte{0x81, 0x01, 'x'}, StatusProtocolError},
		{"reserved opcode", []byte{0x83, 0x80, 0, 0, 0, 0}, StatusProtocolError},
		{"rsv1 without deflate", []byte{0xc1, 0x80, 0, 0, 0, 0}, StatusProtocolError},
		{"continuation first", []byte{0x80, 0x80, 0, 0, 0, 0}, StatusProtocolError},
		{"fragmented ping", []byte{0x09, 0x80, 0, 0, 0, 0}, StatusProtocolError},
		{"bad utf-8", []byte{0x81, 0x81, 0, 0, 0, 0, 0xff}, StatusInvalidFramePayloadData},
		{"too big", []byte{0x81, 0xfe, 0x10, 0x00, 0, 0, 0, 0}, StatusMessageTooBig},
		{"bad close code", []byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xed}, StatusProtocolError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder(1024)
			d.Advance(copy(d.Space(), tc.stream))
			ev := d.Next()
			if ev.Kind != EventError || ev.Code != tc.code {
				t.Fatalf("got %+v, want error %d", ev, tc.code)
			}
			if ev2 := d.Next(); ev2.Kind != EventError {
				t.Fatalf("error not sticky: %+v", ev2)
			}
		})
	}
}
