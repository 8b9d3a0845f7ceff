package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/internal/testredis"
	"github.com/hotline-rt/hotline/superchat"
	"github.com/hotline-rt/hotline/ws"
)

// TestServeSentinelFailover runs two hotline serve processes on a master
// watched by three Sentinels, a superchat subscriber on node B and a
// publisher calling node A's API. The master is killed (SIGKILL): node A's
// /readyz says 503 while it cannot reach a master; publications during the
// switch are answered 503 (not published) or 504 (outcome unknown), never
// 200 for nothing; once the replica is promoted they are 200 again, and
// the subscriber has every publication answered 200, in order, or was told
// of a gap before a jump.
func TestServeSentinelFailover(t *testing.T) {
	s := testredis.StartSentinel(t)
	args := []string{"-broker", "redis", "-redis-sentinel-addrs", strings.Join(s.Addrs(), ","),
		"-redis-sentinel-master", testredis.SentinelMaster, "-api-key", "k", "-namespace", "news:history=10000"}
	_, a, logsA := startServe(t, args...)
	_, b, _ := startServe(t, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()

	get := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("http://" + a + "/readyz"); code != 200 {
		t.Fatalf("/readyz before the failover: %d\n%s", code, logsA.String())
	}

	sub, _, err := ws.Dial(ctx, "ws://"+b+"/chat", &ws.DialOptions{Subprotocols: []string{"superchat"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.CloseNow()
	req, _ := json.Marshal(superchat.Request{ID: 1, Op: superchat.OpSubscribe, Channel: "news:fo"})
	if err := sub.WriteMessage(ctx, ws.MessageText, req); err != nil {
		t.Fatal(err)
	}
	type got struct {
		offset uint64
		data   string
		gap    bool
	}
	var mu sync.Mutex
	var received []got
	subscribed := make(chan struct{})
	var readWG sync.WaitGroup
	readWG.Go(func() {
		for {
			_, msg, err := sub.ReadMessage(ctx, nil)
			if err != nil {
				return
			}
			var m superchat.ServerMessage
			if json.Unmarshal(msg, &m) != nil {
				continue
			}
			switch {
			case m.ID == 1:
				close(subscribed)
			case m.Push != nil && m.Push.Data != nil:
				mu.Lock()
				received = append(received, got{offset: m.Push.Offset, data: string(m.Push.Data)})
				mu.Unlock()
			case m.Gap != nil:
				mu.Lock()
				received = append(received, got{gap: true})
				mu.Unlock()
			}
		}
	})
	select {
	case <-subscribed:
	case <-ctx.Done():
		t.Fatal("no subscribe reply")
	}

	publish := func(i int) (int, uint64) {
		body := fmt.Sprintf(`{"channel":"news:fo","data":%d}`, i)
		r, _ := http.NewRequestWithContext(ctx, "POST", "http://"+a+"/api/publish", strings.NewReader(body))
		r.Header.Set("Authorization", "apikey k")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var pos struct{ Offset uint64 }
		_ = json.Unmarshal(b, &pos)
		return resp.StatusCode, pos.Offset
	}
	acked := map[uint64]string{}
	codes := map[int]int{}
	i := 0
	for ; i < 20; i++ {
		code, off := publish(i)
		if code != 200 {
			t.Fatalf("publish before the failover: %d", code)
		}
		acked[off] = fmt.Sprint(i)
	}
	s.Master.Kill()
	killed := time.Now()
	if code := get("http://" + a + "/readyz"); code != 503 {
		// Right after the kill no Sentinel can have promoted the
		// replica yet (down-after is 1 s).
		t.Fatalf("/readyz with the master gone: %d", code)
	}
	var back time.Duration
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); i++ {
		start := time.Now()
		code, off := publish(i)
		codes[code]++
		switch code {
		case 200:
			acked[off] = fmt.Sprint(i)
			if back == 0 {
				back = start.Sub(killed)
			}
		case 503, 504:
		default:
			t.Fatalf("publish during the failover: %d", code)
		}
		if back != 0 && time.Since(killed) > back+time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if back == 0 {
		t.Fatalf("no publication answered 200 within 30 s of the kill: %v", codes)
	}
	if code := get("http://" + a + "/readyz"); code != 200 {
		t.Fatalf("/readyz after the failover: %d", code)
	}
	var last uint64
	for off := range acked {
		last = max(last, off)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(received)
		done := n > 0 && received[n-1].offset >= last
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriber did not get up to offset %d: %d messages", last, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sub.CloseNow()
	readWG.Wait()
	have := map[uint64]string{}
	gaps, silent := 0, 0
	var prev uint64
	told := false
	for _, g := range received {
		if g.gap {
			gaps++
			told = true
			continue
		}
		if prev != 0 && g.offset != prev+1 && !told {
			silent++
		}
		prev, told = g.offset, false
		have[g.offset] = g.data
	}
	missing := 0
	for off, data := range acked {
		if have[off] != data {
			missing++
		}
	}
	t.Logf("serve on Sentinel: first 200 %v after SIGKILL of the master; answers during the switch %v; %d acknowledged, subscriber got %d, %d gap notices, %d missing, %d silent jumps",
		back.Round(10*time.Millisecond), codes, len(acked), len(have), gaps, missing, silent)
	if silent != 0 || (missing != 0 && gaps == 0) {
		t.Fatalf("lost without being told: %d silent jumps, %d missing, %d gaps", silent, missing, gaps)
	}
}
