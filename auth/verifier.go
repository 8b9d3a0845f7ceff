package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	// ErrTokenExpired: the token's exp has passed.
	ErrTokenExpired = errors.New("auth: token expired")
	// ErrTokenInvalid: any other reason to refuse a token (missing,
	// malformed, bad signature, wrong algorithm, no sub).
	ErrTokenInvalid = errors.New("auth: invalid token")
)

// Verifier turns a client's token into an Identity.
type Verifier interface {
	// Verify checks token and returns the identity it carries. Errors wrap
	// ErrTokenExpired or ErrTokenInvalid.
	Verify(token string) (Identity, error)
	// Dev reports whether this is the anonymous development mode, which
	// servers announce at start.
	Dev() bool
}

// Config selects how tokens are verified. Set exactly one of Secret,
// PublicKeyPEM and PublicKeyFile.
type Config struct {
	// Secret is the HS256 key. Use at least 32 random bytes.
	Secret []byte
	// PublicKeyPEM is an RSA (RS256) or P-256 ECDSA (ES256) public key:
	// PEM "PUBLIC KEY" (PKIX) or "RSA PUBLIC KEY" (PKCS #1).
	PublicKeyPEM []byte
	// PublicKeyFile is a file holding PublicKeyPEM.
	PublicKeyFile string
	// Leeway tolerates clock skew on exp and nbf. 0: none.
	Leeway time.Duration
}

// New returns a verifier that accepts only tokens signed with the one
// algorithm cfg implies. With no key it fails: development mode is asked for
// explicitly with Anonymous.
func New(cfg Config) (Verifier, error) {
	n := 0
	for _, set := range []bool{len(cfg.Secret) > 0, len(cfg.PublicKeyPEM) > 0, cfg.PublicKeyFile != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("auth: set exactly one of Secret, PublicKeyPEM, PublicKeyFile (or use Anonymous)")
	}
	if len(cfg.Secret) > 0 {
		return &jwtVerifier{alg: jwt.SigningMethodHS256.Alg(), key: cfg.Secret, leeway: cfg.Leeway}, nil
	}
	pemBytes := cfg.PublicKeyPEM
	if cfg.PublicKeyFile != "" {
		b, err := os.ReadFile(cfg.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth: read public key: %w", err)
		}
		pemBytes = b
	}
	key, alg, err := parsePublicKey(pemBytes)
	if err != nil {
		return nil, err
	}
	return &jwtVerifier{alg: alg, key: key, leeway: cfg.Leeway}, nil
}

func parsePublicKey(b []byte) (any, string, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, "", errors.New("auth: public key: no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return nil, "", fmt.Errorf("auth: public key: unsupported PEM type %q", block.Type)
	}
	if err != nil {
		return nil, "", fmt.Errorf("auth: public key: %w", err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, "", fmt.Errorf("auth: public key: RSA key of %d bits, want at least 2048", k.N.BitLen())
		}
		return k, jwt.SigningMethodRS256.Alg(), nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, "", errors.New("auth: public key: ECDSA key not on P-256 (ES256)")
		}
		return k, jwt.SigningMethodES256.Alg(), nil
	}
	return nil, "", fmt.Errorf("auth: public key: unsupported key type %T", key)
}

// claims are the token claims hotline reads.
type claims struct {
	jwt.RegisteredClaims
	Name      string   `json:"name,omitempty"`
	Subscribe []string `json:"subscribe,omitempty"`
	Publish   []string `json:"publish,omitempty"`
}

type jwtVerifier struct {
	alg    string
	key    any
	leeway time.Duration
}

func (v *jwtVerifier) Dev() bool { return false }

func (v *jwtVerifier) Verify(token string) (Identity, error) {
	if token == "" {
		return Identity{}, fmt.Errorf("%w: no token", ErrTokenInvalid)
	}
	var c claims
	_, err := jwt.ParseWithClaims(token, &c,
		func(*jwt.Token) (any, error) { return v.key, nil },
		jwt.WithValidMethods([]string{v.alg}),
		jwt.WithLeeway(v.leeway),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Identity{}, fmt.Errorf("%w: %w", ErrTokenExpired, err)
	case err != nil:
		return Identity{}, fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	case c.Subject == "":
		return Identity{}, fmt.Errorf("%w: no sub claim", ErrTokenInvalid)
	}
	id := Identity{UserID: c.Subject, Name: c.Name, Subscribe: c.Subscribe, Publish: c.Publish}
	if c.ExpiresAt != nil {
		id.Expires = c.ExpiresAt.Time
	}
	return id, nil
}

// Anonymous returns the development-mode verifier: it ignores tokens
// entirely (a token is neither checked nor read) and gives every client a
// random user id and a name such as "guest-4821".
func Anonymous() Verifier { return anonymous{} }

type anonymous struct{}

func (anonymous) Dev() bool { return true }

func (anonymous) Verify(string) (Identity, error) {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand docs)
	n, _ := rand.Int(rand.Reader, big.NewInt(10000))
	return Identity{
		UserID: "anon-" + hex.EncodeToString(b[:]),
		Name:   fmt.Sprintf("guest-%04d", n.Int64()),
	}, nil
}

// Sign mints an HS256 token for id that expires after ttl (0: never). Tests
// and the bench tool use it; production tokens come from the application's
// backend.
func Sign(secret []byte, id Identity, ttl time.Duration) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("auth: sign: empty secret")
	}
	if id.UserID == "" {
		return "", errors.New("auth: sign: empty UserID")
	}
	now := time.Now()
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: id.UserID, IssuedAt: jwt.NewNumericDate(now)},
		Name:             id.Name,
		Subscribe:        id.Subscribe,
		Publish:          id.Publish,
	}
	if ttl != 0 {
		c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	return s, nil
}
