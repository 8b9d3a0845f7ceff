package redisbroker_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/broker/brokertest"
	"github.com/hotline-rt/hotline/broker/redisbroker"
	"github.com/hotline-rt/hotline/internal/testredis"
)

// TestTLSAndACLUser connects with a rediss:// URL naming an ACL user, to a
// real redis-server whose default user is off: publications travel, a
// wrong password is refused, and so is a server certificate from another
// CA (the system's roots).
func TestTLSAndACLUser(t *testing.T) {
	srv := testredis.StartTLS(t)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	if err := admin.Do(ctx, "ACL", "SETUSER", "hotline", "on", ">s3cret", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", "default", "off").Err(); err != nil {
		t.Fatal(err)
	}

	cfg, err := redisbroker.ParseAddr("rediss://hotline:s3cret@" + srv.TLSAddr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := redisbroker.New(cfg); err == nil {
		t.Fatal("a certificate from an unknown CA was accepted")
	}
	cfg.TLS.RootCAs = srv.CA
	a, err := redisbroker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	n := &brokertest.Node{}
	if err := a.Start(n); err != nil {
		t.Fatal(err)
	}
	if err := a.Subscribe(ctx, "secure"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish(ctx, "secure", json.RawMessage(`"hi"`), nil, broker.PublishOptions{HistorySize: 1}); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, "the publication over TLS", func() bool { return len(n.Received("secure")) == 1 })

	bad, err := redisbroker.ParseAddr("rediss://hotline:wrong@" + srv.TLSAddr)
	if err != nil {
		t.Fatal(err)
	}
	bad.TLS.RootCAs = srv.CA
	if _, err := redisbroker.New(bad); err == nil {
		t.Fatal("a wrong password was accepted")
	}
}
