package webhook

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
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
