package target

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestParseObjectValid(t *testing.T) {
	t.Parallel()
	type obj struct {
		kind                Kind
		ns, name, port, can string
	}
	tests := []struct {
		arg  string
		want obj
	}{
		{"job:app/migrate", obj{Job, "app", "migrate", "", "job:app/migrate"}},
		{"job:app/db.migrate-v2", obj{Job, "app", "db.migrate-v2", "", "job:app/db.migrate-v2"}},
		{"deployment:app/api", obj{Deployment, "app", "api", "", "deployment:app/api"}},
		{"Deployment:app/api", obj{Deployment, "app", "api", "", "deployment:app/api"}},
		{"statefulset:db/pg", obj{StatefulSet, "db", "pg", "", "statefulset:db/pg"}},
		{"daemonset:kube-system/agent", obj{DaemonSet, "kube-system", "agent", "", "daemonset:kube-system/agent"}},
		{"endpoints:app/db", obj{Endpoints, "app", "db", "", "endpoints:app/db"}},
		{"endpoints:app/db:5432", obj{Endpoints, "app", "db", "5432", "endpoints:app/db:5432"}},
		{"endpoints:app/db:65535", obj{Endpoints, "app", "db", "65535", "endpoints:app/db:65535"}},
		{"endpoints:app/dns:dns-tcp", obj{Endpoints, "app", "dns", "dns-tcp", "endpoints:app/dns:dns-tcp"}},
		{"job:" + strings.Repeat("n", 63) + "/" + strings.Repeat("a", 253), obj{Job, strings.Repeat("n", 63), strings.Repeat("a", 253), "", "job:" + strings.Repeat("n", 63) + "/" + strings.Repeat("a", 253)}},
	}
	for _, tt := range tests {
		got, err := Parse(tt.arg)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.arg, err)
			continue
		}
		if g := (obj{got.Kind, got.Namespace, got.Object, got.ObjectPort, got.Name}); g != tt.want || got.Arg != tt.arg || !got.Kind.IsObject() {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.arg, g, tt.want)
		}
		// The canonical form parses to the same target, and NewObject builds it.
		again, err := NewObject(got.Kind, got.Namespace, got.Object, got.ObjectPort)
		if err != nil || again.Arg != got.Name || again.Name != got.Name {
			t.Errorf("NewObject for %q = %+v, %v", tt.arg, again, err)
		}
	}
}

func TestParseObjectInvalid(t *testing.T) {
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
		{"job:app/" + strings.Repeat("a", 400), "at most 400 allowed"},
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
		if _, err := Parse(tt.arg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error = %v, want %q", tt.arg, err, tt.want)
		}
	}
}

func TestParseObjectLeavesOtherTargets(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"dns:db.", "tcp:db:5432", "http://job:80/", "fetch:/a=http://x/"} {
		if got, err := Parse(arg); err != nil || got.Kind.IsObject() {
			t.Errorf("Parse(%q) = %+v, %v; want a non-object target", arg, got, err)
		}
	}
	for _, arg := range []string{"jobs:app/x", "services:app/x", "job", ""} {
		if _, err := Parse(arg); err == nil || !strings.Contains(err.Error(), "unknown target type") {
			t.Errorf("Parse(%q) error = %v, want unknown target type", arg, err)
		}
	}
}

func TestNewObjectRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		k                    Kind
		ns, name, port, want string
	}{
		{DNS, "app", "x", "", "not an object kind"},
		{Job, "app", "x", "80", "has no port"},
		{Job, "app", "x/y", "", "not valid"},
		{Endpoints, "app", "db:80", "", "do not form"},
		{Endpoints, "app", "db", "0", "bad port"},
	} {
		if got, err := NewObject(tc.k, tc.ns, tc.name, tc.port); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewObject(%v, %q, %q, %q) = %+v, %v; want error containing %q", tc.k, tc.ns, tc.name, tc.port, got, err, tc.want)
		}
	}
}

// The name rules restated in object.go agree with apimachinery's.
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
