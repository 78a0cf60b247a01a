// Package webhook turns depends-on.dev/ annotations on a Pod into the JSON patch
// that injects the wait-for-service and fetch init containers. Everything here is
// pure: annotations -> Spec -> containers and volumes -> patch operations. The thin
// admission.Handler at the end is the only piece that knows about admission requests.
package webhook

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/depends-on/depends-on/webhook/target"
)

// Prefix is the annotation namespace of the v1 API.
const Prefix = "depends-on.dev/"

// The annotation keys users write, and the one the webhook writes.
const (
	AnnotationServices = Prefix + "services"
	AnnotationTCP      = Prefix + "tcp"
	AnnotationHTTP     = Prefix + "http"
	AnnotationFetch    = Prefix + "fetch"
	AnnotationTimeout  = Prefix + "timeout"
	// AnnotationAfter places depends-on's containers right after the named
	// init container instead of where the default rule puts them (Place).
	AnnotationAfter = Prefix + "after"
	// AnnotationInjected records what the webhook injected, so a second call can
	// strip it and inject again instead of duplicating it.
	AnnotationInjected = Prefix + "injected"
)

// userKeys are the keys users may write, in the order their targets are checked
// and listed (the order is part of the deterministic output).
var userKeys = []string{AnnotationServices, AnnotationTCP, AnnotationHTTP,
	AnnotationJobs, AnnotationWorkloads, AnnotationEndpoints, AnnotationFetch, AnnotationTimeout, AnnotationAfter}

var annotationsPath = field.NewPath("metadata", "annotations")

// Spec is what a Pod's annotations ask for, validated.
type Spec struct {
	// Waits are the readiness targets, in annotation order (services, tcp, http,
	// jobs, workloads, endpoints), then in the order the user wrote them. Exact duplicates are listed once.
	Waits []Target
	// Fetches are the files downloaded into the shared volume, in written order.
	Fetches []Fetch
	// Timeout is depends-on.dev/timeout; HasTimeout tells whether it was set.
	Timeout    time.Duration
	HasTimeout bool
}

// Empty reports whether the spec asks for nothing to be injected.
func (s *Spec) Empty() bool { return len(s.Waits) == 0 && len(s.Fetches) == 0 }

// Target is one readiness check, as wait-for-service takes it on its command line.
type Target struct {
	// Annotation and Entry say where the target came from, for messages.
	Annotation string
	Entry      string
	// Arg is the wait-for-service argument: dns:NAME, tcp:HOST:PORT or an http(s)
	// URL, built by webhook/target (so the binary accepts it).
	Arg string
}

// Fetch is one file to download before the app starts.
type Fetch struct {
	Entry string
	// Path is the absolute path app containers see the file at.
	Path string
	// URL is where it comes from.
	URL string
	// Arg is the fetch container's argument, built by webhook/target.
	Arg string
}

// ParseOptions carries what parsing needs beyond the annotations themselves.
type ParseOptions struct {
	// Namespace is the Pod's namespace, from the admission request.
	Namespace string
	// ClusterDomain is the cluster's DNS domain, e.g. cluster.local.
	ClusterDomain string
	// Limits bound what one Pod may ask for; zero fields take the defaults.
	Limits Limits
	// Readiness says the readiness service is installed (Config.ReadinessURL is
	// set); without it the object keys (jobs, workloads, endpoints) are denied.
	Readiness bool
}

// The default Limits. Every Pod's annotations are parsed within the admission
// timeout, and all its waits run in one container with a 64Mi memory limit:
// 100 http targets peak at a few MiB of RSS there, 1,500 exceeded the limit.
const (
	// DefaultMaxWaits caps the entries of services, tcp, http and the object keys together.
	DefaultMaxWaits = 100
	// DefaultMaxFetches caps the entries of depends-on.dev/fetch (each is a mount
	// in every app container, and a download of up to --fetch-size-limit).
	DefaultMaxFetches = 20
	// DefaultMaxValueBytes caps the length of each annotation value: a longer one
	// is denied before it is even split.
	DefaultMaxValueBytes = 64 << 10
	// MaxProblems is how many problems a denial lists; it then says how many more there are.
	MaxProblems = 20
	// maxShown caps how much of a value or key a message quotes.
	maxShown = 200
)

// Limits bound the work and memory one Pod can ask for, in the webhook and in the
// injected containers. Above them the Pod is denied, with a message naming the cap.
type Limits struct {
	// MaxWaits caps the entries of depends-on.dev/services, tcp, http, jobs,
	// workloads and endpoints together.
	MaxWaits int
	// MaxFetches caps the entries of depends-on.dev/fetch.
	MaxFetches int
	// MaxValueBytes caps the length of each depends-on.dev/ annotation value.
	MaxValueBytes int
}

func (l Limits) withDefaults() Limits {
	if l.MaxWaits <= 0 {
		l.MaxWaits = DefaultMaxWaits
	}
	if l.MaxFetches <= 0 {
		l.MaxFetches = DefaultMaxFetches
	}
	if l.MaxValueBytes <= 0 {
		l.MaxValueBytes = DefaultMaxValueBytes
	}
	return l
}

// HasAnnotations reports whether any annotation key lies under Prefix.
func HasAnnotations(annotations map[string]string) bool {
	for k := range annotations {
		if strings.HasPrefix(k, Prefix) {
			return true
		}
	}
	return false
}

// Parse validates the depends-on.dev/ annotations and returns what they ask for.
// It collects every problem instead of stopping at the first; each error names
// the annotation and the entry. Its work is linear in the size of the
// annotations, and bounded by opts.Limits.
func Parse(annotations map[string]string, opts ParseOptions) (*Spec, field.ErrorList) {
	lim := opts.Limits.withDefaults()
	var errs field.ErrorList
	spec := &Spec{}

	// Unknown keys first, sorted, so messages are deterministic.
	var unknown []string
	for k := range annotations {
		if strings.HasPrefix(k, Prefix) && !isKnownKey(k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		errs = append(errs, field.Invalid(annotationsPath.Key(shorten(k)), shorten(annotations[k]), unknownKeyDetail(k)))
	}

	// Sizes and counts first: nothing above a cap is parsed at all. Errors are
	// listed by key, in userKeys order.
	lists := map[string][]string{}
	keyErrs := map[string]field.ErrorList{}
	if !opts.Readiness {
		for _, key := range ObjectKeys {
			if value, ok := annotations[key]; ok {
				keyErrs[key] = field.ErrorList{objectKeyUnavailable(key, value)}
			}
		}
	}
	waits := 0
	for _, key := range userKeys {
		value, ok := annotations[key]
		if !ok || keyErrs[key] != nil {
			continue
		}
		p := annotationsPath.Key(key)
		if len(value) > lim.MaxValueBytes {
			keyErrs[key] = append(keyErrs[key], field.Invalid(p, shorten(value), fmt.Sprintf(
				"value is %d bytes, more than the %d bytes a depends-on.dev/ annotation may hold", len(value), lim.MaxValueBytes)))
			continue
		}
		if key == AnnotationTimeout {
			d, err := parseTimeout(value)
			if err != nil {
				keyErrs[key] = append(keyErrs[key], field.Invalid(p, shorten(value), err.Error()))
				continue
			}
			spec.Timeout, spec.HasTimeout = d, true
			continue
		}
		if key == AnnotationAfter {
			continue // a container name, validated by Place against the Pod
		}
		entries := SplitList(value)
		if len(entries) == 0 {
			keyErrs[key] = append(keyErrs[key], field.Invalid(p, shorten(value), "no entries: list them separated by commas or newlines, or remove the annotation"))
			continue
		}
		if key == AnnotationFetch && len(entries) > lim.MaxFetches {
			keyErrs[key] = append(keyErrs[key], field.Invalid(p, fmt.Sprintf("%d entries", len(entries)), fmt.Sprintf(
				"too many fetches: at most %d per Pod", lim.MaxFetches)))
			continue
		}
		if key != AnnotationFetch {
			waits += len(entries)
		}
		lists[key] = entries
	}
	if waits > lim.MaxWaits {
		for _, key := range []string{AnnotationServices, AnnotationTCP, AnnotationHTTP, AnnotationJobs, AnnotationWorkloads, AnnotationEndpoints} {
			if n := len(lists[key]); n > 0 {
				keyErrs[key] = append(keyErrs[key], field.Invalid(annotationsPath.Key(key), fmt.Sprintf("%d entries", n), fmt.Sprintf(
					"too many wait targets: %s, tcp, http, jobs, workloads and endpoints list %d together, at most %d per Pod", AnnotationServices, waits, lim.MaxWaits)))
				delete(lists, key)
			}
		}
	}

	seen := map[string]bool{}
	addWait := func(key, entry string, arg string) {
		if !seen[arg] {
			seen[arg] = true
			spec.Waits = append(spec.Waits, Target{Annotation: key, Entry: entry, Arg: arg})
		}
	}
	var fetched pathTree
	for _, key := range userKeys {
		errs = append(errs, keyErrs[key]...)
		entries, ok := lists[key]
		if !ok {
			continue
		}
		p := annotationsPath.Key(key)
		for _, entry := range entries {
			switch key {
			case AnnotationServices:
				t, err := parseService(entry, opts)
				if err != nil {
					errs = append(errs, field.Invalid(p, shorten(entry), err.Error()))
					continue
				}
				addWait(key, entry, t.Arg)
			case AnnotationTCP:
				t, err := parseTCP(entry)
				if err != nil {
					errs = append(errs, field.Invalid(p, shorten(entry), err.Error()))
					continue
				}
				addWait(key, entry, t.Arg)
			case AnnotationHTTP:
				t, err := parseHTTP(entry)
				if err != nil {
					errs = append(errs, field.Invalid(p, shorten(entry), err.Error()))
					continue
				}
				addWait(key, entry, t.Arg)
			case AnnotationJobs, AnnotationWorkloads, AnnotationEndpoints:
				arg, err := parseObjectEntry(key, entry, opts)
				if err != nil {
					errs = append(errs, field.Invalid(p, shorten(entry), err.Error()))
					continue
				}
				addWait(key, entry, arg)
			case AnnotationFetch:
				f, err := parseFetch(entry, len(spec.Fetches))
				if err != nil {
					errs = append(errs, field.Invalid(p, shorten(entry), err.Error()))
					continue
				}
				switch other, how := fetched.add(f.Path); how {
				case pathSame:
					errs = append(errs, field.Invalid(p, shorten(entry), fmt.Sprintf("path %s is fetched more than once", shorten(f.Path))))
					continue
				case pathNested:
					// A file cannot be mounted inside another mounted file.
					errs = append(errs, field.Invalid(p, shorten(entry), fmt.Sprintf("path %s and fetch path %s are nested in each other", shorten(f.Path), shorten(other))))
					continue
				}
				spec.Fetches = append(spec.Fetches, f)
			}
		}
	}

	if spec.HasTimeout && len(errs) == 0 && spec.Empty() {
		errs = append(errs, field.Invalid(annotationsPath.Key(AnnotationTimeout), annotations[AnnotationTimeout],
			"a timeout needs something to wait for: add depends-on.dev/services, tcp, http, jobs, workloads, endpoints or fetch"))
	}
	if after, ok := annotations[AnnotationAfter]; ok && len(errs) == 0 && spec.Empty() {
		errs = append(errs, field.Invalid(annotationsPath.Key(AnnotationAfter), shorten(after),
			"places depends-on's containers, but nothing is injected: add depends-on.dev/services, tcp, http, jobs, workloads, endpoints or fetch"))
	}
	return spec, errs
}

// shorten quotes at most maxShown bytes of s in a message: a denial stays small
// whatever a client sends.
func shorten(s string) string {
	if len(s) <= maxShown {
		return s
	}
	cut := maxShown
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:cut], len(s))
}

// SplitList splits an annotation value on commas and newlines, trimming spaces
// and skipping empty entries (so trailing commas are harmless).
func SplitList(value string) []string {
	fields := strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' })
	out := fields[:0]
	for _, f := range fields {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func isKnownKey(k string) bool {
	return k == AnnotationInjected || slices.Contains(userKeys, k)
}

func unknownKeyDetail(k string) string {
	known := strings.Join(userKeys, ", ")
	if len(k) > 2*len(AnnotationServices) {
		// Not a typo of a known key; and the distance costs len(k) per known key.
		return fmt.Sprintf("unknown annotation %s (known: %s)", shorten(k), known)
	}
	best, bestDist := "", 1<<30
	for _, u := range userKeys {
		if d := editDistance(k, u); d < bestDist {
			best, bestDist = u, d
		}
	}
	// Suggest only when the key is plausibly a typo, not something unrelated.
	if bestDist <= 3 || strings.HasPrefix(best, k) || strings.HasPrefix(k, best) {
		return fmt.Sprintf("unknown annotation %s; did you mean %s? (known: %s)", k, best, known)
	}
	return fmt.Sprintf("unknown annotation %s (known: %s)", k, known)
}

// editDistance is the Levenshtein distance, used only to suggest a key.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func parseTimeout(value string) (time.Duration, error) {
	v := strings.TrimSpace(value)
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("not a duration: use a Go duration such as 90s or 5m")
	}
	if d < 0 {
		return 0, fmt.Errorf("must not be negative (0 waits forever)")
	}
	return d, nil
}

// parseService turns name[.namespace][:port] into a dns: or tcp: target on the
// Service's fully qualified name. The trailing dot stops search domains and
// catch-all resolvers from answering for a name that does not exist.
func parseService(entry string, opts ParseOptions) (*target.Target, error) {
	hostPart, portPart, hasPort := strings.Cut(entry, ":")
	labels := strings.SplitN(hostPart, ".", 3)
	if len(labels) > 2 {
		return nil, fmt.Errorf("expected name[.namespace][:port]; for any other host use %s", AnnotationTCP)
	}
	name, namespace := labels[0], opts.Namespace
	if len(labels) == 2 {
		namespace = labels[1]
	}
	if msgs := validation.IsDNS1035Label(name); len(msgs) > 0 {
		return nil, fmt.Errorf("service name %q is not valid: %s", shorten(name), strings.Join(msgs, "; "))
	}
	if namespace == "" {
		return nil, fmt.Errorf("no namespace: the request carries none; write name.namespace")
	}
	if msgs := validation.IsDNS1123Label(namespace); len(msgs) > 0 {
		return nil, fmt.Errorf("namespace %q is not valid: %s", shorten(namespace), strings.Join(msgs, "; "))
	}
	fqdn := name + "." + namespace + ".svc." + strings.TrimSuffix(opts.ClusterDomain, ".") + "."
	if !hasPort {
		return target.NewDNS(fqdn)
	}
	port, err := target.ParsePort(portPart)
	if err != nil {
		return nil, err
	}
	return target.NewTCP(fqdn, port)
}

// parseTCP takes host:port ([ipv6]:port), as wait-for-service's tcp: does.
func parseTCP(entry string) (*target.Target, error) {
	host, port, err := target.SplitHostPort(entry)
	if err != nil {
		return nil, err
	}
	return target.NewTCP(host, port)
}

func parseHTTP(entry string) (*target.Target, error) {
	if _, err := target.ParseURL(entry); err != nil {
		return nil, err // says what is wrong with the URL, as a URL
	}
	t, err := target.NewHTTP(entry)
	if err != nil {
		return nil, err
	}
	if t.URL.User != nil {
		// The URL ends up in the Pod spec and in logs: no place for credentials.
		return nil, fmt.Errorf("URL must not carry credentials")
	}
	return t, nil
}

// parseFetch parses the fetch entry /absolute/path=URL, the i-th fetch of the Pod.
func parseFetch(entry string, i int) (Fetch, error) {
	p, u, ok := strings.Cut(entry, "=")
	p, u = strings.TrimSpace(p), strings.TrimSpace(u)
	if !ok || p == "" || u == "" {
		return Fetch{}, fmt.Errorf("expected /absolute/path=URL")
	}
	if !strings.HasPrefix(p, "/") {
		return Fetch{}, fmt.Errorf("path %q must be absolute", shorten(p))
	}
	if path.Clean(p) != p || p == "/" {
		return Fetch{}, fmt.Errorf("path %q must be a clean file path (no trailing slash, no . or .. segments)", shorten(p))
	}
	if err := target.CheckDest(p); err != nil {
		return Fetch{}, err
	}
	t, err := target.NewFetch(FetchDir+"/"+fetchFileName(i, p), u)
	if err != nil {
		return Fetch{}, err
	}
	if t.URL.User != nil {
		return Fetch{}, fmt.Errorf("URL must not carry credentials")
	}
	return Fetch{Entry: entry, Path: p, URL: u, Arg: t.Arg}, nil
}

// pathTree is a set of absolute file paths, by segment, that tells in time
// linear in a path's length whether it is in the set, below one of its paths,
// or above one. (Comparing each path with every other was quadratic.)
type pathTree struct {
	root pathNode
}

type pathNode struct {
	children map[string]*pathNode
	// file is the path ending here, if one was added.
	file string
	// first is the first path added at or below this node.
	first string
}

type pathRelation int

const (
	pathNew    pathRelation = iota
	pathSame                // the path was added before
	pathNested              // a path above or below it was added before
)

// add adds p unless it is, or is nested with, a path added before: it then
// returns that path and how they relate.
func (t *pathTree) add(p string) (string, pathRelation) {
	n := &t.root
	var visited []*pathNode
	for seg := range strings.SplitSeq(strings.TrimPrefix(p, "/"), "/") {
		if n.file != "" {
			return n.file, pathNested // a file above p
		}
		child := n.children[seg]
		if child == nil {
			if n.children == nil {
				n.children = map[string]*pathNode{}
			}
			child = &pathNode{}
			n.children[seg] = child
		}
		visited = append(visited, n)
		n = child
	}
	switch {
	case n.file != "":
		return n.file, pathSame
	case n.first != "":
		return n.first, pathNested // a file below p
	}
	n.file = p
	for _, v := range append(visited, n) {
		if v.first == "" {
			v.first = p
		}
	}
	return "", pathNew
}

// covering returns the path of the set that p equals or lies below, if any.
func (t *pathTree) covering(p string) string {
	n := &t.root
	for seg := range strings.SplitSeq(strings.TrimPrefix(p, "/"), "/") {
		if n.file != "" {
			return n.file
		}
		if n = n.children[seg]; n == nil {
			return ""
		}
	}
	return n.file
}

// mountCollisions finds the volumeMounts of app containers at or below a fetch
// path (the fetched file is mounted there). Mount paths are cleaned first, as the
// kubelet does: /data//x is /data/x. Linear in the number of mounts.
func mountCollisions(pod *Pod, spec *Spec) field.ErrorList {
	if len(spec.Fetches) == 0 {
		return nil
	}
	var tree pathTree
	index := make(map[string]int, len(spec.Fetches))
	for i, f := range spec.Fetches {
		tree.add(f.Path)
		index[f.Path] = i
	}
	byFetch := make([]field.ErrorList, len(spec.Fetches))
	p := annotationsPath.Key(AnnotationFetch)
	for _, c := range pod.Spec.Containers {
		for _, m := range c.VolumeMounts {
			mp := path.Clean("/" + m.MountPath)
			if f := tree.covering(mp); f != "" {
				i := index[f]
				byFetch[i] = append(byFetch[i], field.Invalid(p, shorten(spec.Fetches[i].Entry), fmt.Sprintf(
					"path %s collides with volumeMount %q of container %q at %s", f, shorten(m.Name), shorten(c.Name), shorten(m.MountPath))))
			}
		}
	}
	var errs field.ErrorList
	for _, e := range byFetch {
		errs = append(errs, e...)
	}
	return errs
}
