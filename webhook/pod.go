package webhook

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// Pod is the part of a Pod (or of a pod template) that injection reads, and
// all of it: the Injector takes a Pod, never a corev1.Pod, so a change that
// starts reading another field has to add it here, and to ReadPod.
type Pod struct {
	Name, GenerateName, Namespace string
	// Labels are read only for admission warnings (the Pod's own Service).
	Labels      map[string]string
	Annotations map[string]string
	Spec        PodSpec
}

// PodSpec is the part of a corev1.PodSpec that injection reads.
type PodSpec struct {
	// InitContainers are read in full: injection compares what it injected
	// before with what it would inject now.
	InitContainers []corev1.Container
	Containers     []Container
	Volumes        []Volume
	OS             *corev1.PodOS
	// Subdomain and HostNetwork are read only for admission warnings.
	Subdomain   string
	HostNetwork bool
}

// Container is an app container as injection sees it: its name (for the
// reserved names) and its mounts (fetched files are mounted into each).
type Container struct {
	Name         string
	VolumeMounts []corev1.VolumeMount
}

// Volume is a volume as injection sees it: every volume's name, and the whole
// volume only for the ones the webhook injects (injection compares and
// removes only that one).
type Volume struct {
	Name string
	// Whole is the volume in full when Name is one the webhook injects
	// (FetchVolumeName, ReadinessTokenVolumeName), else nil.
	Whole *corev1.Volume
}

// PodFrom returns the part of p that injection reads.
func PodFrom(p *corev1.Pod) *Pod {
	out := &Pod{
		Name: p.Name, GenerateName: p.GenerateName, Namespace: p.Namespace,
		Labels: p.Labels, Annotations: p.Annotations,
		Spec: PodSpec{
			InitContainers: p.Spec.InitContainers,
			OS:             p.Spec.OS,
			Subdomain:      p.Spec.Subdomain,
			HostNetwork:    p.Spec.HostNetwork,
		},
	}
	if p.Spec.Containers != nil {
		out.Spec.Containers = make([]Container, len(p.Spec.Containers))
		for i, c := range p.Spec.Containers {
			out.Spec.Containers[i] = Container{Name: c.Name, VolumeMounts: c.VolumeMounts}
		}
	}
	if p.Spec.Volumes != nil {
		out.Spec.Volumes = make([]Volume, len(p.Spec.Volumes))
		for i := range p.Spec.Volumes {
			out.Spec.Volumes[i] = volumeOf(&p.Spec.Volumes[i])
		}
	}
	return out
}

func volumeOf(v *corev1.Volume) Volume {
	if injectedVolumeName(v.Name) {
		return Volume{Name: v.Name, Whole: v}
	}
	return Volume{Name: v.Name}
}

// injectedVolumeName reports whether name is one of the volumes the webhook
// injects, which injection reads in full.
func injectedVolumeName(name string) bool {
	return name == FetchVolumeName || name == ReadinessTokenVolumeName
}

// DeepCopy returns a copy of p that shares nothing with it.
func (p *Pod) DeepCopy() *Pod {
	out := *p
	out.Labels = maps.Clone(p.Labels)
	out.Annotations = maps.Clone(p.Annotations)
	if p.Spec.InitContainers != nil {
		out.Spec.InitContainers = make([]corev1.Container, len(p.Spec.InitContainers))
		for i := range p.Spec.InitContainers {
			p.Spec.InitContainers[i].DeepCopyInto(&out.Spec.InitContainers[i])
		}
	}
	if p.Spec.Containers != nil {
		out.Spec.Containers = make([]Container, len(p.Spec.Containers))
		for i, c := range p.Spec.Containers {
			out.Spec.Containers[i] = Container{Name: c.Name, VolumeMounts: copyMounts(c.VolumeMounts)}
		}
	}
	if p.Spec.Volumes != nil {
		out.Spec.Volumes = make([]Volume, len(p.Spec.Volumes))
		for i, v := range p.Spec.Volumes {
			out.Spec.Volumes[i] = Volume{Name: v.Name, Whole: v.Whole.DeepCopy()}
		}
	}
	out.Spec.OS = p.Spec.OS.DeepCopy()
	return &out
}

func copyMounts(ms []corev1.VolumeMount) []corev1.VolumeMount {
	if ms == nil {
		return nil
	}
	out := slices.Clone(ms)
	for i := range ms {
		ms[i].DeepCopyInto(&out[i])
	}
	return out
}

// podRef names a Pod for logs; at admission it may only have a generateName.
func podRef(pod *Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName + "*"
}
