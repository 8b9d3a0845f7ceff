package faulttest

import (
	"strings"
	"testing"
	"time"
)

// The classification is what the fault test's verdict rests on: these
// cases pin it down without any process.

func acks(ch, epoch string, from, to uint64, at time.Duration) []pubRecord {
	var rs []pubRecord
	for o := from; o <= to; o++ {
		rs = append(rs, pubRecord{seq: int64(o), channel: ch, acked: true, pos: pos{epoch, o}, ackAt: at})
	}
	return rs
}

func pushes(epoch string, offs ...uint64) []event {
	var es []event
	for _, o := range offs {
		es = append(es, event{kind: evPush, pos: pos{epoch, o}, seq: int64(o), at: time.Second})
	}
	return es
}

func join(parts ...[]event) []event {
	var es []event
	for _, p := range parts {
		es = append(es, p...)
	}
	return es
}

func start() []event { return []event{{kind: evStart}} }

func one(t *testing.T, recs []pubRecord, events []event) counts {
	t.Helper()
	rep := classify(recs, []subView{{id: 1, transport: tWebSocket, channel: "c", events: events}}, []phase{{name: "all"}})
	return rep.total
}

func TestClassify(t *testing.T) {
	recs := acks("c", "E", 1, 5, time.Second)
	tests := []struct {
		name   string
		events []event
		want   counts
	}{
		{"all in order", join(start(), pushes("E", 1, 2, 3, 4, 5)),
			counts{inOrder: 5}},
		{"a jump without notice is a silent loss", join(start(), pushes("E", 1, 2, 5)),
			counts{inOrder: 3, silent: 2}},
		{"nothing after the last push: lost at the tail", join(start(), pushes("E", 1, 2, 3)),
			counts{inOrder: 3, silent: 2, silentTail: 2}},
		{"a gap notice covers up to the next push", join(start(), pushes("E", 1, 2),
			[]event{{kind: evGap, pos: pos{"E", 2}}}, pushes("E", 5)),
			counts{inOrder: 3, toldGap: 2}},
		{"a gap notice naming a later position leaves the hole before it silent", join(start(), pushes("E", 1),
			[]event{{kind: evGap, pos: pos{"E", 3}}}, pushes("E", 5)),
			counts{inOrder: 2, silent: 2, toldGap: 1}},
		{"recovered:false covers since..top, not beyond", join(start(), pushes("E", 1),
			[]event{{kind: evLost, pos: pos{"E", 1}, top: pos{"E", 3}}}, pushes("E", 5)),
			counts{inOrder: 2, toldLost: 2, silent: 1}},
		{"recovered:true then the replay", join(start(), pushes("E", 1),
			[]event{{kind: evRecovered, pos: pos{"E", 1}, top: pos{"E", 4}}}, pushes("E", 2, 3, 4, 5)),
			counts{inOrder: 5}},
		{"received twice", join(start(), pushes("E", 1, 2, 3, 3, 4, 5)),
			counts{inOrder: 4, dup: 1}},
		{"received late", join(start(), pushes("E", 1, 3, 2, 4, 5)),
			counts{inOrder: 4, outOfOrder: 1}},
		{"another publication at an acknowledged position", join(start(),
			pushes("E", 1, 2), []event{{kind: evPush, pos: pos{"E", 3}, seq: 99}}, pushes("E", 4, 5)),
			counts{inOrder: 4, conflict: 1}},
		{"publications before the first subscribe are not counted",
			join([]event{{kind: evStart, top: pos{"E", 2}}}, pushes("E", 3, 4, 5)),
			counts{inOrder: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := one(t, recs, tt.events)
			tt.want.pubs = 5
			tt.want.checked = tt.want.inOrder + tt.want.outOfOrder + tt.want.toldGap + tt.want.toldLost +
				tt.want.silent + tt.want.dup + tt.want.conflict
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// A new epoch: the old one's tail and the new one's head, told by a
// recovered:false reply whose top is the new stream, or whose top is empty.
func TestClassifyEpochChange(t *testing.T) {
	recs := append(acks("c", "E1", 1, 4, time.Second), acks("c", "E2", 1, 3, 2*time.Second)...)
	for i := range recs[4:] {
		recs[4+i].seq += 100 // distinct publications
	}
	e2 := func(offs ...uint64) []event {
		es := pushes("E2", offs...)
		for i := range es {
			es[i].seq += 100
			es[i].at = 2 * time.Second
		}
		return es
	}
	t.Run("top in the new epoch", func(t *testing.T) {
		got := one(t, recs, join(start(), pushes("E1", 1, 2),
			[]event{{kind: evLost, pos: pos{"E1", 2}, top: pos{"E2", 1}, at: 2 * time.Second}}, e2(2, 3)))
		want := counts{pubs: 7, checked: 7, inOrder: 4, toldLost: 3}
		if got != want {
			t.Errorf("got  %+v\nwant %+v", got, want)
		}
	})
	t.Run("empty top: covers the old epoch only", func(t *testing.T) {
		got := one(t, recs, join(start(), pushes("E1", 1, 2),
			[]event{{kind: evLost, pos: pos{"E1", 2}, top: pos{}, at: 2 * time.Second}}, e2(2, 3)))
		want := counts{pubs: 7, checked: 7, inOrder: 4, toldLost: 2, silent: 1}
		if got != want {
			t.Errorf("got  %+v\nwant %+v", got, want)
		}
	})
	t.Run("a silent switch of epoch", func(t *testing.T) {
		got := one(t, recs, join(start(), pushes("E1", 1, 2), e2(1, 2, 3)))
		want := counts{pubs: 7, checked: 7, inOrder: 5, silent: 2}
		if got != want {
			t.Errorf("got  %+v\nwant %+v", got, want)
		}
	})
}

// Deliveries the publisher never had acknowledged at that position.
func TestClassifyUnacked(t *testing.T) {
	recs := acks("c", "E", 1, 2, time.Second)
	recs = append(recs,
		pubRecord{seq: 7, channel: "c", acked: true, pos: pos{"E", 4}, ackAt: time.Second}, // also published at 3
		pubRecord{seq: 8, channel: "c", gaveUp: true, unknown: true},                       // at 5, never acked
	)
	ev := join(start(), pushes("E", 1, 2),
		[]event{{kind: evPush, pos: pos{"E", 3}, seq: 7}, {kind: evPush, pos: pos{"E", 4}, seq: 7},
			{kind: evPush, pos: pos{"E", 5}, seq: 8}})
	rep := classify(recs, []subView{{id: 1, transport: tLongPoll, channel: "c", events: ev}}, []phase{{name: "all"}})
	if rep.total.silent != 0 || rep.total.inOrder != 3 {
		t.Errorf("total %+v", rep.total)
	}
	want := extra{neverAcked: 1, twiceSameEpoch: 1, twicePubs: 1}
	if rep.extra != want {
		t.Errorf("extra %+v, want %+v", rep.extra, want)
	}
	if tab := rep.table(); !strings.Contains(tab, "TOTAL") {
		t.Errorf("table without total:\n%s", tab)
	}
}

func TestNormalize(t *testing.T) {
	got := normalize(`Get "http://127.0.0.1:23456/poll/B3h6Cvm09GqaC1DnRfoWig?ack=127&wait=1": dial tcp 127.0.0.1:23456: connect: connection refused`)
	want := `Get "http://ADDR/poll/ID": dial tcp ADDR: connect: connection refused`
	if got != want {
		t.Errorf("normalize:\n got %s\nwant %s", got, want)
	}
}
