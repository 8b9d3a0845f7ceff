package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWorkerCountsEveryDelivery drives a worker's clients against a real
// hotline server (the binary, built from this checkout, on 127.0.0.1)
// through the same publish path the harness uses, and checks the report's
// arithmetic: every publication reaches every client of its room, in
// order, and nothing else is counted.
func TestWorkerCountsEveryDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs hotline")
	}
	repo, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	os.MkdirAll(filepath.Join(cache, "bin"), 0o755)
	e := &env{repo: repo, cache: cache, log: io.Discard}
	p, err := e.hotlinePeer()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := e.start(p, "")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	addr := srv.addr

	const clients, rooms = 12, 3
	w := &worker{cfg: workerConfig{server: "hotline", addr: addr, run: "T", clients: clients, rooms: rooms, conc: 4},
		proto: hotlineProto{}, prefix: payloadPrefix("T")}
	defer w.closeAll()
	if c := w.connect(); c.OK != clients || c.Failed != 0 {
		t.Fatalf("connect: %+v", c)
	}
	s := &session{o: &orch{run: "T", hc: http.DefaultClient, plan: quickPlan}, srv: srv, rooms: rooms}
	for j := range s.seq {
		s.seq[j] = make([]uint64, rooms)
	}
	counts, errs, err := s.publish(200, 300*time.Millisecond)
	if errs != 0 {
		t.Fatalf("%d publish errors: %v", errs, err)
	}
	var published int64
	for _, c := range counts {
		published += c
	}
	if published == 0 {
		t.Fatal("nothing published")
	}
	var r workerReport
	for range 100 {
		if r = w.report(counts); r.Delivered >= r.Expected {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.Expected != published*clients/rooms || r.Delivered != r.Expected || r.OrderErrors != 0 || r.Duplicates != 0 || r.Closed != 0 {
		t.Fatalf("published %d to %d clients in %d rooms; report %+v", published, clients, rooms, r)
	}
	var h hist
	h.add(r.Hist)
	if h.n != uint64(r.Delivered) {
		t.Fatalf("histogram holds %d deliveries, want %d", h.n, r.Delivered)
	}
}
