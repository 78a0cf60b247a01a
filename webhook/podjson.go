package webhook

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
)

// readPod decodes the parts of a Pod (JSON, as the API server sends it) that
// injection reads: name, generateName, namespace and annotations, init
// containers and os in full, the name of each container and volume, and the
// name and mountPath of each volumeMount (all of the injected volume and its
// mounts). Anything that starts reading another field of the Pod must be
// added here: TestReadPodRandomPods fails otherwise. Nothing else is decoded: an API server Pod spends most of its
// bytes on managedFields, env, probes and resources, and decoding them into a
// corev1.Pod cost more than the whole decode of the AdmissionReview.
//
// The whole document is still checked to be well-formed JSON, and what is read
// is type-checked as json.Unmarshal would; the fields it does not read are not
// type-checked (the API server has decoded and encoded them itself). Patch reads nothing else of a Pod, so it returns the same
// operations for the partial Pod as for the whole one (FuzzReadPod checks it).
// Whenever the document looks unusual (a key that only matches a field by case,
// a repeated or escaped key, a value of an unexpected JSON type), readPod
// decodes the whole Pod with json.Unmarshal instead, so that errors and
// edge cases are exactly those of encoding/json.
func readPod(raw []byte) (*corev1.Pod, error) {
	if pod, ok := readPodFast(raw); ok {
		return pod, nil
	}
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		return nil, err
	}
	return &pod, nil
}

// readPodFast is readPod without the fallback; ok=false asks for the full
// decode. It walks the document once, decoding the fields it reads in place.
func readPodFast(raw []byte) (pod *corev1.Pod, ok bool) {
	s := &scanner{d: raw}
	pod = &corev1.Pod{}
	var seen [2]bool
	s.ws()
	if !s.members(1, func(key []byte, sc *scanner) bool {
		i := match(key, "metadata", "spec")
		switch {
		case i == -1:
			return sc.skip(2)
		case i < -1 || seen[i]:
			return false
		}
		seen[i] = true
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
func decodeMeta(sc *scanner, pod *corev1.Pod) bool {
	var seen [4]bool
	return sc.members(2, func(key []byte, sc *scanner) bool {
		i := match(key, "name", "generateName", "namespace", "annotations")
		switch {
		case i == -1:
			return sc.skip(3)
		case i < -1 || seen[i]:
			return false
		}
		seen[i] = true
		switch i {
		case 0:
			return sc.decodeString(&pod.Name)
		case 1:
			return sc.decodeString(&pod.GenerateName)
		case 2:
			return sc.decodeString(&pod.Namespace)
		}
		return sc.decodeStringMap(&pod.Annotations)
	})
}

// decodeSpec decodes from the object at sc the init containers and os in
// full, the name and volumeMounts of each container, and the name of each
// volume (in full for the one the webhook injects).
func decodeSpec(sc *scanner, spec *corev1.PodSpec) bool {
	var seen [4]bool
	return sc.members(2, func(key []byte, sc *scanner) bool {
		i := match(key, "initContainers", "containers", "volumes", "os")
		switch {
		case i == -1:
			return sc.skip(3)
		case i < -1 || seen[i]:
			return false
		}
		seen[i] = true
		switch i {
		case 0:
			return sc.decode(&spec.InitContainers)
		case 1:
			return decodeContainers(sc, &spec.Containers)
		case 2:
			return decodeVolumes(sc, &spec.Volumes)
		}
		return sc.decode(&spec.OS)
	})
}

// decodeContainers decodes the name and volumeMounts of each container. The
// other fields are left out: Patch never reads them, and it compares
// containers only index by index, each with its own copy (see readPod).
// Mounts are decoded as volumes are (see decodeVolumes): name and mountPath,
// all of the mount of the injected volume.
func decodeContainers(sc *scanner, out *[]corev1.Container) bool {
	if sc.null() {
		return true
	}
	type slim struct {
		name   string
		mounts []corev1.VolumeMount
	}
	var found []slim
	ok := sc.elements(3, func(sc *scanner) bool {
		var c slim
		var seen [2]bool
		ok := sc.members(4, func(key []byte, sc *scanner) bool {
			i := match(key, "name", "volumeMounts")
			switch {
			case i == -1:
				return sc.skip(5)
			case i < -1 || seen[i]:
				return false
			}
			seen[i] = true
			if i == 0 {
				return sc.decodeString(&c.name)
			}
			return decodeMounts(sc, &c.mounts)
		})
		found = append(found, c)
		return ok
	})
	// One allocation of the (large) containers.
	cs := make([]corev1.Container, len(found))
	for i, c := range found {
		cs[i].Name, cs[i].VolumeMounts = c.name, c.mounts
	}
	*out = cs
	return ok
}

// decodeVolumes decodes the name of each volume, and the whole volume if it
// has the name of the one the webhook injects. Patch reads only the names of
// the others: strip removes only volumes of that name (a record naming another
// one is refused), so a kept volume is never compared with a different one.
func decodeVolumes(sc *scanner, out *[]corev1.Volume) bool {
	if sc.null() {
		return true
	}
	var names []string
	var ours map[int]corev1.Volume
	ok := sc.elements(3, func(sc *scanner) bool {
		start := sc.i
		var name string
		var seen bool
		if !sc.members(4, func(key []byte, sc *scanner) bool {
			switch i := match(key, "name"); {
			case i == -1:
				return sc.skip(5)
			case i < -1 || seen:
				return false
			}
			seen = true
			return sc.decodeString(&name)
		}) {
			return false
		}
		if name == FetchVolumeName {
			var v corev1.Volume
			if json.Unmarshal(sc.d[start:sc.i], &v) != nil {
				return false
			}
			if ours == nil {
				ours = map[int]corev1.Volume{}
			}
			ours[len(names)] = v
		}
		names = append(names, name)
		return true
	})
	vs := make([]corev1.Volume, len(names))
	for i, name := range names {
		if v, ok := ours[i]; ok {
			vs[i] = v
		} else {
			vs[i].Name = name
		}
	}
	*out = vs
	return ok
}

// decodeMounts decodes the name and mountPath of each volumeMount, and the
// whole mount if it mounts the volume the webhook injects.
func decodeMounts(sc *scanner, out *[]corev1.VolumeMount) bool {
	if sc.null() {
		return true
	}
	ms := make([]corev1.VolumeMount, 0, 4)
	ok := sc.elements(5, func(sc *scanner) bool {
		start := sc.i
		var m corev1.VolumeMount
		var seen [2]bool
		if !sc.members(6, func(key []byte, sc *scanner) bool {
			i := match(key, "name", "mountPath")
			switch {
			case i == -1:
				return sc.skip(7)
			case i < -1 || seen[i]:
				return false
			}
			seen[i] = true
			if i == 0 {
				return sc.decodeString(&m.Name)
			}
			return sc.decodeString(&m.MountPath)
		}) {
			return false
		}
		if m.Name == FetchVolumeName {
			m = corev1.VolumeMount{}
			if json.Unmarshal(sc.d[start:sc.i], &m) != nil {
				return false
			}
		}
		ms = append(ms, m)
		return true
	})
	*out = ms
	return ok
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
