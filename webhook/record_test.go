package webhook

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A hand-written record must never remove what the user wrote (issue 10, point 3):
// a recorded name on a container or volume that is not depends-on's is denied
// with the reserved-name message, and nothing is removed.
func TestRecordCannotRemoveUserContainers(t *testing.T) {
	in := testInjector(t)
	userFetch := corev1.Container{Name: "fetch", Image: "user/fetcher:1", Command: []string{"/fetch"}}
	tests := []struct {
		name string
		pod  *Pod
		want []string
	}{
		{"a user init container named fetch",
			pod(map[string]string{AnnotationServices: "db", AnnotationInjected: `{"version":1,"initContainers":["fetch"]}`}, func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{userFetch}
			}),
			[]string{`spec.initContainers[0].name: Invalid value: "fetch": name is reserved for the injected fetch container`}},
		{"a user init container named fetch, image only (no command)",
			pod(map[string]string{AnnotationServices: "db", AnnotationInjected: `{"version":1,"initContainers":["fetch"]}`}, func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "fetch", Image: "user/fetcher:1"}}
			}),
			[]string{`spec.initContainers[0].name: Invalid value: "fetch": name is reserved`}},
		{"a user init container named wait-for-service",
			pod(map[string]string{AnnotationServices: "db", AnnotationInjected: `{"version":1,"initContainers":["wait-for-service"]}`}, func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "m"},
					{Name: "wait-for-service", Image: "user/waiter:1", Command: []string{"/bin/sh", "-c", "sleep 5"}}}
			}),
			[]string{`spec.initContainers[1].name: Invalid value: "wait-for-service": name is reserved for the injected wait container`}},
		{"a user PVC volume named depends-on-fetch, and its mount",
			pod(map[string]string{AnnotationServices: "db", AnnotationInjected: `{"version":1,"initContainers":[],"volumes":["depends-on-fetch"]}`}, func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{{Name: FetchVolumeName, VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
				p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: FetchVolumeName, MountPath: "/data"}}
			}),
			[]string{`spec.volumes[0].name: Invalid value: "depends-on-fetch": name is reserved for the volume depends-on.dev/fetch injects`}},
		{"a user emptyDir named depends-on-fetch that no injected fetch container mounts",
			pod(map[string]string{AnnotationServices: "db", AnnotationInjected: `{"version":1,"initContainers":[],"volumes":["depends-on-fetch"]}`}, func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{{Name: FetchVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			}),
			[]string{`spec.volumes[0].name: Invalid value: "depends-on-fetch": name is reserved`}},
		{"the record does not sidestep the reserved name when fetching",
			pod(map[string]string{AnnotationFetch: "/a=http://x/", AnnotationInjected: `{"version":1,"initContainers":["fetch"]}`}, func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{userFetch}
			}),
			[]string{`depends-on: 1 problem: spec.initContainers[0].name: Invalid value: "fetch": name is reserved`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, err := in.Patch(tt.pod, "shop")
			var invalid *InvalidError
			if !errors.As(err, &invalid) {
				raw, _ := json.Marshal(ops)
				t.Fatalf("err = %v, patch %s; want a denial", err, raw)
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not contain %q", err.Error(), s)
				}
			}
		})
	}
}

// What depends-on injected is still stripped, whatever image it runs now
// (another webhook, such as a registry mirror, may have rewritten it; the new
// injection uses the configured image).
func TestRecordStripsOursWhateverTheImage(t *testing.T) {
	in := testInjector(t)
	p := pod(map[string]string{AnnotationServices: "db", AnnotationInjected: `{"version":1,"initContainers":["wait-for-service","fetch"],"volumes":["depends-on-fetch"]}`},
		func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{
				{Name: WaitContainerName, Image: "mirror.example/depends-on/wait-for-service:old", Command: []string{WaitCommand}, Args: []string{"dns:old."}},
				{Name: FetchContainerName, Image: "mirror.example/x", Command: []string{WaitCommand},
					VolumeMounts: []corev1.VolumeMount{{Name: FetchVolumeName, MountPath: FetchDir}}},
				{Name: "migrate", Image: "m", VolumeMounts: []corev1.VolumeMount{{Name: FetchVolumeName, MountPath: "/in"}}},
			}
			p.Spec.Volumes = []corev1.Volume{{Name: FetchVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "x", MountPath: "/x"}, {Name: FetchVolumeName, MountPath: "/f", SubPath: "0-f"}}
		})
	ops, err := in.Patch(p, "shop")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, op := range ops {
		if op.Operation == "remove" {
			paths = append(paths, op.Path)
		}
	}
	// The mount of the user's own init container (migrate) is the user's: kept.
	if got, want := strings.Join(paths, " "), "/spec/containers/0/volumeMounts/1 /spec/initContainers/1 /spec/initContainers/0 /spec/volumes/0"; got != want {
		t.Errorf("removed %s, want %s", got, want)
	}
}

func TestRecordIsBounded(t *testing.T) {
	in := testInjector(t)
	rec := `{"version":1,"initContainers":["fetch"` + strings.Repeat(`,"fetch"`, 200) + `]}`
	_, err := in.Patch(pod(map[string]string{AnnotationServices: "db", AnnotationInjected: rec}), "shop")
	if err == nil || !strings.Contains(err.Error(), "depends-on.dev/injected") || len(err.Error()) > 1000 {
		t.Errorf("err = %.300v, want a short denial of the record", err)
	}
}

// injectedPod injects p with in and returns the patched Pod, as the API server
// would store it.
func injectedPod(t *testing.T, in *Injector, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	doc, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := in.Patch(PodFrom(p), p.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	return decodePod(t, applyPatch(t, doc, ops))
}

// othersEdit is what a registry mirror, a proxy-env webhook and a mesh do to a
// Pod after depends-on: every image rewritten, env added to every container,
// a native proxy put first.
func othersEdit(p *corev1.Pod) {
	proxyEnv := []corev1.EnvVar{{Name: "HTTP_PROXY", Value: "http://proxy.test:3128"}, {Name: "NO_PROXY", Value: ".svc"}}
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			cs[i].Image = "mirror.test/" + cs[i].Image
			cs[i].Env = append(cs[i].Env, proxyEnv...)
		}
	}
	p.Spec.InitContainers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}
	always := corev1.ContainerRestartPolicyAlways
	p.Spec.InitContainers = append([]corev1.Container{{Name: "istio-proxy", Image: "proxyv2", RestartPolicy: &always}}, p.Spec.InitContainers...)
}

func opsString(ops []jsonpatch.Operation) string {
	var s []string
	for _, op := range ops {
		s = append(s, op.Operation+" "+op.Path)
	}
	return strings.Join(s, ", ")
}

// Issue 11, point 3: once injected, a Pod whose annotations (and the config)
// did not change gets no patch, whatever others did to depends-on's
// containers; when they changed, only what depends-on owns is rewritten.
func TestReinvocationKeepsOthersEdits(t *testing.T) {
	in := testInjector(t)
	base := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop", Annotations: map[string]string{
			AnnotationServices: "mydb:5432",
			AnnotationFetch:    "/etc/app/config.json=http://config.shop.svc:8080/app.json",
		}},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "migrate", Image: "migrate:1"}},
			Containers:     []corev1.Container{{Name: "app", Image: "app:1"}},
		},
	}
	edited := injectedPod(t, in, base)
	othersEdit(edited)
	if got := names(edited.Spec.InitContainers); strings.Join(got, " ") != "istio-proxy wait-for-service fetch migrate" {
		t.Fatalf("init containers %v", got)
	}

	t.Run("unchanged: no patch", func(t *testing.T) {
		m, err := in.Mutate(PodFrom(edited), "shop")
		if err != nil || len(m.Ops) != 0 {
			t.Fatalf("ops %s, err %v; want none", opsString(m.Ops), err)
		}
	})

	t.Run("annotations changed: args only", func(t *testing.T) {
		p := edited.DeepCopy()
		p.Annotations[AnnotationServices] = "mydb:5432, cache:6379"
		ops, err := in.Patch(PodFrom(p), "shop")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := opsString(ops), "add /spec/initContainers/1/args, add /metadata/annotations/depends-on.dev~1injected"; got != want {
			t.Fatalf("ops %s, want %s", got, want)
		}
		doc, _ := json.Marshal(p)
		out := decodePod(t, applyPatch(t, doc, ops))
		w := out.Spec.InitContainers[1]
		if w.Image != "mirror.test/"+DefaultWaitImage || len(w.Env) != 2 || w.Resources.Limits.Memory().String() != "32Mi" ||
			w.Args[len(w.Args)-1] != "tcp:cache.shop.svc.cluster.local.:6379" {
			t.Errorf("wait container %+v: want the new args and the mirror image, env and limits kept", w)
		}
		if again, err := in.Patch(PodFrom(out), "shop"); err != nil || len(again) != 0 {
			t.Errorf("not a fixed point: %s %v", opsString(again), err)
		}
	})

	t.Run("fetch removed: its container, volume and mounts go, the wait stays as it is", func(t *testing.T) {
		p := edited.DeepCopy()
		delete(p.Annotations, AnnotationFetch)
		ops, err := in.Patch(PodFrom(p), "shop")
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := json.Marshal(p)
		out := decodePod(t, applyPatch(t, doc, ops))
		if got := strings.Join(names(out.Spec.InitContainers), " "); got != "istio-proxy wait-for-service migrate" {
			t.Errorf("init containers %s (ops %s)", got, opsString(ops))
		}
		if w := out.Spec.InitContainers[1]; w.Image != "mirror.test/"+DefaultWaitImage || len(w.Env) != 2 {
			t.Errorf("wait container lost others' edits: %+v", w)
		}
		if len(out.Spec.Volumes) != 0 || len(out.Spec.Containers[0].VolumeMounts) != 0 {
			t.Errorf("volumes %v, mounts %v: want none", out.Spec.Volumes, out.Spec.Containers[0].VolumeMounts)
		}
	})

	t.Run("config changed: the image too, others' env kept", func(t *testing.T) {
		cfg := goldenConfig()
		cfg.WaitImage = "depends-on/wait-for-service:v2"
		in2, err := NewInjector(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ops, err := in2.Patch(PodFrom(edited), "shop")
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := json.Marshal(edited)
		out := decodePod(t, applyPatch(t, doc, ops))
		for _, i := range []int{1, 2} {
			c := out.Spec.InitContainers[i]
			if c.Image != cfg.WaitImage || len(c.Env) != 2 || c.Resources.Limits.Memory().String() != "64Mi" {
				t.Errorf("%s: image %s, env %v, limits %v: want the new image and resources, others' env", c.Name, c.Image, c.Env, c.Resources.Limits)
			}
		}
		if got := strings.Join(names(out.Spec.InitContainers), " "); got != "istio-proxy wait-for-service fetch migrate" {
			t.Errorf("init containers %s, want the mesh's order kept", got)
		}
	})

	t.Run("a new app container gets the mounts, nothing else changes", func(t *testing.T) {
		p := edited.DeepCopy()
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "added", Image: "x"})
		ops, err := in.Patch(PodFrom(p), "shop")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := opsString(ops), "add /spec/containers/1/volumeMounts"; got != want {
			t.Errorf("ops %s, want %s", got, want)
		}
	})
}

func names(cs []corev1.Container) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}
