package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
)

// ReadPod decodes the JSON of a Pod, as the API server sends it, or of a pod
// template (the same "metadata" and "spec"), into the part injection reads.
//
// Only that part is decoded: an API server Pod spends most of its bytes on
// managedFields, env, probes and resources, and decoding them into a
// corev1.Pod cost more than the whole decode of the AdmissionReview. The
// whole document is still checked to be well-formed JSON, and what is read is
// type-checked as json.Unmarshal would; the fields it does not read are not
// type-checked (the API server has decoded and encoded them itself).
// Whenever the document looks unusual (a key that only matches a field by
// case, a repeated or escaped key, a value of an unexpected JSON type),
// ReadPod decodes the whole Pod with json.Unmarshal instead, so that errors
// and edge cases are exactly those of encoding/json (FuzzReadPod checks that
// both give the same Pod).
func ReadPod(raw []byte) (*Pod, error) {
	if pod, ok := readPodFast(raw); ok {
		return pod, nil
	}
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		return nil, fmt.Errorf("decode Pod: %w", err)
	}
	return PodFrom(&pod), nil
}

// The JSON field names readPodFast reads, per object.
var (
	podFields       = []string{"metadata", "spec"}
	metaFields      = []string{"name", "generateName", "namespace", "annotations", "labels"}
	specFields      = []string{"initContainers", "containers", "volumes", "os", "subdomain", "hostNetwork"}
	containerFields = []string{"name", "volumeMounts"}
	volumeFields    = []string{"name"}
	mountFields     = []string{"name", "mountPath", "readOnly", "subPath", "subPathExpr", "mountPropagation", "recursiveReadOnly"}
)

// readPodFast is ReadPod without the fallback; ok=false asks for the full
// decode. It walks the document once, decoding the fields it reads in place.
func readPodFast(raw []byte) (pod *Pod, ok bool) {
	s := &scanner{d: raw}
	pod = &Pod{}
	s.ws()
	if !s.fields(1, podFields, func(i int, sc *scanner) bool {
		if sc.null() {
			return true
		}
		if i == 0 {
			return decodeMeta(sc, pod)
		}
		return decodeSpec(sc, &pod.Spec)
	}) {
		return nil, false
	}
	if s.ws(); s.i != len(s.d) {
		return nil, false // trailing data
	}
	return pod, true
}

// decodeMeta decodes the metadata fields injection reads from the object at sc.
func decodeMeta(sc *scanner, pod *Pod) bool {
	return sc.fields(2, metaFields, func(i int, sc *scanner) bool {
		switch i {
		case 0:
			return sc.decodeString(&pod.Name)
		case 1:
			return sc.decodeString(&pod.GenerateName)
		case 2:
			return sc.decodeString(&pod.Namespace)
		case 3:
			return sc.decodeStringMap(&pod.Annotations)
		}
		return sc.decodeStringMap(&pod.Labels)
	})
}

// decodeSpec decodes from the object at sc the init containers and os in
// full, the name and volumeMounts of each container, and the name of each
// volume (in full for the one the webhook injects).
func decodeSpec(sc *scanner, spec *PodSpec) bool {
	return sc.fields(2, specFields, func(i int, sc *scanner) bool {
		switch i {
		case 0:
			return sc.decode(&spec.InitContainers)
		case 1:
			return decodeContainers(sc, &spec.Containers)
		case 2:
			return decodeVolumes(sc, &spec.Volumes)
		case 3:
			return sc.decode(&spec.OS)
		case 4:
			return sc.decodeString(&spec.Subdomain)
		}
		return sc.decodeBool(&spec.HostNetwork)
	})
}

// decodeContainers decodes the name and volumeMounts of each container.
func decodeContainers(sc *scanner, out *[]Container) bool {
	if sc.null() {
		return true
	}
	cs := []Container{}
	ok := sc.elements(3, func(sc *scanner) bool {
		var c Container
		ok := sc.fields(4, containerFields, func(i int, sc *scanner) bool {
			if i == 0 {
				return sc.decodeString(&c.Name)
			}
			return decodeMounts(sc, &c.VolumeMounts)
		})
		cs = append(cs, c)
		return ok
	})
	*out = cs
	return ok
}

// decodeVolumes decodes the name of each volume, and the whole volume if it
// has the name of the one the webhook injects.
func decodeVolumes(sc *scanner, out *[]Volume) bool {
	if sc.null() {
		return true
	}
	vs := []Volume{}
	ok := sc.elements(3, func(sc *scanner) bool {
		start := sc.i
		var v Volume
		if !sc.fields(4, volumeFields, func(_ int, sc *scanner) bool {
			return sc.decodeString(&v.Name)
		}) {
			return false
		}
		if injectedVolumeName(v.Name) {
			v.Whole = &corev1.Volume{}
			if json.Unmarshal(sc.d[start:sc.i], v.Whole) != nil {
				return false
			}
		}
		vs = append(vs, v)
		return true
	})
	*out = vs
	return ok
}

// decodeMounts decodes each volumeMount in full.
func decodeMounts(sc *scanner, out *[]corev1.VolumeMount) bool {
	if sc.null() {
		return true
	}
	ms := make([]corev1.VolumeMount, 0, 4)
	ok := sc.elements(5, func(sc *scanner) bool {
		var m corev1.VolumeMount
		if !sc.fields(6, mountFields, func(i int, sc *scanner) bool {
			switch i {
			case 0:
				return sc.decodeString(&m.Name)
			case 1:
				return sc.decodeString(&m.MountPath)
			case 2:
				return sc.decodeBool(&m.ReadOnly)
			case 3:
				return sc.decodeString(&m.SubPath)
			case 4:
				return sc.decodeString(&m.SubPathExpr)
			case 5:
				return decodeStringPtr(sc, &m.MountPropagation)
			}
			return decodeStringPtr(sc, &m.RecursiveReadOnly)
		}) {
			return false
		}
		ms = append(ms, m)
		return true
	})
	*out = ms
	return ok
}

// fields walks the object at s, nested at depth, calling f with the index in
// names of each member it names (f must consume the value). Other members are
// skipped; a member named twice, or named only by case folding or through an
// escape, makes the scan give up (encoding/json decides those).
func (s *scanner) fields(depth int, names []string, f func(i int, s *scanner) bool) bool {
	var seen uint64 // names has at most 64 entries
	return s.members(depth, func(key []byte, sc *scanner) bool {
		i := match(key, names...)
		switch {
		case i == -1:
			return sc.skip(depth + 1)
		case i < -1 || seen&(1<<i) != 0:
			return false
		}
		seen |= 1 << i
		return f(i, sc)
	})
}

// decodeBool decodes a JSON boolean (or null) into *v.
func (s *scanner) decodeBool(v *bool) bool {
	switch {
	case s.null():
		return true
	case s.lit("true"):
		*v = true
		return true
	case s.lit("false"):
		*v = false
		return true
	}
	return false
}

// decodeStringPtr decodes a JSON string into a new *T (null leaves it nil).
func decodeStringPtr[T ~string](s *scanner, v **T) bool {
	if s.null() {
		return true
	}
	var str string
	if !s.decodeString(&str) {
		return false
	}
	t := T(str)
	*v = &t
	return true
}

// null consumes a JSON null at sc, if there is one (encoding/json leaves the
// field as it is).
func (s *scanner) null() bool {
	if bytes.HasPrefix(s.d[s.i:], []byte("null")) {
		s.i += len("null")
		return true
	}
	return false
}

// decode skips the value at s and decodes it into v with json.Unmarshal.
func (s *scanner) decode(v any) bool {
	start := s.i
	return s.skip(3) && json.Unmarshal(s.d[start:s.i], v) == nil
}

// decodeString decodes a JSON string (or null) into *v; strings with escapes
// or bytes that are not UTF-8 go through json.Unmarshal.
func (s *scanner) decodeString(v *string) bool {
	if s.null() {
		return true
	}
	start := s.i
	if s.i >= len(s.d) || s.d[s.i] != '"' || !s.str() {
		return false
	}
	raw := s.d[start+1 : s.i-1]
	if bytes.IndexByte(raw, '\\') >= 0 || !utf8.Valid(raw) {
		return json.Unmarshal(s.d[start:s.i], v) == nil
	}
	*v = string(raw)
	return true
}

// decodeStringMap decodes a JSON object of strings (or null) into *m, as
// json.Unmarshal into a nil map[string]string would.
func (s *scanner) decodeStringMap(m *map[string]string) bool {
	if s.null() {
		return true
	}
	start := s.i
	out := map[string]string{}
	plain := true
	if !s.members(3, func(key []byte, sc *scanner) bool {
		if !plain || bytes.IndexByte(key, '\\') >= 0 || !utf8.Valid(key) || sc.d[sc.i] != '"' {
			plain = false
			return sc.skip(4)
		}
		var v string
		if !sc.decodeString(&v) {
			return false
		}
		out[string(key)] = v
		return true
	}) {
		return false
	}
	if !plain {
		out = nil
		if json.Unmarshal(s.d[start:s.i], &out) != nil {
			return false
		}
	}
	*m = out
	return true
}

// match returns the index of the field key names exactly, -1 if key is none of
// them, and -2 if the scan must give up: key is escaped (its raw bytes contain
// a backslash), or it names a field only by case folding, as encoding/json
// would accept.
func match(key []byte, fields ...string) int {
	ascii := true
	for _, c := range key {
		if c == '\\' {
			return -2
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	for i, f := range fields {
		if string(key) == f {
			return i
		}
		// Folding can change the length only outside ASCII (K, ſ).
		if (!ascii || len(key) == len(f)) && strings.EqualFold(string(key), f) {
			return -2
		}
	}
	return -1
}

// scanner is a validating JSON scanner over d that skips values without
// decoding them. It accepts only well-formed JSON (RFC 8259; like
// encoding/json it does not check UTF-8), and gives up beyond maxDepth.
type scanner struct {
	d []byte
	i int
}

// maxDepth is well below encoding/json's limit (10000): deeper documents take
// the full decode, which decides. (An API server Pod nests about 12 deep.)
const maxDepth = 100

// strPlain marks the bytes that can appear in a string without ending it or
// starting an escape.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func (s *scanner) ws() { s.i = skipWS(s.d, s.i) }

// members walks the object at s.i. For each member, f is called with the raw
// key (without quotes) and the scanner at the start of the value, which f must
// consume.
func (s *scanner) members(depth int, f func(key []byte, s *scanner) bool) bool {
	if depth > maxDepth || s.i >= len(s.d) || s.d[s.i] != '{' {
		return false
	}
	s.i++
	s.ws()
	if s.i < len(s.d) && s.d[s.i] == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		if s.i >= len(s.d) || s.d[s.i] != '"' {
			return false
		}
		start, end := s.i, plainString(s.d, s.i)
		if end < 0 {
			return false
		}
		s.i = end
		key := s.d[start+1 : s.i-1]
		s.ws()
		if s.i >= len(s.d) || s.d[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		if s.i >= len(s.d) || !f(key, s) {
			return false
		}
		s.ws()
		if s.i >= len(s.d) {
			return false
		}
		switch s.d[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// elements walks the array at s.i, calling f at the start of each element.
func (s *scanner) elements(depth int, f func(s *scanner) bool) bool {
	if depth > maxDepth || s.i >= len(s.d) || s.d[s.i] != '[' {
		return false
	}
	s.i++
	s.ws()
	if s.i < len(s.d) && s.d[s.i] == ']' {
		s.i++
		return true
	}
	for {
		s.ws()
		if s.i >= len(s.d) || !f(s) {
			return false
		}
		s.ws()
		if s.i >= len(s.d) {
			return false
		}
		switch s.d[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// skip validates and skips the value at s.i, nested at depth. It is one loop
// with its own stack (most of a Pod's bytes go through here).
func (s *scanner) skip(depth int) bool {
	var stack [maxDepth]bool // per open value: true for an object, false for an array
	n := 0                   // open values
	d, i := s.d, s.i
value:
	i = skipWS(d, i)
	if i >= len(d) {
		return false
	}
	switch c := d[i]; {
	case c == '"':
		if i = plainString(d, i); i < 0 {
			return false
		}
	case c == '{' || c == '[':
		if depth+n >= maxDepth {
			return false
		}
		stack[n], n = c == '{', n+1
		i = skipWS(d, i+1)
		if i < len(d) && (d[i] == '}' && c == '{' || d[i] == ']' && c == '[') {
			i++
			n--
			break
		}
		if c == '[' {
			goto value
		}
		goto key
	case c == 't':
		s.i = i
		if !s.lit("true") {
			return false
		}
		i = s.i
	case c == 'f':
		s.i = i
		if !s.lit("false") {
			return false
		}
		i = s.i
	case c == 'n':
		s.i = i
		if !s.lit("null") {
			return false
		}
		i = s.i
	case c == '-' || '0' <= c && c <= '9':
		s.i = i
		if !s.num() {
			return false
		}
		i = s.i
	default:
		return false
	}
	// After a value: close what ends here, or go on to the next member/element.
	for n > 0 {
		i = skipWS(d, i)
		if i >= len(d) {
			return false
		}
		switch c := d[i]; {
		case c == ',':
			i++
			if stack[n-1] {
				goto key
			}
			goto value
		case c == '}' && stack[n-1], c == ']' && !stack[n-1]:
			i++
			n--
		default:
			return false
		}
	}
	s.i = i
	return true
key:
	i = skipWS(d, i)
	if i >= len(d) || d[i] != '"' {
		return false
	}
	if i = plainString(d, i); i < 0 {
		return false
	}
	i = skipWS(d, i)
	if i >= len(d) || d[i] != ':' {
		return false
	}
	i++
	goto value
}

func skipWS(d []byte, i int) int {
	for i < len(d) && d[i] <= ' ' && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r') {
		i++
	}
	return i
}

// plainString returns the end of the string at d[i] ('"'), or -1 if it is not
// a valid string; strings with escapes take the slower str.
func plainString(d []byte, i int) int {
	j := i + 1
	for j < len(d) && strPlain[d[j]] {
		j++
	}
	if j < len(d) && d[j] == '"' {
		return j + 1
	}
	s := scanner{d: d, i: i}
	if !s.str() {
		return -1
	}
	return s.i
}

func (s *scanner) lit(want string) bool {
	if !bytes.HasPrefix(s.d[s.i:], []byte(want)) {
		return false
	}
	s.i += len(want)
	return true
}

// str skips the string at s.i (which is '"').
func (s *scanner) str() bool {
	d, i := s.d, s.i+1
	for {
		for i < len(d) && strPlain[d[i]] {
			i++
		}
		if i >= len(d) {
			return false
		}
		switch d[i] {
		case '"':
			s.i = i + 1
			return true
		case '\\':
			if i+1 >= len(d) {
				return false
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) {
					return false
				}
				for _, h := range d[i+2 : i+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				i += 6
			default:
				return false
			}
		default: // a control character
			return false
		}
	}
}

// num skips a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) num() bool {
	d, i := s.d, s.i
	digits := func() bool {
		start := i
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
		return i > start
	}
	if i < len(d) && d[i] == '-' {
		i++
	}
	if i < len(d) && d[i] == '0' {
		i++
	} else if !digits() {
		return false
	}
	if i < len(d) && d[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	s.i = i
	return true
}
