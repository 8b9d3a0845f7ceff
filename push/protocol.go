package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/hotline-rt/hotline/broker"
)

// Handle processes one message from the client. A chat message is published
// to the session's room; a superchat message is a request whose reply is
// queued. Handle returns an error only when the session has ended: a
// *Disconnect, which the transport turns into a close with its code.
func (s *Session) Handle(ctx context.Context, msg []byte) error {
	if err := s.Err(); err != nil {
		return err
	}
	s.e.stats.in.Add(1)
	if s.proto == ProtocolChat {
		return s.handleChat(ctx, msg)
	}
	s.handleRequest(ctx, msg)
	return s.Err()
}

// handleChat publishes a chat line to the room, with the sender's identity.
// A chat client cannot receive error replies, so a line that may not be
// published ends the session with a reason instead of vanishing.
func (s *Session) handleChat(ctx context.Context, msg []byte) error {
	ns, err := s.e.namespace(s.room)
	if err != nil {
		return err
	}
	if !ns.ClientPublish || !s.ident.CanPublish(s.room) {
		s.end(&Disconnect{Code: CodePolicyViolation, Reason: "not allowed to publish to " + s.room}, false)
		return s.Err()
	}
	if !s.allowPublish() {
		s.end(&Disconnect{Code: CodePolicyViolation, Reason: "publish rate exceeded"}, false)
		return s.Err()
	}
	data := mustMarshal(string(msg))
	if _, err := s.e.publish(ctx, s.room, data, &s.info, ns); err != nil {
		s.log.Warn("chat publish failed", slog.Any("err", err))
		s.end(&Disconnect{Code: CodeTryAgainLater, Reason: "publish failed"}, false)
		return s.Err()
	}
	return nil
}

// replyError is a request failure to answer with an error envelope.
type replyError struct {
	code int
	msg  string
}

func (r *replyError) Error() string { return r.msg }

func errorf(code int, format string, args ...any) *replyError {
	return &replyError{code: code, msg: fmt.Sprintf(format, args...)}
}

// handleRequest answers one superchat request. Every failure is an error
// reply; the session stays usable.
func (s *Session) handleRequest(ctx context.Context, msg []byte) {
	req, err := DecodeRequest(msg)
	if err != nil {
		s.enqueue(Outbound{Data: encodeError(req.ID, 400, err.Error())})
		return
	}
	var result any
	switch req.Op {
	case "connect":
		result = map[string]string{"session": s.id, "user": s.info.User, "name": s.info.Name, "protocol": s.proto.String()}
	case "subscribe":
		// Queues its own reply, in order with the replayed publications.
		if rerr := s.opSubscribe(ctx, req); rerr != nil {
			s.enqueue(Outbound{Data: encodeError(req.ID, rerr.code, rerr.msg)})
		}
		return
	case "unsubscribe":
		result, err = s.opUnsubscribe(ctx, req)
	case "publish":
		result, err = s.opPublish(ctx, req)
	case "presence":
		result, err = s.opPresence(ctx, req)
	case "history":
		result, err = s.opHistory(ctx, req)
	default:
		err = errorf(404, "unknown op %q", req.Op)
	}
	if err != nil {
		var re *replyError
		if !errors.As(err, &re) {
			s.log.Warn("request failed", slog.String("op", req.Op), slog.Any("err", err))
			re = errorf(500, "internal error")
		}
		s.enqueue(Outbound{Data: encodeError(req.ID, re.code, re.msg)})
		return
	}
	s.enqueue(Outbound{Data: encodeResult(req.ID, result)})
}

// channelError maps a namespace error to a reply.
func channelError(err error) *replyError {
	if errors.Is(err, ErrUnknownNamespace) {
		return errorf(403, "%v", err)
	}
	return errorf(400, "%v", err)
}

// subscribeResult is the result of subscribe and history.
type subscribeResult struct {
	Epoch        string `json:"epoch"`
	Offset       uint64 `json:"offset"`
	Recovered    *bool  `json:"recovered,omitempty"`
	Reason       string `json:"reason,omitempty"`
	Publications []Push `json:"publications,omitempty"`
}

func historyResult(res broker.HistoryResult, herr error, since bool) subscribeResult {
	r := subscribeResult{Epoch: res.Top.Epoch, Offset: res.Top.Offset}
	if since {
		ok := herr == nil
		r.Recovered = &ok
		if !ok {
			r.Reason = recoveryReason(herr)
		}
	}
	if len(res.Publications) > 0 {
		r.Publications = make([]Push, len(res.Publications))
		for i, p := range res.Publications {
			r.Publications[i] = pushOf(p)
		}
	}
	return r
}

func (s *Session) opSubscribe(ctx context.Context, req Request) *replyError {
	if _, err := s.e.namespace(req.Channel); err != nil {
		return channelError(err)
	}
	if !s.ident.CanSubscribe(req.Channel) {
		return errorf(403, "not allowed to subscribe to %s", req.Channel)
	}
	reply := func(res broker.HistoryResult, herr error) []byte {
		return encodeResult(req.ID, historyResult(res, herr, req.Since != nil))
	}
	err := s.e.subscribe(ctx, s, req.Channel, req.Since, reply)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errAlreadySubscribed):
		return errorf(400, "already subscribed to %s", req.Channel)
	case s.Err() != nil:
		return nil // the session ended; nobody to answer
	}
	s.log.Warn("subscribe failed", slog.String("channel", req.Channel), slog.Any("err", err))
	return errorf(500, "internal error")
}

func (s *Session) opUnsubscribe(ctx context.Context, req Request) (any, error) {
	if req.Channel == "" {
		return nil, errorf(400, "unsubscribe needs a channel")
	}
	if !s.e.unsubscribe(ctx, s, req.Channel) {
		return nil, errorf(400, "not subscribed to %s", req.Channel)
	}
	return struct{}{}, nil
}

func (s *Session) opPublish(ctx context.Context, req Request) (any, error) {
	ns, err := s.e.namespace(req.Channel)
	if err != nil {
		return nil, channelError(err)
	}
	if !ns.ClientPublish || !s.ident.CanPublish(req.Channel) {
		return nil, errorf(403, "not allowed to publish to %s", req.Channel)
	}
	if len(req.Data) == 0 {
		return nil, errorf(400, "publish needs data")
	}
	if !s.allowPublish() {
		return nil, errorf(429, "publish rate exceeded")
	}
	pos, err := s.e.publish(ctx, req.Channel, req.Data, &s.info, ns)
	if err != nil {
		return nil, err
	}
	return pos, nil
}

func (s *Session) opPresence(ctx context.Context, req Request) (any, error) {
	if _, err := s.e.namespace(req.Channel); err != nil {
		return nil, channelError(err)
	}
	if !s.ident.CanSubscribe(req.Channel) {
		return nil, errorf(403, "not allowed to see presence of %s", req.Channel)
	}
	clients, err := s.e.Presence(ctx, req.Channel)
	if errors.Is(err, ErrPresenceDisabled) {
		return nil, errorf(400, "presence is off for %s", req.Channel)
	}
	if err != nil {
		return nil, err
	}
	return struct {
		Clients []PresenceClient `json:"clients"`
	}{clients}, nil
}

func (s *Session) opHistory(ctx context.Context, req Request) (any, error) {
	if _, err := s.e.namespace(req.Channel); err != nil {
		return nil, channelError(err)
	}
	if !s.ident.CanSubscribe(req.Channel) {
		return nil, errorf(403, "not allowed to read history of %s", req.Channel)
	}
	hr := broker.HistoryRequest{Since: req.Since, Limit: -1, Reverse: req.Reverse}
	if req.Limit != nil {
		hr.Limit = *req.Limit
	}
	res, err := s.e.broker.History(ctx, req.Channel, hr)
	if err != nil && !isRecoveryError(err) {
		return nil, err
	}
	return historyResult(res, err, req.Since != nil), nil
}

// Presence lists who is in channel: one entry per user, with how many of
// that user's sessions are subscribed, sorted by user id.
func (e *Engine) Presence(ctx context.Context, channel string) ([]PresenceClient, error) {
	ns, err := e.namespace(channel)
	if err != nil {
		return nil, err
	}
	if !ns.Presence {
		return nil, fmt.Errorf("%w for %s", ErrPresenceDisabled, channel)
	}
	m, err := e.broker.Presence(ctx, channel)
	if err != nil {
		return nil, fmt.Errorf("push: presence of %s: %w", channel, err)
	}
	return aggregatePresence(m), nil
}
