package webhook

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestParseObjectEntryValid(t *testing.T) {
	tests := []struct {
		key, entry, want string
	}{
		{AnnotationJobs, "migrate", "job:shop/migrate"},
		{AnnotationJobs, "migrate.db", "job:db/migrate"},
		{AnnotationJobs, "schema.v2.db", "job:db/schema.v2"}, // the last dot separates the namespace
		{AnnotationJobs, "migrate-" + strings.Repeat("x", 200), "job:shop/migrate-" + strings.Repeat("x", 200)},
		{AnnotationWorkloads, "deployment/api", "deployment:shop/api"},
		{AnnotationWorkloads, "Deployment/api", "deployment:shop/api"}, // Kind as written in YAML
		{AnnotationWorkloads, "STATEFULSET/pg.db", "statefulset:db/pg"},
		{AnnotationWorkloads, "daemonset/node-agent.kube-system", "daemonset:kube-system/node-agent"},
		{AnnotationWorkloads, "deployment/api.v2.shop", "deployment:shop/api.v2"},
		{AnnotationEndpoints, "db", "endpoints:shop/db"},
		{AnnotationEndpoints, "db.data", "endpoints:data/db"},
		{AnnotationEndpoints, "db:5432", "endpoints:shop/db:5432"},
		{AnnotationEndpoints, "dns.kube-system:dns-tcp", "endpoints:kube-system/dns:dns-tcp"},
		{AnnotationEndpoints, "kafka:" + strings.Repeat("p", 63), "endpoints:shop/kafka:" + strings.Repeat("p", 63)},
	}
	for _, tt := range tests {
		got, err := parseObjectEntry(tt.key, tt.entry, parseOpts)
		if err != nil {
			t.Errorf("%s %q: %v", tt.key, tt.entry, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s %q = %q, want %q", tt.key, tt.entry, got, tt.want)
		}
	}
}

func TestParseObjectEntryInvalid(t *testing.T) {
	tests := []struct {
		key, entry, want string
	}{
		{AnnotationJobs, "shop/migrate", "expected name[.namespace], e.g. migrate or migrate.shop"},
		{AnnotationJobs, "job/migrate", "expected name[.namespace]"},
		{AnnotationJobs, "migrate:80", "expected name[.namespace]"},
		{AnnotationJobs, "Migrate", `job name "Migrate" is not valid: a lowercase RFC 1123 subdomain`},
		{AnnotationJobs, "mi_grate", `job name "mi_grate" is not valid`},
		{AnnotationJobs, "migrate.", "empty namespace after the last '.'"},
		{AnnotationJobs, ".shop", "empty name"},
		{AnnotationJobs, "migrate.Shop", `namespace "Shop" is not valid`},
		{AnnotationJobs, "migrate." + strings.Repeat("n", 64), `must be no more than 63 characters`},
		{AnnotationJobs, strings.Repeat("j", 254), `must be no more than 253 characters`},
		{AnnotationWorkloads, "api", "expected kind/name[.namespace] with kind deployment, statefulset, daemonset, e.g. deployment/api"},
		{AnnotationWorkloads, "deploy/api", `unknown kind "deploy"; did you mean deployment? (known: deployment, statefulset, daemonset)`},
		{AnnotationWorkloads, "deployments/api", `unknown kind "deployments"; did you mean deployment?`},
		{AnnotationWorkloads, "sts/pg", `unknown kind "sts"; did you mean statefulset?`},
		{AnnotationWorkloads, "ds/agent", `unknown kind "ds"; did you mean daemonset?`},
		{AnnotationWorkloads, "deploymnet/api", `unknown kind "deploymnet"; did you mean deployment?`},
		{AnnotationWorkloads, "StatefullSet/pg", `unknown kind "StatefullSet"; did you mean statefulset?`},
		{AnnotationWorkloads, "job/migrate", `unknown kind "job": list Jobs in depends-on.dev/jobs, e.g. depends-on.dev/jobs: migrate`},
		{AnnotationWorkloads, "service/db", `unknown kind "service": for a Service with a ready endpoint use depends-on.dev/endpoints`},
		{AnnotationWorkloads, "replicationcontroller/x", `unknown kind "replicationcontroller" (known: deployment, statefulset, daemonset)`},
		{AnnotationWorkloads, "/api", "empty kind before '/'"},
		{AnnotationWorkloads, "deployment/", "empty name"},
		{AnnotationWorkloads, "deployment/api/v2", "expected kind/name[.namespace], e.g. deployment/api.shop"},
		{AnnotationWorkloads, "deployment/api:80", "expected kind/name[.namespace]"},
		{AnnotationWorkloads, "deployment/API", `deployment name "API" is not valid`},
		{AnnotationEndpoints, "db.data.svc", "expected name[.namespace][:port] (a Service name, not a host name)"},
		{AnnotationEndpoints, "db.data.svc.cluster.local:5432", "expected name[.namespace][:port]"},
		{AnnotationEndpoints, "data/db", "expected name[.namespace][:port]"},
		{AnnotationEndpoints, "1db", `service name "1db" is not valid: a DNS-1035 label`},
		{AnnotationEndpoints, "db:", "empty port after ':'"},
		{AnnotationEndpoints, "db:0", `port "0" must be a number between 1 and 65535`},
		{AnnotationEndpoints, "db.data:05432", `port "05432" must be a number between 1 and 65535, in decimal without sign or leading zero`}, // one spelling per port
		{AnnotationEndpoints, "db:70000", `port "70000" must be a number between 1 and 65535`},
		{AnnotationEndpoints, "db:Http", `port "Http" is neither a number (1-65535) nor a port name`},
		{AnnotationEndpoints, "db:http_alt", `port "http_alt" is neither a number`},
		{AnnotationEndpoints, "db:80:81", `port "80:81" is neither a number`},
		{AnnotationEndpoints, ":80", "empty name"},
		{AnnotationServices, "db", "depends-on.dev/services is not an object annotation"},
	}
	for _, tt := range tests {
		got, err := parseObjectEntry(tt.key, tt.entry, parseOpts)
		if err == nil {
			t.Errorf("%s %q = %q, want an error containing %q", tt.key, tt.entry, got, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %q: error %q, want it to contain %q", tt.key, tt.entry, err, tt.want)
		}
	}
}

func TestParseObjectEntryNeedsNamespace(t *testing.T) {
	opts := ParseOptions{ClusterDomain: "cluster.local"} // the request carries no namespace
	for _, c := range []struct{ key, entry string }{{AnnotationJobs, "migrate"}, {AnnotationWorkloads, "deployment/api"}, {AnnotationEndpoints, "db:5432"}} {
		if _, err := parseObjectEntry(c.key, c.entry, opts); err == nil || !strings.Contains(err.Error(), "no namespace: the request carries none; write name.namespace") {
			t.Errorf("%s %q: error %v, want the missing namespace", c.key, c.entry, err)
		}
	}
	if got, err := parseObjectEntry(AnnotationJobs, "migrate.db", opts); err != nil || got != "job:db/migrate" {
		t.Errorf("explicit namespace: %q, %v", got, err)
	}
}

// parseObjectKey is Parse of one object key.
func parseObjectKey(key, value string, opts ParseOptions) ([]Target, field.ErrorList) {
	spec, errs := Parse(map[string]string{key: value}, opts)
	return spec.Waits, errs
}

func TestParseObjectAnnotation(t *testing.T) {
	targets, errs := parseObjectKey(AnnotationWorkloads, " deployment/api,\n statefulset/pg.db , Deployment/api, deployment/api.shop,,", parseOpts)
	if len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
	var got []string
	for _, tg := range targets {
		if tg.Annotation != AnnotationWorkloads {
			t.Errorf("%q: annotation %q", tg.Entry, tg.Annotation)
		}
		got = append(got, tg.Entry+" -> "+tg.Arg)
	}
	// Duplicates after normalising (kind case, default namespace) are listed once, as first written.
	want := "deployment/api -> deployment:shop/api|statefulset/pg.db -> statefulset:db/pg"
	if strings.Join(got, "|") != want {
		t.Errorf("targets\n %s\nwant\n %s", strings.Join(got, "|"), want)
	}

	// Every bad entry is reported, naming the annotation and the entry; the
	// good ones are still parsed.
	targets, errs = parseObjectKey(AnnotationJobs, "migrate, shop/seed, Bad, seed.shop", parseOpts)
	if len(targets) != 2 || targets[0].Arg != "job:shop/migrate" || targets[1].Arg != "job:shop/seed" {
		t.Errorf("targets %+v, want migrate and seed", targets)
	}
	wantErrs := []string{
		`metadata.annotations[depends-on.dev/jobs]: Invalid value: "shop/seed": expected name[.namespace], e.g. migrate or migrate.shop`,
		`metadata.annotations[depends-on.dev/jobs]: Invalid value: "Bad": job name "Bad" is not valid: `,
	}
	if len(errs) != len(wantErrs) {
		t.Fatalf("errors %v, want %d", errs, len(wantErrs))
	}
	for i, w := range wantErrs {
		if !strings.HasPrefix(errs[i].Error(), w) {
			t.Errorf("error %d = %q, want it to start with %q", i, errs[i].Error(), w)
		}
	}

	for _, empty := range []string{"", " , \n,"} {
		_, errs = parseObjectKey(AnnotationEndpoints, empty, parseOpts)
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "metadata.annotations[depends-on.dev/endpoints]") || !strings.Contains(errs[0].Error(), "no entries") {
			t.Errorf("value %q: errors %v, want one 'no entries'", empty, errs)
		}
	}
}

func TestObjectKeysUnavailable(t *testing.T) {
	errs := objectKeysUnavailable(map[string]string{AnnotationEndpoints: "db", AnnotationJobs: "migrate", AnnotationServices: "db"})
	if len(errs) != 2 {
		t.Fatalf("errors %v, want one per object key", errs)
	}
	for i, key := range []string{AnnotationJobs, AnnotationEndpoints} {
		if e := errs[i].Error(); !strings.Contains(e, "metadata.annotations["+key+"]") || !strings.Contains(e, "readiness service, which is not installed") {
			t.Errorf("error %d = %q", i, e)
		}
	}
	if errs := objectKeysUnavailable(map[string]string{AnnotationServices: "db"}); len(errs) != 0 {
		t.Errorf("no object key: errors %v", errs)
	}
	// Parse without the readiness service denies the object keys, and only them.
	opts := parseOpts
	opts.Readiness = false
	spec, errs := Parse(map[string]string{AnnotationWorkloads: "deployment/api", AnnotationServices: "db"}, opts)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "metadata.annotations["+AnnotationWorkloads+"]") || !strings.Contains(errs[0].Error(), "not installed") {
		t.Errorf("errors %v, want one naming %s", errs, AnnotationWorkloads)
	}
	if len(spec.Waits) != 1 || spec.Waits[0].Annotation != AnnotationServices {
		t.Errorf("waits %+v, want the service only", spec.Waits)
	}
}

func TestHasObjectWaits(t *testing.T) {
	s := &Spec{Waits: []Target{{Annotation: AnnotationServices, Arg: "dns:db.shop.svc.cluster.local."}}}
	if s.HasObjectWaits() {
		t.Error("services only: HasObjectWaits = true")
	}
	s.Waits = append(s.Waits, Target{Annotation: AnnotationJobs, Arg: "job:shop/migrate"})
	if !s.HasObjectWaits() {
		t.Error("with a job: HasObjectWaits = false")
	}
	for _, k := range ObjectKeys {
		if !IsObjectKey(k) || !strings.HasPrefix(k, Prefix) {
			t.Errorf("%s", k)
		}
	}
	if IsObjectKey(AnnotationServices) {
		t.Error("services is not an object key")
	}
}

// The projected token goes to the wait container only, and only for object keys.
func TestReadinessTokenOnlyInWaitContainer(t *testing.T) {
	in := testInjector(t)
	for _, ann := range []map[string]string{
		{AnnotationJobs: "migrate", AnnotationFetch: "/etc/a=http://h/a"},
		{AnnotationEndpoints: "db:5432", AnnotationServices: "cache"},
		{AnnotationServices: "cache", AnnotationFetch: "/etc/a=http://h/a"},
	} {
		p := &corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "own"}}, Containers: []corev1.Container{{Name: "app"}, {Name: "side"}}}}
		p.Annotations = ann
		out, err := in.Inject(PodFrom(p), "shop")
		if err != nil {
			t.Fatal(err)
		}
		objects := ann[AnnotationJobs] != "" || ann[AnnotationEndpoints] != ""
		mounted := 0
		var all []Container
		for _, c := range out.Spec.InitContainers {
			all = append(all, Container{Name: c.Name, VolumeMounts: c.VolumeMounts})
		}
		for _, c := range append(all, out.Spec.Containers...) {
			for _, m := range c.VolumeMounts {
				if m.Name == ReadinessTokenVolumeName {
					mounted++
					if c.Name != WaitContainerName || !m.ReadOnly || m.MountPath != ReadinessTokenDir {
						t.Errorf("%v: container %s mounts the token: %+v", ann, c.Name, m)
					}
				}
			}
		}
		volumes := 0
		for _, v := range out.Spec.Volumes {
			if v.Name == ReadinessTokenVolumeName {
				volumes++
			}
		}
		if want := map[bool]int{true: 1, false: 0}[objects]; mounted != want || volumes != want {
			t.Errorf("%v: %d mounts and %d volumes of the token, want %d", ann, mounted, volumes, want)
		}
	}
}

func TestInjectWithoutReadinessDeniesObjectKeys(t *testing.T) {
	in, err := NewInjector(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	p := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
	p.Annotations = map[string]string{AnnotationJobs: "migrate"}
	_, err = in.Inject(PodFrom(p), "shop")
	if err == nil || !strings.Contains(err.Error(), "metadata.annotations[depends-on.dev/jobs]") || !strings.Contains(err.Error(), "readiness service, which is not installed") {
		t.Errorf("error = %v, want the jobs key denied", err)
	}
}

func TestConfigReadiness(t *testing.T) {
	for _, tc := range []struct{ url, ca, want string }{
		{"http://r.test", "", "readiness URL"},
		{"https://", "", "readiness URL"},
		{"https://r.test/?a=b", "", "readiness URL"},
		{"https://r.test", "not pem", "no PEM certificate"},
	} {
		cfg := DefaultConfig()
		cfg.ReadinessURL, cfg.ReadinessCA = tc.url, tc.ca
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q %q: %v, want %q", tc.url, tc.ca, err, tc.want)
		}
	}
	if cfg := goldenConfig(); cfg.Validate() != nil {
		t.Errorf("golden config: %v", cfg.Validate())
	}
}
