package webhook

import (
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
)

// TestPatchLeavesPodAlone: Patch and Inject share parts of the Pod between
// their copies (copyForApply), but never change the Pod they are given, and
// what Inject returns is independent of it.
func TestPatchLeavesPodAlone(t *testing.T) {
	in := testInjector(t)
	for _, doc := range readPodSeeds(t) {
		pod, err := ReadPod(doc)
		if err != nil {
			continue
		}
		before := pod.DeepCopy()
		if _, err := in.Patch(pod, "default"); err != nil {
			continue
		}
		out, err := in.Inject(pod, "default")
		if err != nil {
			t.Fatal(err)
		}
		if !apiequality.Semantic.DeepEqual(pod, before) {
			t.Fatalf("Patch or Inject changed the Pod %s", doc)
		}
		if out.Annotations != nil {
			out.Annotations["x"] = "y"
		}
		for i := range out.Spec.Containers {
			out.Spec.Containers[i].Name += "-changed"
			out.Spec.Containers[i].VolumeMounts = append(out.Spec.Containers[i].VolumeMounts, out.Spec.Containers[i].VolumeMounts...)
			for j := range out.Spec.Containers[i].VolumeMounts {
				out.Spec.Containers[i].VolumeMounts[j].Name = "changed"
			}
		}
		for i := range out.Spec.Volumes {
			out.Spec.Volumes[i].Name = "changed"
		}
		if !apiequality.Semantic.DeepEqual(pod, before) {
			t.Fatalf("changing what Inject returned changed the Pod %s", doc)
		}
	}
}
