package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func pemOf(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func token(t *testing.T, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHS256(t *testing.T) {
	v, err := New(Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if v.Dev() {
		t.Fatal("Dev")
	}
	want := Identity{UserID: "u1", Name: "Ann", Subscribe: []string{"chat:*"}, Publish: []string{"chat:lobby"}}
	good, err := Sign(secret, want, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := Sign(secret, want, -time.Minute)
	other, _ := Sign([]byte("another secret of enough length!"), want, time.Hour)
	now := time.Now().Unix()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)

	for _, tc := range []struct {
		name  string
		token string
		err   error
	}{
		{"valid", good, nil},
		{"expired", expired, ErrTokenExpired},
		{"bad signature", other, ErrTokenInvalid},
		{"tampered", good[:len(good)-2] + "xx", ErrTokenInvalid},
		{"empty", "", ErrTokenInvalid},
		{"garbage", "not.a.jwt", ErrTokenInvalid},
		{"alg none", token(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "u"}), ErrTokenInvalid},
		{"wrong alg HS512", token(t, jwt.SigningMethodHS512, secret, jwt.MapClaims{"sub": "u"}), ErrTokenInvalid},
		{"wrong alg RS256", token(t, jwt.SigningMethodRS256, rsaKey, jwt.MapClaims{"sub": "u"}), ErrTokenInvalid},
		{"no sub", token(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"name": "x", "exp": now + 60}), ErrTokenInvalid},
		{"not yet valid", token(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "u", "nbf": now + 600}), ErrTokenInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.Verify(tc.token)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if tc.err != nil {
				if errors.Is(err, ErrTokenExpired) && errors.Is(err, ErrTokenInvalid) {
					t.Fatal("both sentinels")
				}
				return
			}
			if id.UserID != want.UserID || id.Name != want.Name || strings.Join(id.Subscribe, ",") != "chat:*" ||
				strings.Join(id.Publish, ",") != "chat:lobby" || time.Until(id.Expires) < 59*time.Minute {
				t.Fatalf("identity %+v", id)
			}
		})
	}
}

func TestPublicKeys(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	claims := jwt.MapClaims{"sub": "u2", "name": "Bob", "exp": time.Now().Add(time.Hour).Unix()}

	rsaPEM := pemOf(t, &rsaKey.PublicKey)
	file := filepath.Join(t.TempDir(), "rsa.pem")
	if err := os.WriteFile(file, rsaPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	rv, err := New(Config{PublicKeyFile: file})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := New(Config{PublicKeyPEM: pemOf(t, &ecKey.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		v     Verifier
		token string
		err   error
	}{
		{"RS256 valid", rv, token(t, jwt.SigningMethodRS256, rsaKey, claims), nil},
		{"ES256 valid", ev, token(t, jwt.SigningMethodES256, ecKey, claims), nil},
		{"ES256 to RS verifier", rv, token(t, jwt.SigningMethodES256, ecKey, claims), ErrTokenInvalid},
		{"RS256 to ES verifier", ev, token(t, jwt.SigningMethodRS256, rsaKey, claims), ErrTokenInvalid},
		// Alg confusion: the public key used as an HMAC secret.
		{"HS256 with public key as secret", rv, token(t, jwt.SigningMethodHS256, rsaPEM, claims), ErrTokenInvalid},
		{"expired", rv, token(t, jwt.SigningMethodRS256, rsaKey, jwt.MapClaims{"sub": "u", "exp": time.Now().Add(-time.Hour).Unix()}), ErrTokenExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tc.v.Verify(tc.token)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err == nil && (id.UserID != "u2" || id.Name != "Bob") {
				t.Fatalf("identity %+v", id)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"nothing", Config{}},
		{"two keys", Config{Secret: secret, PublicKeyPEM: []byte("x")}},
		{"not PEM", Config{PublicKeyPEM: []byte("hello")}},
		{"P-384", Config{PublicKeyPEM: pemOf(t, &ec384.PublicKey)}},
		{"small RSA", Config{PublicKeyPEM: pemOf(t, &small.PublicKey)}},
		{"missing file", Config{PublicKeyFile: "/nonexistent/key.pem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestAnonymous(t *testing.T) {
	v := Anonymous()
	if !v.Dev() {
		t.Fatal("not Dev")
	}
	forged, _ := Sign(secret, Identity{UserID: "admin", Name: "Admin"}, time.Hour)
	a, err := v.Verify(forged) // tokens are ignored, never read
	if err != nil {
		t.Fatal(err)
	}
	b, _ := v.Verify("")
	if a.UserID == "admin" || a.UserID == b.UserID || !strings.HasPrefix(a.Name, "guest-") || len(a.Name) != len("guest-0000") {
		t.Fatalf("anonymous identities %+v %+v", a, b)
	}
}

func TestPatterns(t *testing.T) {
	id := Identity{Subscribe: []string{"chat:*", "news:eu"}, Publish: []string{"[bad"}}
	for _, tc := range []struct {
		ch       string
		sub, pub bool
	}{
		{"chat:lobby", true, false},
		{"news:eu", true, false},
		{"news:us", false, false},
		{"chatty", false, false},
	} {
		if id.CanSubscribe(tc.ch) != tc.sub || id.CanPublish(tc.ch) != tc.pub {
			t.Errorf("%s: sub %v pub %v", tc.ch, id.CanSubscribe(tc.ch), id.CanPublish(tc.ch))
		}
	}
	if !(Identity{}).CanPublish("anything") {
		t.Error("empty patterns must defer to the namespace")
	}
}

func TestSignErrors(t *testing.T) {
	if _, err := Sign(nil, Identity{UserID: "u"}, 0); err == nil {
		t.Error("empty secret")
	}
	if _, err := Sign(secret, Identity{}, 0); err == nil {
		t.Error("empty user")
	}
}
