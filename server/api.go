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
			apiError(w, http.StatusNotFound, "the API is disabled: start the server with -api-key")
			return
		}
		scheme, key, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "apikey") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(key)), []byte(s.cfg.APIKey)) != 1 {
			w.Header().Set("WWW-Authenticate", `apikey realm="hotline"`)
			apiError(w, http.StatusUnauthorized, `missing or wrong API key (send "Authorization: apikey KEY")`)
			return
		}
		h(w, r)
	})
}

func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": status, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// engineError maps a push error onto an HTTP status.
func engineError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, push.ErrInvalidChannel), errors.Is(err, push.ErrUnknownNamespace), errors.Is(err, push.ErrBadRequest):
		apiError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, push.ErrForbidden), errors.Is(err, push.ErrPresenceDisabled):
		apiError(w, http.StatusForbidden, err.Error())
	case errors.Is(err, push.ErrClosed):
		w.Header().Set("Retry-After", "5")
		apiError(w, http.StatusServiceUnavailable, err.Error())
	default:
		apiError(w, http.StatusInternalServerError, err.Error())
	}
}

// apiPublish: POST /api/publish {"channel": "...", "data": <JSON>} →
// {"epoch": "...", "offset": N}.
func (s *Server) apiPublish(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.ReadLimit+1024))
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			apiError(w, http.StatusRequestEntityTooLarge, "body larger than the read limit")
			return
		}
		apiError(w, http.StatusBadRequest, "body must be JSON {\"channel\": ..., \"data\": ...}: "+err.Error())
		return
	}
	if req.Channel == "" || len(req.Data) == 0 {
		apiError(w, http.StatusBadRequest, "channel and data are required")
		return
	}
	pos, err := s.engine.Publish(r.Context(), req.Channel, req.Data, nil)
	if err != nil {
		engineError(w, err)
		return
	}
	s.metrics.published()
	writeJSON(w, http.StatusOK, pos)
}

// apiPresence: GET /api/presence?channel=... → {"clients": [...]}.
func (s *Server) apiPresence(w http.ResponseWriter, r *http.Request) {
	ch := r.URL.Query().Get("channel")
	if ch == "" {
		apiError(w, http.StatusBadRequest, "channel is required")
		return
	}
	clients, err := s.engine.Presence(r.Context(), ch)
	if err != nil {
		engineError(w, err)
		return
	}
	if clients == nil {
		clients = []push.PresenceClient{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"clients": clients})
}

// apiHistory: GET /api/history?channel=...&limit=N&epoch=E&offset=O →
// the publications after (E, O), or the latest N.
func (s *Server) apiHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ch := q.Get("channel")
	if ch == "" {
		apiError(w, http.StatusBadRequest, "channel is required")
		return
	}
	req := broker.HistoryRequest{Limit: -1}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			apiError(w, http.StatusBadRequest, "limit must be a non-negative integer")
			return
		}
		req.Limit = n
	}
	if e := q.Get("epoch"); e != "" {
		off, err := strconv.ParseUint(q.Get("offset"), 10, 64)
		if err != nil {
			apiError(w, http.StatusBadRequest, "offset must be an integer when epoch is given")
			return
		}
		req.Since = &broker.Position{Epoch: e, Offset: off}
	}
	res, err := s.engine.History(r.Context(), ch, req)
	if err != nil && !errors.Is(err, broker.ErrEpochChanged) && !errors.Is(err, broker.ErrHistoryTrimmed) {
		engineError(w, err)
		return
	}
	pubs := make([]apiPublication, len(res.Publications))
	for i, p := range res.Publications {
		pubs[i] = apiPublication{Channel: p.Channel, Epoch: p.Epoch, Offset: p.Offset, Data: p.Data, Time: p.Time}
		if p.Info != nil {
			pubs[i].Info = &apiUser{User: p.Info.User, Name: p.Info.Name}
		}
	}
	out := map[string]any{"top": res.Top, "publications": pubs}
	if err != nil {
		out["recovered"] = false
		out["reason"] = err.Error()
	}
	writeJSON(w, http.StatusOK, out)
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
