// Package superchat holds the JSON envelopes of hotline's superchat
// subprotocol: what a client sends (Request), what the server sends back
// (ServerMessage: a reply, a Push, a Gap notice or a Disconnect notice), and
// the results of each op. docs/protocol.md in the repository is its
// documentation: what each op does, when gaps are sent, how a client keeps
// its Position per channel and recovers.
//
// The package is the wire and nothing else: no I/O, no engine, only the
// standard library, so a client (hotline dial, the loadtest package, the
// comparison harness in bench/push, a program of yours) can speak superchat
// without pulling in the server and its Redis client. The engine (package
// push) encodes its replies and pushes with these same types.
//
// A client decodes every text message into a ServerMessage and looks at
// which field is set:
//
//	var m superchat.ServerMessage
//	if err := json.Unmarshal(msg, &m); err != nil { ... }
//	switch {
//	case m.Push != nil && m.Push.Offset > 0: // a publication
//	case m.Push != nil:                      // a join or leave event
//	case m.Gap != nil:                       // resubscribe with Since = m.Gap.Position()
//	case m.Disconnect != nil:                // the session ends
//	default:                                 // the reply to request m.ID
//	}
package superchat
