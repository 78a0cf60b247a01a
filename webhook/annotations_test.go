package webhook

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var parseOpts = ParseOptions{Namespace: "shop", ClusterDomain: "cluster.local", Readiness: true}

func args(s *Spec) []string {
	var out []string
	for _, t := range s.Waits {
		out = append(out, t.Arg)
	}
	return out
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		waits   []string
		fetches []string // path=url
		timeout time.Duration
	}{
		{
			name:  "service names become FQDN dns targets",
			ann:   map[string]string{AnnotationServices: "myservice, mydb"},
			waits: []string{"dns:myservice.shop.svc.cluster.local.", "dns:mydb.shop.svc.cluster.local."},
		},
		{
			name:  "ports, namespaces, newlines, trailing comma, extra spaces",
			ann:   map[string]string{AnnotationServices: "  mydb:5432 ,\n cache.shared:6379\r\n\n search,"},
			waits: []string{"tcp:mydb.shop.svc.cluster.local.:5432", "tcp:cache.shared.svc.cluster.local.:6379", "dns:search.shop.svc.cluster.local."},
		},
		{
			name:  "exact duplicates are listed once, in first-written order",
			ann:   map[string]string{AnnotationServices: "b, a, b, a:80, a.shop"},
			waits: []string{"dns:b.shop.svc.cluster.local.", "dns:a.shop.svc.cluster.local.", "tcp:a.shop.svc.cluster.local.:80"},
		},
		{
			name:  "tcp hosts: names, trailing dot, IPv4, IPv6",
			ann:   map[string]string{AnnotationTCP: "db.example.com:3306, db.example.com.:3307, 10.0.0.7:11211, [fd00::1]:8080"},
			waits: []string{"tcp:db.example.com:3306", "tcp:db.example.com.:3307", "tcp:10.0.0.7:11211", "tcp:[fd00::1]:8080"},
		},
		{
			name:  "http and https URLs are kept as written",
			ann:   map[string]string{AnnotationHTTP: "http://a.shop.svc:8080/healthz?x=1, https://auth.example.com/ready"},
			waits: []string{"http://a.shop.svc:8080/healthz?x=1", "https://auth.example.com/ready"},
		},
		{
			name:  "key order is services, tcp, http whatever the map order",
			ann:   map[string]string{AnnotationHTTP: "http://h/", AnnotationTCP: "t:1", AnnotationServices: "s"},
			waits: []string{"dns:s.shop.svc.cluster.local.", "tcp:t:1", "http://h/"},
		},
		{
			name:    "fetch entries keep the URL query after the first =",
			ann:     map[string]string{AnnotationFetch: "/usr/share/nginx/html/index.html=http://info.cern.ch, /etc/a.json = https://x/y?a=b"},
			fetches: []string{"/usr/share/nginx/html/index.html=http://info.cern.ch", "/etc/a.json=https://x/y?a=b"},
		},
		{
			name:    "timeout",
			ann:     map[string]string{AnnotationServices: "s", AnnotationTimeout: " 5m "},
			waits:   []string{"dns:s.shop.svc.cluster.local."},
			timeout: 5 * time.Minute,
		},
		{
			name:  "the record annotation and other prefixes are ignored",
			ann:   map[string]string{AnnotationServices: "s", AnnotationInjected: "{}", "depends-on.dev.example/x": "y", "team": "a"},
			waits: []string{"dns:s.shop.svc.cluster.local."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, errs := Parse(tt.ann, parseOpts)
			if len(errs) > 0 {
				t.Fatalf("unexpected errors: %v", errs)
			}
			if got := strings.Join(args(spec), " "); got != strings.Join(tt.waits, " ") {
				t.Errorf("waits = %q, want %q", got, strings.Join(tt.waits, " "))
			}
			var fetches []string
			for _, f := range spec.Fetches {
				fetches = append(fetches, f.Path+"="+f.URL)
			}
			if strings.Join(fetches, " ") != strings.Join(tt.fetches, " ") {
				t.Errorf("fetches = %q, want %q", fetches, tt.fetches)
			}
			if spec.Timeout != tt.timeout {
				t.Errorf("timeout = %v, want %v", spec.Timeout, tt.timeout)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name string
		ann  map[string]string
		// want: substrings of the error, each error on its own: annotation, entry, reason.
		want [][]string
	}{
		{"port out of range", map[string]string{AnnotationServices: "mydb:99999"},
			[][]string{{"depends-on.dev/services", `"mydb:99999"`, "between 1 and 65535"}}},
		{"port zero", map[string]string{AnnotationTCP: "db:0"},
			[][]string{{"depends-on.dev/tcp", `"db:0"`, "between 1 and 65535"}}},
		{"named port", map[string]string{AnnotationServices: "mydb:postgres"},
			[][]string{{"depends-on.dev/services", `"mydb:postgres"`, "between 1 and 65535"}}},
		{"bad service name", map[string]string{AnnotationServices: "My_DB"},
			[][]string{{"depends-on.dev/services", `"My_DB"`, "service name"}}},
		{"space instead of comma", map[string]string{AnnotationServices: "mydb myservice"},
			[][]string{{"depends-on.dev/services", `"mydb myservice"`}}},
		{"fqdn in services", map[string]string{AnnotationServices: "mydb.shop.svc.cluster.local"},
			[][]string{{"depends-on.dev/services", "depends-on.dev/tcp"}}},
		{"tcp without port", map[string]string{AnnotationTCP: "db.example.com"},
			[][]string{{"depends-on.dev/tcp", `"db.example.com"`, "expected host:port"}}},
		{"tcp bad host", map[string]string{AnnotationTCP: "bad host:80"},
			[][]string{{"depends-on.dev/tcp", `"bad host:80"`, "not a DNS name"}}},
		{"http wrong scheme", map[string]string{AnnotationHTTP: "ftp://x/y"},
			[][]string{{"depends-on.dev/http", `"ftp://x/y"`, "http:// or https://"}}},
		{"http no host", map[string]string{AnnotationHTTP: "http:///path"},
			[][]string{{"depends-on.dev/http", "missing host"}}},
		{"http credentials", map[string]string{AnnotationHTTP: "https://user:pw@x/"},
			[][]string{{"depends-on.dev/http", "credentials"}}},
		{"fetch relative path", map[string]string{AnnotationFetch: "html/index.html=http://x/"},
			[][]string{{"depends-on.dev/fetch", `"html/index.html=http://x/"`, "absolute"}}},
		{"fetch unclean path", map[string]string{AnnotationFetch: "/a/../b=http://x/"},
			[][]string{{"depends-on.dev/fetch", "clean"}}},
		{"fetch trailing slash", map[string]string{AnnotationFetch: "/a/=http://x/"},
			[][]string{{"depends-on.dev/fetch", "clean"}}},
		{"fetch without =", map[string]string{AnnotationFetch: "/a/b"},
			[][]string{{"depends-on.dev/fetch", "/absolute/path=URL"}}},
		{"fetch same path twice", map[string]string{AnnotationFetch: "/a=http://x/, /a=http://y/"},
			[][]string{{"depends-on.dev/fetch", `"/a=http://y/"`, "more than once"}}},
		{"nested fetch paths", map[string]string{AnnotationFetch: "/etc/a=http://x/, /etc/a/b=http://y/"},
			[][]string{{"depends-on.dev/fetch", `"/etc/a/b=http://y/"`, "nested"}}},
		{"bad timeout", map[string]string{AnnotationServices: "s", AnnotationTimeout: "ten seconds"},
			[][]string{{"depends-on.dev/timeout", `"ten seconds"`, "duration"}}},
		{"negative timeout", map[string]string{AnnotationServices: "s", AnnotationTimeout: "-5s"},
			[][]string{{"depends-on.dev/timeout", "negative"}}},
		{"timeout alone", map[string]string{AnnotationTimeout: "5s"},
			[][]string{{"depends-on.dev/timeout", "needs something to wait for"}}},
		{"empty list", map[string]string{AnnotationServices: " , \n"},
			[][]string{{"depends-on.dev/services", "no entries"}}},
		{"typo suggests the key", map[string]string{"depends-on.dev/service": "mydb"},
			[][]string{{"depends-on.dev/service", "did you mean depends-on.dev/services?"}}},
		{"unrelated unknown key lists the known ones", map[string]string{"depends-on.dev/zzzzzzzzzzzz": "x"},
			[][]string{{"depends-on.dev/zzzzzzzzzzzz", "known: depends-on.dev/services"}}},
		{"every problem is reported, good entries too are kept out of the error",
			map[string]string{AnnotationServices: "ok, bad:0, also-ok:80, BAD", AnnotationTimeout: "x", "depends-on.dev/htp": "http://x"},
			[][]string{
				{"depends-on.dev/htp", "did you mean depends-on.dev/http?"},
				{"depends-on.dev/services", `"bad:0"`},
				{"depends-on.dev/services", `"BAD"`},
				{"depends-on.dev/timeout", `"x"`},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := Parse(tt.ann, parseOpts)
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d: %v", len(errs), len(tt.want), errs)
			}
			for i, subs := range tt.want {
				msg := errs[i].Error()
				for _, s := range subs {
					if !strings.Contains(msg, s) {
						t.Errorf("error %d %q does not contain %q", i, msg, s)
					}
				}
			}
		})
	}
}

func TestParseServiceNeedsNamespace(t *testing.T) {
	_, errs := Parse(map[string]string{AnnotationServices: "mydb"}, ParseOptions{ClusterDomain: "cluster.local"})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "namespace") {
		t.Fatalf("errs = %v", errs)
	}
	spec, errs := Parse(map[string]string{AnnotationServices: "mydb.other"}, ParseOptions{ClusterDomain: "corp.example."})
	if len(errs) != 0 || args(spec)[0] != "dns:mydb.other.svc.corp.example." {
		t.Fatalf("spec = %v, errs = %v", args(spec), errs)
	}
}

func pod(ann map[string]string, mutate ...func(*corev1.Pod)) *Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop", Annotations: ann},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return PodFrom(p)
}

func TestInjectCollisions(t *testing.T) {
	in := testInjector(t)
	tests := []struct {
		name string
		pod  *Pod
		want []string
	}{
		{"user container named wait-for-service",
			pod(map[string]string{AnnotationServices: "db"}, func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "wait-for-service", Image: "x"}}
			}),
			[]string{`spec.initContainers[0].name`, `"wait-for-service"`, "reserved"}},
		{"user container named fetch, with a fetch",
			pod(map[string]string{AnnotationFetch: "/a=http://x/"}, func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "fetch", Image: "x"})
			}),
			[]string{`spec.containers[1].name`, `"fetch"`}},
		{"user volume named depends-on-fetch",
			pod(map[string]string{AnnotationFetch: "/a=http://x/"}, func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{{Name: FetchVolumeName}}
			}),
			[]string{`spec.volumes[0].name`, "reserved"}},
		{"fetch path is a mount",
			pod(map[string]string{AnnotationFetch: "/usr/share/nginx/html/index.html=http://x/"}, func(p *corev1.Pod) {
				p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "idx", MountPath: "/usr/share/nginx/html/index.html"}}
			}),
			[]string{"depends-on.dev/fetch", `"/usr/share/nginx/html/index.html=http://x/"`, `volumeMount "idx" of container "app"`}},
		{"a mount below the fetch path",
			pod(map[string]string{AnnotationFetch: "/etc/app=http://x/"}, func(p *corev1.Pod) {
				p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "cfg", MountPath: "/etc/app/conf.d/"}}
			}),
			[]string{"depends-on.dev/fetch", "collides"}},
		{"a record naming the user's containers",
			pod(map[string]string{AnnotationServices: "db", AnnotationInjected: `{"version":1,"initContainers":["migrate"]}`}, func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "x"}}
			}),
			[]string{"depends-on.dev/injected", "not written by this webhook version"}},
		{"a Windows Pod",
			pod(map[string]string{AnnotationServices: "db"}, func(p *corev1.Pod) {
				p.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
			}),
			[]string{"spec.os.name", `"windows"`, "Linux containers"}},
		{"a malformed record",
			pod(map[string]string{AnnotationServices: "db", AnnotationInjected: "yes"}),
			[]string{"depends-on.dev/injected", "not written by this webhook version"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := in.Patch(tt.pod, "shop")
			var invalid *InvalidError
			if !errors.As(err, &invalid) {
				t.Fatalf("err = %v, want an *InvalidError", err)
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not contain %q", err.Error(), s)
				}
			}
		})
	}

	// Not collisions: a mount above the file's path (the file is mounted inside it),
	// and a user container named fetch when nothing is fetched.
	ok := pod(map[string]string{AnnotationFetch: "/usr/share/nginx/html/index.html=http://x/"}, func(p *corev1.Pod) {
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "html", MountPath: "/usr/share/nginx/html"}}
	})
	if _, err := in.Patch(ok, "shop"); err != nil {
		t.Errorf("mount above the fetch path: %v", err)
	}
	ok = pod(map[string]string{AnnotationServices: "db"}, func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "fetch", Image: "x"}}
	})
	if _, err := in.Patch(ok, "shop"); err != nil {
		t.Errorf("user fetch container without depends-on.dev/fetch: %v", err)
	}
}

func TestInvalidErrorListsAll(t *testing.T) {
	in := testInjector(t)
	_, err := in.Patch(pod(map[string]string{AnnotationServices: "a:0, b:0", AnnotationTCP: "c"}), "shop")
	if err == nil || !strings.HasPrefix(err.Error(), "depends-on: 3 problems: ") {
		t.Fatalf("err = %v", err)
	}
}

func TestPatchIsDeterministic(t *testing.T) {
	in := testInjector(t)
	ann := map[string]string{
		AnnotationServices: "a, b:1, c.d", AnnotationTCP: "x:1, y:2", AnnotationHTTP: "http://h/",
		AnnotationFetch: "/a=http://x/, /b=http://y/", AnnotationTimeout: "1m",
	}
	first := ""
	for i := 0; i < 50; i++ {
		ops, err := in.Patch(pod(ann), "shop")
		if err != nil {
			t.Fatal(err)
		}
		raw := mustJSON(t, ops)
		if i == 0 {
			first = raw
		} else if raw != first {
			t.Fatalf("patch differs between runs:\n%s\n%s", first, raw)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WaitImage = ""
	cfg.ClusterDomain = "bad domain"
	cfg.DefaultTimeout = -time.Second
	cfg.Resources.Requests[corev1.ResourceMemory] = cfg.Resources.Limits[corev1.ResourceMemory]
	cfg.Resources.Requests[corev1.ResourceCPU] = *cfg.Resources.Limits.Cpu()
	cfg.Resources.Limits[corev1.ResourceCPU] = cfg.Resources.Requests[corev1.ResourceCPU]
	big := cfg.Resources.Limits[corev1.ResourceMemory]
	big.Add(big)
	cfg.Resources.Requests[corev1.ResourceMemory] = big
	_, err := NewInjector(cfg)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, s := range []string{"wait image", "cluster domain", "negative", "memory request"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q does not mention %q", err, s)
		}
	}
}

// Issue 10: entries the webhook used to admit and wait-for-service rejects, or
// that could never be ready. Each is denied, naming the annotation and the entry.
func TestParseStrict(t *testing.T) {
	tests := []struct {
		key, entry, want string
	}{
		// Empty ports: admitted, then the init container exited 2 on every restart.
		{AnnotationHTTP, "http://myapi:/healthz", "missing port"},
		{AnnotationHTTP, "http://b:?", "missing port"},
		{AnnotationFetch, "/a=http://h:/", "missing port"},
		{AnnotationFetch, "/aab=https://a:?0", "missing port"},
		// Ports: plain decimal only.
		{AnnotationTCP, "db:+80", "must be a number between 1 and 65535"},
		{AnnotationTCP, "db:080", "must be a number between 1 and 65535"},
		{AnnotationServices, "mydb:+80", "must be a number between 1 and 65535"},
		{AnnotationServices, "mydb:080", "must be a number between 1 and 65535"},
		{AnnotationHTTP, "http://h:080/", "must be a number between 1 and 65535"},
		// Numeric names that look like IPv4 addresses, and never resolve.
		{AnnotationTCP, "256.1.1.1:80", "all digits"},
		{AnnotationTCP, "1.2.3:80", "all digits"},
		{AnnotationHTTP, "http://256.1.1.1/", "all digits"},
		{AnnotationFetch, "/a=http://1.2.3/x", "all digits"},
		// A label longer than 63 characters: wait-for-service rejects it.
		{AnnotationTCP, strings.Repeat("a", 64) + ".example.com:80", "longer than 63"},
	}
	for _, tt := range tests {
		t.Run(tt.entry, func(t *testing.T) {
			_, errs := Parse(map[string]string{tt.key: "ok.example.com:1, " + tt.entry}, parseOpts)
			if tt.key == AnnotationServices || tt.key == AnnotationHTTP || tt.key == AnnotationFetch {
				_, errs = Parse(map[string]string{tt.key: tt.entry}, parseOpts)
			}
			if len(errs) != 1 {
				t.Fatalf("errs = %v, want one", errs)
			}
			msg := errs[0].Error()
			for _, s := range []string{tt.key, `"` + tt.entry + `"`, tt.want} {
				if !strings.Contains(msg, s) {
					t.Errorf("%q does not contain %q", msg, s)
				}
			}
		})
	}
}

// A name the binary would reject is denied, not injected: a long namespace and
// cluster domain make a Service FQDN longer than 253 characters.
func TestParseServiceNameTooLong(t *testing.T) {
	opts := ParseOptions{Namespace: strings.Repeat("n", 63), ClusterDomain: strings.Repeat("d", 61) + "." + strings.Repeat("e", 61)}
	_, errs := Parse(map[string]string{AnnotationServices: strings.Repeat("s", 63)}, opts)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "longer than 253") {
		t.Fatalf("errs = %v", errs)
	}
}

// User mount paths are cleaned before the collision check.
func TestMountPathCleaned(t *testing.T) {
	in := testInjector(t)
	for _, mp := range []string{"/data//x", "/data/./x", "/data/y/../x", "/data/x/", "/data//x//conf"} {
		p := pod(map[string]string{AnnotationFetch: "/data/x=http://h/"}, func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "v", MountPath: mp}}
		})
		_, err := in.Patch(p, "shop")
		if err == nil || !strings.Contains(err.Error(), `collides with volumeMount "v" of container "app" at `+mp) {
			t.Errorf("mount at %s: err = %v, want a collision with /data/x", mp, err)
		}
	}
}

// Caps on entries (issue 10, point 7), denied with a message naming the cap
// and the annotation.
func TestParseCaps(t *testing.T) {
	list := func(n int, f func(i int) string) string {
		var b strings.Builder
		for i := range n {
			b.WriteString(f(i) + ",")
		}
		return b.String()
	}
	svc := func(i int) string { return "s" + strconv.Itoa(i) }
	url := func(i int) string { return "http://h" + strconv.Itoa(i) + "/" }
	fetch := func(i int) string { return "/f/" + strconv.Itoa(i) + "=http://h/" }
	tests := []struct {
		name string
		ann  map[string]string
		want [][]string
	}{
		{"101 services", map[string]string{AnnotationServices: list(101, svc)},
			[][]string{{"depends-on.dev/services", "101 entries", "at most 100 per Pod"}}},
		{"60 services and 60 urls", map[string]string{AnnotationServices: list(60, svc), AnnotationHTTP: list(60, url)},
			[][]string{{"depends-on.dev/services", "60 entries", "120 together, at most 100"}, {"depends-on.dev/http", "60 entries", "at most 100"}}},
		{"1,500 http targets", map[string]string{AnnotationHTTP: list(1500, url)},
			[][]string{{"depends-on.dev/http", "1500 entries", "at most 100 per Pod"}}},
		{"21 fetches", map[string]string{AnnotationFetch: list(21, fetch)},
			[][]string{{"depends-on.dev/fetch", "21 entries", "too many fetches: at most 20 per Pod"}}},
		{"a value longer than 64 KiB", map[string]string{AnnotationTCP: strings.Repeat("a", 70000)},
			[][]string{{"depends-on.dev/tcp", "(70000 bytes)", "value is 70000 bytes, more than the 65536"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := Parse(tt.ann, parseOpts)
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d: %.500v", len(errs), len(tt.want), errs)
			}
			for i, subs := range tt.want {
				for _, s := range subs {
					if msg := errs[i].Error(); !strings.Contains(msg, s) || len(msg) > 1000 {
						t.Errorf("error %d %.300q (%d bytes) does not contain %q", i, msg, len(msg), s)
					}
				}
			}
		})
	}
	// At the caps: admitted.
	spec, errs := Parse(map[string]string{AnnotationServices: list(50, svc), AnnotationTCP: list(50, func(i int) string { return "t:" + strconv.Itoa(i+1) }),
		AnnotationFetch: list(20, fetch)}, parseOpts)
	if len(errs) != 0 || len(spec.Waits) != 100 || len(spec.Fetches) != 20 {
		t.Errorf("at the caps: %d waits, %d fetches, errs %v", len(spec.Waits), len(spec.Fetches), errs)
	}
}

// Denials are bounded: the first MaxProblems problems, then how many more.
func TestDenialIsBounded(t *testing.T) {
	in := testInjector(t)
	var b strings.Builder
	for i := range 100 {
		b.WriteString("s" + strconv.Itoa(i) + ":0,")
	}
	ann := map[string]string{AnnotationServices: b.String()}
	for i := range 1000 {
		ann[Prefix+strings.Repeat("k", 300)+strconv.Itoa(i)] = strings.Repeat("v", 10000)
	}
	_, err := in.Patch(pod(ann), "shop")
	if err == nil {
		t.Fatal("want a denial")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "depends-on: 1100 problems: ") || !strings.HasSuffix(msg, "; and 1080 more") || len(msg) > 20*1000 {
		t.Errorf("message of %d bytes: %.300s … %s", len(msg), msg, msg[max(0, len(msg)-100):])
	}
}

func TestConfigValidateClusterDomain(t *testing.T) {
	for _, d := range []string{"cluster..local", "", ".", "bad domain", "cluster.local:53", "-x.local", "cluster.123"} {
		cfg := DefaultConfig()
		cfg.ClusterDomain = d
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "cluster domain") {
			t.Errorf("cluster domain %q: err = %v, want it rejected", d, err)
		}
	}
	for _, d := range []string{"cluster.local", "cluster.local.", "corp.example", "k8s_1.example"} {
		cfg := DefaultConfig()
		cfg.ClusterDomain = d
		if err := cfg.Validate(); err != nil {
			t.Errorf("cluster domain %q: %v", d, err)
		}
	}
}
