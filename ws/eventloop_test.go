package ws

import (
	"bytes"
	"errors"
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

// FuzzDecoderMatchesConn feeds one stream of client frames to the
// blocking reader (a server Conn) and to the Decoder, the latter in
// chunks of a fuzzed size, and checks that both yield the same messages
// and end the same way: the peer's close with its code, or a failure with
// the same status.
func FuzzDecoderMatchesConn(f *testing.F) {
	f.Add(clientFrame(bitFin|byte(opText), []byte("hello")), uint8(1))
	f.Add(append(clientFrame(byte(opText), []byte("hel")), clientFrame(bitFin|byte(opContinuation), []byte("lo"))...), uint8(3))
	f.Add(append(clientFrame(bitFin|byte(opPing), []byte("p")), clientFrame(bitFin|byte(opBinary), []byte{1, 2})...), uint8(2))
	f.Add(clientFrame(bitFin|byte(opClose), []byte{0x03, 0xe8, 'o', 'k'}), uint8(5))
	f.Add(clientFrame(bitFin|byte(opText), []byte{0xe2, 0x9c}), uint8(1))
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}, uint8(7))
	const limit = 1 << 12
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		type outcome struct {
			msgs []string
			end  string
		}
		var want outcome
		c := newConn(&replayConn{r: bytes.NewReader(stream)}, true, limit)
		for range 100 {
			op, msg, err := c.readMessage(nil)
			if err != nil {
				var ce *CloseError
				switch {
				case errors.As(err, &ce) && ce.Code != StatusAbnormalClosure:
					want.end = "close " + itoa(int(ce.Code))
				default:
					want.end = "eof"
				}
				break
			}
			want.msgs = append(want.msgs, itoa(int(op))+":"+string(msg))
		}
		var got outcome
		d := NewDecoder(limit)
		step := int(chunk%64) + 1
	feed:
		for off := 0; ; {
			for {
				ev := d.Next()
				if ev.Kind == EventMore {
					break
				}
				switch ev.Kind {
				case EventMessage:
					got.msgs = append(got.msgs, itoa(int(ev.Type))+":"+string(ev.Data))
				case EventClose, EventError:
					got.end = "close " + itoa(int(ev.Code))
					break feed
				}
				if len(got.msgs) == 100 {
					break feed
				}
			}
			d.Release()
			if off == len(stream) {
				got.end = "eof"
				break
			}
			n := copy(d.Space(), stream[off:min(off+step, len(stream))])
			d.Advance(n)
			off += n
		}
		if len(want.msgs) == 100 {
			return // the Conn's loop stopped, not the stream
		}
		if got.end != want.end || len(got.msgs) != len(want.msgs) {
			t.Fatalf("Decoder: %d messages, %s; Conn: %d messages, %s", len(got.msgs), got.end, len(want.msgs), want.end)
		}
		for i := range got.msgs {
			if got.msgs[i] != want.msgs[i] {
				t.Fatalf("message %d: Decoder %q, Conn %q", i, got.msgs[i], want.msgs[i])
			}
		}
	})
}
