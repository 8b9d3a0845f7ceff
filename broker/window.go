package broker

// Window is the history windowing that every broker uses: given a stream
// whose latest publication is top (in epoch; "" and 0 for a stream that
// does not exist) and whose oldest publication still kept is first (top+1
// when it keeps none), it returns the offsets [lo, hi] that req selects, or
// the error req gets. lo > hi means none. A broker stores and fetches; what
// a read selects is decided here, once, so that every broker answers the
// same.
//
//   - Without Since: the oldest kept publications (with Reverse, the
//     newest), Limit of them.
//   - Since {"", 0} is the position before the first publication of any
//     epoch.
//   - Since in another epoch, or beyond top: ErrEpochChanged.
//   - Forward from Since: ErrHistoryTrimmed if a publication after Since
//     is no longer kept (Since.Offset+1 < first), else from Since.Offset+1.
//   - Reverse from Since: the kept publications before Since.Offset, newest
//     first; paging back needs no completeness, what is kept is what there
//     is.
//   - Limit 0 selects none, a negative Limit all.
func Window(epoch string, top, first uint64, req HistoryRequest) (lo, hi uint64, err error) {
	first = max(first, 1)
	lo, hi = first, top
	if s := req.Since; s != nil {
		since := *s
		if since == (Position{}) {
			since.Epoch = epoch
		}
		if since.Epoch != epoch || since.Offset > top {
			return 1, 0, ErrEpochChanged
		}
		if req.Reverse {
			if since.Offset == 0 {
				hi = 0
			} else {
				hi = min(hi, since.Offset-1)
			}
		} else {
			if since.Offset+1 < first {
				return 1, 0, ErrHistoryTrimmed
			}
			lo = since.Offset + 1
		}
	}
	if lo > hi {
		return 1, 0, nil
	}
	if req.Limit >= 0 && uint64(req.Limit) < hi-lo+1 {
		if req.Reverse {
			lo = hi - uint64(req.Limit) + 1
		} else {
			hi = lo + uint64(req.Limit) - 1
		}
	}
	return lo, hi, nil
}
