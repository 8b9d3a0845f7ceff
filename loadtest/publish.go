package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hotline-rt/hotline/superchat"
	"github.com/hotline-rt/hotline/ws"
)

// publisher sends the run's messages. publish is called from one
// goroutine, in seq order; finish once, after the last publish.
type publisher interface {
	// publish sends message seq; it may return before the server has
	// answered, and blocks when too many requests are in flight.
	publish(ctx context.Context, seq int)
	// finish waits until every publish has been answered or ctx ends,
	// then lets go of the connections.
	finish(ctx context.Context)
}

// published is the outcome of the publications, shared by publishers.
type published struct {
	run     string
	channel string
	size    int

	accepted []bool // by seq; each written once by whoever got the answer
	ok       atomic.Int64
	failed   atomic.Int64

	mu       sync.Mutex
	firstErr error
}

func (p *published) data(seq int) json.RawMessage {
	return encodePayload(p.run, seq, time.Now(), p.size)
}

func (p *published) accept(seq int) {
	p.accepted[seq] = true
	p.ok.Add(1)
}

func (p *published) fail(seq int, err error) {
	p.failed.Add(1)
	p.mu.Lock()
	if p.firstErr == nil {
		p.firstErr = fmt.Errorf("publish seq %d: %w", seq, err)
	}
	p.mu.Unlock()
}

// apiPublisher publishes with POST /api/publish from a few workers.
type apiPublisher struct {
	*published
	url    string // .../api/publish
	apiKey string
	hc     *http.Client
	seqs   chan int
	wg     sync.WaitGroup // the workers
}

func newAPIPublisher(p *published, base, apiKey string, workers int) *apiPublisher {
	a := &apiPublisher{
		published: p,
		url:       base + "/api/publish",
		apiKey:    apiKey,
		hc: &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: workers,
			IdleConnTimeout:     30 * time.Second,
		}},
		seqs: make(chan int),
	}
	return a
}

// start runs the workers until finish; they stop early if ctx ends.
func (a *apiPublisher) start(ctx context.Context, workers int) {
	for range workers {
		a.wg.Go(func() {
			for seq := range a.seqs {
				if err := a.post(ctx, seq); err != nil {
					a.fail(seq, err)
				} else {
					a.accept(seq)
				}
			}
		})
	}
}

func (a *apiPublisher) post(ctx context.Context, seq int) error {
	body, _ := json.Marshal(struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}{a.channel, a.data(seq)})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "apikey "+a.apiKey)
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /api/publish: %s: %s", resp.Status, bytes.TrimSpace(reply))
	}
	return nil
}

func (a *apiPublisher) publish(ctx context.Context, seq int) {
	select {
	case a.seqs <- seq:
	case <-ctx.Done():
	}
}

func (a *apiPublisher) finish(ctx context.Context) {
	close(a.seqs)
	a.wg.Wait()
	a.hc.CloseIdleConnections()
}

// wsPublisher publishes with superchat op publish over one WebSocket
// connection; request id seq+1 names message seq. Its reader goroutine
// collects the replies and is waited for by finish.
type wsPublisher struct {
	*published
	c       *ws.Conn
	sent    int           // publish requests written; publish's goroutine only
	replies atomic.Int64  // answers read
	done    chan struct{} // closed when the reader returns
}

func dialWSPublisher(ctx context.Context, p *published, url string, opts *ws.DialOptions) (*wsPublisher, error) {
	c, _, err := ws.Dial(ctx, url, opts)
	if err != nil {
		return nil, fmt.Errorf("loadtest: publisher: %w", err)
	}
	if c.Subprotocol() != "superchat" {
		c.CloseNow()
		return nil, fmt.Errorf("loadtest: publisher: server chose subprotocol %q, not superchat", c.Subprotocol())
	}
	w := &wsPublisher{published: p, c: c, done: make(chan struct{})}
	go w.read()
	return w, nil
}

func (w *wsPublisher) read() {
	defer close(w.done)
	var buf []byte
	for {
		_, msg, err := w.c.ReadMessage(context.Background(), buf[:0])
		if err != nil {
			return
		}
		buf = msg
		var m superchat.ServerMessage
		if json.Unmarshal(msg, &m) != nil || m.ID == 0 || m.ID > uint64(len(w.accepted)) {
			continue
		}
		seq := int(m.ID - 1)
		if m.Error != nil {
			w.fail(seq, fmt.Errorf("%d %s", m.Error.Code, m.Error.Message))
		} else {
			w.accept(seq)
		}
		w.replies.Add(1)
	}
}

func (w *wsPublisher) publish(ctx context.Context, seq int) {
	req, _ := json.Marshal(superchat.Request{ID: uint64(seq) + 1, Op: superchat.OpPublish, Channel: w.channel, Data: w.data(seq)})
	if err := w.c.WriteMessage(ctx, ws.MessageText, req); err != nil {
		w.fail(seq, err)
		w.replies.Add(1)
	}
	w.sent++
}

func (w *wsPublisher) finish(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for w.replies.Load() < int64(w.sent) {
		select {
		case <-t.C:
			continue
		case <-w.done:
		case <-ctx.Done():
		}
		break
	}
	w.c.Close(ws.StatusNormalClosure, "")
	<-w.done
}
