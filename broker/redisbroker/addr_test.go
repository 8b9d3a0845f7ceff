package redisbroker

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"127.0.0.1:6379", "[127.0.0.1:6379] user= pass= db=0 tls=false", ""},
		{"a:1, b:2,c:3", "[a:1 b:2 c:3] user= pass= db=0 tls=false", ""},
		{"redis://u:p%40ss@h:1/2", "[h:1] user=u pass=p@ss db=2 tls=false", ""},
		{"rediss://secret@h:1,g:2", "[h:1 g:2] user= pass=secret db=0 tls=true sni=h", ""},
		{"redis://h:1/", "[h:1] user= pass= db=0 tls=false", ""},
		{"http://h:1", "", "scheme"},
		{"redis://u:topsecret@h:1/x", "", "not a number"},
		{"h", "", "not host:port"},
		{"redis://h:1?x=1", "", "query"},
		{"", "", "empty"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			c, err := ParseAddr(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "topsecret") {
					t.Fatalf("password in error: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprintf("%v user=%s pass=%s db=%d tls=%v", c.Addrs, c.Username, c.Password, c.DB, c.TLS != nil)
			if c.TLS != nil {
				got += " sni=" + c.TLS.ServerName
			}
			if got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}
