package push_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/push"
	"github.com/hotline-rt/hotline/superchat"
)

// A backend publishes to a chat room; a chat client sees the bare text and
// a superchat client the push with its position.
func ExampleEngine() {
	ctx := context.Background()
	e, err := push.New(push.Config{})
	if err != nil {
		panic(err)
	}
	defer e.Shutdown(ctx)

	chat, _ := e.Connect(ctx, push.ConnectRequest{
		Identity: auth.Identity{UserID: "u1", Name: "Ann"},
		Protocol: push.ProtocolChat, // joins "chat:lobby"
	})
	super, _ := e.Connect(ctx, push.ConnectRequest{
		Identity: auth.Identity{UserID: "u2", Name: "Bob"},
		Protocol: push.ProtocolSuperchat,
	})
	_ = super.Handle(ctx, []byte(`{"id":1,"op":"subscribe","channel":"chat:lobby"}`))
	super.Ack(^uint64(0)) // the reply and Bob's join: not shown here

	_ = chat.Handle(ctx, []byte("hi all")) // a chat line from Ann
	if _, err := e.Publish(ctx, push.PublishRequest{Channel: "chat:lobby", Data: json.RawMessage(`"server says hi"`)}); err != nil {
		panic(err)
	}

	for _, o := range chat.Pending(0, nil) {
		fmt.Printf("chat %d: %s\n", o.Seq, o.Data)
	}
	for _, o := range super.Pending(2, nil) {
		var m superchat.ServerMessage
		_ = json.Unmarshal(o.Data, &m)
		who := "server"
		if m.Push.Info != nil {
			who = m.Push.Info.Name
		}
		fmt.Printf("superchat offset %d from %s: %s\n", m.Push.Offset, who, m.Push.Data)
	}
	// Output:
	// chat 1: hi all
	// chat 2: server says hi
	// superchat offset 1 from Ann: "hi all"
	// superchat offset 2 from server: "server says hi"
}

// A superchat client that comes back with the position it last saw gets
// exactly what it missed.
func ExampleSession_Handle_recovery() {
	ctx := context.Background()
	e, _ := push.New(push.Config{})
	defer e.Shutdown(ctx)
	var pos json.RawMessage
	for _, text := range []string{"one", "two", "three"} {
		p, _ := e.Publish(ctx, push.PublishRequest{Channel: "chat:news", Data: json.RawMessage(fmt.Sprintf("%q", text))})
		if text == "one" {
			pos, _ = json.Marshal(p)
		}
	}
	s, _ := e.Connect(ctx, push.ConnectRequest{Identity: auth.Identity{UserID: "u"}, Protocol: push.ProtocolSuperchat})
	_ = s.Handle(ctx, fmt.Appendf(nil, `{"id":7,"op":"subscribe","channel":"chat:news","since":%s}`, pos))
	// The reply comes first, then each missed publication as a push.
	items := s.Pending(0, nil)
	var reply struct {
		ID     uint64
		Result struct {
			Offset    uint64
			Recovered bool
		}
	}
	_ = json.Unmarshal(items[0].Data, &reply)
	fmt.Println("reply", reply.ID, "recovered:", reply.Result.Recovered, "top:", reply.Result.Offset)
	for _, o := range items[1:] {
		var m superchat.ServerMessage
		_ = json.Unmarshal(o.Data, &m)
		if m.Push.Join != nil {
			continue // its own join event
		}
		fmt.Println(m.Push.Offset, string(m.Push.Data))
	}
	// Output:
	// reply 7 recovered: true top: 3
	// 2 "two"
	// 3 "three"
}
