package loadtest

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // reversed: summarize sorts
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		want Latency
	}{
		{"empty", nil, Latency{}},
		{"one", ms(7), Latency{7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond}},
		{"two", ms(2, 1), Latency{1 * time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond}},
		{"hundred", ms(hundred...), Latency{50 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond}},
		{"outlier", ms(1, 1, 1, 1, 1, 1, 1, 1, 1, 900), Latency{1 * time.Millisecond, 900 * time.Millisecond, 900 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := summarize(tc.in); got != tc.want {
				t.Errorf("summarize = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestCheckComplete(t *testing.T) {
	t.Parallel()
	now := time.Now()
	client := func(seqs ...int) *tally {
		tl := newTally(4)
		for _, s := range seqs {
			tl.record(s, now, now)
		}
		return tl
	}
	for _, tc := range []struct {
		name     string
		accepted []bool
		clients  []*tally
		want     []Missing
	}{
		{"all there", []bool{true, true, true, true}, []*tally{client(0, 1, 2, 3), client(3, 2, 1, 0)}, nil},
		{"one lost by one", []bool{true, true, true, true}, []*tally{client(0, 1, 2, 3), client(0, 1, 3)}, []Missing{{2, 1}}},
		{"lost by all", []bool{true, true, true, true}, []*tally{client(0, 1, 2), client(0, 1, 2)}, []Missing{{3, 2}}},
		{"refused is not expected", []bool{true, false, true, true}, []*tally{client(0, 2, 3)}, nil},
		{"no clients", []bool{true}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := checkComplete(tc.accepted, tc.clients)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestTally(t *testing.T) {
	t.Parallel()
	tl := newTally(3)
	sent := time.Unix(100, 0)
	if !tl.record(1, sent, sent.Add(5*time.Millisecond)) {
		t.Fatal("first delivery not new")
	}
	if tl.record(1, sent, sent.Add(6*time.Millisecond)) {
		t.Fatal("duplicate counted as new")
	}
	if tl.record(3, sent, sent) || tl.record(-1, sent, sent) {
		t.Fatal("out-of-range seq counted")
	}
	if tl.received != 1 || tl.duplicates != 1 || tl.strays != 2 || len(tl.latencies) != 1 || tl.latencies[0] != 5*time.Millisecond {
		t.Fatalf("tally %+v", tl)
	}
}

func TestResultErr(t *testing.T) {
	t.Parallel()
	ok := &Result{Transport: "ws", Clients: 3, Messages: 2, Expected: 6, Delivered: 6}
	if err := ok.Err(); err != nil {
		t.Fatal(err)
	}
	lost := &Result{Transport: "poll", Clients: 3, Missing: []Missing{{4, 1}, {9, 3}}}
	err := lost.Err()
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Err = %v", err)
	}
	for _, want := range []string{"poll", "2 message(s)", "4 deliveries missing", "seq 4 (missed by 1), 9 (missed by 3)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if lost.Lost() != 4 {
		t.Errorf("Lost = %d", lost.Lost())
	}
	many := make([]Missing, 8)
	for i := range many {
		many[i] = Missing{i, 1}
	}
	if s := describeMissing(many, 1); !strings.HasSuffix(s, "and 3 more") {
		t.Errorf("describeMissing = %q", s)
	}
}

func TestPayload(t *testing.T) {
	t.Parallel()
	sent := time.Unix(1, 2)
	for _, size := range []int{0, 10, 100, 1000} {
		b := encodePayload("run1", 7, sent, size)
		var p payload
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		if p.Run != "run1" || p.Seq != 7 || p.Sent != sent.UnixNano() {
			t.Errorf("size %d: decoded %+v", size, p)
		}
		if size >= 100 && len(b) != size {
			t.Errorf("size %d: got %d bytes", size, len(b))
		}
	}
}

func TestProgress(t *testing.T) {
	t.Parallel()
	publish := Progress{Transport: "longpoll", Phase: PhasePublish, Clients: 100, Connected: 100,
		Elapsed: 2500 * time.Millisecond, Duration: 10 * time.Second, Messages: 200, Accepted: 50, Delivered: 4990, Expected: 5000}
	for _, tc := range []struct {
		name     string
		p        Progress
		fraction float64
		line     string
	}{
		{"connect", Progress{Transport: "ws", Phase: PhaseConnect, Clients: 100, Connected: 25}, 0.25, "ws: connect 25/100 clients"},
		{"publish", publish, 0.25, "longpoll: publish 2.5s/10s, published 50/200, delivered 4990/5000 (99.8%)"},
		{"drain", Progress{Transport: "poll", Phase: PhaseDrain, Delivered: 3, Expected: 4, Elapsed: 11 * time.Second, Duration: 10 * time.Second}, 0.75, "poll: drain 11s/10s, published 0/0, delivered 3/4 (75.0%)"},
		{"overrun", Progress{Transport: "ws", Phase: PhasePublish, Elapsed: 2 * time.Second, Duration: time.Second}, 1, "ws: publish 2s/1s, published 0/0, delivered 0/0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if f := tc.p.Fraction(); math.Abs(f-tc.fraction) > 1e-9 {
				t.Errorf("Fraction = %v, want %v", f, tc.fraction)
			}
			if s := tc.p.String(); s != tc.line {
				t.Errorf("String =\n%q, want\n%q", s, tc.line)
			}
			for _, width := range []int{20, 40, 79, 120} {
				bar := tc.p.Bar(width)
				if len(bar) > width {
					t.Errorf("Bar(%d) is %d wide: %q", width, len(bar), bar)
				}
				if strings.ContainsAny(bar, "\r\n") {
					t.Errorf("Bar(%d) = %q has a line break", width, bar)
				}
			}
		})
	}
	// The bar keeps its width as the counts grow.
	later := publish
	later.Elapsed, later.Accepted, later.Delivered, later.Expected = 10*time.Second, 200, 20000, 20000
	if a, b := publish.Bar(79), later.Bar(79); len(a) != len(b) {
		t.Errorf("bar width changed:\n%q\n%q", a, b)
	}
	if bar := publish.Bar(79); !strings.Contains(bar, "[=====>   ") || !strings.HasPrefix(bar, "longpoll publish [") {
		t.Errorf("Bar(79) = %q", bar)
	}
}

func TestParseStat(t *testing.T) {
	t.Parallel()
	// A command name with spaces and a ')' must not shift the fields.
	line := "4242 (hot line) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0 12345 0 0\n"
	d, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if d != 3250*time.Millisecond {
		t.Errorf("cpu = %v, want 3.25s", d)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 ten 12"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
}

var sampleResults = []*Result{
	{Transport: "ws", Clients: 100, Messages: 200, Delivered: 20000, Expected: 20000, Elapsed: 10 * time.Second,
		Latency: Latency{2 * time.Millisecond, 5 * time.Millisecond, 9 * time.Millisecond}, Bytes: 3_000_000, Requests: 100,
		ServerCPU: 420 * time.Millisecond, ServerCPUKnown: true},
	{Transport: "longpoll", Clients: 100, Messages: 200, Delivered: 19999, Expected: 20000, Elapsed: 10 * time.Second,
		Latency: Latency{3 * time.Millisecond, 12 * time.Millisecond, 40 * time.Millisecond}, Bytes: 9_000_000, Requests: 20100,
		Missing: []Missing{{17, 1}}},
	{Transport: "poll <&>", Clients: 100, Messages: 200, Elapsed: 0}, // nothing delivered: NaN ratios
}

func TestWriteSVG(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		results []*Result
	}{
		{"three", sampleResults},
		{"none", nil},
		{"zero", []*Result{{Transport: "ws"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			if err := WriteSVG(&b, tc.results); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(b.String(), "NaN") || strings.Contains(b.String(), "Inf") {
				t.Errorf("SVG has NaN or Inf:\n%s", b.String())
			}
			texts := checkXML(t, b.Bytes())
			for _, r := range tc.results {
				if !texts[r.Transport] {
					t.Errorf("no label %q", r.Transport)
				}
			}
		})
	}
}

// checkXML parses an SVG document, failing on malformed XML or a root
// other than svg, and returns the set of its text nodes.
func checkXML(t *testing.T, doc []byte) map[string]bool {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(doc))
	texts := map[string]bool{}
	depth, roots := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("malformed SVG: %v\n%s", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				if tok.Name.Local != "svg" || tok.Name.Space != "http://www.w3.org/2000/svg" {
					t.Fatalf("root element %v", tok.Name)
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if s := strings.TrimSpace(string(tok)); s != "" {
				texts[s] = true
			}
		}
	}
	if roots != 1 || depth != 0 {
		t.Fatalf("%d root elements, depth %d at the end", roots, depth)
	}
	return texts
}

func TestNiceAxis(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ v, step, top float64 }{
		{0, 1, 5}, {1, 0.2, 1}, {7.3, 2, 8}, {12, 5, 15}, {147, 50, 150}, {980, 200, 1000}, {1001, 500, 1500},
	} {
		step, top := niceAxis(tc.v)
		if math.Abs(step-tc.step) > 1e-9 || math.Abs(top-tc.top) > 1e-9 || top < tc.v {
			t.Errorf("niceAxis(%v) = %v, %v; want %v, %v", tc.v, step, top, tc.step, tc.top)
		}
	}
}

func TestWriteTable(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := WriteTable(&b, sampleResults); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	for i, want := range [][]string{
		{"transport", "delivered/s", "p50", "p99", "bytes/msg", "req/msg", "server CPU", "missing"},
		{"ws", "2000", "2.00ms", "5.00ms", "9.00ms", "150.0", "0.005", "0.42s", " 0"},
		{"longpoll", "12ms", "450.0", "1.005", " -", " 1"},
		{"poll <&>", " -  ", " 0"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d lacks %q:\n%s", i, w, b.String())
			}
		}
	}
}
