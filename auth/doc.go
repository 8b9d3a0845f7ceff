// Package auth says who a client is. A [Verifier] turns the token a client
// presents at connect (a JWT) into an [Identity]: user id, display name, the
// channel patterns it may subscribe and publish to, and when it expires.
//
// [New] builds a verifier for one algorithm: HS256 with a shared secret, or
// RS256/ES256 with a public key. Tokens signed with any other algorithm
// (including "none") are refused, so a public key can never be used as an
// HMAC secret. Failures wrap [ErrTokenExpired] or [ErrTokenInvalid]; a
// transport answers both with 401.
//
// [Anonymous] is the explicit development mode: no token is checked, and
// every client gets a random user id and a friendly guest name.
//
// [Sign] mints HS256 tokens for tests and load tools.
package auth
