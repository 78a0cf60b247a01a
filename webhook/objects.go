package webhook

// The object keys: dependencies on Kubernetes objects (a Job completed, a
// workload rolled out, a Service with a ready endpoint). wait-for-service
// does not probe them; it asks the depends-on readiness service, so the
// Pod needs no RBAC of its own.

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/depends-on/depends-on/webhook/target"
)

// The annotation keys of object dependencies.
const (
	// AnnotationJobs lists Jobs that must have completed: name[.namespace].
	AnnotationJobs = Prefix + "jobs"
	// AnnotationWorkloads lists workloads that must be rolled out and ready:
	// kind/name[.namespace], kind one of deployment, statefulset, daemonset.
	AnnotationWorkloads = Prefix + "workloads"
	// AnnotationEndpoints lists Services that must have a ready endpoint:
	// name[.namespace][:port], port a number or a port name.
	AnnotationEndpoints = Prefix + "endpoints"
)

// ObjectKeys are the keys answered by the readiness service, in the order
// their targets are listed.
var ObjectKeys = []string{AnnotationJobs, AnnotationWorkloads, AnnotationEndpoints}

// workloadKinds are the kinds depends-on.dev/workloads accepts, as written
// in its entries and in wait-for-service arguments.
var workloadKinds = []string{"deployment", "statefulset", "daemonset"}

// workloadAliases are kubectl's other names for the workload kinds: denied
// (one spelling per kind), with the right one suggested.
var workloadAliases = map[string]string{
	"deploy": "deployment", "deployments": "deployment", "deployment.apps": "deployment",
	"sts": "statefulset", "statefulsets": "statefulset", "statefulset.apps": "statefulset",
	"ds": "daemonset", "daemonsets": "daemonset", "daemonset.apps": "daemonset",
}

// IsObjectKey reports whether key is one of ObjectKeys.
func IsObjectKey(key string) bool {
	for _, k := range ObjectKeys {
		if key == k {
			return true
		}
	}
	return false
}

// HasObjectWaits reports whether the spec waits for an object, and so needs
// the readiness service (its flags, CA and projected token).
func (s *Spec) HasObjectWaits() bool {
	for _, w := range s.Waits {
		if IsObjectKey(w.Annotation) {
			return true
		}
	}
	return false
}

// parseObjectEntry turns one entry of an object key into its wait-for-service
// argument: job:NS/NAME, deployment:NS/NAME, statefulset:NS/NAME,
// daemonset:NS/NAME or endpoints:NS/NAME[:PORT]. The namespace defaults to
// the Pod's (opts.Namespace). The error says what is wrong with the entry;
// the caller names the annotation and the entry (field.Invalid).
func parseObjectEntry(key, entry string, opts ParseOptions) (string, error) {
	switch key {
	case AnnotationJobs:
		if strings.ContainsAny(entry, "/:") {
			return "", fmt.Errorf("expected name[.namespace], e.g. migrate or migrate.%s", exampleNamespace(opts))
		}
		name, ns, err := splitObjectName(entry, opts)
		if err != nil {
			return "", err
		}
		if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
			return "", fmt.Errorf("job name %q is not valid: %s", name, strings.Join(msgs, "; "))
		}
		return objectArg(target.Job, ns, name, "")

	case AnnotationWorkloads:
		kindPart, rest, ok := strings.Cut(entry, "/")
		if !ok {
			return "", fmt.Errorf("expected kind/name[.namespace] with kind %s, e.g. deployment/api", strings.Join(workloadKinds, ", "))
		}
		kind, err := workloadKind(kindPart)
		if err != nil {
			return "", err
		}
		if strings.ContainsAny(rest, "/:") {
			return "", fmt.Errorf("expected kind/name[.namespace], e.g. %s/api.%s", kind, exampleNamespace(opts))
		}
		name, ns, err := splitObjectName(rest, opts)
		if err != nil {
			return "", err
		}
		if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
			return "", fmt.Errorf("%s name %q is not valid: %s", kind, name, strings.Join(msgs, "; "))
		}
		return objectArg(objectKinds[kind], ns, name, "")

	case AnnotationEndpoints:
		hostPart, portPart, hasPort := strings.Cut(entry, ":")
		if strings.Count(hostPart, ".") > 1 || strings.Contains(hostPart, "/") {
			return "", fmt.Errorf("expected name[.namespace][:port] (a Service name, not a host name)")
		}
		name, ns, err := splitObjectName(hostPart, opts)
		if err != nil {
			return "", err
		}
		if msgs := validation.IsDNS1035Label(name); len(msgs) > 0 {
			return "", fmt.Errorf("service name %q is not valid: %s", name, strings.Join(msgs, "; "))
		}
		port := ""
		if hasPort {
			if port, err = objectPort(portPart); err != nil {
				return "", err
			}
		}
		return objectArg(target.Endpoints, ns, name, port)
	}
	return "", fmt.Errorf("%s is not an object annotation", key)
}

// objectKinds maps workloadKinds to the target kinds.
var objectKinds = map[string]target.Kind{"deployment": target.Deployment, "statefulset": target.StatefulSet, "daemonset": target.DaemonSet}

// objectArg builds the argument with webhook/target, so that wait-for-service
// accepts it.
func objectArg(k target.Kind, namespace, name, port string) (string, error) {
	t, err := target.NewObject(k, namespace, name, port)
	if err != nil {
		return "", err
	}
	return t.Arg, nil
}

// splitObjectName splits name[.namespace] at its last dot: namespaces have
// none, so a name with dots (allowed for Jobs and workloads) is written with
// its namespace, e.g. db.migrate.shop. It checks the namespace.
func splitObjectName(s string, opts ParseOptions) (name, namespace string, err error) {
	name, namespace = s, opts.Namespace
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		name, namespace = s[:i], s[i+1:]
		if namespace == "" {
			return "", "", fmt.Errorf("empty namespace after the last '.'")
		}
	}
	if name == "" {
		return "", "", fmt.Errorf("empty name")
	}
	if namespace == "" {
		return "", "", fmt.Errorf("no namespace: the request carries none; write name.namespace")
	}
	if msgs := validation.IsDNS1123Label(namespace); len(msgs) > 0 {
		return "", "", fmt.Errorf("namespace %q is not valid: %s", namespace, strings.Join(msgs, "; "))
	}
	return name, namespace, nil
}

// workloadKind returns the kind of a workloads entry in lower case (Kind
// names are matched case-insensitively, so Deployment/api as in YAML works).
func workloadKind(s string) (string, error) {
	kind := strings.ToLower(s)
	for _, k := range workloadKinds {
		if kind == k {
			return k, nil
		}
	}
	known := strings.Join(workloadKinds, ", ")
	switch {
	case kind == "":
		return "", fmt.Errorf("empty kind before '/' (known: %s)", known)
	case workloadAliases[kind] != "":
		return "", fmt.Errorf("unknown kind %q; did you mean %s? (known: %s)", s, workloadAliases[kind], known)
	case kind == "job" || kind == "jobs" || kind == "job.batch":
		return "", fmt.Errorf("unknown kind %q: list Jobs in %s, e.g. %s: migrate", s, AnnotationJobs, AnnotationJobs)
	case kind == "service" || kind == "services" || kind == "svc" || kind == "endpoints" || kind == "endpointslice":
		return "", fmt.Errorf("unknown kind %q: for a Service with a ready endpoint use %s, e.g. %s: db:5432", s, AnnotationEndpoints, AnnotationEndpoints)
	}
	best, bestDist := "", 1<<30
	for _, k := range workloadKinds {
		if d := editDistance(kind, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if bestDist <= 3 {
		return "", fmt.Errorf("unknown kind %q; did you mean %s? (known: %s)", s, best, known)
	}
	return "", fmt.Errorf("unknown kind %q (known: %s)", s, known)
}

// objectPort checks the port of an endpoints entry: a number 1-65535
// written plainly (05432 is denied, as in the other keys) or a port name, a DNS-1123
// label as Service port names are (EndpointSlice ports carry those names).
func objectPort(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("empty port after ':'")
	}
	if strings.Trim(s, "0123456789") == "" {
		port, err := target.ParsePort(s)
		if err != nil {
			return "", err
		}
		return strconv.Itoa(port), nil
	}
	if msgs := validation.IsDNS1123Label(s); len(msgs) > 0 {
		return "", fmt.Errorf("port %q is neither a number (1-65535) nor a port name: %s", s, strings.Join(msgs, "; "))
	}
	return s, nil
}

func exampleNamespace(opts ParseOptions) string {
	if opts.Namespace != "" {
		return opts.Namespace
	}
	return "namespace"
}

// objectKeysUnavailable denies every object key present when this
// depends-on runs without the readiness service (a webhook flag says so):
// nothing could answer those waits.
func objectKeysUnavailable(annotations map[string]string) field.ErrorList {
	var errs field.ErrorList
	for _, key := range ObjectKeys {
		if value, ok := annotations[key]; ok {
			errs = append(errs, objectKeyUnavailable(key, value))
		}
	}
	return errs
}

func objectKeyUnavailable(key, value string) *field.Error {
	return field.Invalid(annotationsPath.Key(key), shorten(value),
		"waiting for Kubernetes objects needs the depends-on readiness service, which is not installed in this cluster; install it or use "+
			AnnotationServices+", "+AnnotationTCP+" or "+AnnotationHTTP)
}
