package webhook

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// Injector builds injected containers and patches from a Config.
type Injector struct {
	cfg Config
	// templates encode the injected containers, by name (see containerJSON).
	templates map[string]containerTemplate
}

// NewInjector validates cfg and returns an Injector for it.
func NewInjector(cfg Config) (*Injector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid injector config: %w", err)
	}
	cfg.ClusterDomain = strings.TrimSuffix(cfg.ClusterDomain, ".")
	in := &Injector{cfg: cfg}
	if err := in.buildTemplates(); err != nil {
		return nil, err
	}
	return in, nil
}

// Status is the value of AnnotationInjected: what a previous call injected.
type Status struct {
	Version        int      `json:"version"`
	InitContainers []string `json:"initContainers"`
	Volumes        []string `json:"volumes,omitempty"`
	// Satisfied is set when nothing was injected because the readiness
	// service saw every (object) dependency satisfied (satisfied.go).
	Satisfied *SatisfiedRecord `json:"satisfied,omitempty"`
}

// InvalidError is returned when a Pod's annotations (or its clash with what would
// be injected) make injection impossible. It lists every problem.
type InvalidError struct {
	Errs field.ErrorList
}

func (e *InvalidError) Error() string {
	// The first MaxProblems only: the message stays small whatever the Pod holds.
	shown := e.Errs[:min(len(e.Errs), MaxProblems)]
	msgs := make([]string, len(shown), len(shown)+1)
	for i, err := range shown {
		msgs[i] = err.Error()
	}
	if n := len(e.Errs) - len(shown); n > 0 {
		msgs = append(msgs, fmt.Sprintf("and %d more", n))
	}
	noun := "problem"
	if len(e.Errs) > 1 {
		noun = "problems"
	}
	return fmt.Sprintf("depends-on: %d %s: %s", len(e.Errs), noun, strings.Join(msgs, "; "))
}

// result is what injection computes for a Pod: the Pod without anything a previous
// call injected (base), and the Pod as it should be (desired).
type result struct {
	base, desired *Pod
	// prev is the record found on the Pod, nil if none.
	prev *Status
	// skipped: nothing injected, the dependencies are satisfied (satisfied.go).
	skipped bool
}

// Inject returns a mutated copy of pod, as the patch would leave it. pod is not modified.
func (in *Injector) Inject(pod *Pod, namespace string) (*Pod, error) {
	r, err := in.compute(pod, namespace)
	if err != nil {
		return nil, err
	}
	return r.desired.DeepCopy(), nil // r.desired shares what apply does not change with pod
}

func (in *Injector) compute(pod *Pod, namespace string) (*result, error) {
	return in.computeWith(pod, namespace, nil)
}

// computeWith is compute, skipping the injection when satisfied says the
// Pod's object dependencies are satisfied (applySatisfied).
func (in *Injector) computeWith(pod *Pod, namespace string, satisfied SatisfiedFunc) (*result, error) {
	if namespace == "" {
		namespace = pod.Namespace
	}
	base, prev, errs := strip(pod)
	spec, perrs := Parse(base.Annotations, ParseOptions{Namespace: namespace, ClusterDomain: in.cfg.ClusterDomain, Limits: in.cfg.Limits,
		Readiness: in.cfg.ReadinessURL != ""})
	cerrs := checkCollisions(base, spec)
	cerrs = withoutRepeats(cerrs, errs) // strip may have denied the same reserved names
	errs = append(append(errs, perrs...), cerrs...)
	if len(errs) > 0 {
		return nil, &InvalidError{Errs: errs}
	}
	desired := copyForApply(base, len(spec.Fetches) > 0)
	skipped := applySatisfied(desired, spec, prev, satisfied)
	if !skipped {
		in.apply(desired, spec)
	}
	return &result{base: base, desired: desired, prev: prev, skipped: skipped}, nil
}

// copyForApply copies of pod what apply changes, and shares the rest: the
// annotations, the lists apply appends to (clipped, so that an append
// allocates), and, when it mounts fetched files (mounts), the containers,
// whose volumeMounts it appends to.
func copyForApply(pod *Pod, mounts bool) *Pod {
	out := *pod
	out.Annotations = maps.Clone(pod.Annotations)
	out.Spec.InitContainers = slices.Clip(pod.Spec.InitContainers)
	out.Spec.Volumes = slices.Clip(pod.Spec.Volumes)
	if mounts {
		out.Spec.Containers = slices.Clone(pod.Spec.Containers)
		for i := range out.Spec.Containers {
			out.Spec.Containers[i].VolumeMounts = slices.Clip(out.Spec.Containers[i].VolumeMounts)
		}
	}
	return &out
}

// checkCollisions finds names and paths in the user's Pod that injection would clash with.
func checkCollisions(pod *Pod, spec *Spec) field.ErrorList {
	var errs field.ErrorList
	if spec == nil || spec.Empty() {
		return nil
	}
	if pod.Spec.OS != nil && pod.Spec.OS.Name != corev1.Linux {
		// The injected containers are Linux binaries with Linux-only securityContext fields.
		errs = append(errs, field.NotSupported(field.NewPath("spec", "os", "name"), pod.Spec.OS.Name,
			[]string{string(corev1.Linux)}))
		errs[len(errs)-1].Detail = "depends-on injects Linux containers; remove the depends-on.dev/ annotations from this Pod"
	}
	// Only the names this Pod's injection will use are reserved.
	reserved := map[string]string{}
	if len(spec.Waits) > 0 {
		reserved[WaitContainerName] = "the injected wait container"
	}
	if len(spec.Fetches) > 0 {
		reserved[FetchContainerName] = "the injected fetch container"
	}
	check := func(p *field.Path, i int, name string) {
		if _, ok := reserved[name]; ok {
			errs = append(errs, reservedContainer(p.Index(i), name))
		}
	}
	for i, c := range pod.Spec.InitContainers {
		check(field.NewPath("spec", "initContainers"), i, c.Name)
	}
	for i, c := range pod.Spec.Containers {
		check(field.NewPath("spec", "containers"), i, c.Name)
	}
	if spec.HasObjectWaits() {
		for i, v := range pod.Spec.Volumes {
			if v.Name == ReadinessTokenVolumeName {
				errs = append(errs, reservedVolume(field.NewPath("spec", "volumes").Index(i), v.Name))
			}
		}
	}
	if len(spec.Fetches) == 0 {
		return errs
	}
	for i, v := range pod.Spec.Volumes {
		if v.Name == FetchVolumeName {
			errs = append(errs, reservedVolume(field.NewPath("spec", "volumes").Index(i), v.Name))
		}
	}
	return append(errs, mountCollisions(pod, spec)...)
}

// apply adds the injected containers, volume and mounts to pod (a base Pod), and
// the record of what it added.
func (in *Injector) apply(pod *Pod, spec *Spec) {
	if spec.Empty() {
		return
	}
	st := &Status{Version: 1}
	timeout := in.cfg.DefaultTimeout
	if spec.HasTimeout {
		timeout = spec.Timeout
	}
	var injected []corev1.Container
	if len(spec.Waits) > 0 {
		args := timeoutArgs(timeout)
		wait := in.container
		if spec.HasObjectWaits() {
			args = append(args, in.readinessArgs()...)
			wait = in.readinessContainer
			st.Volumes = append(st.Volumes, ReadinessTokenVolumeName)
			pod.Spec.Volumes = append(pod.Spec.Volumes, Volume{Name: ReadinessTokenVolumeName, Whole: readinessTokenVolume()})
		}
		for _, t := range spec.Waits {
			args = append(args, t.Arg)
		}
		injected = append(injected, wait(WaitContainerName, args))
		st.InitContainers = append(st.InitContainers, WaitContainerName)
	}
	if len(spec.Fetches) > 0 {
		args := append(timeoutArgs(timeout), "--max-bytes="+strconv.FormatInt(in.cfg.FetchSizeLimit.Value(), 10))
		for _, f := range spec.Fetches {
			args = append(args, f.Arg)
		}
		injected = append(injected, in.fetchContainer(args))
		st.InitContainers = append(st.InitContainers, FetchContainerName)
		st.Volumes = append(st.Volumes, FetchVolumeName)

		limit := in.cfg.FetchSizeLimit.DeepCopy()
		pod.Spec.Volumes = append(pod.Spec.Volumes, Volume{Name: FetchVolumeName, Whole: &corev1.Volume{
			Name:         FetchVolumeName,
			VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &limit}},
		}})
		for ci := range pod.Spec.Containers {
			for i, f := range spec.Fetches {
				pod.Spec.Containers[ci].VolumeMounts = append(pod.Spec.Containers[ci].VolumeMounts, corev1.VolumeMount{
					Name:      FetchVolumeName,
					MountPath: f.Path,
					SubPath:   fetchFileName(i, f.Path),
					ReadOnly:  true,
				})
			}
		}
	}
	pod.Spec.InitContainers = append(injected, pod.Spec.InitContainers...)
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationInjected] = st.encode()
}

func (st *Status) encode() string {
	b, err := json.Marshal(st)
	if err != nil {
		// A struct of strings and ints always marshals.
		panic(fmt.Sprintf("marshal status: %v", err))
	}
	return string(b)
}

// timeoutArgs is the --timeout flag for d; 0 (wait forever) is the binary's default.
func timeoutArgs(d time.Duration) []string {
	if d == 0 {
		return nil
	}
	return []string{"--timeout=" + d.String()}
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// fetchFileName is the file's name inside the shared volume: unique by index,
// readable by the base name of its path.
func fetchFileName(i int, p string) string {
	base := p[strings.LastIndex(p, "/")+1:]
	base = unsafeFileChars.ReplaceAllString(base, "_")
	if base == "" || base == "." || base == ".." {
		base = "file"
	}
	return strconv.Itoa(i) + "-" + base
}

// fetchContainer is the injected fetch container: it writes into the shared volume.
func (in *Injector) fetchContainer(args []string) corev1.Container {
	c := in.container(FetchContainerName, args)
	c.VolumeMounts = []corev1.VolumeMount{{Name: FetchVolumeName, MountPath: FetchDir}}
	return c
}

// readinessArgs are the wait container's flags for object targets.
func (in *Injector) readinessArgs() []string {
	return []string{"--readiness-url=" + in.cfg.ReadinessURL, "--readiness-token-file=" + ReadinessTokenDir + "/token"}
}

// readinessContainer is the wait container when it waits for objects: with
// the readiness service's CA and the projected token (mounted here only: the
// app containers get nothing new).
func (in *Injector) readinessContainer(name string, args []string) corev1.Container {
	c := in.container(name, args)
	if in.cfg.ReadinessCA != "" {
		c.Env = []corev1.EnvVar{{Name: EnvReadinessCA, Value: in.cfg.ReadinessCA}}
	}
	c.VolumeMounts = []corev1.VolumeMount{{Name: ReadinessTokenVolumeName, MountPath: ReadinessTokenDir, ReadOnly: true}}
	return c
}

// readinessTokenVolume is the projected ServiceAccount token for the readiness
// service: its own audience, so it is good for nothing else, and short-lived.
// It works with automountServiceAccountToken: false.
func readinessTokenVolume() *corev1.Volume {
	return &corev1.Volume{
		Name: ReadinessTokenVolumeName,
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: ReadinessAudience, ExpirationSeconds: ptr.To(ReadinessTokenSeconds), Path: "token",
			}}},
			// The API server's default, set here so that a reinvocation sees no difference.
			DefaultMode: ptr.To[int32](0o644),
		}},
	}
}

func (in *Injector) container(name string, args []string) corev1.Container {
	return corev1.Container{
		Name:                     name,
		Image:                    in.cfg.WaitImage,
		Command:                  []string{WaitCommand},
		Args:                     args,
		Resources:                *in.cfg.Resources.DeepCopy(),
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		ImagePullPolicy:          corev1.PullIfNotPresent,
		SecurityContext:          restrictedSecurityContext(),
	}
}

// restrictedSecurityContext passes the Pod Security "restricted" profile on its own,
// whatever the Pod-level securityContext says.
func restrictedSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To(RunAsUser),
		RunAsGroup:               ptr.To(RunAsUser),
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}
