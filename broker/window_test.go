package broker

import (
	"fmt"
	"testing"
)

// naiveWindow selects from the kept offsets [first, top] by testing each
// one against the rules of Window, one by one, with no arithmetic on
// ranges: the second implementation FuzzWindow compares Window with.
func naiveWindow(epoch string, top, first uint64, req HistoryRequest) ([]uint64, error) {
	var kept []uint64
	for o := max(first, 1); o <= top; o++ {
		kept = append(kept, o)
	}
	var since *Position
	if req.Since != nil {
		s := *req.Since
		if s.Epoch == "" && s.Offset == 0 {
			s.Epoch = epoch
		}
		if s.Epoch != epoch || s.Offset > top {
			return nil, ErrEpochChanged
		}
		since = &s
	}
	if since != nil && !req.Reverse {
		// Trimmed: some publication after since is no longer kept.
		for o := since.Offset + 1; o <= top; o++ {
			if o < first {
				return nil, ErrHistoryTrimmed
			}
		}
	}
	var sel []uint64
	for _, o := range kept {
		switch {
		case since == nil:
		case req.Reverse && o >= since.Offset:
			continue
		case !req.Reverse && o <= since.Offset:
			continue
		}
		sel = append(sel, o)
	}
	if req.Reverse {
		for i, j := 0, len(sel)-1; i < j; i, j = i+1, j-1 {
			sel[i], sel[j] = sel[j], sel[i]
		}
	}
	if req.Limit >= 0 && req.Limit < len(sel) {
		sel = sel[:req.Limit]
	}
	return sel, nil
}

func FuzzWindow(f *testing.F) {
	f.Add(uint64(10), uint64(6), true, false, uint64(7), int64(-1), false)
	f.Add(uint64(10), uint64(6), true, false, uint64(4), int64(2), false)
	f.Add(uint64(10), uint64(11), true, true, uint64(0), int64(3), true)
	f.Add(uint64(0), uint64(1), true, true, uint64(0), int64(-1), false)
	f.Add(uint64(3), uint64(1), false, false, uint64(0), int64(0), true)
	f.Fuzz(func(t *testing.T, top, first uint64, hasSince, otherEpoch bool, since uint64, limit int64, reverse bool) {
		// Keep the kept range small enough to list, and first within
		// [1, top+1] as a stream has it.
		top %= 200
		first = 1 + first%(top+1)
		epoch := "e"
		if top == 0 && first == 1 && otherEpoch {
			epoch = "" // no stream
		}
		req := HistoryRequest{Limit: int(limit % 300), Reverse: reverse}
		if hasSince {
			p := Position{Epoch: epoch, Offset: since % (top + 3)}
			if otherEpoch && epoch != "" {
				p.Epoch = "x"
			}
			if since%7 == 0 {
				p = Position{}
			}
			req.Since = &p
		}
		want, werr := naiveWindow(epoch, top, first, req)
		lo, hi, err := Window(epoch, top, first, req)
		if err != werr {
			t.Fatalf("Window(%q, %d, %d, %+v since %v) err %v, naive %v", epoch, top, first, req, req.Since, err, werr)
		}
		var got []uint64
		if err == nil && lo <= hi {
			if lo < first || hi > top {
				t.Fatalf("window [%d, %d] outside kept [%d, %d]", lo, hi, first, top)
			}
			for i := range hi - lo + 1 {
				if reverse {
					got = append(got, hi-i)
				} else {
					got = append(got, lo+i)
				}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("Window(%q, %d, %d, %+v since %v) = %v, naive %v", epoch, top, first, req, req.Since, got, want)
		}
	})
}
