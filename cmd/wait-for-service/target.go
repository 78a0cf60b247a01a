package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
)

type targetKind int

const (
	kindDNS targetKind = iota
	kindTCP
	kindHTTP
	kindFetch
)

// target is one parsed TARGET argument.
type target struct {
	raw  string // the argument as given
	name string // how logs and the termination message name it (URL passwords redacted)
	kind targetKind

	host string   // dns: the name; tcp: the host (name or IP, without brackets)
	port string   // tcp: the port
	url  *url.URL // http, fetch
	dest string   // fetch: the cleaned absolute destination path

	obj objectTarget // kindObject (object.go, objecttarget.go)
}

// parseTarget parses one TARGET argument:
//
//	dns:NAME
//	tcp:HOST:PORT        (HOST: name, IPv4 or [IPv6])
//	http://...  https://...
//	fetch:/abs/dest=URL  (URL: http or https)
func parseTarget(s string) (*target, error) {
	// Object targets, answered by the readiness service (objecttarget.go).
	if o, ok, err := parseObjectTarget(s); ok {
		if err != nil {
			return nil, err
		}
		return &target{raw: s, name: o.String(), kind: kindObject, obj: o}, nil
	}
	lower := strings.ToLower(s)
	switch {
	case strings.HasPrefix(lower, "dns:"):
		name := s[len("dns:"):]
		if err := checkHostname(name); err != nil {
			return nil, err
		}
		return &target{raw: s, name: s, kind: kindDNS, host: name}, nil

	case strings.HasPrefix(lower, "tcp:"):
		host, port, err := splitHostPort(s[len("tcp:"):])
		if err != nil {
			return nil, err
		}
		return &target{raw: s, name: s, kind: kindTCP, host: host, port: port}, nil

	case strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"):
		u, err := parseHTTPURL(s)
		if err != nil {
			return nil, err
		}
		return &target{raw: s, name: redact(s, u), kind: kindHTTP, url: u}, nil

	case strings.HasPrefix(lower, "fetch:"):
		rest := s[len("fetch:"):]
		// The destination path may not contain "=http://" or "=https://";
		// the URL may contain anything (query strings often hold "=").
		i := indexURLStart(rest)
		if i < 0 {
			return nil, errors.New(`want fetch:/abs/dest=http(s)://...`)
		}
		dest, rawURL := rest[:i], rest[i+1:]
		if err := checkDest(dest); err != nil {
			return nil, err
		}
		u, err := parseHTTPURL(rawURL)
		if err != nil {
			return nil, err
		}
		return &target{
			raw:  s,
			name: "fetch:" + dest + "=" + redact(rawURL, u),
			kind: kindFetch,
			url:  u,
			dest: filepath.Clean(dest),
		}, nil
	}
	return nil, errors.New("unknown target type (want dns:, tcp:, http://, https://, fetch:, job:, deployment:, statefulset:, daemonset: or endpoints:)")
}

// indexURLStart returns the index of the "=" that starts the URL in
// "/dest=http://...", or -1.
func indexURLStart(s string) int {
	lower := strings.ToLower(s)
	for i := 0; i < len(lower); i++ {
		if lower[i] == '=' && (strings.HasPrefix(lower[i+1:], "http://") || strings.HasPrefix(lower[i+1:], "https://")) {
			return i
		}
	}
	return -1
}

func checkDest(dest string) error {
	switch {
	case dest == "":
		return errors.New("missing destination path before '='")
	case !strings.HasPrefix(dest, "/"):
		return fmt.Errorf("destination %q is not an absolute path", dest)
	case strings.HasSuffix(dest, "/") || filepath.Clean(dest) == "/":
		return fmt.Errorf("destination %q names a directory, want a file", dest)
	case strings.ContainsFunc(dest, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("destination %q contains control characters", dest)
	}
	return nil
}

func parseHTTPURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("bad URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("bad URL: scheme %q is not http or https", u.Scheme)
	}
	if u.Opaque != "" {
		return nil, errors.New("bad URL: want scheme://host/...")
	}
	host := u.Hostname()
	if host == "" {
		return nil, errors.New("bad URL: missing host")
	}
	if strings.Contains(u.Host, "[") {
		if _, err := netip.ParseAddr(host); err != nil {
			return nil, fmt.Errorf("bad URL: bad IPv6 address %q", host)
		}
	} else if _, err := netip.ParseAddr(host); err != nil {
		if err := checkHostname(host); err != nil {
			return nil, fmt.Errorf("bad URL: %v", err)
		}
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		if _, err := parsePort(p); err != nil {
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

// splitHostPort splits "host:port", "1.2.3.4:port" or "[v6]:port".
func splitHostPort(s string) (host, port string, err error) {
	if s == "" {
		return "", "", errors.New("want tcp:HOST:PORT")
	}
	host, port, err = net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			if strings.Contains(ae.Err, "too many colons") {
				return "", "", errors.New("want tcp:HOST:PORT; write IPv6 addresses in brackets: tcp:[::1]:PORT")
			}
			return "", "", fmt.Errorf("want tcp:HOST:PORT: %s", ae.Err)
		}
		return "", "", err
	}
	if _, err := parsePort(port); err != nil {
		return "", "", err
	}
	if strings.HasPrefix(s, "[") {
		if _, err := netip.ParseAddr(host); err != nil || !strings.Contains(host, ":") {
			return "", "", fmt.Errorf("bad IPv6 address %q", host)
		}
		return host, port, nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return host, port, nil
	}
	if err := checkHostname(host); err != nil {
		return "", "", err
	}
	return host, port, nil
}

func parsePort(p string) (int, error) {
	if p == "" {
		return 0, errors.New("missing port")
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("bad port %q (want 1-65535)", p)
	}
	return int(n), nil
}

// checkHostname accepts DNS names, optionally fully qualified with a
// trailing dot: labels of 1-63 letters, digits, '-' or '_', 253 characters
// at most.
func checkHostname(name string) error {
	if name == "" {
		return errors.New("missing name")
	}
	if name == "." {
		return errors.New(`bad name "."`)
	}
	trimmed := strings.TrimSuffix(name, ".")
	if len(trimmed) > 253 {
		return fmt.Errorf("name %q is longer than 253 characters", name)
	}
	for label := range strings.SplitSeq(trimmed, ".") {
		if label == "" {
			return fmt.Errorf("bad name %q: empty label", name)
		}
		if len(label) > 63 {
			return fmt.Errorf("bad name %q: label longer than 63 characters", name)
		}
		for _, c := range []byte(label) {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return fmt.Errorf("bad name %q: invalid character %q", name, c)
			}
		}
	}
	return nil
}

// parseTargets parses all TARGET arguments, drops exact duplicates and
// rejects two fetch: targets writing the same file.
func parseTargets(args []string) ([]*target, error) {
	var targets []*target
	seen := map[string]bool{}
	dests := map[string]string{}
	for _, a := range args {
		if seen[a] {
			continue
		}
		seen[a] = true
		t, err := parseTarget(a)
		if err != nil {
			return nil, fmt.Errorf("invalid target %q: %v", a, err)
		}
		if t.kind == kindFetch {
			if other, dup := dests[t.dest]; dup {
				return nil, fmt.Errorf("invalid target %q: destination %s is also written by %q", a, t.dest, other)
			}
			dests[t.dest] = a
		}
		targets = append(targets, t)
	}
	return targets, nil
}
