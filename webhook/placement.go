package webhook

// Placement of the injected containers among the Pod's init containers, service
// mesh detection, and the admission warnings for likely mistakes (issue 11). All
// pure: they read a PodShape, never the API. The rule, the table of meshes and the
// evidence are in the README section "Service meshes and sidecars".

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ShapeContainer is what placement, mesh detection and warnings read of a container.
type ShapeContainer struct {
	Name string
	// Sidecar is an init container with restartPolicy: Always (a native sidecar):
	// the kubelet starts it, waits for its startup probe, and moves on.
	Sidecar bool
	// Args and RunAsUser tell a mesh's proxy UID and redirect exclusions.
	Args      []string
	RunAsUser *int64
}

// PodShape is the part of a Pod this file reads. InitContainers must not hold
// depends-on's own containers: strip them (by the record) first.
type PodShape struct {
	Name, GenerateName string
	// Namespace is the request's namespace (a Pod's metadata may not carry it yet).
	Namespace   string
	Subdomain   string
	HostNetwork bool
	Labels      map[string]string
	Annotations map[string]string

	InitContainers []ShapeContainer
	Containers     []ShapeContainer
}

// ShapeOf reads a PodShape from a Pod (without depends-on's containers: a
// base Pod). Of app containers only the names are read: a classic proxy is
// found by its name.
func ShapeOf(pod *Pod, namespace string) PodShape {
	inits := make([]ShapeContainer, 0, len(pod.Spec.InitContainers))
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		sc := ShapeContainer{Name: c.Name, Args: c.Args,
			Sidecar: c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways}
		if c.SecurityContext != nil {
			sc.RunAsUser = c.SecurityContext.RunAsUser
		}
		inits = append(inits, sc)
	}
	apps := make([]ShapeContainer, len(pod.Spec.Containers))
	for i, c := range pod.Spec.Containers {
		apps[i] = ShapeContainer{Name: c.Name}
	}
	return PodShape{
		Name: pod.Name, GenerateName: pod.GenerateName, Namespace: namespace,
		Subdomain: pod.Spec.Subdomain, HostNetwork: pod.Spec.HostNetwork,
		Labels: pod.Labels, Annotations: pod.Annotations,
		InitContainers: inits, Containers: apps,
	}
}

// Mesh setup containers are ordinary init containers that a mesh injector adds.
// They are never the Pod's own: the default rule passes over them.
const (
	istioInit        = "istio-init"       // iptables redirect (no CNI)
	istioValidation  = "istio-validation" // checks the CNI plugin's redirect
	istioProxy       = "istio-proxy"
	linkerdInit      = "linkerd-init"              // iptables redirect (no CNI)
	linkerdValidator = "linkerd-network-validator" // checks the CNI plugin's redirect
	linkerdProxy     = "linkerd-proxy"
)

func isMeshSetup(name string) bool {
	switch name {
	case istioInit, istioValidation, linkerdInit, linkerdValidator:
		return true
	}
	return false
}

// Placement says where depends-on's containers go.
type Placement struct {
	// Index is the position in PodShape.InitContainers they are inserted at.
	Index int
	// Pending is a depends-on.dev/after name the Pod does not have (yet: a later
	// webhook may add it); the default rule was applied and a reinvocation should
	// place again.
	Pending  string
	Warnings []string
}

// Place applies depends-on.dev/after, or the default rule: right after the last
// native sidecar that starts before the Pod's first own ordinary init container,
// or first when there is none. Mesh setup containers are passed over, so a classic
// mesh's redirect container that its injector put last (istio-init, linkerd-init)
// stays after depends-on's containers, and a native proxy that follows it stays
// before them.
func Place(p PodShape) (Placement, *field.Error) {
	after, has := p.Annotations[AnnotationAfter]
	if !has {
		return Placement{Index: defaultIndex(p.InitContainers)}, nil
	}
	fp := annotationsPath.Key(AnnotationAfter)
	name := strings.TrimSpace(after)
	switch {
	case name == "":
		return Placement{}, field.Invalid(fp, shorten(after), "name the init container that depends-on's containers start after, or remove the annotation")
	case name == WaitContainerName || name == FetchContainerName:
		return Placement{}, field.Invalid(fp, shorten(after), fmt.Sprintf("%s is depends-on's own container", name))
	}
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return Placement{}, field.Invalid(fp, shorten(after), "one init container name: "+strings.Join(msgs, "; "))
	}
	for i, c := range p.InitContainers {
		if c.Name == name {
			return Placement{Index: i + 1}, nil
		}
	}
	for _, c := range p.Containers {
		if c.Name == name {
			return Placement{}, field.Invalid(fp, shorten(after), fmt.Sprintf(
				"%s is an app container, which starts only after every init container; name an init container (%s)",
				name, listNames(p.InitContainers)))
		}
	}
	// Not an error: the mesh or another webhook that adds it may run after us.
	pl := Placement{Index: defaultIndex(p.InitContainers), Pending: name}
	there := "there are none"
	if len(p.InitContainers) > 0 {
		there = "there are: " + short(listNames(p.InitContainers))
	}
	pl.Warnings = append(pl.Warnings, fmt.Sprintf(
		"depends-on: %s: no init container %s yet (%s); using the default place until one appears",
		AnnotationAfter, short(name), there))
	return pl, nil
}

func defaultIndex(inits []ShapeContainer) int {
	at := 0
	for i, c := range inits {
		switch {
		case c.Sidecar:
			at = i + 1
		case isMeshSetup(c.Name):
		default:
			return at
		}
	}
	return at
}

func listNames(cs []ShapeContainer) string {
	if len(cs) == 0 {
		return "none"
	}
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}

// MeshKind names a service mesh.
type MeshKind string

// The meshes depends-on recognises.
const (
	NoMesh  MeshKind = ""
	Istio   MeshKind = "istio"
	Linkerd MeshKind = "linkerd"
)

// Mesh is what a Pod's containers say about its mesh, once the mesh injected it.
type Mesh struct {
	Kind MeshKind
	// Proxy is the proxy container's name; Native tells it is a native sidecar,
	// at ProxyIndex in InitContainers (-1 otherwise).
	Proxy      string
	Native     bool
	ProxyIndex int
	// CNI: a CNI plugin installed the redirect before any container ran (a
	// validation container, no redirect container).
	CNI bool
	// RedirectIndex is the redirect init container's index (istio-init,
	// linkerd-init), -1 if none.
	RedirectIndex int
	// ProxyUID is the UID the redirect rules let through (-u / --proxy-uid of
	// the mesh's init containers, or a native proxy's runAsUser); 0 if not seen.
	ProxyUID int64
}

// DetectMesh tells which mesh injected the Pod and how. A Pod the mesh has not
// injected yet (its webhook runs after depends-on's) gives NoMesh; the
// reinvocation that follows the mesh's injection sees it.
func DetectMesh(p PodShape) Mesh {
	m := Mesh{ProxyIndex: -1, RedirectIndex: -1}
	hasValidation := false
	for i, c := range p.InitContainers {
		switch c.Name {
		case istioInit, linkerdInit:
			m.RedirectIndex = i
			m.ProxyUID = uidArg(c.Args, m.ProxyUID)
		case istioValidation, linkerdValidator:
			hasValidation = true
			m.ProxyUID = uidArg(c.Args, m.ProxyUID)
		case istioProxy, linkerdProxy:
			if c.Sidecar {
				m.Proxy, m.Native, m.ProxyIndex = c.Name, true, i
				if m.ProxyUID == 0 && c.RunAsUser != nil {
					m.ProxyUID = *c.RunAsUser
				}
			}
		}
	}
	if !m.Native {
		for _, c := range p.Containers {
			if c.Name == istioProxy || c.Name == linkerdProxy {
				m.Proxy = c.Name
			}
		}
	}
	switch m.Proxy {
	case istioProxy:
		m.Kind = Istio
	case linkerdProxy:
		m.Kind = Linkerd
	default:
		return Mesh{ProxyIndex: -1, RedirectIndex: -1}
	}
	m.CNI = hasValidation && m.RedirectIndex < 0
	return m
}

// uidArg reads the proxy UID from istio-iptables (-u) or linkerd2-proxy-init
// (--proxy-uid) arguments.
func uidArg(args []string, def int64) int64 {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-u" || args[i] == "--proxy-uid" {
			if uid, err := strconv.ParseInt(args[i+1], 10, 64); err == nil {
				return uid
			}
		}
	}
	return def
}

// Redirected reports whether connections from containers inserted at index at go
// to a proxy that is not running yet: the redirect is in place (CNI, or a
// redirect container before at) and no native proxy starts before at.
func (m Mesh) Redirected(at int) bool {
	switch {
	case m.Kind == NoMesh:
		return false
	case m.Native && m.ProxyIndex < at:
		return false
	case m.CNI:
		return true
	default:
		return m.RedirectIndex >= 0 && m.RedirectIndex < at
	}
}

// Annotations the meshes read to leave outbound traffic alone.
const (
	istioExcludePorts  = "traffic.sidecar.istio.io/excludeOutboundPorts"
	istioIncludePorts  = "traffic.sidecar.istio.io/includeOutboundPorts"
	istioExcludeRanges = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
	istioIncludeRanges = "traffic.sidecar.istio.io/includeOutboundIPRanges"
	istioProxyConfig   = "proxy.istio.io/config"
	linkerdSkipPorts   = "config.linkerd.io/skip-outbound-ports"
	linkerdSkipSubnets = "config.linkerd.io/skip-subnets"
)

// endpoint is where one network check of the injected containers connects.
type endpoint struct {
	what string // as the user wrote it, for messages
	host string
	port int // 0: DNS only (UDP)
}

func endpoints(spec *Spec) []endpoint {
	var out []endpoint
	for _, t := range spec.Waits {
		if e, ok := endpointOf(t.Arg); ok {
			e.what = t.Entry
			out = append(out, e)
		}
	}
	for _, f := range spec.Fetches {
		if e, ok := endpointOf(f.URL); ok {
			e.what = f.URL
			out = append(out, e)
		}
	}
	return out
}

// endpointOf reads a wait-for-service target (dns:, tcp:, http(s) URL).
func endpointOf(arg string) (endpoint, bool) {
	if name, ok := strings.CutPrefix(arg, "dns:"); ok {
		return endpoint{host: name}, true
	}
	if hp, ok := strings.CutPrefix(arg, "tcp:"); ok {
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			return endpoint{}, false
		}
		n, err := strconv.Atoi(port)
		return endpoint{host: host, port: n}, err == nil
	}
	u, err := url.Parse(arg)
	if err != nil || u.Host == "" {
		return endpoint{}, false
	}
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return endpoint{}, false
		}
	}
	return endpoint{host: u.Hostname(), port: port}, true
}

func isLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// MeshWarnings warns when the mesh redirects the injected containers' connections
// to a proxy that is not running yet, so they would wait until their timeout.
// Loopback targets are never redirected (both meshes' rules return for lo), DNS is
// UDP (redirected only by Istio's DNS capture), and targets the Pod's exclusion
// annotations cover pass. Exclusions set on the namespace or mesh-wide are not
// visible here: the warning says what it checked.
func MeshWarnings(p PodShape, m Mesh, at int, spec *Spec) []string {
	if !m.Redirected(at) {
		return nil
	}
	dnsCaptured := m.Kind == Istio && strings.Contains(p.Annotations[istioProxyConfig], "ISTIO_META_DNS_CAPTURE")
	var blocked []string
	ports := map[int]bool{}
	for _, e := range endpoints(spec) {
		if isLoopback(e.host) || (e.port == 0 && !dnsCaptured) || m.passes(p.Annotations, e) {
			continue
		}
		blocked = append(blocked, e.what)
		if e.port != 0 {
			ports[e.port] = true
		}
	}
	if len(blocked) == 0 {
		return nil
	}
	portList := make([]int, 0, len(ports))
	for port := range ports {
		portList = append(portList, port)
	}
	sort.Ints(portList)
	ps := make([]string, len(portList))
	for i, port := range portList {
		ps[i] = strconv.Itoa(port)
	}
	var why, fix string
	switch {
	case m.Native: // only depends-on.dev/after can put it ahead of the native proxy
		why = "it starts before " + m.Proxy + " and the redirect is already in place"
		fix = fmt.Sprintf("remove %s, or name %s or a later init container", AnnotationAfter, m.Proxy)
	case m.CNI:
		why = "the CNI plugin redirects its connections to " + m.Proxy + ", which starts after the init containers"
	default: // a classic mesh puts its redirect container last; only after: moves us past it
		why = "it starts after " + p.InitContainers[m.RedirectIndex].Name + ", whose rules redirect its connections to " + m.Proxy
		fix = "remove " + AnnotationAfter + " (classic meshes put " + p.InitContainers[m.RedirectIndex].Name + " last so init containers before it reach the network)"
	}
	if fix == "" {
		ports := strings.Join(ps, ",")
		switch m.Kind {
		case Istio:
			fix = `set sidecar.istio.io/nativeSidecar: "true" (native sidecars), or ` + istioExcludePorts + `: "` + ports + `"`
		case Linkerd:
			fix = `set config.linkerd.io/proxy-enable-native-sidecar: "true", or ` + linkerdSkipPorts + `: "` + ports + `"`
		}
	}
	out := []string{
		fmt.Sprintf("depends-on: %s cannot reach %s: %s", WaitContainerName, shortList(blocked), why),
		"depends-on: to let it through, " + fix,
	}
	switch m.Kind {
	case Istio:
		out = append(out, "depends-on: see https://istio.io/latest/docs/setup/additional-setup/cni/#compatibility-with-application-init-containers")
	case Linkerd:
		out = append(out, "depends-on: see https://linkerd.io/2-edge/features/cni/#allowing-initcontainer-networking")
	}
	return out
}

// Warnings longer than 256 characters, and many warnings, may be truncated by the
// API server (AdmissionResponse.warnings): keep each short and their number bounded.
const (
	maxWarningEntry = 64
	maxWarnings     = 8
	maxWarningBytes = 256
)

// short quotes a user's entry, cut to maxWarningEntry characters.
func short(s string) string {
	if len(s) > maxWarningEntry {
		s = s[:maxWarningEntry] + "..."
	}
	return strconv.Quote(s)
}

func shortList(items []string) string {
	const show = 2
	var b strings.Builder
	for i, it := range items {
		if i == show {
			fmt.Fprintf(&b, " and %d more", len(items)-show)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(short(it))
	}
	return b.String()
}

// passes reports whether the Pod's own annotations leave e out of the redirect.
// A name target with an IP-range setting cannot be checked (its ClusterIP is not
// known here) and is assumed covered: such settings usually name the Service CIDR.
func (m Mesh) passes(ann map[string]string, e endpoint) bool {
	addr, err := netip.ParseAddr(e.host)
	isIP := err == nil
	inRanges := func(key string) (set, in bool) {
		v := strings.TrimSpace(ann[key])
		if v == "" {
			return false, false
		}
		for _, r := range SplitList(v) {
			if r == "*" {
				return true, true
			}
			if pfx, err := netip.ParsePrefix(r); err == nil && isIP && pfx.Contains(addr) {
				return true, true
			}
		}
		return true, !isIP
	}
	switch m.Kind {
	case Istio:
		if portIn(ann[istioExcludePorts], e.port) {
			return true
		}
		if inc := strings.TrimSpace(ann[istioIncludePorts]); inc != "" && inc != "*" && !portIn(inc, e.port) {
			return true
		}
		if set, in := inRanges(istioExcludeRanges); set && in {
			return true
		}
		if set, in := inRanges(istioIncludeRanges); set && !in {
			return true
		}
	case Linkerd:
		if portIn(ann[linkerdSkipPorts], e.port) {
			return true
		}
		if set, in := inRanges(linkerdSkipSubnets); set && in {
			return true
		}
	}
	return false
}

// portIn reads a list of ports and lo-hi ranges.
func portIn(list string, port int) bool {
	if port == 0 {
		return false
	}
	for _, item := range SplitList(list) {
		lo, hi, isRange := strings.Cut(item, "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err1 == nil && err2 == nil && a <= port && port <= b {
			return true
		}
	}
	return false
}

// LoopbackWarnings warns about targets on the Pod's loopback that nothing can
// serve when the injected containers run: only a native sidecar started before
// them can listen there (app containers start after every init container).
func LoopbackWarnings(p PodShape, at int, spec *Spec) []string {
	if p.HostNetwork {
		return nil // loopback is the node's
	}
	for _, c := range p.InitContainers[:at] {
		if c.Sidecar {
			return nil
		}
	}
	var later []string
	for _, c := range p.InitContainers[at:] {
		if c.Sidecar {
			later = append(later, c.Name)
		}
	}
	var out []string
	for _, e := range endpoints(spec) {
		if !isLoopback(e.host) || e.port == 0 {
			continue
		}
		hint := "app containers start after init containers: make its server a native sidecar (restartPolicy: Always) before them"
		if len(later) > 0 {
			hint = fmt.Sprintf("native sidecar %s starts after it: declare it earlier or set %s: %s", later[0], AnnotationAfter, later[0])
		}
		out = append(out, fmt.Sprintf("depends-on: %s is on loopback but no native sidecar starts before %s; %s", short(e.what), WaitContainerName, hint))
	}
	return out
}

// ServiceWarnings warns about services entries without a port, and about entries
// that look like the Pod's own Service: a Pod that waits for a connection to itself
// (or for its headless subdomain Service's name, which needs a ready replica)
// starts only once another replica serves it. The Service's selector is not
// visible at admission: "own" means the entry's name, in the Pod's namespace,
// equals the Pod's subdomain (a StatefulSet's governing Service), its app,
// app.kubernetes.io/name or k8s-app label, or the workload name in generateName.
func ServiceWarnings(p PodShape, spec *Spec) []string {
	own := ownNames(p)
	var out []string
	for _, t := range spec.Waits {
		if t.Annotation != AnnotationServices {
			continue
		}
		hostPart, _, hasPort := strings.Cut(t.Entry, ":")
		name, ns, _ := strings.Cut(hostPart, ".")
		if !hasPort {
			out = append(out, fmt.Sprintf("depends-on: %s: %s has no port: its name resolves once the Service exists, ready or not; add :PORT to wait for a backend",
				AnnotationServices, short(t.Entry)))
		}
		if ns != "" && ns != p.Namespace {
			continue
		}
		// A ClusterIP name resolves without backends: only a connection (or a
		// headless Service's name) waits for a replica.
		if why, ok := own[strings.ToLower(name)]; ok && (hasPort || why == "spec.subdomain") {
			out = append(out, fmt.Sprintf("depends-on: %s: %s looks like this Pod's own Service (%s): waiting for it, the Pod starts only once another replica serves it",
				AnnotationServices, short(t.Entry), short(why)))
		}
	}
	return out
}

func ownNames(p PodShape) map[string]string {
	own := map[string]string{}
	add := func(name, why string) {
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "" {
			if _, ok := own[name]; !ok {
				own[name] = why
			}
		}
	}
	add(p.Subdomain, "spec.subdomain")
	for _, k := range []string{"app.kubernetes.io/name", "app", "k8s-app"} {
		if v, ok := p.Labels[k]; ok {
			add(v, "label "+k+"="+v)
		}
	}
	// generateName is "<workload>-" for Jobs and DaemonSets and
	// "<deployment>-<pod-template-hash>-" for a Deployment's Pods.
	if w := strings.TrimSuffix(p.GenerateName, "-"); w != "" {
		if h := p.Labels["pod-template-hash"]; h != "" {
			w = strings.TrimSuffix(w, "-"+h)
		}
		add(w, "generateName "+p.GenerateName)
	}
	return own
}

// Warnings lists every admission warning for a Pod whose depends-on containers go
// at index at, in a fixed order, then extra (Placement.Warnings). At most
// maxWarnings, each at most maxWarningBytes.
func Warnings(p PodShape, at int, spec *Spec, extra ...string) []string {
	var out []string
	out = append(out, ServiceWarnings(p, spec)...)
	out = append(out, LoopbackWarnings(p, at, spec)...)
	out = append(out, MeshWarnings(p, DetectMesh(p), at, spec)...)
	out = append(out, extra...)
	if len(out) > maxWarnings {
		out = append(out[:maxWarnings-1], fmt.Sprintf("depends-on: %d more warnings not shown", len(out)-maxWarnings+1))
	}
	for i, w := range out {
		if len(w) > maxWarningBytes {
			out[i] = strings.ToValidUTF8(w[:maxWarningBytes-3], "") + "..."
		}
	}
	return out
}
