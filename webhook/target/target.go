// Package target is the grammar of wait-for-service's TARGET arguments, the one
// both the binary (which parses them) and the webhook (which builds them from
// annotations) use. It is pure: no I/O, no Kubernetes client.
//
// The webhook builds every argument with a constructor (NewDNS, NewTCP, NewHTTP,
// NewFetch), which formats it and parses the result back with Parse, so it can only
// emit arguments the binary accepts. The validation rules (ParsePort, CheckHost,
// CheckDNSName, ParseURL, CheckDest) exist once, here, for both.
//
// Every kind is one entry of the kinds table below: its prefix, its syntax for
// usage texts and its parse function. Adding a kind means adding a Kind constant
// and one entry there (and, in the binary, its probe).
package target

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// Kind is the type of a target.
type Kind int

// The kinds of targets.
const (
	DNS Kind = iota + 1
	TCP
	HTTP
	Fetch
	// The object kinds, answered by the depends-on readiness service (see
	// object.go): KIND:NAMESPACE/NAME, and endpoints:NAMESPACE/NAME[:PORT].
	Job
	Deployment
	StatefulSet
	DaemonSet
	Endpoints
)

// IsObject reports whether k names a Kubernetes object (Job ... Endpoints).
func (k Kind) IsObject() bool { return k >= Job && k <= Endpoints }

// String returns the kind's name as its prefix spells it: dns, tcp, http, fetch.
func (k Kind) String() string {
	for _, d := range kinds {
		if d.kind == k {
			return d.name
		}
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Kinds returns every kind, in the order Usage lists them.
func Kinds() []Kind {
	out := make([]Kind, len(kinds))
	for i, d := range kinds {
		out[i] = d.kind
	}
	return out
}

// Target is one parsed TARGET argument.
type Target struct {
	Kind Kind
	// Arg is the argument as given.
	Arg string
	// Name is how logs and messages name the target: Arg, with a URL's password redacted.
	Name string
	// Host is, for DNS, the name; for TCP, the host (name or IP address, without brackets).
	Host string
	// Port is the TCP port.
	Port int
	// URL is the URL of an HTTP or Fetch target.
	URL *url.URL
	// Dest is the cleaned absolute path a Fetch target writes.
	Dest string
	// Namespace and Object name the object of an object kind; for them Name
	// is the canonical argument (the kind in lower case), which is also what
	// the readiness service's /v1/wait is asked.
	Namespace, Object string
	// ObjectPort is the optional port of an Endpoints target: a number or a
	// port name, as written.
	ObjectPort string
}

// String returns the argument.
func (t *Target) String() string { return t.Arg }

// kindDef defines one kind: everything about its grammar is here.
type kindDef struct {
	kind Kind
	name string
	// prefixes start its arguments (matched case-insensitively).
	prefixes []string
	// syntax and help describe it in usage texts (see Usage).
	syntax, help string
	// parse parses the argument arg; rest is arg without the prefix.
	parse func(arg, rest string) (*Target, error)
}

var kinds = []kindDef{
	{
		kind: DNS, name: "dns", prefixes: []string{"dns:"},
		syntax: "dns:NAME",
		help:   "ready when NAME resolves (A or AAAA record)",
		parse: func(arg, rest string) (*Target, error) {
			if err := CheckDNSName(rest); err != nil {
				return nil, err
			}
			return &Target{Kind: DNS, Arg: arg, Name: arg, Host: rest}, nil
		},
	},
	{
		kind: TCP, name: "tcp", prefixes: []string{"tcp:"},
		syntax: "tcp:HOST:PORT",
		help: "ready when a TCP connection to HOST:PORT succeeds;\n" +
			"HOST is a name, an IPv4 address or an [IPv6] address",
		parse: func(arg, rest string) (*Target, error) {
			host, port, err := SplitHostPort(rest)
			if err != nil {
				return nil, err
			}
			return &Target{Kind: TCP, Arg: arg, Name: arg, Host: host, Port: port}, nil
		},
	},
	{
		kind: HTTP, name: "http", prefixes: []string{"http://", "https://"},
		syntax: "http://URL\nhttps://URL",
		help:   "ready on a 2xx answer to GET (at most 5 redirects)",
		parse: func(arg, _ string) (*Target, error) {
			u, err := ParseURL(arg)
			if err != nil {
				return nil, err
			}
			return &Target{Kind: HTTP, Arg: arg, Name: redact(arg, u), URL: u}, nil
		},
	},
	{
		kind: Fetch, name: "fetch", prefixes: []string{"fetch:"},
		syntax: "fetch:/ABS/PATH=URL",
		help: "GET the http(s) URL; on a 2xx answer write the body to\n" +
			"/ABS/PATH (atomically, mode 0644); ready once written",
		parse: func(arg, rest string) (*Target, error) {
			// The destination may not contain "=http://" or "=https://"; the URL
			// may contain anything (query strings often hold "=").
			i := indexURLStart(rest)
			if i < 0 {
				//lint:ignore ST1005 the "..." is part of the usage it shows
				return nil, errors.New(`want fetch:/abs/dest=http(s)://...`)
			}
			dest, rawURL := rest[:i], rest[i+1:]
			if err := CheckDest(dest); err != nil {
				return nil, err
			}
			u, err := ParseURL(rawURL)
			if err != nil {
				return nil, err
			}
			return &Target{Kind: Fetch, Arg: arg, Name: "fetch:" + dest + "=" + redact(rawURL, u), URL: u, Dest: path.Clean(dest)}, nil
		},
	},
	objectKind(Job, "job", "ready when the Job has completed; fails at once when\nit has failed"),
	objectKind(Deployment, "deployment", "ready when the Deployment is Available and rolled out"),
	objectKind(StatefulSet, "statefulset", "ready when the StatefulSet's replicas are ready and\nup to date"),
	objectKind(DaemonSet, "daemonset", "ready when the DaemonSet's Pods are ready and up to date"),
	objectKind(Endpoints, "endpoints", "ready when the Service has a ready endpoint (for PORT,\na number or a port name, when given)"),
}

// Parse parses one TARGET argument:
//
//	dns:NAME
//	tcp:HOST:PORT        (HOST: name, IPv4 or [IPv6])
//	http://...  https://...
//	fetch:/abs/dest=URL  (URL: http or https)
//	job:NAMESPACE/NAME   (and deployment:, statefulset:, daemonset:)
//	endpoints:NAMESPACE/NAME[:PORT]
func Parse(arg string) (*Target, error) {
	for i := range kinds {
		d := &kinds[i]
		for _, p := range d.prefixes {
			if len(arg) >= len(p) && strings.EqualFold(arg[:len(p)], p) {
				return d.parse(arg, arg[len(p):])
			}
		}
	}
	return nil, errUnknown
}

var errUnknown = func() error {
	var ps []string
	for _, d := range kinds {
		ps = append(ps, d.prefixes...)
	}
	return fmt.Errorf("unknown target type (want %s or %s)", strings.Join(ps[:len(ps)-1], ", "), ps[len(ps)-1])
}()

// ParseAll parses all arguments, drops exact duplicates (keeping the order) and
// rejects two Fetch targets writing the same file.
func ParseAll(args []string) ([]*Target, error) {
	var targets []*Target
	seen := make(map[string]bool, len(args))
	dests := map[string]string{}
	for _, a := range args {
		if seen[a] {
			continue
		}
		seen[a] = true
		t, err := Parse(a)
		if err != nil {
			return nil, fmt.Errorf("invalid target %q: %v", a, err)
		}
		if t.Kind == Fetch {
			if other, dup := dests[t.Dest]; dup {
				return nil, fmt.Errorf("invalid target %q: destination %s is also written by %q", a, t.Dest, other)
			}
			dests[t.Dest] = a
		}
		targets = append(targets, t)
	}
	return targets, nil
}

// Usage describes the target syntax for a command's help, one kind after the
// other, the syntax indented by indent and the help in a column after it.
func Usage(indent string) string {
	const col = 21
	var b strings.Builder
	for _, d := range kinds {
		syn := strings.Split(d.syntax, "\n")
		help := strings.Split(d.help, "\n")
		for i := 0; i < max(len(syn), len(help)); i++ {
			s, h := "", ""
			if i < len(syn) {
				s = syn[i]
			}
			// The help starts on the syntax's last line.
			if j := i - (len(syn) - 1); j >= 0 && j < len(help) {
				h = help[j]
			}
			line := indent + s
			if h != "" {
				line += strings.Repeat(" ", max(1, col-len(s))) + h
			}
			b.WriteString(strings.TrimRight(line, " ") + "\n")
		}
	}
	return b.String()
}

// NewDNS returns the target that waits for name to resolve.
func NewDNS(name string) (*Target, error) {
	t, err := build(DNS, "dns:"+name)
	if err == nil && t.Host != name {
		return nil, fmt.Errorf("name %q does not form a dns: target", name)
	}
	return t, err
}

// NewTCP returns the target that waits for a connection to host:port; host is a
// name or an IP address, without brackets.
func NewTCP(host string, port int) (*Target, error) {
	if host == "" {
		return nil, errors.New("missing host")
	}
	t, err := build(TCP, "tcp:"+net.JoinHostPort(host, strconv.Itoa(port)))
	if err == nil && (t.Host != host || t.Port != port) {
		return nil, fmt.Errorf("host %q and port %d do not form a tcp: target", host, port)
	}
	return t, err
}

// NewHTTP returns the target that waits for a 2xx answer from rawURL.
func NewHTTP(rawURL string) (*Target, error) {
	return build(HTTP, rawURL)
}

// NewFetch returns the target that downloads rawURL into the file dest.
func NewFetch(dest, rawURL string) (*Target, error) {
	if indexURLStart(dest) >= 0 {
		// The URL starts at the first "=http(s)://" of the argument.
		return nil, fmt.Errorf("destination %q must not contain =http:// or =https://", dest)
	}
	return build(Fetch, "fetch:"+dest+"="+rawURL)
}

// NewObject returns the target that waits for the object namespace/name of
// kind k (Job ... Endpoints); port, for Endpoints only, may be empty.
func NewObject(k Kind, namespace, name, port string) (*Target, error) {
	if !k.IsObject() {
		return nil, fmt.Errorf("%s is not an object kind", k)
	}
	if port != "" && k != Endpoints {
		return nil, fmt.Errorf("a %s target has no port", k)
	}
	arg := k.String() + ":" + namespace + "/" + name
	if port != "" {
		arg += ":" + port
	}
	t, err := build(k, arg)
	if err == nil && (t.Namespace != namespace || t.Object != name || t.ObjectPort != port) {
		return nil, fmt.Errorf("namespace %q, name %q and port %q do not form a %s target", namespace, name, port, k)
	}
	return t, err
}

// build parses arg, which a constructor formatted, and checks its kind.
func build(k Kind, arg string) (*Target, error) {
	t, err := Parse(arg)
	if err != nil {
		return nil, err
	}
	if t.Kind != k {
		return nil, fmt.Errorf("%q is not a %s target", arg, k)
	}
	return t, nil
}

// indexURLStart returns the index of the "=" that starts the URL in
// "/dest=http://...", or -1.
func indexURLStart(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '=' && (hasPrefixFold(s[i+1:], "http://") || hasPrefixFold(s[i+1:], "https://")) {
			return i
		}
	}
	return -1
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// CheckDest checks the destination of a Fetch target: an absolute path naming a
// file, without control characters.
func CheckDest(dest string) error {
	switch {
	case dest == "":
		return errors.New("missing destination path before '='")
	case !strings.HasPrefix(dest, "/"):
		return fmt.Errorf("destination %q is not an absolute path", dest)
	case strings.HasSuffix(dest, "/") || path.Clean(dest) == "/":
		return fmt.Errorf("destination %q names a directory, want a file", dest)
	case strings.ContainsFunc(dest, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("destination %q contains control characters", dest)
	}
	return nil
}

// ParseURL parses an http or https URL with a host (a DNS name as CheckDNSName
// accepts it, an IPv4 address or a bracketed IPv6 address) and, if it has a port
// (or a ':' after the host), a port as ParsePort accepts it.
func ParseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("bad URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("URL must start with http:// or https://, not %q", u.Scheme+":")
	}
	if u.Opaque != "" {
		//lint:ignore ST1005 the "..." is part of the usage it shows
		return nil, errors.New("bad URL: want http(s)://host/...")
	}
	host := u.Hostname()
	if host == "" {
		return nil, errors.New("bad URL: missing host")
	}
	if strings.Contains(u.Host, "[") {
		if _, err := netip.ParseAddr(host); err != nil || !strings.Contains(host, ":") {
			return nil, fmt.Errorf("bad URL: bad IPv6 address %q", host)
		}
	} else if _, err := netip.ParseAddr(host); err != nil {
		if err := CheckDNSName(host); err != nil {
			return nil, fmt.Errorf("bad URL: %v", err)
		}
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		if _, err := ParsePort(p); err != nil {
			return nil, fmt.Errorf("bad URL: %v", err)
		}
	}
	return u, nil
}

// redact hides a URL's password, if it has one.
func redact(raw string, u *url.URL) string {
	if _, has := u.User.Password(); has {
		return u.Redacted()
	}
	return raw
}

// SplitHostPort splits "host:port", "1.2.3.4:port" or "[v6]:port" and checks
// both parts (brackets go around IPv6 addresses, and only there).
func SplitHostPort(s string) (host string, port int, err error) {
	if s == "" {
		return "", 0, errors.New("expected host:port")
	}
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			if strings.Contains(ae.Err, "too many colons") {
				return "", 0, errors.New("expected host:port; write IPv6 addresses in brackets: [::1]:port")
			}
			return "", 0, fmt.Errorf("expected host:port: %s", ae.Err)
		}
		return "", 0, err
	}
	if port, err = ParsePort(p); err != nil {
		return "", 0, err
	}
	if strings.HasPrefix(s, "[") {
		if _, err := netip.ParseAddr(host); err != nil || !strings.Contains(host, ":") {
			return "", 0, fmt.Errorf("bad IPv6 address %q", host)
		}
		return host, port, nil
	}
	if err := CheckHost(host); err != nil {
		return "", 0, err
	}
	return host, port, nil
}

// ParsePort parses a port: a decimal number from 1 to 65535 written plainly,
// without sign or leading zero (so "+80" and "080" are not the same port as "80").
func ParsePort(p string) (int, error) {
	if p == "" {
		return 0, errors.New("missing port")
	}
	bad := len(p) > 5 || p[0] == '0'
	for i := 0; i < len(p) && !bad; i++ {
		bad = p[i] < '0' || p[i] > '9'
	}
	if !bad {
		if n, _ := strconv.Atoi(p); n <= 65535 {
			return n, nil
		}
	}
	return 0, fmt.Errorf("port %q must be a number between 1 and 65535, in decimal without sign or leading zero", p)
}

// CheckHost accepts an IP address (IPv6 without brackets) or a DNS name as
// CheckDNSName accepts it.
func CheckHost(host string) error {
	if host == "" {
		return errors.New("missing host")
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if why := dnsNameProblem(host); why != "" {
		return fmt.Errorf("host %q is not a DNS name or IP address: %s", host, why)
	}
	return nil
}

// CheckDNSName accepts DNS names, optionally fully qualified with a trailing dot:
// labels of 1-63 letters, digits, '-' or '_', not starting or ending with '-',
// 253 characters at most, the last label not all digits (1.2.3 or 256.1.1.1 look
// like IPv4 addresses but are not, and would never resolve).
func CheckDNSName(name string) error {
	if why := dnsNameProblem(name); why != "" {
		if name == "" {
			return errors.New(why)
		}
		return fmt.Errorf("bad name %q: %s", name, why)
	}
	return nil
}

func dnsNameProblem(name string) string {
	if name == "" {
		return "missing name"
	}
	trimmed := strings.TrimSuffix(name, ".")
	if trimmed == "" {
		return "no labels"
	}
	if len(trimmed) > 253 {
		return "longer than 253 characters"
	}
	digits := false
	for label := range strings.SplitSeq(trimmed, ".") {
		if label == "" {
			return "empty label"
		}
		if len(label) > 63 {
			return "label longer than 63 characters"
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Sprintf("label %q starts or ends with '-'", label)
		}
		digits = true
		for _, c := range []byte(label) {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return fmt.Sprintf("invalid character %q", c)
			}
			digits = digits && c >= '0' && c <= '9'
		}
	}
	if digits {
		return "the last label is all digits: not an IPv4 address (four numbers from 0 to 255), nor a DNS name"
	}
	return ""
}
