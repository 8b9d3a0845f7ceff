package server

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/push"
)

// api mounts the server-side API: publish, presence and history, for a
// backend that pushes to browsers. Every call needs the API key.
func (s *Server) api() {
	s.mux.Handle("POST /api/publish", s.apiKey(s.apiPublish))
	s.mux.Handle("GET /api/presence", s.apiKey(s.apiPresence))
	s.mux.Handle("GET /api/history", s.apiKey(s.apiHistory))
}

// apiKey checks "Authorization: apikey KEY" in constant time.
func (s *Server) apiKey(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.APIKey == "" {
			apiError(w, http.StatusNotFound, "api_disabled", "the API is disabled: start the server with -api-key")
			return
		}
		scheme, key, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "apikey") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(key)), []byte(s.cfg.APIKey)) != 1 {
			w.Header().Set("WWW-Authenticate", `apikey realm="hotline"`)
			apiError(w, http.StatusUnauthorized, "unauthorized", `missing or wrong API key (send "Authorization: apikey KEY")`)
			return
		}
		h(w, r)
	})
}

// apiError writes the API's error body: {"error": message, "code": code},
// code being a stable snake_case name a client can switch on.
func apiError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}{msg, code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// engineError maps a push error onto an HTTP status and error code.
func engineError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, push.ErrInvalidChannel), errors.Is(err, push.ErrUnknownNamespace), errors.Is(err, push.ErrBadRequest):
		apiError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, push.ErrForbidden), errors.Is(err, push.ErrPresenceDisabled):
		apiError(w, http.StatusForbidden, "forbidden", err.Error())
	case errors.Is(err, push.ErrClosed):
		w.Header().Set("Retry-After", "5")
		apiError(w, http.StatusServiceUnavailable, "shutting_down", err.Error())
	case errors.Is(err, broker.ErrOutcomeUnknown):
		apiError(w, http.StatusGatewayTimeout, "outcome_unknown",
			"outcome unknown: the publication may or may not exist; retry with the same idempotency key: "+err.Error())
	case errors.Is(err, push.ErrNotPublished):
		w.Header().Set("Retry-After", "1")
		apiError(w, http.StatusServiceUnavailable, "not_published", "not published: "+err.Error())
	default:
		apiError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

// apiPublish: POST /api/publish {"channel": "...", "data": <JSON>,
// "idempotency_key": "..."} → {"epoch": "...", "offset": N}. The key may
// also come as the Idempotency-Key header. 503 not_published: nothing was
// published; 504 outcome_unknown: retry with the same key.
func (s *Server) apiPublish(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Channel        string          `json:"channel"`
		Data           json.RawMessage `json:"data"`
		IdempotencyKey string          `json:"idempotency_key"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.ReadLimit+1024))
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			apiError(w, http.StatusRequestEntityTooLarge, "too_large", "body larger than the read limit")
			return
		}
		apiError(w, http.StatusBadRequest, "bad_request", "body must be JSON {\"channel\": ..., \"data\": ...}: "+err.Error())
		return
	}
	if req.Channel == "" || len(req.Data) == 0 {
		apiError(w, http.StatusBadRequest, "bad_request", "channel and data are required")
		return
	}
	key := req.IdempotencyKey
	if h := r.Header.Get("Idempotency-Key"); h != "" {
		if key != "" && key != h {
			apiError(w, http.StatusBadRequest, "bad_request", "the Idempotency-Key header and the idempotency_key field differ")
			return
		}
		key = h
	}
	pos, err := s.engine.Publish(r.Context(), push.PublishRequest{Channel: req.Channel, Data: req.Data, IdempotencyKey: key})
	if err != nil {
		engineError(w, err)
		return
	}
	s.metrics.published()
	writeJSON(w, http.StatusOK, pos)
}

// apiPresence: GET /api/presence?channel=...&limit=N → {"clients": [...],
// "total": N, "truncated": true}; bounded like the superchat presence
// reply, limit lowers the bound.
func (s *Server) apiPresence(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ch := q.Get("channel")
	if ch == "" {
		apiError(w, http.StatusBadRequest, "bad_request", "channel is required")
		return
	}
	limit := -1
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			apiError(w, http.StatusBadRequest, "bad_request", "limit must be a non-negative integer")
			return
		}
		limit = n
	}
	page, err := s.engine.PresencePage(r.Context(), ch, limit)
	if err != nil {
		engineError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// apiHistory: GET /api/history?channel=...&limit=N&epoch=E&offset=O&reverse=true
// → a page of the publications after (E, O) (before it with reverse), or
// the oldest (newest) kept. A page is bounded like the superchat history
// reply; "more": true says to ask again from the last one returned.
func (s *Server) apiHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ch := q.Get("channel")
	if ch == "" {
		apiError(w, http.StatusBadRequest, "bad_request", "channel is required")
		return
	}
	req := broker.HistoryRequest{Limit: -1}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			apiError(w, http.StatusBadRequest, "bad_request", "limit must be a non-negative integer")
			return
		}
		req.Limit = n
	}
	if v := q.Get("reverse"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			apiError(w, http.StatusBadRequest, "bad_request", "reverse must be true or false")
			return
		}
		req.Reverse = b
	}
	if e := q.Get("epoch"); e != "" {
		off, err := strconv.ParseUint(q.Get("offset"), 10, 64)
		if err != nil {
			apiError(w, http.StatusBadRequest, "bad_request", "offset must be an integer when epoch is given")
			return
		}
		req.Since = &broker.Position{Epoch: e, Offset: off}
	}
	page, err := s.engine.HistoryPage(r.Context(), ch, req, encodeAPIPublication)
	if err != nil && !errors.Is(err, broker.ErrEpochChanged) && !errors.Is(err, broker.ErrHistoryTrimmed) {
		engineError(w, err)
		return
	}
	out := apiHistoryReply{Top: page.Top, Publications: page.Publications, More: page.More}
	if out.Publications == nil {
		out.Publications = []json.RawMessage{}
	}
	if err != nil {
		f := false
		out.Recovered = &f
		out.Reason = err.Error()
	}
	writeJSON(w, http.StatusOK, out)
}

type apiHistoryReply struct {
	Top          broker.Position   `json:"top"`
	Publications []json.RawMessage `json:"publications"`
	More         bool              `json:"more,omitempty"`
	Recovered    *bool             `json:"recovered,omitempty"`
	Reason       string            `json:"reason,omitempty"`
}

func encodeAPIPublication(p *broker.Publication) []byte {
	ap := apiPublication{Channel: p.Channel, Epoch: p.Epoch, Offset: p.Offset, Data: p.Data, Time: p.Time}
	if p.Info != nil {
		ap.Info = &apiUser{User: p.Info.User, Name: p.Info.Name}
	}
	b, err := json.Marshal(&ap)
	if err != nil {
		// Data from another node's broker that is not valid JSON: show it
		// as a string rather than fail the page.
		ap.Data, _ = json.Marshal(string(p.Data))
		b, _ = json.Marshal(&ap)
	}
	return b
}

// apiPublication is a publication as the API shows it: the session id of
// the publisher stays private.
type apiPublication struct {
	Channel string          `json:"channel"`
	Epoch   string          `json:"epoch"`
	Offset  uint64          `json:"offset"`
	Data    json.RawMessage `json:"data"`
	Info    *apiUser        `json:"info,omitempty"`
	Time    time.Time       `json:"time"`
}

type apiUser struct {
	User string `json:"user"`
	Name string `json:"name,omitempty"`
}
