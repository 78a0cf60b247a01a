package webhook

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func ic(name string) ShapeContainer      { return ShapeContainer{Name: name} }
func sidecar(name string) ShapeContainer { return ShapeContainer{Name: name, Sidecar: true} }

func TestPlaceDefaultRule(t *testing.T) {
	for _, tc := range []struct {
		name  string
		inits []ShapeContainer
		want  int
	}{
		{"no init containers", nil, 0},
		{"own init containers only", []ShapeContainer{ic("migrate"), ic("seed")}, 0},
		{"native sidecar then migrate", []ShapeContainer{sidecar("cloud-sql-proxy"), ic("migrate")}, 1},
		{"two native sidecars then migrate", []ShapeContainer{sidecar("a"), sidecar("b"), ic("migrate")}, 2},
		{"native sidecars only", []ShapeContainer{sidecar("a"), sidecar("b")}, 2},
		{"sidecar after the first own init container", []ShapeContainer{ic("migrate"), sidecar("proxy")}, 0},
		{"sidecar, own, sidecar", []ShapeContainer{sidecar("a"), ic("setup"), sidecar("b")}, 1},
		{"istio classic: istio-init last", []ShapeContainer{ic("migrate"), ic(istioInit)}, 0},
		{"istio classic, no own", []ShapeContainer{ic(istioInit)}, 0},
		{"istio native", []ShapeContainer{ic(istioInit), sidecar(istioProxy), ic("migrate")}, 2},
		{"istio native and a user sidecar", []ShapeContainer{ic(istioInit), sidecar(istioProxy), sidecar("other-sidecar"), ic("migrate")}, 3},
		{"istio cni native", []ShapeContainer{ic(istioValidation), sidecar(istioProxy)}, 2},
		{"istio cni classic", []ShapeContainer{ic(istioValidation), ic("migrate")}, 0},
		{"linkerd native", []ShapeContainer{ic(linkerdInit), sidecar(linkerdProxy), ic("migrate")}, 2},
		{"linkerd classic", []ShapeContainer{ic("migrate"), ic(linkerdInit)}, 0},
		{"linkerd cni native", []ShapeContainer{ic(linkerdValidator), sidecar(linkerdProxy)}, 2},
		{"user sidecar, migrate, istio-init last", []ShapeContainer{sidecar("cloud-sql-proxy"), ic("migrate"), ic(istioInit)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Place(PodShape{InitContainers: tc.inits})
			if err != nil {
				t.Fatal(err)
			}
			if got.Index != tc.want || got.Pending != "" || len(got.Warnings) != 0 {
				t.Errorf("Place = %+v, want index %d and nothing else", got, tc.want)
			}
		})
	}
}

func TestPlaceAfter(t *testing.T) {
	inits := []ShapeContainer{ic("init-config"), sidecar("envoy"), ic("migrate")}
	apps := []ShapeContainer{ic("edge")}
	for _, tc := range []struct {
		name, after string
		want        int
		pending     string
		errPart     string
	}{
		{name: "a native sidecar", after: "envoy", want: 2},
		{name: "spaces around", after: "  envoy ", want: 2},
		{name: "an ordinary init container", after: "migrate", want: 3},
		{name: "the first", after: "init-config", want: 1},
		{name: "absent: default rule, pending", after: "vault-agent-init", want: 0, pending: "vault-agent-init"},
		{name: "empty", after: " ", errPart: "name the init container"},
		{name: "two names", after: "envoy, migrate", errPart: "one init container name"},
		{name: "upper case", after: "Envoy", errPart: "one init container name"},
		{name: "an app container", after: "edge", errPart: "edge is an app container"},
		{name: "depends-on's own", after: WaitContainerName, errPart: "depends-on's own container"},
		{name: "depends-on's fetch", after: FetchContainerName, errPart: "depends-on's own container"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := PodShape{Annotations: map[string]string{AnnotationAfter: tc.after}, InitContainers: inits, Containers: apps}
			got, err := Place(p)
			if tc.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errPart) || !strings.Contains(err.Error(), AnnotationAfter) {
					t.Fatalf("Place = %+v, %v; want an error naming %s and containing %q", got, err, AnnotationAfter, tc.errPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Index != tc.want || got.Pending != tc.pending {
				t.Errorf("Place = %+v, want index %d pending %q", got, tc.want, tc.pending)
			}
			if (tc.pending != "") != (len(got.Warnings) == 1) {
				t.Errorf("warnings %q: want exactly one when pending", got.Warnings)
			}
			if tc.pending != "" && !strings.Contains(got.Warnings[0], "init-config, envoy, migrate") {
				t.Errorf("warning %q does not list the init containers", got.Warnings[0])
			}
		})
	}
}

// pendingShape reads a mesh Pod of testdata (shapes of the injectors' own
// test data) and the spec its annotations ask for.
func pendingShape(t *testing.T, file string) (PodShape, *Spec) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(src, &pod); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	p := ShapeOf(PodFrom(&pod), pod.Namespace)
	spec, errs := Parse(pod.Annotations, ParseOptions{Namespace: pod.Namespace, ClusterDomain: "cluster.local"})
	if len(errs) > 0 {
		t.Fatalf("%s: %v", file, errs)
	}
	return p, spec
}

// TestMeshShapes runs placement, detection and warnings over the pending golden
// inputs: what depends-on will do for each mesh mode.
func TestMeshShapes(t *testing.T) {
	for _, tc := range []struct {
		file     string
		index    int
		mesh     Mesh
		warnings []string // substrings of the mesh warnings; none: no warning
	}{
		{file: "istio-classic.yaml", index: 0,
			mesh: Mesh{Kind: Istio, Proxy: istioProxy, ProxyIndex: -1, RedirectIndex: 1, ProxyUID: 1337}},
		{file: "istio-native.yaml", index: 2,
			mesh: Mesh{Kind: Istio, Proxy: istioProxy, Native: true, ProxyIndex: 1, RedirectIndex: 0, ProxyUID: 1337}},
		{file: "istio-cni-native.yaml", index: 2,
			mesh: Mesh{Kind: Istio, Proxy: istioProxy, Native: true, ProxyIndex: 1, CNI: true, RedirectIndex: -1, ProxyUID: 1337}},
		{file: "istio-cni-classic.yaml", index: 0,
			mesh: Mesh{Kind: Istio, Proxy: istioProxy, ProxyIndex: -1, CNI: true, RedirectIndex: -1, ProxyUID: 1337},
			warnings: []string{`cannot reach "mydb:5432", "http://inventory.shop.svc:8080/healthz": the CNI plugin redirects its connections to istio-proxy`,
				`traffic.sidecar.istio.io/excludeOutboundPorts: "5432,8080"`, "https://istio.io/latest/docs/setup/additional-setup/cni/"}},
		{file: "istio-cni-classic-excluded.yaml", index: 0,
			mesh: Mesh{Kind: Istio, Proxy: istioProxy, ProxyIndex: -1, CNI: true, RedirectIndex: -1, ProxyUID: 1337}},
		{file: "linkerd-native.yaml", index: 2,
			mesh: Mesh{Kind: Linkerd, Proxy: linkerdProxy, Native: true, ProxyIndex: 1, RedirectIndex: 0, ProxyUID: 2102}},
		{file: "linkerd-classic.yaml", index: 0,
			mesh: Mesh{Kind: Linkerd, Proxy: linkerdProxy, ProxyIndex: -1, RedirectIndex: 1, ProxyUID: 2102}},
		{file: "linkerd-cni-classic.yaml", index: 0,
			mesh: Mesh{Kind: Linkerd, Proxy: linkerdProxy, ProxyIndex: -1, CNI: true, RedirectIndex: -1}, // the validator has no --proxy-uid
			warnings: []string{`cannot reach "emoji-svc:8080", "10.96.0.10:53": the CNI plugin`,
				`config.linkerd.io/skip-outbound-ports: "53,8080"`, "https://linkerd.io/2-edge/features/cni/"}},
		{file: "native-sidecar-migrate.yaml", index: 1, mesh: Mesh{ProxyIndex: -1, RedirectIndex: -1}},
		{file: "after.yaml", index: 2, mesh: Mesh{ProxyIndex: -1, RedirectIndex: -1}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			p, spec := pendingShape(t, tc.file)
			pl, err := Place(p)
			if err != nil {
				t.Fatal(err)
			}
			if pl.Index != tc.index || pl.Pending != "" {
				t.Errorf("Place = %+v, want index %d", pl, tc.index)
			}
			if m := DetectMesh(p); !reflect.DeepEqual(m, tc.mesh) {
				t.Errorf("DetectMesh = %+v, want %+v", m, tc.mesh)
			}
			got := Warnings(p, pl.Index, spec)
			want := 0
			if len(tc.warnings) > 0 {
				want = 3 // what, how to let it through, the mesh's page
			}
			if len(got) != want {
				t.Fatalf("warnings %q, want %d", got, want)
			}
			all := strings.Join(got, "\n")
			for _, w := range tc.warnings {
				if !strings.Contains(all, w) {
					t.Errorf("warnings %q lack %q", got, w)
				}
			}
			checkWarningSizes(t, got)
		})
	}
}

func TestMeshWarningsWithAfter(t *testing.T) {
	spec := &Spec{Waits: []Target{{Annotation: AnnotationServices, Entry: "mydb:5432", Arg: "tcp:mydb.shop.svc.cluster.local.:5432"}}}
	classic := PodShape{Namespace: "shop",
		InitContainers: []ShapeContainer{ic("migrate"), {Name: istioInit, Args: []string{"istio-iptables", "-u", "1337"}}},
		Containers:     []ShapeContainer{ic(istioProxy), ic("app")}}
	m := DetectMesh(classic)
	if got := MeshWarnings(classic, m, 0, spec); got != nil {
		t.Errorf("before istio-init: %q, want none", got)
	}
	got := MeshWarnings(classic, m, 2, spec) // depends-on.dev/after: istio-init
	if len(got) != 3 || !strings.Contains(got[0], "it starts after istio-init") || !strings.Contains(got[1], "remove depends-on.dev/after") {
		t.Errorf("after istio-init: %q", got)
	}

	native := PodShape{Namespace: "shop",
		InitContainers: []ShapeContainer{ic(linkerdValidator), {Name: linkerdProxy, Sidecar: true}},
		Containers:     []ShapeContainer{ic("app")}}
	m = DetectMesh(native)
	got = MeshWarnings(native, m, 1, spec) // depends-on.dev/after: linkerd-network-validator
	if len(got) != 3 || !strings.Contains(got[0], "it starts before linkerd-proxy") || !strings.Contains(got[1], "name linkerd-proxy or a later") {
		t.Errorf("before the native proxy: %q", got)
	}
	if got := MeshWarnings(native, m, 2, spec); got != nil {
		t.Errorf("after the native proxy: %q, want none", got)
	}
}

func TestMeshExclusions(t *testing.T) {
	cni := func(kind MeshKind, ann map[string]string) (PodShape, Mesh) {
		p := PodShape{Annotations: ann, InitContainers: []ShapeContainer{ic(istioValidation)}, Containers: []ShapeContainer{ic(istioProxy)}}
		if kind == Linkerd {
			p.InitContainers, p.Containers = []ShapeContainer{ic(linkerdValidator)}, []ShapeContainer{ic(linkerdProxy)}
		}
		return p, DetectMesh(p)
	}
	wait := func(arg string) *Spec {
		return &Spec{Waits: []Target{{Annotation: AnnotationTCP, Entry: arg, Arg: arg}}}
	}
	for _, tc := range []struct {
		name string
		kind MeshKind
		ann  map[string]string
		spec *Spec
		warn bool
	}{
		{"istio: no exclusion", Istio, nil, wait("tcp:10.0.0.5:5432"), true},
		{"istio: port excluded", Istio, map[string]string{istioExcludePorts: "80, 5432"}, wait("tcp:10.0.0.5:5432"), false},
		{"istio: other port excluded", Istio, map[string]string{istioExcludePorts: "5433"}, wait("tcp:10.0.0.5:5432"), true},
		{"istio: range excluded", Istio, map[string]string{istioExcludeRanges: "10.0.0.0/24"}, wait("tcp:10.0.0.5:5432"), false},
		{"istio: other range excluded", Istio, map[string]string{istioExcludeRanges: "10.1.0.0/24"}, wait("tcp:10.0.0.5:5432"), true},
		{"istio: range set, name target (unverifiable)", Istio, map[string]string{istioExcludeRanges: "10.96.0.0/12"}, wait("tcp:db.shop.svc.cluster.local.:5432"), false},
		{"istio: include ranges leave it out", Istio, map[string]string{istioIncludeRanges: "10.96.0.0/12"}, wait("tcp:10.0.0.5:5432"), false},
		{"istio: include ranges star", Istio, map[string]string{istioIncludeRanges: "*"}, wait("tcp:10.0.0.5:5432"), true},
		{"istio: include ports leave it out", Istio, map[string]string{istioIncludePorts: "80"}, wait("tcp:10.0.0.5:5432"), false},
		{"istio: loopback", Istio, nil, wait("tcp:127.0.0.1:5432"), false},
		{"istio: localhost URL", Istio, nil, &Spec{Waits: []Target{{Annotation: AnnotationHTTP, Entry: "http://localhost:9901/", Arg: "http://localhost:9901/"}}}, false},
		{"istio: dns only", Istio, nil, &Spec{Waits: []Target{{Annotation: AnnotationServices, Entry: "db", Arg: "dns:db.shop.svc.cluster.local."}}}, false},
		{"istio: dns captured", Istio, map[string]string{istioProxyConfig: `proxyMetadata: {ISTIO_META_DNS_CAPTURE: "true"}`}, &Spec{Waits: []Target{{Annotation: AnnotationServices, Entry: "db", Arg: "dns:db.shop.svc.cluster.local."}}}, true},
		{"istio: https default port", Istio, map[string]string{istioExcludePorts: "443"}, &Spec{Waits: []Target{{Annotation: AnnotationHTTP, Entry: "https://x.example/", Arg: "https://x.example/"}}}, false},
		{"istio: fetch counts", Istio, nil, &Spec{Fetches: []Fetch{{Entry: "/a=http://cfg:8080/a", Path: "/a", URL: "http://cfg:8080/a"}}}, true},
		{"linkerd: port range skipped", Linkerd, map[string]string{linkerdSkipPorts: "5000-6000"}, wait("tcp:10.0.0.5:5432"), false},
		{"linkerd: subnet skipped", Linkerd, map[string]string{linkerdSkipSubnets: "10.0.0.0/8"}, wait("tcp:10.0.0.5:5432"), false},
		{"linkerd: istio annotation ignored", Linkerd, map[string]string{istioExcludePorts: "5432"}, wait("tcp:10.0.0.5:5432"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, m := cni(tc.kind, tc.ann)
			got := MeshWarnings(p, m, 1, tc.spec)
			if (len(got) == 3) != tc.warn || (len(got) != 0 && len(got) != 3) {
				t.Errorf("MeshWarnings = %q, want a warning: %v", got, tc.warn)
			}
		})
	}
}

func TestLoopbackWarnings(t *testing.T) {
	spec := &Spec{Waits: []Target{{Annotation: AnnotationTCP, Entry: "127.0.0.1:5432", Arg: "tcp:127.0.0.1:5432"}}}
	for _, tc := range []struct {
		name  string
		p     PodShape
		at    int
		want  string
		empty bool
	}{
		{name: "sidecar before", p: PodShape{InitContainers: []ShapeContainer{sidecar("cloud-sql-proxy"), ic("migrate")}}, at: 1, empty: true},
		{name: "sidecar after", p: PodShape{InitContainers: []ShapeContainer{ic("migrate"), sidecar("cloud-sql-proxy")}}, at: 0,
			want: "native sidecar cloud-sql-proxy starts after it: declare it earlier or set depends-on.dev/after: cloud-sql-proxy"},
		{name: "proxy as an app container", p: PodShape{Containers: []ShapeContainer{ic("cloud-sql-proxy"), ic("app")}}, at: 0,
			want: "app containers start after init containers"},
		{name: "host network", p: PodShape{HostNetwork: true}, at: 0, empty: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := LoopbackWarnings(tc.p, tc.at, spec)
			if tc.empty {
				if got != nil {
					t.Errorf("got %q, want none", got)
				}
				return
			}
			if len(got) != 1 || !strings.Contains(got[0], tc.want) || !strings.Contains(got[0], `"127.0.0.1:5432" is on loopback`) {
				t.Errorf("got %q, want one containing %q", got, tc.want)
			}
		})
	}
}

func TestServiceWarnings(t *testing.T) {
	svc := func(entry string) Target {
		arg, err := parseService(entry, ParseOptions{Namespace: "shop", ClusterDomain: "cluster.local"})
		if err != nil {
			t.Fatal(err)
		}
		return Target{Annotation: AnnotationServices, Entry: entry, Arg: arg.Arg}
	}
	deployment := PodShape{Namespace: "shop", GenerateName: "orders-7d9f8b6c5-",
		Labels: map[string]string{"pod-template-hash": "7d9f8b6c5", "app.kubernetes.io/name": "Orders-API"}}
	for _, tc := range []struct {
		name  string
		p     PodShape
		entry string
		want  []string
	}{
		{"portless", PodShape{Namespace: "shop"}, "mydb", []string{`"mydb" has no port`}},
		{"with port", PodShape{Namespace: "shop"}, "mydb:5432", nil},
		{"deployment's own name", deployment, "orders:8080", []string{`looks like this Pod's own Service ("generateName orders-7d9f8b6c5-")`}},
		{"own label, case-insensitive", deployment, "orders-api:8080", []string{`("label app.kubernetes.io/name=Orders-API")`}},
		{"own name in own namespace", deployment, "orders.shop:8080", []string{"looks like this Pod's own Service"}},
		{"same name, other namespace", deployment, "orders.billing:8080", nil},
		{"portless and own: a ClusterIP name resolves anyway", deployment, "orders", []string{"has no port"}},
		{"portless headless subdomain", PodShape{Namespace: "shop", Subdomain: "pg"}, "pg", []string{"has no port", `("spec.subdomain")`}},
		{"statefulset governing service", PodShape{Namespace: "shop", Subdomain: "pg"}, "pg:5432", []string{`("spec.subdomain")`}},
		{"job", PodShape{Namespace: "shop", GenerateName: "backup-"}, "backup:80", []string{`("generateName backup-")`}},
		{"another service", deployment, "payments:8080", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ServiceWarnings(tc.p, &Spec{Waits: []Target{svc(tc.entry)}})
			if len(got) != len(tc.want) {
				t.Fatalf("got %q, want %d warnings", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q lacks %q", got[i], w)
				}
			}
		})
	}
}

// checkWarningSizes: the API server may truncate warnings over 256 characters.
func checkWarningSizes(t *testing.T, ws []string) {
	t.Helper()
	for _, w := range ws {
		if len(w) > 256 {
			t.Errorf("warning of %d characters (> 256): %q", len(w), w)
		}
	}
}

func TestWarningsBounded(t *testing.T) {
	long := strings.Repeat("a", 63)
	var waits []Target
	for i := 0; i < 20; i++ {
		entry := long[:60] + strconv.Itoa(i)
		waits = append(waits, Target{Annotation: AnnotationServices, Entry: entry, Arg: "dns:" + entry + ".shop.svc.cluster.local."})
	}
	waits = append(waits, Target{Annotation: AnnotationTCP, Entry: "10.0.0.1:5432", Arg: "tcp:10.0.0.1:5432"})
	p := PodShape{Namespace: "shop", Labels: map[string]string{"app": long},
		InitContainers: []ShapeContainer{ic(istioValidation)}, Containers: []ShapeContainer{ic(istioProxy)}}
	got := Warnings(p, 1, &Spec{Waits: waits})
	if len(got) != maxWarnings || !strings.Contains(got[maxWarnings-1], "more warnings not shown") {
		t.Errorf("got %d warnings, last %q; want %d ending with a count", len(got), got[len(got)-1], maxWarnings)
	}
	checkWarningSizes(t, got)
	pl, err := Place(PodShape{Annotations: map[string]string{AnnotationAfter: long}, InitContainers: []ShapeContainer{ic(long), ic(long + "b")}[:1]})
	if err != nil || pl.Index != 1 {
		t.Fatalf("Place = %+v, %v", pl, err)
	}
	pl, err = Place(PodShape{Annotations: map[string]string{AnnotationAfter: "x" + long[:62]}, InitContainers: []ShapeContainer{ic(long), ic(long), ic(long)}})
	if err != nil || pl.Pending == "" {
		t.Fatalf("Place = %+v, %v", pl, err)
	}
	checkWarningSizes(t, pl.Warnings)
}

// depends-on.dev/after is validated with the other annotations: a denial names
// the annotation and the value, listed with Parse's problems.
func TestAfterDeniedThroughInjection(t *testing.T) {
	in := testInjector(t)
	for _, tc := range []struct {
		ann  map[string]string
		want string
	}{
		{map[string]string{AnnotationServices: "db:5432", AnnotationAfter: "app"},
			`metadata.annotations[depends-on.dev/after]: Invalid value: "app": app is an app container`},
		{map[string]string{AnnotationServices: "db:5432", AnnotationAfter: "Migrate"},
			`metadata.annotations[depends-on.dev/after]: Invalid value: "Migrate": one init container name`},
		{map[string]string{AnnotationServices: "db:99999", AnnotationAfter: " "},
			`2 problems: metadata.annotations[depends-on.dev/services]`},
		{map[string]string{AnnotationAfter: "migrate"},
			`metadata.annotations[depends-on.dev/after]: Invalid value: "migrate": places depends-on's containers, but nothing is injected`},
	} {
		_, err := in.Patch(pod(tc.ann, func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "m"}}
		}), "shop")
		var invalid *InvalidError
		if !errors.As(err, &invalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want a denial containing %q", tc.ann, err, tc.want)
		}
	}
}
