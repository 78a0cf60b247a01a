package readiness

import (
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Target
		wantErr string
	}{
		{in: "job:app/migrate", want: Target{Kind: KindJob, Namespace: "app", Name: "migrate"}},
		{in: "deployment:app/api.v2", want: Target{Kind: KindDeployment, Namespace: "app", Name: "api.v2"}},
		{in: "statefulset:db/pg", want: Target{Kind: KindStatefulSet, Namespace: "db", Name: "pg"}},
		{in: "daemonset:kube-system/cilium", want: Target{Kind: KindDaemonSet, Namespace: "kube-system", Name: "cilium"}},
		{in: "endpoints:app/db", want: Target{Kind: KindEndpoints, Namespace: "app", Name: "db"}},
		{in: "endpoints:app/db:5432", want: Target{Kind: KindEndpoints, Namespace: "app", Name: "db", Port: "5432"}},
		{in: "endpoints:app/db:postgres", want: Target{Kind: KindEndpoints, Namespace: "app", Name: "db", Port: "postgres"}},
		{in: "endpoints:app/db:a--b", want: Target{Kind: KindEndpoints, Namespace: "app", Name: "db", Port: "a--b"}}, // a DNS-1123 label, as Service port names are
		{in: "", wantErr: `unknown kind ""`},
		{in: "job:", wantErr: "want job:NAMESPACE/NAME"},
		{in: "pod:app/x", wantErr: `unknown kind "pod"`},
		{in: "dns:db.app", wantErr: `unknown kind "dns", want one of job, deployment`},
		{in: "Job:app/x", wantErr: `write it "job:app/x"`},
		{in: "job:app", wantErr: "want job:NAMESPACE/NAME"},
		{in: "job:/x", wantErr: `missing namespace`},
		{in: "job:App/x", wantErr: `namespace "App"`},
		{in: "job:a.b/x", wantErr: `namespace "a.b"`},
		{in: "job:app/", wantErr: `missing name`},
		{in: "job:app/x:80", wantErr: `name "x:80"`},
		{in: "job:app/a/b", wantErr: `name "a/b"`},
		{in: "endpoints:app/db.x", wantErr: `name "db.x"`},
		{in: "endpoints:app/db:0", wantErr: `port "0"`},
		{in: "endpoints:app/db:65536", wantErr: `port "65536"`},
		{in: "endpoints:app/db:080", wantErr: `port "080"`},
		{in: "endpoints:app/db:", wantErr: `missing port`},
		{in: "endpoints:app/db:a_b", wantErr: `port name "a_b"`},
		{in: "endpoints:app/db:1:2", wantErr: `port name "1:2"`},
		{in: "job:app/" + strings.Repeat("a", 400), wantErr: "at most 400"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTarget(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseTarget(%q) = %+v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseTarget(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
}

func TestDisplay(t *testing.T) {
	if got := (Target{Kind: KindJob, Namespace: "app", Name: "migrate"}).Display("app"); got != "job/migrate" {
		t.Errorf("same namespace: %q", got)
	}
	if got := (Target{Kind: KindEndpoints, Namespace: "shared", Name: "db", Port: "5432"}).Display("app"); got != "endpoints/shared/db:5432" {
		t.Errorf("other namespace: %q", got)
	}
}
