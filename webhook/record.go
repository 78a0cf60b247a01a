package webhook

import (
	"encoding/json"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The record (AnnotationInjected) tells a later call what depends-on injected:
// what it owns, and may rewrite or remove (see reconcile), and, from version 2,
// the hashes that say whether anything needs rewriting at all. Anyone can
// write it, so it is never trusted alone: a container or volume counts as
// depends-on's only if the record names it AND it is depends-on's own (see
// ours*). A recorded name on anything else is a denial with the
// reserved-name message, never a removal.

// maxRecordBytes bounds the record that is decoded: the webhook writes under 100 bytes.
const maxRecordBytes = 1024

// injected is what a previous call left on a Pod, by index, as found through its record.
type injected struct {
	initContainers []int // ascending
	volumes        []int // ascending
	// mounts[i] are the indexes (ascending) of the mounts of the injected volume
	// in app container i.
	mounts [][]int
}

// oursContainer reports whether c is a container depends-on injected: it runs the
// wait command. The image is not compared: another webhook (a registry mirror)
// may have rewritten it, and that edit is kept.
func oursContainer(c *corev1.Container) bool {
	return len(c.Command) == 1 && c.Command[0] == WaitCommand
}

// oursVolume reports whether v is a volume depends-on injected: an emptyDir
// that the injected fetch container (one of fetchers) mounts at FetchDir, or
// the readiness token: a projected volume of one ServiceAccount token with
// the readiness audience.
func oursVolume(v *Volume, fetchers []*corev1.Container) bool {
	if v.Name == ReadinessTokenVolumeName && v.Whole != nil && v.Whole.Projected != nil {
		src := v.Whole.Projected.Sources
		return len(src) == 1 && src[0].ServiceAccountToken != nil && src[0].ServiceAccountToken.Audience == ReadinessAudience
	}
	if v.Whole == nil || v.Whole.EmptyDir == nil {
		return false
	}
	for _, c := range fetchers {
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name && m.MountPath == FetchDir {
				return true
			}
		}
	}
	return false
}

// readRecord decodes and checks pod's record; nil without one.
func readRecord(pod *Pod) (*Status, field.ErrorList) {
	raw, ok := pod.Annotations[AnnotationInjected]
	if !ok {
		return nil, nil
	}
	var st Status
	// Only ever names we inject: a hand-edited record cannot claim others.
	if len(raw) > maxRecordBytes || json.Unmarshal([]byte(raw), &st) != nil || (st.Version != 1 && st.Version != statusVersion) ||
		!subset(st.InitContainers, WaitContainerName, FetchContainerName) || !subset(st.Volumes, FetchVolumeName, ReadinessTokenVolumeName) {
		return nil, field.ErrorList{field.Invalid(annotationsPath.Key(AnnotationInjected), shorten(raw),
			"not written by this webhook version; remove the annotation (and what it injected)")}
	}
	return &st, nil
}

// findInjected returns what st says was injected and is depends-on's, or the
// denials for recorded names that are not depends-on's.
func findInjected(pod *Pod, st *Status) (*injected, field.ErrorList) {
	var errs field.ErrorList
	found := &injected{}
	var fetchers []*corev1.Container
	initPath := field.NewPath("spec", "initContainers")
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if !slices.Contains(st.InitContainers, c.Name) {
			continue
		}
		if !oursContainer(c) {
			errs = append(errs, reservedContainer(initPath.Index(i), c.Name))
			continue
		}
		found.initContainers = append(found.initContainers, i)
		if c.Name == FetchContainerName {
			fetchers = append(fetchers, c)
		}
	}
	if len(st.Volumes) == 0 {
		return found, errs
	}
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if !slices.Contains(st.Volumes, v.Name) {
			continue
		}
		if !oursVolume(v, fetchers) {
			errs = append(errs, reservedVolume(field.NewPath("spec", "volumes").Index(i), v.Name))
			continue
		}
		found.volumes = append(found.volumes, i)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	// The injected mounts: of the recorded volume, in app containers (the only
	// ones apply mounts it in; the injected containers go whole).
	found.mounts = make([][]int, len(pod.Spec.Containers))
	for i, c := range pod.Spec.Containers {
		for j, m := range c.VolumeMounts {
			if slices.Contains(st.Volumes, m.Name) {
				found.mounts[i] = append(found.mounts[i], j)
			}
		}
	}
	return found, nil
}

// reservedContainer and reservedVolume are the reserved-name denials, the same
// whether a record names the container or the injection needs its name.
func reservedContainer(p *field.Path, name string) *field.Error {
	what := "the injected wait container"
	if name == FetchContainerName {
		what = "the injected fetch container"
	}
	return field.Invalid(p.Child("name"), name, fmt.Sprintf("name is reserved for %s of depends-on.dev/; rename the container", what))
}

func reservedVolume(p *field.Path, name string) *field.Error {
	what := "depends-on.dev/fetch"
	if name == ReadinessTokenVolumeName {
		what = "depends-on.dev/jobs, workloads and endpoints"
	}
	return field.Invalid(p.Child("name"), name, "name is reserved for the volume "+what+" injects; rename the volume")
}

// strip returns pod without what a previous call injected (a copy, if anything
// is stripped), the record and what it names that is depends-on's, or the
// denials.
func strip(pod *Pod) (*Pod, *Status, *injected, field.ErrorList) {
	st, errs := readRecord(pod)
	if st == nil {
		return pod, nil, nil, errs // nothing to strip: no copy (reconcile copies before it changes anything)
	}
	found, errs := findInjected(pod, st)
	if len(errs) > 0 {
		return pod, nil, nil, errs
	}
	out := pod.DeepCopy()
	delete(out.Annotations, AnnotationInjected)
	out.Spec.InitContainers = emptyToNil(without(out.Spec.InitContainers, found.initContainers))
	out.Spec.Volumes = emptyToNil(without(out.Spec.Volumes, found.volumes))
	for i := range found.mounts {
		if len(found.mounts[i]) > 0 {
			out.Spec.Containers[i].VolumeMounts = emptyToNil(without(out.Spec.Containers[i].VolumeMounts, found.mounts[i]))
		}
	}
	return out, st, found, nil
}

// without returns s without the elements at the ascending indexes drop, in place.
func without[T any](s []T, drop []int) []T {
	if len(drop) == 0 {
		return s
	}
	keep := s[:0]
	next := 0
	for i := range s {
		if next < len(drop) && drop[next] == i {
			next++
			continue
		}
		keep = append(keep, s[i])
	}
	return keep
}

func subset(names []string, allowed ...string) bool {
	for _, n := range names {
		if !slices.Contains(allowed, n) {
			return false
		}
	}
	return true
}

func emptyToNil[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// withoutRepeats returns errs without the errors already in seen (a recorded name
// that is not ours, which strip denies, and the injection's own reserved-name
// check find the same container).
func withoutRepeats(errs, seen field.ErrorList) field.ErrorList {
	if len(seen) == 0 || len(errs) == 0 {
		return errs
	}
	have := make(map[string]bool, len(seen))
	for _, e := range seen {
		have[e.Error()] = true
	}
	out := errs[:0:0]
	for _, e := range errs {
		if !have[e.Error()] {
			out = append(out, e)
		}
	}
	return out
}
