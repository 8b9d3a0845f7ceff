package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	// WebSockets over HTTP/2 (RFC 8441): Go's HTTP/2 server advertises
	// extended CONNECT only with GODEBUG=http2xconnect=1 read at its
	// init, which this package sets (see its documentation).
	_ "github.com/hotline-rt/hotline/ws/xconnect"
)

// certPair is the TLS certificate the server presents, read from a PEM
// certificate (chain) file and a PEM key file. The pair is swapped
// atomically on reload: handshakes under way keep the pair they started
// with, connections already open are not touched, and a new pair that
// does not load leaves the old one in place.
type certPair struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

func loadCertPair(certFile, keyFile string) (*certPair, error) {
	p := &certPair{certFile: certFile, keyFile: keyFile}
	if err := p.reload(); err != nil {
		return nil, err
	}
	return p, nil
}

// reload reads both files again and swaps the pair in if they load.
func (p *certPair) reload() error {
	c, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		return fmt.Errorf("tls: load -tls-cert %s, -tls-key %s: %w", p.certFile, p.keyFile, err)
	}
	p.cur.Store(&c)
	return nil
}

// getCertificate is tls.Config.GetCertificate.
func (p *certPair) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return p.cur.Load(), nil
}

// describe names the current certificate for the log.
func (p *certPair) describe() []any {
	c := p.cur.Load()
	if c == nil || len(c.Certificate) == 0 {
		return nil
	}
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil
		}
	}
	return []any{"subject", leaf.Subject.String(), "not_after", leaf.NotAfter, "serial", leaf.SerialNumber.String()}
}

// tlsConfig is the server's TLS configuration: the pair's certificate,
// HTTP/2 and HTTP/1.1 offered in ALPN (http.Server adds what it serves).
func (p *certPair) tlsConfig() *tls.Config {
	return &tls.Config{GetCertificate: p.getCertificate, MinVersion: tls.VersionTLS12}
}

// reloadOnHUP reloads the pair on each SIGHUP until ctx ends. A pair that
// does not load is logged as an error and the old one stays.
func (p *certPair) reloadOnHUP(ctx context.Context, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := p.reload(); err != nil {
					log.Error("tls: reload on SIGHUP failed, still serving the old certificate", "err", err)
					continue
				}
				log.Info("tls: certificate reloaded", p.describe()...)
			}
		}
	}()
}

// tlsFlags checks that -tls-cert and -tls-key come together.
func tlsFlags(cert, key string) (bool, error) {
	switch {
	case cert == "" && key == "":
		return false, nil
	case cert == "" || key == "":
		return false, errors.New("give both -tls-cert and -tls-key, or neither")
	}
	return true, nil
}
