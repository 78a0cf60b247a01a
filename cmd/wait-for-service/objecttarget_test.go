package main

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestParseObjectTargetValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		arg  string
		want objectTarget
	}{
		{"job:app/migrate", objectTarget{Kind: "job", Namespace: "app", Name: "migrate"}},
		{"job:app/db.migrate-v2", objectTarget{Kind: "job", Namespace: "app", Name: "db.migrate-v2"}},
		{"deployment:app/api", objectTarget{Kind: "deployment", Namespace: "app", Name: "api"}},
		{"Deployment:app/api", objectTarget{Kind: "deployment", Namespace: "app", Name: "api"}},
		{"statefulset:db/pg", objectTarget{Kind: "statefulset", Namespace: "db", Name: "pg"}},
		{"daemonset:kube-system/agent", objectTarget{Kind: "daemonset", Namespace: "kube-system", Name: "agent"}},
		{"endpoints:app/db", objectTarget{Kind: "endpoints", Namespace: "app", Name: "db"}},
		{"endpoints:app/db:5432", objectTarget{Kind: "endpoints", Namespace: "app", Name: "db", Port: "5432"}},
		{"endpoints:app/db:65535", objectTarget{Kind: "endpoints", Namespace: "app", Name: "db", Port: "65535"}},
		{"endpoints:app/dns:dns-tcp", objectTarget{Kind: "endpoints", Namespace: "app", Name: "dns", Port: "dns-tcp"}},
		{"job:" + strings.Repeat("n", 63) + "/" + strings.Repeat("a", 253), objectTarget{Kind: "job", Namespace: strings.Repeat("n", 63), Name: strings.Repeat("a", 253)}},
	}
	for _, tt := range tests {
		got, ok, err := parseObjectTarget(tt.arg)
		if !ok || err != nil {
			t.Errorf("parseObjectTarget(%q) = ok %v, err %v; want ok", tt.arg, ok, err)
			continue
		}
		if got != tt.want {
			t.Errorf("parseObjectTarget(%q) = %+v, want %+v", tt.arg, got, tt.want)
		}
		// The canonical form parses to the same target.
		if again, _, err := parseObjectTarget(got.String()); err != nil || again != got {
			t.Errorf("round trip of %q via %q = %+v, %v", tt.arg, got.String(), again, err)
		}
	}
}

func TestParseObjectTargetInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct{ arg, want string }{
		{"job:migrate", "want job:NAMESPACE/NAME"},
		{"job:", "want job:NAMESPACE/NAME"},
		{"job:/migrate", "missing namespace: want job:NAMESPACE/NAME"},
		{"job:app/", "missing name: want job:NAMESPACE/NAME"},
		{"job:App/migrate", `namespace "App" is not valid`},
		{"job:a.b/migrate", `namespace "a.b" is not valid`},
		{"job:" + strings.Repeat("n", 64) + "/m", "must be no more than 63 characters"},
		{"job:app/Migrate", `job name "Migrate" is not valid`},
		{"job:app/mi_grate", `job name "mi_grate" is not valid`},
		{"job:app/a/b", `job name "a/b" is not valid`},
		{"job:app/migrate:5432", `job name "migrate:5432" is not valid`},
		{"deployment:app/-api", `deployment name "-api" is not valid`},
		{"statefulset:app/pg.", `statefulset name "pg." is not valid`},
		{"daemonset:app/" + strings.Repeat("a", 254), "must be no more than 253 characters"},
		{"endpoints:app/db.x", `service name "db.x" is not valid`},
		{"endpoints:app/1db", `service name "1db" is not valid`},
		{"endpoints:app/db:", "missing port after ':'"},
		{"endpoints:app/db:0", `bad port "0"`},
		{"endpoints:app/db:65536", `bad port "65536"`},
		{"endpoints:app/db:05432", `bad port "05432"`},
		{"endpoints:app/db:Http", `port name "Http" is not valid`},
		{"endpoints:app/db:a:b", `port name "a:b" is not valid`},
		{"endpoints:app", "want endpoints:NAMESPACE/NAME[:PORT]"},
	}
	for _, tt := range tests {
		_, ok, err := parseObjectTarget(tt.arg)
		if !ok {
			t.Errorf("parseObjectTarget(%q): not recognised as an object target", tt.arg)
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseObjectTarget(%q) error = %v, want %q", tt.arg, err, tt.want)
		}
	}
}

func TestParseObjectTargetLeavesOtherTargets(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"dns:db.", "tcp:db:5432", "http://job:80/", "fetch:/a=http://x/", "jobs:app/x", "services:app/x", "job", ""} {
		if _, ok, err := parseObjectTarget(arg); ok || err != nil {
			t.Errorf("parseObjectTarget(%q) = ok %v, err %v; want not an object target", arg, ok, err)
		}
	}
}

// The name rules restated in objecttarget.go agree with apimachinery's.
func TestNameRulesMatchApimachinery(t *testing.T) {
	t.Parallel()
	inputs := []string{
		"", "a", "0", "-", "a-", "-a", "a-b", "a--b", "ab9", "9ab", "A", "aB", "a_b", "a.b", "a..b", ".a", "a.",
		"a.b-c.d", "a.-b", "a-.b", "é", "a b", "a\x00", strings.Repeat("a", 63), strings.Repeat("a", 64),
		strings.Repeat("a.", 126) + "a", strings.Repeat("a.", 126) + "ab", strings.Repeat("a", 253), strings.Repeat("a", 254),
		strings.Repeat("a", 63) + "." + strings.Repeat("b", 64),
	}
	for _, s := range inputs {
		check := func(rule string, ours string, theirs []string) {
			if (ours == "") != (len(theirs) == 0) {
				t.Errorf("%s(%q): ours %q, apimachinery %q", rule, s, ours, theirs)
			}
		}
		check("DNS-1123 label", dns1123Label(s), validation.IsDNS1123Label(s))
		check("DNS-1035 label", dns1035Label(s), validation.IsDNS1035Label(s))
		check("DNS-1123 subdomain", dns1123Subdomain(s), validation.IsDNS1123Subdomain(s))
	}
}

func TestParseTargetsObject(t *testing.T) {
	t.Parallel()
	targets, err := parseTargets([]string{"Job:app/migrate", "dns:db.", "job:app/migrate", "endpoints:app/db:5432"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tg := range targets {
		names = append(names, tg.name)
		if strings.Contains(tg.name, ":app/") && tg.kind != kindObject {
			t.Errorf("%s: kind %d, want kindObject", tg.name, tg.kind)
		}
	}
	if got, want := strings.Join(names, " "), "job:app/migrate dns:db. job:app/migrate endpoints:app/db:5432"; got != want { // only exact duplicates are dropped
		t.Errorf("targets %q, want %q", got, want)
	}
	if _, err := parseTargets([]string{"job:app"}); err == nil || err.Error() != `invalid target "job:app": want job:NAMESPACE/NAME` {
		t.Errorf("error = %v", err)
	}
}
