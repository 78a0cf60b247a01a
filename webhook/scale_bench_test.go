package webhook

import (
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// BenchmarkParseEntries shows parsing and patch building are linear in the
// number of entries: ns/entry stays flat from 1,000 to 50,000 entries (they were
// quadratic: 10,000 fetches took 1.25 s). The caps are lifted for the
// measurement (lifted/...); with the default ones (capped/...) the same values
// are denied after a size check and a count. Run with
// go test -run '^$' -bench ParseEntries ./webhook
func BenchmarkParseEntries(b *testing.B) {
	entry := map[string]func(i int) string{
		AnnotationServices: func(i int) string {
			return "s" + strconv.Itoa(i) + ".ns" + strconv.Itoa(i%7) + ":" + strconv.Itoa(i%65535+1)
		},
		AnnotationTCP:  func(i int) string { return "h" + strconv.Itoa(i) + ".example.com:" + strconv.Itoa(i%65535+1) },
		AnnotationHTTP: func(i int) string { return "http://h" + strconv.Itoa(i) + ".example.com:8080/healthz" },
		// Nested directories, so that the nesting check has work to do.
		AnnotationFetch: func(i int) string {
			return "/etc/d" + strconv.Itoa(i%100) + "/f" + strconv.Itoa(i) + "=http://h/" + strconv.Itoa(i)
		},
	}
	lifted := Limits{MaxWaits: 1 << 30, MaxFetches: 1 << 30, MaxValueBytes: 1 << 30}
	for _, key := range []string{AnnotationServices, AnnotationTCP, AnnotationHTTP, AnnotationFetch} {
		for _, n := range []int{1000, 10000, 50000} {
			var sb strings.Builder
			for i := range n {
				sb.WriteString(entry[key](i) + ", ")
			}
			ann := map[string]string{key: sb.String()}
			name := strings.TrimPrefix(key, Prefix) + "/" + strconv.Itoa(n)
			b.Run("lifted/"+name, func(b *testing.B) {
				opts := ParseOptions{Namespace: benchNamespace, ClusterDomain: "cluster.local", Limits: lifted}
				perEntry(b, n, func() {
					spec, errs := Parse(ann, opts)
					if len(errs) > 0 || len(spec.Waits)+len(spec.Fetches) != n {
						b.Fatalf("%d errors (%.200v), %d targets", len(errs), errs, len(spec.Waits)+len(spec.Fetches))
					}
				})
			})
			b.Run("capped/"+name, func(b *testing.B) {
				opts := ParseOptions{Namespace: benchNamespace, ClusterDomain: "cluster.local"}
				perEntry(b, n, func() {
					if _, errs := Parse(ann, opts); len(errs) != 1 {
						b.Fatalf("errors: %.300v", errs)
					}
				})
			})
		}
	}
}

// BenchmarkPatchEntries: the whole Patch (parse, collision check of fetch paths
// against the app containers' mounts, operations) for n fetches and n mounts,
// caps lifted. Linear: ns/entry stays flat.
func BenchmarkPatchEntries(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Limits = Limits{MaxWaits: 1 << 30, MaxFetches: 1 << 30, MaxValueBytes: 1 << 30}
	in, err := NewInjector(cfg)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1000, 10000, 50000} {
		var sb strings.Builder
		for i := range n {
			sb.WriteString("/etc/d" + strconv.Itoa(i%100) + "/f" + strconv.Itoa(i) + "=http://h/" + strconv.Itoa(i) + ",")
		}
		p := &corev1.Pod{}
		p.Namespace = benchNamespace
		p.Annotations = map[string]string{AnnotationFetch: sb.String()}
		c := corev1.Container{Name: "app"}
		for i := range n {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "v", MountPath: "/var/m" + strconv.Itoa(i) + "//x"})
		}
		p.Spec.Containers = []corev1.Container{c}
		pp := PodFrom(p)
		b.Run("fetch+mounts/"+strconv.Itoa(n), func(b *testing.B) {
			perEntry(b, n, func() {
				ops, err := in.Patch(pp, benchNamespace)
				if err != nil || len(ops) == 0 {
					b.Fatalf("Patch: %d ops, %.300v", len(ops), err)
				}
			})
		})
	}
}

// perEntry runs f in the benchmark loop and reports the cost per entry of n:
// wall time, and the process's CPU time (GC included), which a loaded machine
// does not inflate as it does the wall time.
func perEntry(b *testing.B, n int, f func()) {
	b.ReportAllocs()
	cpu := cpuNow()
	for b.Loop() {
		f()
	}
	per := float64(b.N) * float64(n)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "ns/entry")
	b.ReportMetric(float64((cpuNow()-cpu).Nanoseconds())/per, "cpu-ns/entry")
}
