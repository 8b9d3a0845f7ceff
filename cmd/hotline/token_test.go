package main

import (
	"context"
	"encoding/json"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/ws"
)

// TestTokenCommand: "hotline token" mints a token that a server run with
// the same -jwt-secret accepts, with the claims given.
func TestTokenCommand(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	code, out, stderr := runCmd(t, nil, "token", "-secret", secret, "-sub", "alice", "-name", "Alice",
		"-subscribe", "chat:*", "-publish", "chat:*,news:*", "-ttl", "1h")
	if code != 0 {
		t.Fatalf("token: exit %d: %s", code, stderr)
	}
	tok := strings.TrimSpace(out)
	v, err := auth.New(auth.Config{Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("verify %q: %v", tok, err)
	}
	if id.UserID != "alice" || id.Name != "Alice" || !slices.Equal(id.Subscribe, []string{"chat:*"}) || !slices.Equal(id.Publish, []string{"chat:*", "news:*"}) {
		t.Fatalf("identity %+v", id)
	}
	if left := time.Until(id.Expires); left < 59*time.Minute || left > time.Hour {
		t.Fatalf("expires in %v, want 1h", left)
	}

	// The server takes it.
	_, addr, logs := startServe(t, "-jwt-secret", secret)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := ws.Dial(ctx, "ws://"+addr+"/chat?token="+tok, &ws.DialOptions{Subprotocols: []string{"superchat"}})
	if err != nil {
		t.Fatalf("dial with the token: %v\n%s", err, logs)
	}
	defer c.CloseNow()
	c.WriteMessage(ctx, ws.MessageText, []byte(`{"id":1,"op":"connect"}`))
	_, msg, err := c.ReadMessage(ctx, nil)
	var r struct{ Result struct{ User, Name string } }
	if err != nil || json.Unmarshal(msg, &r) != nil || r.Result.User != "alice" || r.Result.Name != "Alice" {
		t.Fatalf("connect: %s %v", msg, err)
	}

	// The secret defaults to serve's variable.
	t.Setenv("HOTLINE_JWT_SECRET", secret)
	if code, out, stderr := runCmd(t, nil, "token", "-sub", "bob"); code != 0 {
		t.Fatalf("token with HOTLINE_JWT_SECRET: %d %s", code, stderr)
	} else if id, err := v.Verify(strings.TrimSpace(out)); err != nil || id.UserID != "bob" {
		t.Fatalf("token with HOTLINE_JWT_SECRET: %+v %v", id, err)
	}

	for _, args := range [][]string{
		{"token", "-sub", "alice"},   // no secret
		{"token", "-secret", secret}, // no sub
		{"token", "-secret", secret, "-sub", "a", "-ttl", "-1h"},
	} {
		t.Setenv("HOTLINE_JWT_SECRET", "")
		if code, _, stderr := runCmd(t, nil, args...); code == 0 || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q; want a failure that says why", args, code, stderr)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCmd(t, nil, "-version")
	if code != 0 || !strings.HasPrefix(out, "hotline ") || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("-version: %d %q", code, out)
	}
}
