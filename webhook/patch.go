package webhook

import (
	"strconv"
	"strings"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
)

// Patch returns the JSON patch that turns pod into its injected form, or no
// operations when pod already is in that form (a reinvocation, or a Pod re-created
// from the webhook's own output). namespace is the request's namespace.
//
// The patch is built from explicit operations, never from a diff of whole objects:
// anything injected before is removed by index, then the injected containers are
// added in front of the Pod's own init containers, and the user's containers are
// only ever appended to.
func (in *Injector) Patch(pod *Pod, namespace string) ([]jsonpatch.Operation, error) {
	r, err := in.compute(pod, namespace)
	if err != nil {
		return nil, err
	}
	return in.patchFor(pod, r)
}

// patchFor is the patch from pod to r.desired.
func (in *Injector) patchFor(pod *Pod, r *result) ([]jsonpatch.Operation, error) {
	if r.prev == nil {
		// pod has no record, and apply adds one whenever it injects anything:
		// desired equals pod exactly when it has none either.
		if _, ok := r.desired.Annotations[AnnotationInjected]; !ok {
			return nil, nil
		}
	} else if apiequality.Semantic.DeepEqual(r.desired, pod) {
		return nil, nil
	}
	var ops []jsonpatch.Operation
	if r.prev != nil {
		ops = removeOps(pod, r.prev)
	}
	add, err := in.addOps(r.base, r.desired, r.prev != nil)
	if err != nil {
		return nil, err
	}
	return append(ops, add...), nil
}

var injectedAnnotationPath = "/metadata/annotations/" + escapePointer(AnnotationInjected)

// addOps turns base into desired, knowing desired only adds to base: init
// containers in front (the ones apply built, as JSON), volumes and mounts at
// the end, and the record annotation.
func (in *Injector) addOps(base, desired *Pod, hadRecord bool) ([]jsonpatch.Operation, error) {
	var ops []jsonpatch.Operation
	if n := len(desired.Spec.InitContainers) - len(base.Spec.InitContainers); n > 0 {
		if len(base.Spec.InitContainers) == 0 {
			v, err := in.containersJSON(desired.Spec.InitContainers)
			if err != nil {
				return nil, err
			}
			ops = append(ops, add("/spec/initContainers", v))
		} else {
			for i := 0; i < n; i++ {
				v, err := in.containerJSON(&desired.Spec.InitContainers[i])
				if err != nil {
					return nil, err
				}
				ops = append(ops, add("/spec/initContainers/"+strconv.Itoa(i), v))
			}
		}
	}
	ops = appendOps(ops, "/spec/volumes", base.Spec.Volumes, desired.Spec.Volumes, func(v Volume) *corev1.Volume { return v.Whole })
	for i := range desired.Spec.Containers {
		ops = appendOps(ops, "/spec/containers/"+strconv.Itoa(i)+"/volumeMounts",
			base.Spec.Containers[i].VolumeMounts, desired.Spec.Containers[i].VolumeMounts, func(m corev1.VolumeMount) corev1.VolumeMount { return m })
	}
	key := injectedAnnotationPath
	if v, ok := desired.Annotations[AnnotationInjected]; ok {
		// add on an existing member replaces it (RFC 6902 4.1).
		ops = append(ops, add(key, v))
	} else if hadRecord {
		ops = append(ops, remove(key))
	}
	return ops, nil
}

// appendOps adds the tail of desired that base lacks, as value encodes each
// element: the whole list when base has none (the field may be absent), else
// one "-" append per element. (Only injected elements are ever appended, and
// those are whole.)
func appendOps[T, V any](ops []jsonpatch.Operation, p string, base, desired []T, value func(T) V) []jsonpatch.Operation {
	if len(desired) <= len(base) {
		return ops
	}
	if len(base) == 0 {
		vs := make([]V, len(desired))
		for i, v := range desired {
			vs[i] = value(v)
		}
		return append(ops, add(p, vs))
	}
	for _, v := range desired[len(base):] {
		ops = append(ops, add(p+"/-", value(v)))
	}
	return ops
}

func add(path string, value any) jsonpatch.Operation {
	return jsonpatch.Operation{Operation: "add", Path: path, Value: value}
}

func remove(path string) jsonpatch.Operation {
	return jsonpatch.Operation{Operation: "remove", Path: path}
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// escapePointer escapes a JSON-pointer reference token (RFC 6901).
func escapePointer(s string) string { return pointerEscaper.Replace(s) }
