package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hotline-rt/hotline/web"
)

// scriptedPeer speaks the long-polling wire of a hotline server
// (docs/transports.md) and lets a test decide every envelope the client
// gets and in which batch. The real server cannot be made to produce each
// interleaving on demand (a gap notice, pushes of the old subscription
// between unsubscribe and subscribe, a streamed replay that overlaps live
// pushes), so this test drives hotline.js through them, in Chromium, one
// by one. The other tests run the client against the real server.
type scriptedPeer struct {
	t    *testing.T
	reqs chan map[string]any // requests from the client, but connect

	mu    sync.Mutex
	out   []json.RawMessage // out[i] has seq i+1
	more  chan struct{}     // closed when out grows
	opens int
}

func newScriptedPeer(t *testing.T) *scriptedPeer {
	return &scriptedPeer{t: t, reqs: make(chan map[string]any, 100), more: make(chan struct{})}
}

// queue appends envelopes; one poll response carries all of them if the
// client is waiting.
func (p *scriptedPeer) queue(envs ...any) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range envs {
		b, err := json.Marshal(e)
		if err != nil {
			p.t.Fatal(err)
		}
		p.out = append(p.out, b)
	}
	close(p.more)
	p.more = make(chan struct{})
}

// expect reads the client's next request and checks its op and channel.
func (p *scriptedPeer) expect(op, channel string) map[string]any {
	p.t.Helper()
	select {
	case r := <-p.reqs:
		if r["op"] != op || r["channel"] != channel {
			p.t.Fatalf("client sent %v, want %s %s", r, op, channel)
		}
		return r
	case <-time.After(10 * time.Second):
		p.t.Fatalf("client sent no %s %s", op, channel)
	}
	return nil
}

func reply(req map[string]any, result any) map[string]any {
	return map[string]any{"id": req["id"], "result": result}
}

func pub(channel, epoch string, offset int) map[string]any {
	return map[string]any{"push": map[string]any{"channel": channel, "epoch": epoch, "offset": offset, "data": fmt.Sprintf("%s/%d", epoch, offset)}}
}

func pubs(channel, epoch string, from, to int) []any {
	var out []any
	for o := from; o <= to; o++ {
		out = append(out, pub(channel, epoch, o))
	}
	return out
}

func (p *scriptedPeer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == "POST" && r.URL.Path == "/poll/open":
		p.mu.Lock()
		p.opens++
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"session":"s1","protocol":"superchat"}`)
	case r.Method == "GET" && r.URL.Path == "/poll/s1":
		ack, _ := strconv.Atoi(r.URL.Query().Get("ack"))
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		for {
			p.mu.Lock()
			items, more := p.out[min(ack, len(p.out)):], p.more
			p.mu.Unlock()
			if len(items) > 0 || ctx.Err() != nil {
				var b strings.Builder
				b.WriteString(`{"messages":[`)
				for i, it := range items {
					if i > 0 {
						b.WriteString(",")
					}
					fmt.Fprintf(&b, `{"seq":%d,"data":%s}`, ack+i+1, it)
				}
				b.WriteString("]}")
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, b.String())
				return
			}
			select {
			case <-more:
			case <-ctx.Done():
			}
		}
	case r.Method == "POST" && r.URL.Path == "/poll/s1":
		var body json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		var msgs []map[string]any
		if strings.HasPrefix(string(body), "[") {
			json.Unmarshal(body, &msgs)
		} else {
			var m map[string]any
			json.Unmarshal(body, &m)
			msgs = append(msgs, m)
		}
		for _, m := range msgs {
			if m["op"] == "connect" {
				p.queue(reply(m, map[string]any{"session": "s1", "user": "u1", "name": "Ann", "protocol": "superchat"}))
				continue
			}
			p.reqs <- m
		}
		w.WriteHeader(http.StatusAccepted)
	case r.Method == "DELETE":
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

const scriptPage = `<!doctype html><meta charset="utf-8"><title>script</title>
<script type="module">
import { Hotline } from "/hotline.js";
const h = new Hotline({ transport: "longpoll" });
window.got = { c: [], d: [] };
window.recoveries = [];
for (const ch of ["c", "d"]) {
  h.subscribe(ch, {
    onPublication: (p) => window.got[ch].push(p.epoch + "/" + p.offset),
    onRecovery: (r) => window.recoveries.push({ channel: ch, ...r }),
  });
}
window.ready = true;
</script>`

// TestClientScripted drives hotline.js through the interleavings of gap
// repair, with both shapes of the subscribe reply.
func TestClientScripted(t *testing.T) {
	peer := newScriptedPeer(t)
	mux := http.NewServeMux()
	mux.Handle("/poll/", peer)
	mux.Handle("GET /hotline.js", web.Handler())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, scriptPage)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	b := browser(t)
	pg := page(t, b, "http://"+ln.Addr().String()+"/")
	waitFor(t, pg, `window.ready === true`)
	got := func(ch string) string {
		t.Helper()
		return strings.Join(eval[[]string](t, pg, `window.got.`+ch), " ")
	}
	seen := func(ch, want string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(pg, 10*time.Second)
		defer cancel()
		cond := fmt.Sprintf(`window.got.%s.length >= %d`, ch, len(strings.Fields(want)))
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(50*time.Millisecond)))
		if g := got(ch); err != nil || g != want {
			t.Fatalf("channel %s delivered %q, want %q", ch, g, want)
		}
	}
	reports := func() []map[string]any {
		t.Helper()
		var rs []map[string]any
		if err := json.Unmarshal([]byte(eval[string](t, pg, `JSON.stringify(window.recoveries)`)), &rs); err != nil {
			t.Fatal(err)
		}
		return rs
	}
	lastReport := func(n int) map[string]any {
		t.Helper()
		waitFor(t, pg, fmt.Sprintf(`window.recoveries.length >= %d`, n))
		rs := reports()
		if len(rs) != n {
			t.Fatalf("%d recovery reports, want %d: %v", len(rs), n, rs)
		}
		return rs[n-1]
	}

	// First subscribes. c has a stream; d has none yet ({"",0}). The reply
	// and the pushes after it come in one poll response: the reply must be
	// handled before them.
	sc := peer.expect("subscribe", "c")
	sd := peer.expect("subscribe", "d")
	if sc["since"] != nil || sd["since"] != nil {
		t.Fatalf("a first subscribe sent since: %v %v", sc, sd)
	}
	peer.queue(append([]any{reply(sc, map[string]any{"epoch": "E", "offset": 0}), reply(sd, map[string]any{"epoch": "", "offset": 0})},
		append(pubs("c", "E", 1, 2), pub("d", "G", 1))...)...)
	seen("c", "E/1 E/2")
	seen("d", "G/1") // offset 1 of any epoch follows {"",0}
	lastReport(2)

	// A gap notice (new shape: the replay streams after the reply). The old
	// subscription goes on pushing (E/5, E/6) until the unsubscribe; those
	// must not reach the application before the hole is filled.
	peer.queue(map[string]any{"gap": map[string]any{"channel": "c", "epoch": "E", "offset": 2, "reason": "broker link lost"}}, pub("c", "E", 5))
	un := peer.expect("unsubscribe", "c")
	su := peer.expect("subscribe", "c")
	if s, _ := su["since"].(map[string]any); s == nil || s["epoch"] != "E" || s["offset"] != float64(2) {
		t.Fatalf("recovery subscribe since %v, want E/2", su["since"])
	}
	batch := []any{pub("c", "E", 6), reply(un, map[string]any{}), reply(su, map[string]any{"epoch": "E", "offset": 6, "recovered": true})}
	batch = append(batch, pubs("c", "E", 3, 6)...) // the replay
	batch = append(batch, pub("c", "E", 6), pub("c", "E", 7))
	peer.queue(batch...)
	seen("c", "E/1 E/2 E/3 E/4 E/5 E/6 E/7")
	r := lastReport(3)
	if r["recovered"] != true || r["cause"] != "gap" || r["replayed"] != float64(4) || r["channel"] != "c" {
		t.Fatalf("report after the gap notice: %v", r)
	}
	if g, _ := r["gap"].(map[string]any); g == nil || g["reason"] != "broker link lost" {
		t.Fatalf("report does not carry the gap notice: %v", r)
	}

	// A jump with no notice, repaired by an old server's reply (the replay
	// inside it), followed by a duplicate.
	peer.queue(pub("c", "E", 9))
	un = peer.expect("unsubscribe", "c")
	su = peer.expect("subscribe", "c")
	if s, _ := su["since"].(map[string]any); s == nil || s["offset"] != float64(7) {
		t.Fatalf("recovery subscribe since %v, want E/7", su["since"])
	}
	old := pubs("c", "E", 8, 9)
	var replayed []any
	for _, o := range old {
		replayed = append(replayed, o.(map[string]any)["push"])
	}
	peer.queue(reply(un, map[string]any{}), reply(su, map[string]any{"epoch": "E", "offset": 9, "recovered": true, "publications": replayed}),
		pub("c", "E", 9), pub("c", "E", 10))
	seen("c", "E/1 E/2 E/3 E/4 E/5 E/6 E/7 E/8 E/9 E/10")
	r = lastReport(4)
	if r["recovered"] != true || r["cause"] != "jump" || r["replayed"] != float64(2) {
		t.Fatalf("report after the jump: %v", r)
	}

	// A new epoch under a live subscription: history cannot bridge it, the
	// client must say so and continue from the new top.
	peer.queue(pub("c", "F", 1))
	un = peer.expect("unsubscribe", "c")
	su = peer.expect("subscribe", "c")
	peer.queue(reply(un, map[string]any{}), reply(su, map[string]any{"epoch": "F", "offset": 3, "recovered": false, "reason": "epoch changed"}),
		pub("c", "F", 4))
	seen("c", "E/1 E/2 E/3 E/4 E/5 E/6 E/7 E/8 E/9 E/10 F/4")
	r = lastReport(5)
	if r["recovered"] != false || r["reason"] != "epoch changed" || r["cause"] != "jump" {
		t.Fatalf("report after the new epoch: %v", r)
	}
	if got("d") != "G/1" {
		t.Fatalf("channel d delivered %q", got("d"))
	}
	select {
	case extra := <-peer.reqs:
		t.Fatalf("unexpected request %v", extra)
	default:
	}
}
