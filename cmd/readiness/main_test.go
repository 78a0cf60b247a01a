package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	s := o.server
	if s.port != 8443 || s.healthAddr != ":8081" || s.metricsAddr != ":8080" || s.maxWaiters != 10000 ||
		s.maxWait != time.Minute || s.linger != 30*time.Second || s.drainPeriod != 10*time.Second {
		t.Errorf("defaults: %+v", s)
	}
	if len(s.statusClients) != 0 || s.statusSyncWait != 100*time.Millisecond {
		t.Errorf("status defaults: nobody may ask /v1/status, got %v, sync wait %s", s.statusClients, s.statusSyncWait)
	}
	o, err = parseFlags([]string{"--status-clients=system:serviceaccount:depends-on-system:depends-on-webhook, system:serviceaccount:x:y"}, &bytes.Buffer{})
	if err != nil || len(o.server.statusClients) != 2 || o.server.statusClients[1] != "system:serviceaccount:x:y" {
		t.Errorf("--status-clients: %v %v", o, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--port=0"}, "--port=0"},
		{[]string{"--max-waiters=0"}, "--max-waiters=0"},
		{[]string{"--max-wait=10ms"}, "--max-wait=10ms"},
		{[]string{"--namespace="}, "--namespace is empty"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"--status-clients=depends-on-webhook"}, "not system:serviceaccount:NAMESPACE:NAME"},
		{[]string{"--status-clients=system:serviceaccount:ns:"}, "not system:serviceaccount:NAMESPACE:NAME"},
		{[]string{"--status-sync-wait=0s"}, "--status-sync-wait=0s"},
	} {
		if _, err := parseFlags(tc.args, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestRunMainExitCodes(t *testing.T) {
	var out bytes.Buffer
	if code := runMain([]string{"--version"}, &out); code != 0 || !strings.Contains(out.String(), "depends-on readiness") {
		t.Errorf("--version: %d %q", code, out.String())
	}
	if code := runMain([]string{"--bogus"}, &bytes.Buffer{}); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
	if code := runMain([]string{"--cert-dir=/nonexistent", "--kubeconfig=/nonexistent"}, &bytes.Buffer{}); code != 1 {
		t.Errorf("unusable configuration: exit %d, want 1", code)
	}
}
