package webhook

import (
	"encoding/json"
	"strconv"
	"strings"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
)

// Mutation is the answer for one Pod: the patch, and the admission warnings
// (likely mistakes that are not errors; see Warnings).
type Mutation struct {
	Ops      []jsonpatch.Operation
	Warnings []string
}

// Mutate returns the JSON patch that turns pod into its injected form, or no
// operations when pod already is in that form (a reinvocation, or a Pod
// re-created from the webhook's own output), and the warnings for pod.
// namespace is the request's namespace.
//
// The patch is built from explicit operations, never from a diff of whole
// objects: depends-on's containers are inserted at their place (Place),
// volumes and mounts appended, and what a previous call injected is
// rewritten only where it changed (see reconcile); the user's containers are
// only ever appended to.
func (in *Injector) Mutate(pod *Pod, namespace string) (Mutation, error) {
	r, err := in.compute(pod, namespace)
	if err != nil {
		return Mutation{}, err
	}
	ops, err := in.ops(r)
	if err != nil {
		return Mutation{}, err
	}
	return Mutation{Ops: ops, Warnings: r.warnings}, nil
}

// Patch is Mutate without the warnings.
func (in *Injector) Patch(pod *Pod, namespace string) ([]jsonpatch.Operation, error) {
	m, err := in.Mutate(pod, namespace)
	return m.Ops, err
}

var injectedAnnotationPath = "/metadata/annotations/" + escapePointer(AnnotationInjected)

// ops turns r.pod into r.desired as r.plan says: removals by index from the
// back of each list, so that indexes stay valid, then additions.
func (in *Injector) ops(r *result) ([]jsonpatch.Operation, error) {
	pod, desired, found, plan := r.pod, r.desired, r.found, &r.plan
	var ops []jsonpatch.Operation
	for i, changed := range plan.mounts {
		if !changed {
			continue
		}
		var mine []int
		if i < len(found.mounts) {
			mine = found.mounts[i]
		}
		p := "/spec/containers/" + strconv.Itoa(i) + "/volumeMounts"
		ops = removeAll(ops, p, mine)
		cur, want := pod.Spec.Containers[i].VolumeMounts, desired.Spec.Containers[i].VolumeMounts
		ops = appendOps(ops, p, cur == nil, want[len(cur)-len(mine):], func(m corev1.VolumeMount) corev1.VolumeMount { return m })
	}

	if plan.inPlace {
		for _, i := range plan.ours {
			ops = fieldOps(ops, "/spec/initContainers/"+strconv.Itoa(i), &pod.Spec.InitContainers[i], &desired.Spec.InitContainers[i])
		}
	} else {
		ops = removeAll(ops, "/spec/initContainers", found.initContainers)
		if len(pod.Spec.InitContainers) == 0 && len(plan.ours) > 0 {
			// The field may be absent: the whole list (only ours).
			out := []byte{'['}
			for k, i := range plan.ours {
				if k > 0 {
					out = append(out, ',')
				}
				v, err := in.encodeContainer(&desired.Spec.InitContainers[i], plan.fresh[k])
				if err != nil {
					return nil, err
				}
				out = append(out, v...)
			}
			ops = append(ops, add("/spec/initContainers", json.RawMessage(append(out, ']'))))
		} else {
			for k, i := range plan.ours {
				v, err := in.encodeContainer(&desired.Spec.InitContainers[i], plan.fresh[k])
				if err != nil {
					return nil, err
				}
				ops = append(ops, add("/spec/initContainers/"+strconv.Itoa(i), v))
			}
		}
	}

	if plan.volumes {
		ops = removeAll(ops, "/spec/volumes", found.volumes)
		cur := pod.Spec.Volumes
		ops = appendOps(ops, "/spec/volumes", cur == nil, desired.Spec.Volumes[len(cur)-len(found.volumes):], func(v Volume) *corev1.Volume { return v.Whole })
	}

	had, hasOld := pod.Annotations[AnnotationInjected]
	want, hasNew := desired.Annotations[AnnotationInjected]
	switch {
	case hasNew && (!hasOld || had != want):
		// add on an existing member replaces it (RFC 6902 4.1).
		ops = append(ops, add(injectedAnnotationPath, want))
	case !hasNew && hasOld:
		ops = append(ops, remove(injectedAnnotationPath))
	}
	return ops, nil
}

// encodeContainer is the JSON of c: from the template when it is built now,
// else in full (it carries what other webhooks set).
func (in *Injector) encodeContainer(c *corev1.Container, fresh bool) (json.RawMessage, error) {
	if fresh {
		return in.containerJSON(c)
	}
	return json.Marshal(c)
}

// fieldOps sets the fields of one of depends-on's containers that mergeOwned
// may change, where want differs from cur.
func fieldOps(ops []jsonpatch.Operation, p string, cur, want *corev1.Container) []jsonpatch.Operation {
	set := func(name string, a, b any, empty bool) {
		if apiequality.Semantic.DeepEqual(a, b) {
			return
		}
		if empty {
			ops = append(ops, remove(p+"/"+name))
		} else {
			ops = append(ops, add(p+"/"+name, b)) // add sets a member, present or not
		}
	}
	set("image", cur.Image, want.Image, want.Image == "")
	set("command", cur.Command, want.Command, len(want.Command) == 0)
	set("args", cur.Args, want.Args, len(want.Args) == 0)
	set("env", cur.Env, want.Env, len(want.Env) == 0)
	set("resources", cur.Resources, want.Resources, false)
	set("volumeMounts", cur.VolumeMounts, want.VolumeMounts, len(want.VolumeMounts) == 0)
	set("terminationMessagePath", cur.TerminationMessagePath, want.TerminationMessagePath, want.TerminationMessagePath == "")
	set("terminationMessagePolicy", cur.TerminationMessagePolicy, want.TerminationMessagePolicy, want.TerminationMessagePolicy == "")
	set("imagePullPolicy", cur.ImagePullPolicy, want.ImagePullPolicy, want.ImagePullPolicy == "")
	set("securityContext", cur.SecurityContext, want.SecurityContext, want.SecurityContext == nil)
	return ops
}

// removeAll removes the elements at the ascending indexes idx of the list at p.
func removeAll(ops []jsonpatch.Operation, p string, idx []int) []jsonpatch.Operation {
	for k := len(idx) - 1; k >= 0; k-- {
		ops = append(ops, remove(p+"/"+strconv.Itoa(idx[k])))
	}
	return ops
}

// appendOps appends elems to the list at p, as value encodes each: the whole
// list when the field is absent, else one "-" append per element. (Only
// injected elements are ever appended, and those are whole.)
func appendOps[T, V any](ops []jsonpatch.Operation, p string, absent bool, elems []T, value func(T) V) []jsonpatch.Operation {
	if len(elems) == 0 {
		return ops
	}
	if absent {
		vs := make([]V, len(elems))
		for i, v := range elems {
			vs[i] = value(v)
		}
		return append(ops, add(p, vs))
	}
	for _, v := range elems {
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
