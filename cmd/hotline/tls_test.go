package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotline-rt/hotline/ws"
)

// writePair writes a self-signed certificate for 127.0.0.1 with the given
// serial, and its key, as PEM files.
func writePair(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "hotline test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Written to a temporary name and renamed, as a certificate manager
	// does, so that a reload never sees half a file.
	for _, f := range []struct {
		name, typ string
		der       []byte
	}{{certFile, "CERTIFICATE", der}, {keyFile, "EC PRIVATE KEY", kder}} {
		tmp := f.name + ".tmp"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.name); err != nil {
			t.Fatal(err)
		}
	}
}

// servedSerial does a TLS handshake with addr and returns the serial of
// the certificate it was shown and the protocol ALPN chose.
func servedSerial(t *testing.T, addr string) (int64, string) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := c.ConnectionState()
	return st.PeerCertificates[0].SerialNumber.Int64(), st.NegotiatedProtocol
}

// TestTLSReloadOnSIGHUP runs serve with pair A, opens WebSockets
// over HTTP/2 and HTTP/1.1, replaces the files with pair B and sends
// SIGHUP: new handshakes see B, the open WebSockets still echo. A broken
// pair then is logged and B stays.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePair(t, certFile, keyFile, 1001)
	_, addr, logs := startServe(t, "-tls-cert", certFile, "-tls-key", keyFile, "-diagnostics=true")
	if serial, proto := servedSerial(t, addr); serial != 1001 || proto != "h2" {
		t.Fatalf("first handshake: serial %d, ALPN %q; want 1001, h2", serial, proto)
	}

	ctx := context.Background()
	insecure := &tls.Config{InsecureSkipVerify: true}
	h2c, resp, err := ws.Dial(ctx, "wss://"+addr+"/echo", &ws.DialOptions{TLSConfig: insecure, HTTP2: ws.HTTP2Only})
	if err != nil {
		t.Fatalf("wss over HTTP/2: %v\n%s", err, logs)
	}
	defer h2c.CloseNow()
	if resp.ProtoMajor != 2 {
		t.Fatalf("response %s", resp.Proto)
	}
	h1c, _, err := ws.Dial(ctx, "wss://"+addr+"/echo", &ws.DialOptions{TLSConfig: insecure, HTTP2: ws.HTTP2Off})
	if err != nil {
		t.Fatal(err)
	}
	defer h1c.CloseNow()
	echo := func(c *ws.Conn, msg string) {
		t.Helper()
		if err := c.WriteMessage(ctx, ws.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.ReadMessage(ctx, nil); err != nil || string(got) != msg {
			t.Fatalf("echo %q: %q %v", msg, got, err)
		}
	}
	echo(h2c, "before")
	echo(h1c, "before")

	// The chat page over HTTPS and HTTP/2.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: insecure, ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
	page, err := hc.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page.Body.Close()
	if page.StatusCode != 200 || page.ProtoMajor != 2 {
		t.Fatalf("GET / over TLS: %s %s", page.Proto, page.Status)
	}

	writePair(t, certFile, keyFile, 2002)
	// serve runs in this process, which its SIGHUP handler keeps alive.
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if serial, _ := servedSerial(t, addr); serial == 2002 {
			break
		}
		if i == 200 {
			t.Fatalf("still serving the old certificate 5 s after SIGHUP:\n%s", logs)
		}
		time.Sleep(25 * time.Millisecond)
	}
	echo(h2c, "after")
	echo(h1c, "after")

	// A broken pair: logged, and the server keeps B.
	os.WriteFile(certFile, []byte("not a certificate"), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	for i := 0; !strings.Contains(logs.String(), "reload on SIGHUP failed"); i++ {
		if i == 200 {
			t.Fatalf("no error logged for a broken pair:\n%s", logs)
		}
		time.Sleep(25 * time.Millisecond)
	}
	if serial, _ := servedSerial(t, addr); serial != 2002 {
		t.Fatalf("serial %d after a broken reload, want 2002 kept", serial)
	}
	echo(h2c, "still")
	if err := h2c.Close(ws.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close over HTTP/2: %v", err)
	}
	h1c.Close(ws.StatusNormalClosure, "")
}

// TestTLSFlagsTogether: one of the pair alone is an error.
func TestTLSFlagsTogether(t *testing.T) {
	if _, err := tlsFlags("a.pem", ""); err == nil {
		t.Fatal("-tls-cert without -tls-key accepted")
	}
	if on, err := tlsFlags("", ""); on || err != nil {
		t.Fatal("no TLS flags is plain HTTP")
	}
}

// TestBenchInsecure: hotline bench against a TLS server with a
// self-signed certificate fails without -insecure and measures every
// transport with it (WebSockets over HTTP/2, polling over HTTPS).
func TestBenchInsecure(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePair(t, certFile, keyFile, 7)
	_, addr, logs := startServe(t, "-tls-cert", certFile, "-tls-key", keyFile)
	args := []string{"bench", "-url", "https://" + addr, "-clients", "3", "-rate", "20", "-duration", "500ms", "-transport", "ws,longpoll,poll", "-poll-interval", "200ms"}
	if code, _, stderr := runCmd(t, nil, args...); code == 0 || !strings.Contains(stderr, "certificate") {
		t.Fatalf("bench without -insecure: exit %d, stderr %s; want a certificate error", code, stderr)
	}
	code, stdout, stderr := runCmd(t, nil, append(args, "-insecure")...)
	if code != 0 {
		t.Fatalf("bench -insecure: exit %d\n%s\n%s\nserver:\n%s", code, stdout, stderr, logs)
	}
	t.Logf("%s", stdout)
}

// TestShutdownWithHTTP2WebSocket: serve's shutdown with a push WebSocket
// open over HTTP/2 ends promptly and cleanly, the client told 1001.
// http.Server.Shutdown waits for HTTP/2 streams and only the server's own
// Shutdown closes them: run one after the other, they waited for
// -shutdown-timeout and failed.
func TestShutdownWithHTTP2WebSocket(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePair(t, certFile, keyFile, 9)
	s, addr, logs := startServe(t, "-tls-cert", certFile, "-tls-key", keyFile, "-shutdown-timeout", "5s")
	ctx := context.Background()
	c, _, err := ws.Dial(ctx, "wss://"+addr+"/chat", &ws.DialOptions{TLSConfig: &tls.Config{InsecureSkipVerify: true}, HTTP2: ws.HTTP2Only})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	read := make(chan error, 1)
	go func() {
		for {
			if _, _, err := c.ReadMessage(ctx, nil); err != nil {
				read <- err
				return
			}
		}
	}()
	start := time.Now()
	if code := s.stop(t); code != 0 {
		t.Fatalf("serve exited with %d after %v:\n%s", code, time.Since(start), logs)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("shutdown took %v: it waited for the HTTP/2 stream", d)
	}
	if err := <-read; ws.CloseStatus(err) != ws.StatusGoingAway {
		t.Fatalf("client read %v, want 1001", err)
	}
}

// TestH2CFlag: with -h2c a WebSocket goes over cleartext HTTP/2 (prior
// knowledge); without it the server does not speak HTTP/2 in clear.
func TestH2CFlag(t *testing.T) {
	ctx := context.Background()
	_, addr, _ := startServe(t, "-h2c", "-diagnostics=true")
	c, resp, err := ws.Dial(ctx, "ws://"+addr+"/echo", &ws.DialOptions{HTTP2: ws.HTTP2Only})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if !c.HTTP2() || resp.ProtoMajor != 2 {
		t.Fatalf("over %s, HTTP2() %v", resp.Proto, c.HTTP2())
	}
	c.WriteMessage(ctx, ws.MessageText, []byte("h2c"))
	if _, m, err := c.ReadMessage(ctx, nil); err != nil || string(m) != "h2c" {
		t.Fatalf("echo: %q %v", m, err)
	}
	if err := c.Close(ws.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}

	_, addr, _ = startServe(t, "-diagnostics=true")
	if _, _, err := ws.Dial(ctx, "ws://"+addr+"/echo", &ws.DialOptions{HTTP2: ws.HTTP2Only}); err == nil {
		t.Fatal("cleartext HTTP/2 without -h2c")
	}
}
