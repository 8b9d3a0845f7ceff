package server

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/superchat"
	"github.com/hotline-rt/hotline/ws"
)

// Over a real WebSocket: a session whose token expires is closed with
// 4001 "token expired" after the notice; one that refreshed in band stays.
func TestTokenExpiryOverWebSocket(t *testing.T) {
	_, base := start(t, Config{})
	short := token(t, "u", "U", 2*time.Second)
	keep := dial(t, base, "/chat", "superchat", short)
	lapse := dial(t, base, "/chat", "superchat", short)

	keep.send(`{"id":1,"op":"refresh","token":"` + token(t, "u", "U", time.Hour) + `"}`)
	if m := keep.next(reply(1)); m.Error != nil {
		t.Fatalf("refresh: %+v", m.Error)
	}
	keep.send(`{"id":2,"op":"refresh","token":"` + token(t, "v", "V", time.Hour) + `"}`)
	if m := keep.next(reply(2)); m.Error == nil || m.Error.Code != 403 {
		t.Fatalf("refresh as another user: %+v", m)
	}

	// The notice, then the close with the same code. The token lives
	// at most 2s; allow for a slow machine.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var notice *superchat.Disconnect
	for {
		_, msg, err := lapse.c.ReadMessage(ctx, nil)
		if err != nil {
			if ws.CloseStatus(err) != push.CodeTokenExpired {
				t.Fatalf("closed with %v, want %d", err, push.CodeTokenExpired)
			}
			break
		}
		var m superchat.ServerMessage
		if json.Unmarshal(msg, &m) == nil && m.Disconnect != nil {
			notice = m.Disconnect
		}
	}
	if notice == nil || notice.Code != push.CodeTokenExpired || notice.Reason != "token expired" {
		t.Fatalf("notice %+v", notice)
	}
	keep.send(`{"id":3,"op":"connect"}`)
	if m := keep.next(reply(3)); m.Error != nil {
		t.Fatalf("refreshed session: %+v", m.Error)
	}
}
