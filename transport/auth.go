package transport

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hotline-rt/hotline/auth"
	"github.com/hotline-rt/hotline/push"
)

// TokenCookie is the cookie a browser may carry its token in.
const TokenCookie = "hotline_token"

// Token returns the client's token from, in order, an
// "Authorization: Bearer" header, the "token" query parameter, or the
// hotline_token cookie; "" if there is none.
func Token(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	if tok := r.URL.Query().Get("token"); tok != "" {
		return tok
	}
	if c, err := r.Cookie(TokenCookie); err == nil {
		return c.Value
	}
	return ""
}

// Authenticate verifies the request's token. On failure it has answered
// 401 with the reason and returns false.
func Authenticate(w http.ResponseWriter, r *http.Request, v auth.Verifier) (auth.Identity, bool) {
	id, err := v.Verify(Token(r))
	if err == nil {
		return id, true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="hotline"`)
	reason := "invalid token"
	if errors.Is(err, auth.ErrTokenExpired) {
		reason = "token expired"
	} else if Token(r) == "" {
		reason = "a token is required (Authorization: Bearer, ?token= or the hotline_token cookie)"
	}
	http.Error(w, reason, http.StatusUnauthorized)
	return auth.Identity{}, false
}

// RetryAfter is what an overloaded server tells clients to wait.
const RetryAfter = 5 * time.Second

// Overloaded answers 503 with Retry-After: the server is at a limit and
// keeps serving the clients it has.
func Overloaded(w http.ResponseWriter, reason string) {
	w.Header().Set("Retry-After", strconv.Itoa(int(RetryAfter/time.Second)))
	http.Error(w, reason, http.StatusServiceUnavailable)
}

// connectError answers a failed push.Engine.Connect with the right
// status.
func connectError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, push.ErrTooManySessions):
		Overloaded(w, "server is at its connection limit, retry later")
	case errors.Is(err, push.ErrTooManyUserSessions):
		// The user's other sessions (some perhaps in their grace period)
		// hold every place; one ending makes room.
		w.Header().Set("Retry-After", strconv.Itoa(int(RetryAfter/time.Second)))
		http.Error(w, "too many sessions of this user: close one, or retry later", http.StatusTooManyRequests)
	case errors.Is(err, push.ErrClosed):
		Overloaded(w, "server is shutting down")
	case errors.Is(err, push.ErrForbidden):
		http.Error(w, err.Error(), http.StatusForbidden)
	case errors.Is(err, push.ErrInvalidChannel), errors.Is(err, push.ErrUnknownNamespace):
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		http.Error(w, "cannot open a session", http.StatusInternalServerError)
	}
}
