package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hotline-rt/hotline/internal/testredis"
	"github.com/hotline-rt/hotline/ws"
)

// TestTwoNodesShareRedisCluster runs two hotline serve processes on a
// 3-master Redis Cluster: node A given one seed address, node B a redis://
// URL with every master (cluster mode detected both times). Chat rooms
// spread over all three masters; lines written on A reach the clients on
// B, every one, in order.
func TestTwoNodesShareRedisCluster(t *testing.T) {
	c := testredis.StartCluster(t, 3, 0)
	_, a, logsA := startServe(t, "-broker", "redis", "-redis-addr", c.Masters[0].Addr)
	_, b, _ := startServe(t, "-broker", "redis", "-redis-addr", "redis://"+strings.Join(c.Addrs(), ","))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer rc.Close()
	var rooms []string
	owners := map[string]bool{}
	for i := range 9 {
		room := fmt.Sprintf("r%d", i)
		m, err := rc.MasterForKey(ctx, "hotline:{chat:"+room+"}:meta")
		if err != nil {
			t.Fatal(err)
		}
		owners[m.Options().Addr] = true
		rooms = append(rooms, room)
	}
	if len(owners) != 3 {
		t.Fatalf("rooms on %d masters", len(owners))
	}
	const lines = 10
	type pair struct{ onA, onB *ws.Conn }
	conns := map[string]pair{}
	for _, room := range rooms {
		onB, _, err := ws.Dial(ctx, "ws://"+b+"/chat/"+room, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer onB.CloseNow()
		onA, _, err := ws.Dial(ctx, "ws://"+a+"/chat/"+room, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer onA.CloseNow()
		// B's client sees its own line once its subscription is live.
		onB.WriteMessage(ctx, ws.MessageText, []byte("b is here"))
		if _, msg, err := onB.ReadMessage(ctx, nil); err != nil || string(msg) != "b is here" {
			t.Fatalf("own line on B in %s: %q %v\n%s", room, msg, err, logsA.String())
		}
		conns[room] = pair{onA, onB}
	}
	for i := range lines {
		for _, room := range rooms {
			if err := conns[room].onA.WriteMessage(ctx, ws.MessageText, []byte(fmt.Sprintf("%s %d", room, i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, room := range rooms {
		next := 0
		for next < lines {
			_, msg, err := conns[room].onB.ReadMessage(ctx, nil)
			if err != nil {
				t.Fatalf("%s on B: got %d of %d lines: %v", room, next, lines, err)
			}
			if !strings.HasPrefix(string(msg), room+" ") {
				continue // presence or other lines
			}
			if want := fmt.Sprintf("%s %d", room, next); string(msg) != want {
				t.Fatalf("%s on B: got %q, want %q", room, msg, want)
			}
			next++
		}
	}
	if !strings.Contains(logsA.String(), "mode=cluster") {
		t.Fatalf("node A did not say it runs on a cluster:\n%s", logsA.String())
	}
}
