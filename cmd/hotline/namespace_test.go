package main

import (
	"testing"
	"time"

	"github.com/hotline-rt/hotline/push"
)

func TestParseNamespace(t *testing.T) {
	for _, tc := range []struct {
		in   string
		name string
		want push.NamespaceOptions
		err  bool
	}{
		{in: "news:history=50,ttl=1h,presence,joinleave", name: "news", want: push.NamespaceOptions{HistorySize: 50, HistoryTTL: time.Hour, HistoryBytes: 1 << 20, Presence: true, JoinLeave: true}},
		{in: "chat:history=10,publish,presence=false", name: "chat", want: push.NamespaceOptions{HistorySize: 10, HistoryBytes: 1 << 20, ClientPublish: true}},
		{in: "news:history=10,bytes=65536", name: "news", want: push.NamespaceOptions{HistorySize: 10, HistoryBytes: 65536}},
		{in: "news:history=10,bytes=512KiB", name: "news", want: push.NamespaceOptions{HistorySize: 10, HistoryBytes: 512 << 10}},
		{in: "news:bytes=2MiB,history=10", name: "news", want: push.NamespaceOptions{HistorySize: 10, HistoryBytes: 2 << 20}},
		{in: "news:history=10,bytes=0", name: "news", want: push.NamespaceOptions{HistorySize: 10}},
		{in: "quiet:", name: "quiet"},
		{in: "news:bytes=-1", err: true},
		{in: "news:bytes=1GB", err: true},
		{in: "news:bytes", err: true},
		{in: "news:histroy=5", err: true},
		{in: "news:history=-1", err: true},
		{in: "news:ttl=soon", err: true},
		{in: "news:presence=maybe", err: true},
		{in: "bad name:presence", err: true},
	} {
		name, got, err := parseNamespace(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("%q: no error", tc.in)
			}
			continue
		}
		if err != nil || name != tc.name || got != tc.want {
			t.Errorf("%q = %q %+v %v, want %q %+v", tc.in, name, got, err, tc.name, tc.want)
		}
	}
}
