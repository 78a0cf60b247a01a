package main

import (
	"strings"
	"testing"

	"github.com/depends-on/depends-on/webhook/target"
)

// The grammar is tested in webhook/target; here: the binary probes every kind
// it parses (object kinds: it asks the readiness service, object.go), and uses
// the package's rules.

func TestEveryKindHasAProbe(t *testing.T) {
	examples := map[target.Kind]string{
		target.DNS: "dns:a.test.", target.TCP: "tcp:127.0.0.1:1", target.HTTP: "http://127.0.0.1:1/", target.Fetch: "fetch:/x=http://127.0.0.1:1/",
		target.Job: "job:a/b", target.Deployment: "deployment:a/b", target.StatefulSet: "statefulset:a/b",
		target.DaemonSet: "daemonset:a/b", target.Endpoints: "endpoints:a/b:1",
	}
	cfg := &config{lookup: newLookup(""), tuning: defaultTuning(), maxBytes: 1}
	for _, k := range target.Kinds() {
		arg, ok := examples[k]
		if !ok {
			t.Errorf("kind %s has no example here: add one, and its probe", k)
			continue
		}
		tg, err := target.Parse(arg)
		if err != nil || tg.Kind != k {
			t.Fatalf("Parse(%q) = %v, %v", arg, tg, err)
		}
		if k.IsObject() {
			// waitAll sends it to waitObject, which needs the readiness service.
			if rc, err := newReadinessConfig([]*target.Target{tg}, "", "", ""); err == nil || rc != nil {
				t.Errorf("kind %s: object target accepted without the readiness service", k)
			}
			continue
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("kind %s has no probe: %v", k, r)
				}
			}()
			if newProbe(t.Context(), tg, cfg) == nil {
				t.Errorf("kind %s: nil probe", k)
			}
		}()
	}
}

func TestParseTargetsUsesTheGrammar(t *testing.T) {
	// Cases the webhook used to admit and this binary rejects: now one rule.
	for _, arg := range []string{"http://myapi:/healthz", "http://b:?", "fetch:/a=http://h:/", "fetch:/aab=https://a:?0",
		"tcp:db:+80", "tcp:db:080", "tcp:256.1.1.1:80", "tcp:1.2.3:80"} {
		_, err := parseTargets([]string{"dns:ok.", arg})
		if err == nil || !strings.Contains(err.Error(), `invalid target "`+arg+`"`) {
			t.Errorf("parseTargets(%q) error = %v, want it named", arg, err)
		}
	}
	got, err := parseTargets([]string{"dns:a.", "tcp:b:1", "dns:a."})
	if err != nil || len(got) != 2 {
		t.Errorf("parseTargets = %v, %v; want 2 targets (duplicates dropped)", got, err)
	}
}
