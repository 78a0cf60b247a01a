package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// Injector builds injected containers and patches from a Config.
type Injector struct {
	cfg Config
	// templates encode the injected containers, by name (see containerJSON).
	templates map[string]containerTemplate
	// configHash goes into the record (Status.Config).
	configHash string
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
	in.configHash = in.configHashOf()
	return in, nil
}

// Status is the value of AnnotationInjected: what a previous call injected.
type Status struct {
	Version        int      `json:"version"`
	InitContainers []string `json:"initContainers"`
	Volumes        []string `json:"volumes,omitempty"`
	// Hash (of the depends-on.dev/ annotations and the namespace) and Config
	// (of the injector settings that shape the containers) are from version
	// 2: a call that finds both unchanged leaves depends-on's containers as
	// they are, whatever other webhooks did to them (image, env, position).
	Hash   string `json:"hash,omitempty"`
	Config string `json:"config,omitempty"`
	// Pending is a depends-on.dev/after name the Pod did not have yet.
	Pending string `json:"pending,omitempty"`
}

// statusVersion is the record version this webhook writes. Version 1
// records (no hashes) are read, and their Pods injected again in full.
const statusVersion = 2

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

// result is what injection computes for a Pod: the Pod as it should be
// (desired), and how to get there from pod (plan).
type result struct {
	pod, desired *Pod
	// found is what the Pod's record names that is depends-on's (empty
	// without a record).
	found *injected
	plan  plan
	// at is where depends-on's containers start, as an index among the
	// Pod's other init containers (base's).
	at       int
	warnings []string
}

// Inject returns a mutated copy of pod, as the patch would leave it. pod is not modified.
func (in *Injector) Inject(pod *Pod, namespace string) (*Pod, error) {
	r, err := in.compute(pod, namespace)
	if err != nil {
		return nil, err
	}
	return r.desired.DeepCopy(), nil // r.desired shares what reconcile does not change with pod
}

func (in *Injector) compute(pod *Pod, namespace string) (*result, error) {
	if namespace == "" {
		namespace = pod.Namespace
	}
	base, prev, found, errs := strip(pod)
	spec, perrs := Parse(base.Annotations, ParseOptions{Namespace: namespace, ClusterDomain: in.cfg.ClusterDomain, Limits: in.cfg.Limits,
		Readiness: in.cfg.ReadinessURL != ""})
	cerrs := checkCollisions(base, spec)
	cerrs = withoutRepeats(cerrs, errs) // strip may have denied the same reserved names
	errs = append(append(errs, perrs...), cerrs...)
	shape := ShapeOf(base, namespace)
	var pl Placement
	if _, has := base.Annotations[AnnotationAfter]; has || !spec.Empty() {
		var perr *field.Error
		if pl, perr = Place(shape); perr != nil {
			errs = append(errs, perr)
		}
	}
	if len(errs) > 0 {
		return nil, &InvalidError{Errs: errs}
	}
	inj := in.build(spec, specHash(base.Annotations, namespace), pl.Pending)
	r := in.reconcile(pod, base, prev, found, inj, pl)
	if !spec.Empty() {
		r.warnings = Warnings(shape, r.at, spec, pl.Warnings...)
	}
	return r, nil
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

// injection is what a Pod's annotations ask depends-on to inject, built
// afresh from the config.
type injection struct {
	containers []corev1.Container // the wait container, then the fetch container
	volumes    []Volume
	mounts     []corev1.VolumeMount // in every app container
	status     *Status              // nil when nothing is injected
}

// build returns what spec asks to inject.
func (in *Injector) build(spec *Spec, hash, pending string) injection {
	var inj injection
	if spec.Empty() {
		return inj
	}
	st := &Status{Version: statusVersion, Hash: hash, Config: in.configHash, Pending: pending}
	timeout := in.cfg.DefaultTimeout
	if spec.HasTimeout {
		timeout = spec.Timeout
	}
	if len(spec.Waits) > 0 {
		args := timeoutArgs(timeout)
		wait := in.container
		if spec.HasObjectWaits() {
			args = append(args, in.readinessArgs()...)
			wait = in.readinessContainer
			st.Volumes = append(st.Volumes, ReadinessTokenVolumeName)
			inj.volumes = append(inj.volumes, Volume{Name: ReadinessTokenVolumeName, Whole: readinessTokenVolume()})
		}
		for _, t := range spec.Waits {
			args = append(args, t.Arg)
		}
		inj.containers = append(inj.containers, wait(WaitContainerName, args))
		st.InitContainers = append(st.InitContainers, WaitContainerName)
	}
	if len(spec.Fetches) > 0 {
		args := append(timeoutArgs(timeout), "--max-bytes="+strconv.FormatInt(in.cfg.FetchSizeLimit.Value(), 10))
		for _, f := range spec.Fetches {
			args = append(args, f.Arg)
		}
		inj.containers = append(inj.containers, in.fetchContainer(args))
		st.InitContainers = append(st.InitContainers, FetchContainerName)
		st.Volumes = append(st.Volumes, FetchVolumeName)

		limit := in.cfg.FetchSizeLimit.DeepCopy()
		inj.volumes = append(inj.volumes, Volume{Name: FetchVolumeName, Whole: &corev1.Volume{
			Name:         FetchVolumeName,
			VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &limit}},
		}})
		for i, f := range spec.Fetches {
			inj.mounts = append(inj.mounts, corev1.VolumeMount{
				Name:      FetchVolumeName,
				MountPath: f.Path,
				SubPath:   fetchFileName(i, f.Path),
				ReadOnly:  true,
			})
		}
	}
	inj.status = st
	return inj
}

// plan says how the desired Pod differs from the Pod, for the patch.
type plan struct {
	// inPlace: depends-on's init containers keep their indexes (ours, the
	// record's found.initContainers), only their fields may change. Else the
	// ones found are removed and ours (indexes in desired) added.
	inPlace bool
	ours    []int
	// fresh[k]: ours[k] is built now (its JSON comes from the template),
	// not the Pod's container with others' edits.
	fresh []bool
	// volumes: depends-on's volumes are removed and desired's appended;
	// mounts[i] the same for app container i's mounts of them.
	volumes bool
	mounts  []bool
}

// reconcile returns what pod should become. Everything depends-on did not
// inject is kept. Of what it injected, only what changed is rewritten: with
// the record's hashes unchanged, nothing of its containers (another webhook
// may have rewritten their image or added env); with the annotations
// changed, their args and depends-on's own env and mounts; with the config
// changed, also the image, command, resources and securityContext.
// Containers stay where they are (a mesh may have reordered them) unless
// depends-on.dev/after names a container they start before.
func (in *Injector) reconcile(pod, base *Pod, prev *Status, found *injected, inj injection, pl Placement) *result {
	if found == nil {
		found = &injected{}
	}
	r := &result{pod: pod, found: found}
	legacy := prev == nil || prev.Version < statusVersion
	specChanged, cfgChanged := true, true
	if !legacy && inj.status != nil {
		specChanged = prev.Hash == "" || prev.Hash != inj.status.Hash
		cfgChanged = prev.Config == "" || prev.Config != inj.status.Config
	}
	out := *pod
	out.Annotations = maps.Clone(pod.Annotations)

	// Init containers.
	cur := make(map[string]int, len(found.initContainers))
	for _, i := range found.initContainers {
		cur[pod.Spec.InitContainers[i].Name] = i
	}
	ours := make([]corev1.Container, len(inj.containers))
	r.plan.fresh = make([]bool, len(inj.containers))
	inPlace := len(found.initContainers) == len(inj.containers)
	for k := range inj.containers {
		f := &inj.containers[k]
		i, ok := cur[f.Name]
		if !ok {
			ours[k], r.plan.fresh[k], inPlace = *f, true, false
			continue
		}
		if k >= len(found.initContainers) || found.initContainers[k] != i {
			inPlace = false
		}
		c := pod.Spec.InitContainers[i].DeepCopy()
		if specChanged || cfgChanged {
			mergeOwned(c, f, cfgChanged)
		}
		ours[k] = *c
	}
	at := pl.Index
	if !legacy && len(found.initContainers) > 0 {
		at = found.initContainers[0] // where they are: every container before the first is base's
	}
	if k := afterIndex(base, pl); k >= 0 && at <= k {
		at = k + 1
	}
	if inPlace && len(found.initContainers) > 0 && at != found.initContainers[0] {
		inPlace = false
	}
	r.plan.inPlace = inPlace
	if inPlace {
		r.plan.ours = found.initContainers
		if len(ours) > 0 {
			out.Spec.InitContainers = slices.Clone(pod.Spec.InitContainers)
			for k, i := range found.initContainers {
				out.Spec.InitContainers[i] = ours[k]
			}
		}
	} else {
		list := make([]corev1.Container, 0, len(base.Spec.InitContainers)+len(ours))
		list = append(append(append(list, base.Spec.InitContainers[:at]...), ours...), base.Spec.InitContainers[at:]...)
		out.Spec.InitContainers = emptyToNil(list)
		for k := range ours {
			r.plan.ours = append(r.plan.ours, at+k)
		}
	}
	r.at = at

	// Volumes and mounts: depends-on's own, replaced as a whole when they differ.
	if !apiequality.Semantic.DeepEqual(pick(pod.Spec.Volumes, found.volumes), inj.volumes) {
		out.Spec.Volumes = append(slices.Clip(base.Spec.Volumes), inj.volumes...)
		r.plan.volumes = true
	}
	r.plan.mounts = make([]bool, len(pod.Spec.Containers))
	cloned := false
	for i := range pod.Spec.Containers {
		var mine []int
		if i < len(found.mounts) {
			mine = found.mounts[i]
		}
		if apiequality.Semantic.DeepEqual(pick(pod.Spec.Containers[i].VolumeMounts, mine), inj.mounts) {
			continue
		}
		if !cloned {
			out.Spec.Containers, cloned = slices.Clone(pod.Spec.Containers), true
		}
		out.Spec.Containers[i].VolumeMounts = append(slices.Clip(base.Spec.Containers[i].VolumeMounts), inj.mounts...)
		r.plan.mounts[i] = true
	}

	if inj.status != nil {
		out.Annotations[AnnotationInjected] = inj.status.encode()
	} else {
		delete(out.Annotations, AnnotationInjected)
	}
	r.desired = &out
	return r
}

// mergeOwned sets in c, depends-on's container as the Pod has it, what f
// (the same container built now) owns: its args, and depends-on's env and
// mounts (others' are kept, after them); with all, also what the config
// sets, which a registry mirror or a policy webhook may have rewritten.
func mergeOwned(c, f *corev1.Container, all bool) {
	c.Args = f.Args
	c.Env = emptyToNil(append(slices.Clone(f.Env), slices.DeleteFunc(slices.Clone(c.Env), func(e corev1.EnvVar) bool {
		return e.Name == EnvReadinessCA
	})...))
	c.VolumeMounts = emptyToNil(append(slices.Clone(f.VolumeMounts), slices.DeleteFunc(slices.Clone(c.VolumeMounts), func(m corev1.VolumeMount) bool {
		return injectedVolumeName(m.Name)
	})...))
	if all {
		c.Image, c.Command, c.ImagePullPolicy = f.Image, f.Command, f.ImagePullPolicy
		c.Resources = *f.Resources.DeepCopy()
		c.SecurityContext = f.SecurityContext.DeepCopy()
		c.TerminationMessagePath, c.TerminationMessagePolicy = f.TerminationMessagePath, f.TerminationMessagePolicy
	}
}

// afterIndex is the index in base of the init container depends-on.dev/after
// names, -1 without one (or while it is pending).
func afterIndex(base *Pod, pl Placement) int {
	name, ok := base.Annotations[AnnotationAfter]
	if !ok || pl.Pending != "" {
		return -1
	}
	name = strings.TrimSpace(name)
	for i, c := range base.Spec.InitContainers {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// pick returns the elements of s at the indexes idx, nil if none.
func pick[T any](s []T, idx []int) []T {
	if len(idx) == 0 {
		return nil
	}
	out := make([]T, len(idx))
	for k, i := range idx {
		out[k] = s[i]
	}
	return out
}

// specHash identifies what the depends-on.dev/ annotations ask in namespace.
func specHash(annotations map[string]string, namespace string) string {
	keys := make([]string, 0, 4)
	for k := range annotations {
		if strings.HasPrefix(k, Prefix) && k != AnnotationInjected {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%q=%q\n", k, annotations[k])
	}
	fmt.Fprintf(h, "namespace=%q", namespace)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// configHashOf identifies the settings that shape the injected containers:
// their encodings (image, resources, securityContext, the readiness CA) and
// what goes into their args and volumes.
func (in *Injector) configHashOf() string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(in.templates)) {
		t := in.templates[k]
		fmt.Fprintf(h, "%s:%s%s\n", k, t.prefix, t.suffix)
	}
	fmt.Fprintf(h, "%s %s %s %s", in.cfg.DefaultTimeout, in.cfg.FetchSizeLimit.String(), in.cfg.ReadinessURL, in.cfg.ClusterDomain)
	return hex.EncodeToString(h.Sum(nil)[:8])
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
