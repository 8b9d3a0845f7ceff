package main

import "testing"

func TestScanPayloads(t *testing.T) {
	p := makePayload("R1", 3, 42, 1700000000123456, "xx")
	envs := [][]byte{
		append(append([]byte(`{"push":{"channel":"bench:r0","epoch":"e","offset":3,"data":`), p...), "}}"...),
		append(append([]byte(`42["m",`), p...), ']'),
		append(append(append(append([]byte(`{"push":{"pub":{"data":`), p...), "}}}\n{\"push\":{\"pub\":{\"data\":"...), makePayload("R1", 3, 43, 7, "")...), "}}}"...),
		append([]byte(`{"push":{"data":`), makePayload("other", 0, 1, 1, "")...),
	}
	var got []uint64
	for _, e := range envs {
		scanPayloads(e, payloadPrefix("R1"), func(g int, seq uint64, sent int64) {
			if g != 3 {
				t.Errorf("publisher %d", g)
			}
			got = append(got, seq)
			if seq == 42 && sent != 1700000000123456 {
				t.Errorf("sent %d", sent)
			}
		})
	}
	if len(got) != 4 || got[0] != 42 || got[1] != 42 || got[2] != 42 || got[3] != 43 {
		t.Fatalf("got %v", got)
	}
}
