package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/superchat"
)

// Handle processes one message from the client. A chat message is published
// to the session's room; a superchat message is a request whose reply is
// queued. The messages of one session are handled one at a time, in the
// order their Handle calls got their turn. Handle returns an error when the
// session has ended: a *Disconnect, which the transport turns into a close
// with its code; or ctx's error if ctx ended while waiting for the turn
// (the message was not handled).
func (s *Session) Handle(ctx context.Context, msg []byte) error {
	if err := s.takeTurn(ctx); err != nil {
		return err
	}
	defer s.endTurn()
	return s.handle(ctx, msg)
}

// handle is Handle for the holder of the session's turn.
func (s *Session) handle(ctx context.Context, msg []byte) error {
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
	if !ns.ClientPublish || !s.Identity().CanPublish(s.room) {
		s.end(&Disconnect{Code: CodePolicyViolation, Reason: "not allowed to publish to " + s.room}, false)
		return s.Err()
	}
	if !s.allowPublish() {
		s.end(&Disconnect{Code: CodePolicyViolation, Reason: "publish rate exceeded"}, false)
		return s.Err()
	}
	data := mustMarshal(string(msg))
	if _, err := s.e.publish(ctx, PublishRequest{Channel: s.room, Data: data, Info: &s.info}, ns); err != nil {
		s.log().Warn("chat publish failed", slog.Any("err", err))
		reason := "publish failed: not published"
		if errors.Is(err, broker.ErrOutcomeUnknown) {
			reason = "publish failed: outcome unknown"
		}
		s.end(&Disconnect{Code: CodeTryAgainLater, Reason: reason}, false)
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
		result = superchat.ConnectResult{Session: s.id, User: s.info.User, Name: s.info.Name, Protocol: s.proto.String(), Exp: expOf(s.Identity())}
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
	case "refresh":
		result, err = s.opRefresh(req)
	default:
		err = errorf(404, "unknown op %q", req.Op)
	}
	if err != nil {
		var re *replyError
		if !errors.As(err, &re) {
			s.log().Warn("request failed", slog.String("op", req.Op), slog.Any("err", err))
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

// historyResult is the subscribe result for a history read. The replayed
// publications follow as pushes, never in the result.
func historyResult(res broker.HistoryResult, herr error, since bool) superchat.SubscribeResult {
	r := superchat.SubscribeResult{Epoch: res.Top.Epoch, Offset: res.Top.Offset}
	if since {
		ok := herr == nil
		r.Recovered = &ok
		if !ok {
			r.Reason = recoveryReason(herr)
		}
	}
	return r
}

func (s *Session) opSubscribe(ctx context.Context, req superchat.Request) *replyError {
	if _, err := s.e.namespace(req.Channel); err != nil {
		return channelError(err)
	}
	if !s.Identity().CanSubscribe(req.Channel) {
		return errorf(403, "not allowed to subscribe to %s", req.Channel)
	}
	// Exact: only handle (one at a time per session) adds subscriptions.
	if s.subCount() >= s.e.cfg.MaxSubscriptions {
		return errorf(429, "too many subscriptions: at most %d per session; unsubscribe first", s.e.cfg.MaxSubscriptions)
	}
	reply := func(res broker.HistoryResult, herr error) []byte {
		return encodeResult(req.ID, historyResult(res, herr, req.Since != nil))
	}
	err := s.e.subscribe(ctx, s, req.Channel, brokerPosition(req.Since), reply)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errAlreadySubscribed):
		return errorf(400, "already subscribed to %s", req.Channel)
	case s.Err() != nil:
		return nil // the session ended; nobody to answer
	case errors.Is(err, errBrokerUnavailable):
		s.log().Warn("subscribe failed", slog.String("channel", req.Channel), slog.Any("err", err))
		return errorf(503, "broker unavailable: not subscribed; retry in a moment")
	}
	s.log().Warn("subscribe failed", slog.String("channel", req.Channel), slog.Any("err", err))
	return errorf(500, "internal error")
}

func (s *Session) opUnsubscribe(ctx context.Context, req superchat.Request) (any, error) {
	if req.Channel == "" {
		return nil, errorf(400, "unsubscribe needs a channel")
	}
	if !s.e.unsubscribe(ctx, s, req.Channel) {
		return nil, errorf(400, "not subscribed to %s", req.Channel)
	}
	return struct{}{}, nil
}

func (s *Session) opPublish(ctx context.Context, req superchat.Request) (any, error) {
	ns, err := s.e.namespace(req.Channel)
	if err != nil {
		return nil, channelError(err)
	}
	if !ns.ClientPublish || !s.Identity().CanPublish(req.Channel) {
		return nil, errorf(403, "not allowed to publish to %s", req.Channel)
	}
	if len(req.Data) == 0 {
		return nil, errorf(400, "publish needs data")
	}
	if err := checkIdempotencyKey(req.IdempotencyKey); err != nil {
		return nil, errorf(400, "%v", err)
	}
	if !s.allowPublish() {
		return nil, errorf(429, "publish rate exceeded")
	}
	pos, err := s.e.publish(ctx, PublishRequest{Channel: req.Channel, Data: req.Data, Info: &s.info, IdempotencyKey: req.IdempotencyKey}, ns)
	switch {
	case err == nil:
		return pos, nil
	case errors.Is(err, broker.ErrOutcomeUnknown):
		s.log().Warn("publish outcome unknown", slog.String("channel", req.Channel), slog.Any("err", err))
		return nil, errorf(504, "outcome unknown: the broker did not confirm; retry with the same idempotency_key")
	case errors.Is(err, ErrNotPublished):
		s.log().Warn("publish failed", slog.String("channel", req.Channel), slog.Any("err", err))
		return nil, errorf(503, "not published: the broker failed; retry")
	}
	return nil, err
}

func (s *Session) opPresence(ctx context.Context, req superchat.Request) (any, error) {
	if _, err := s.e.namespace(req.Channel); err != nil {
		return nil, channelError(err)
	}
	if !s.Identity().CanSubscribe(req.Channel) {
		return nil, errorf(403, "not allowed to see presence of %s", req.Channel)
	}
	page, err := s.e.PresencePage(ctx, req.Channel, -1)
	if errors.Is(err, ErrPresenceDisabled) {
		return nil, errorf(400, "presence is off for %s", req.Channel)
	}
	if err != nil {
		return nil, err
	}
	return page, nil
}

// historyReply is the result of the history op: a page of publications.
type historyReply struct {
	Epoch        string            `json:"epoch"`
	Offset       uint64            `json:"offset"`
	Recovered    *bool             `json:"recovered,omitempty"`
	Reason       string            `json:"reason,omitempty"`
	Publications []json.RawMessage `json:"publications,omitempty"`
	More         bool              `json:"more,omitempty"`
}

func (s *Session) opHistory(ctx context.Context, req superchat.Request) (any, error) {
	if _, err := s.e.namespace(req.Channel); err != nil {
		return nil, channelError(err)
	}
	if !s.Identity().CanSubscribe(req.Channel) {
		return nil, errorf(403, "not allowed to read history of %s", req.Channel)
	}
	hr := broker.HistoryRequest{Since: brokerPosition(req.Since), Limit: -1, Reverse: req.Reverse}
	if req.Limit != nil {
		hr.Limit = *req.Limit
	}
	page, err := s.e.HistoryPage(ctx, req.Channel, hr, encodePushObject)
	if err != nil && !isRecoveryError(err) {
		// The namespace was checked above: the broker failed.
		s.log().Warn("history read failed", slog.String("channel", req.Channel), slog.Any("err", err))
		return nil, errorf(503, "broker unavailable: retry in a moment")
	}
	r := historyReply{Epoch: page.Top.Epoch, Offset: page.Top.Offset, Publications: page.Publications, More: page.More}
	if req.Since != nil {
		ok := err == nil
		r.Recovered = &ok
		if !ok {
			r.Reason = recoveryReason(err)
		}
	}
	return r, nil
}

// HistoryPage is one page of a channel's history.
type HistoryPage struct {
	// Top is the channel's latest position.
	Top broker.Position
	// Publications are encoded by HistoryPage's encode, in the order of
	// the request.
	Publications []json.RawMessage
	// More says that history holds more publications past the last one
	// returned (in the direction of the request): ask again with Since
	// set to the last one's position.
	More bool
}

// HistoryPage reads channel's history as HistoryRequest says, but returns
// at most Config.MaxHistoryReply publications (Limit above it or negative
// means that many) and stops before the encoded publications exceed a
// quarter of Config.QueueBytes (it returns at least one). encode gives a
// publication's bytes as the caller will send them. Positions that cannot
// be served fail as History does, with Top set.
func (e *Engine) HistoryPage(ctx context.Context, channel string, req broker.HistoryRequest, encode func(*broker.Publication) []byte) (HistoryPage, error) {
	if _, err := e.namespace(channel); err != nil {
		return HistoryPage{}, err
	}
	limit := e.cfg.MaxHistoryReply
	if req.Limit >= 0 && req.Limit < limit {
		limit = req.Limit
	}
	req.Limit = limit
	if limit > 0 {
		req.Limit = limit + 1 // one more says whether there is more
	}
	res, err := e.history(ctx, channel, req)
	page := HistoryPage{Top: res.Top}
	if err != nil {
		return page, err
	}
	pubs := res.Publications
	if len(pubs) > limit {
		pubs, page.More = pubs[:limit], true
	}
	budget, used := e.cfg.replyBytes(), 0
	for i, p := range pubs {
		b := encode(p)
		if i > 0 && used+len(b)+1 > budget {
			page.More = true
			break
		}
		used += len(b) + 1
		page.Publications = append(page.Publications, b)
	}
	return page, nil
}

// PresencePage lists who is in channel, as Presence does, but at most
// limit users (limit negative or above Config.MaxPresenceReply: that
// maximum), and no more than fit in a quarter of Config.QueueBytes.
func (e *Engine) PresencePage(ctx context.Context, channel string, limit int) (PresencePage, error) {
	clients, err := e.Presence(ctx, channel)
	if err != nil {
		return PresencePage{}, err
	}
	if limit < 0 || limit > e.cfg.MaxPresenceReply {
		limit = e.cfg.MaxPresenceReply
	}
	page := PresencePage{Clients: clients, Total: len(clients)}
	if len(clients) > limit {
		page.Clients = clients[:limit]
	}
	budget, used := e.cfg.replyBytes(), 0
	for i := range page.Clients {
		n := len(mustMarshal(&page.Clients[i])) + 1
		if used+n > budget {
			page.Clients = page.Clients[:i]
			break
		}
		used += n
	}
	if page.Clients == nil {
		page.Clients = []PresenceClient{}
	}
	page.Truncated = len(page.Clients) < page.Total
	return page, nil
}

func expOf(id auth.Identity) int64 {
	if id.Expires.IsZero() {
		return 0
	}
	return id.Expires.Unix()
}

// opRefresh verifies a new token for the session's user and moves the
// session's expiry (and its grants) to it.
func (s *Session) opRefresh(req superchat.Request) (any, error) {
	v := s.e.cfg.Verifier
	if v == nil {
		return nil, errorf(400, "this server does not refresh tokens")
	}
	if req.Token == "" {
		return nil, errorf(400, "refresh needs a token")
	}
	id, err := v.Verify(req.Token)
	if errors.Is(err, auth.ErrTokenExpired) {
		return nil, errorf(401, "token expired")
	}
	if err != nil {
		return nil, errorf(401, "invalid token")
	}
	if id.UserID != s.info.User {
		return nil, errorf(403, "the token is for another user")
	}
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		return nil, errorf(400, "session ended") // nobody to answer
	}
	// The name and the presence entries stay as they were at connect.
	id.Name = s.ident.Name
	s.ident = id
	s.armExpiry()
	s.mu.Unlock()
	return superchat.RefreshResult{Exp: expOf(id)}, nil
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
	bctx, cancel := e.brokerCtx(ctx)
	m, err := e.broker.Presence(bctx, channel)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("push: presence of %s: %w", channel, err)
	}
	return aggregatePresence(m), nil
}

// MaxIdempotencyKey bounds the length of a publish's idempotency key.
const MaxIdempotencyKey = superchat.MaxIdempotencyKey

func checkIdempotencyKey(k string) error {
	if len(k) > MaxIdempotencyKey {
		return fmt.Errorf("%w: idempotency key longer than %d bytes", ErrBadRequest, MaxIdempotencyKey)
	}
	return nil
}
