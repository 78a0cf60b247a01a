// Package webhook turns depends-on.dev/ annotations on a Pod into the JSON patch
// that injects the wait-for-service and fetch init containers. Everything here is
// pure: annotations -> Spec -> containers and volumes -> patch operations. The thin
// admission.Handler at the end is the only piece that knows about admission requests.
package webhook

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
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
	// AnnotationInjected records what the webhook injected, so a second call can
	// strip it and inject again instead of duplicating it.
	AnnotationInjected = Prefix + "injected"
)

// userKeys are the keys users may write, in the order their targets are checked
// and listed (the order is part of the deterministic output).
var userKeys = []string{AnnotationServices, AnnotationTCP, AnnotationHTTP, AnnotationFetch, AnnotationTimeout}

var annotationsPath = field.NewPath("metadata", "annotations")

// Spec is what a Pod's annotations ask for, validated.
type Spec struct {
	// Waits are the readiness targets, in annotation order (services, tcp, http),
	// then in the order the user wrote them. Exact duplicates are listed once.
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
	// Arg is the wait-for-service argument: dns:NAME, tcp:HOST:PORT or an http(s) URL.
	Arg string
}

// Fetch is one file to download before the app starts.
type Fetch struct {
	Entry string
	// Path is the absolute path app containers see the file at.
	Path string
	// URL is where it comes from.
	URL string
}

// ParseOptions carries what parsing needs beyond the annotations themselves.
type ParseOptions struct {
	// Namespace is the Pod's namespace, from the admission request.
	Namespace string
	// ClusterDomain is the cluster's DNS domain, e.g. cluster.local.
	ClusterDomain string
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
// the annotation and the entry.
func Parse(annotations map[string]string, opts ParseOptions) (*Spec, field.ErrorList) {
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
		errs = append(errs, field.Invalid(annotationsPath.Key(k), annotations[k], unknownKeyDetail(k)))
	}

	seen := map[string]bool{}
	addWait := func(t Target) {
		if !seen[t.Arg] {
			seen[t.Arg] = true
			spec.Waits = append(spec.Waits, t)
		}
	}

	for _, key := range userKeys {
		value, ok := annotations[key]
		if !ok {
			continue
		}
		p := annotationsPath.Key(key)
		if key == AnnotationTimeout {
			d, err := parseTimeout(value)
			if err != nil {
				errs = append(errs, field.Invalid(p, value, err.Error()))
				continue
			}
			spec.Timeout, spec.HasTimeout = d, true
			continue
		}
		entries := SplitList(value)
		if len(entries) == 0 {
			errs = append(errs, field.Invalid(p, value, "no entries: list them separated by commas or newlines, or remove the annotation"))
			continue
		}
		fetchPaths := map[string]bool{}
		for _, entry := range entries {
			switch key {
			case AnnotationServices:
				arg, err := parseService(entry, opts)
				if err != nil {
					errs = append(errs, field.Invalid(p, entry, err.Error()))
					continue
				}
				addWait(Target{Annotation: key, Entry: entry, Arg: arg})
			case AnnotationTCP:
				arg, err := parseTCP(entry)
				if err != nil {
					errs = append(errs, field.Invalid(p, entry, err.Error()))
					continue
				}
				addWait(Target{Annotation: key, Entry: entry, Arg: arg})
			case AnnotationHTTP:
				if err := checkURL(entry); err != nil {
					errs = append(errs, field.Invalid(p, entry, err.Error()))
					continue
				}
				addWait(Target{Annotation: key, Entry: entry, Arg: entry})
			case AnnotationFetch:
				f, err := parseFetch(entry)
				if err != nil {
					errs = append(errs, field.Invalid(p, entry, err.Error()))
					continue
				}
				if fetchPaths[f.Path] {
					errs = append(errs, field.Invalid(p, entry, fmt.Sprintf("path %s is fetched more than once", f.Path)))
					continue
				}
				if other := nestedPath(f.Path, spec.Fetches); other != "" {
					// A file cannot be mounted inside another mounted file.
					errs = append(errs, field.Invalid(p, entry, fmt.Sprintf("path %s and fetch path %s are nested in each other", f.Path, other)))
					continue
				}
				fetchPaths[f.Path] = true
				spec.Fetches = append(spec.Fetches, f)
			}
		}
	}

	if spec.HasTimeout && len(errs) == 0 && spec.Empty() {
		errs = append(errs, field.Invalid(annotationsPath.Key(AnnotationTimeout), annotations[AnnotationTimeout],
			"a timeout needs something to wait for: add depends-on.dev/services, tcp, http or fetch"))
	}
	return spec, errs
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
	if k == AnnotationInjected {
		return true
	}
	for _, u := range userKeys {
		if k == u {
			return true
		}
	}
	return false
}

func unknownKeyDetail(k string) string {
	best, bestDist := "", 1<<30
	for _, u := range userKeys {
		if d := editDistance(k, u); d < bestDist {
			best, bestDist = u, d
		}
	}
	known := strings.Join(userKeys, ", ")
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

func parsePort(s string) (int, error) {
	port, err := strconv.Atoi(s)
	if err != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("port %q must be a number between 1 and 65535", s)
	}
	return port, nil
}

// parseService turns name[.namespace][:port] into a dns: or tcp: target on the
// Service's fully qualified name. The trailing dot stops search domains and
// catch-all resolvers from answering for a name that does not exist.
func parseService(entry string, opts ParseOptions) (string, error) {
	hostPart, portPart, hasPort := strings.Cut(entry, ":")
	labels := strings.Split(hostPart, ".")
	if len(labels) > 2 {
		return "", fmt.Errorf("expected name[.namespace][:port]; for any other host use %s", AnnotationTCP)
	}
	name, namespace := labels[0], opts.Namespace
	if len(labels) == 2 {
		namespace = labels[1]
	}
	if msgs := validation.IsDNS1035Label(name); len(msgs) > 0 {
		return "", fmt.Errorf("service name %q is not valid: %s", name, strings.Join(msgs, "; "))
	}
	if namespace == "" {
		return "", fmt.Errorf("no namespace: the request carries none; write name.namespace")
	}
	if msgs := validation.IsDNS1123Label(namespace); len(msgs) > 0 {
		return "", fmt.Errorf("namespace %q is not valid: %s", namespace, strings.Join(msgs, "; "))
	}
	fqdn := name + "." + namespace + ".svc." + strings.TrimSuffix(opts.ClusterDomain, ".") + "."
	if !hasPort {
		return "dns:" + fqdn, nil
	}
	port, err := parsePort(portPart)
	if err != nil {
		return "", err
	}
	return "tcp:" + net.JoinHostPort(fqdn, strconv.Itoa(port)), nil
}

func parseTCP(entry string) (string, error) {
	host, portStr, err := net.SplitHostPort(entry)
	if err != nil {
		return "", fmt.Errorf("expected host:port ([ipv6]:port for IPv6)")
	}
	if err := checkHost(host); err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); strings.HasPrefix(entry, "[") != (ip != nil && ip.To4() == nil) {
		return "", fmt.Errorf("brackets go around IPv6 addresses, and only there")
	}
	port, err := parsePort(portStr)
	if err != nil {
		return "", err
	}
	return "tcp:" + net.JoinHostPort(host, strconv.Itoa(port)), nil
}

func checkHost(host string) error {
	if host == "" {
		return fmt.Errorf("host is empty")
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if msgs := validation.IsDNS1123Subdomain(strings.TrimSuffix(host, ".")); len(msgs) > 0 {
		return fmt.Errorf("host %q is not a DNS name or IP address: %s", host, strings.Join(msgs, "; "))
	}
	return nil
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %v", unwrapURLError(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("URL must start with http:// or https://")
	}
	if u.User != nil {
		// The URL ends up in the Pod spec and in logs: no place for credentials.
		return fmt.Errorf("URL must not carry credentials")
	}
	if u.Hostname() == "" {
		return fmt.Errorf("URL has no host")
	}
	if err := checkHost(u.Hostname()); err != nil {
		return err
	}
	if p := u.Port(); p != "" {
		if _, err := parsePort(p); err != nil {
			return err
		}
	}
	return nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

func nestedPath(p string, fetches []Fetch) string {
	for _, f := range fetches {
		if strings.HasPrefix(p, f.Path+"/") || strings.HasPrefix(f.Path, p+"/") {
			return f.Path
		}
	}
	return ""
}

func parseFetch(entry string) (Fetch, error) {
	p, u, ok := strings.Cut(entry, "=")
	p, u = strings.TrimSpace(p), strings.TrimSpace(u)
	if !ok || p == "" || u == "" {
		return Fetch{}, fmt.Errorf("expected /absolute/path=URL")
	}
	if !strings.HasPrefix(p, "/") {
		return Fetch{}, fmt.Errorf("path %q must be absolute", p)
	}
	if path.Clean(p) != p || p == "/" {
		return Fetch{}, fmt.Errorf("path %q must be a clean file path (no trailing slash, no . or .. segments)", p)
	}
	if err := checkURL(u); err != nil {
		return Fetch{}, err
	}
	return Fetch{Entry: entry, Path: p, URL: u}, nil
}
