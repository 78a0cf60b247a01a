package testutil

import "encoding/json"

// WithoutHashes is a depends-on.dev/injected record without its hash and
// config members, which depend on the webhook's configuration: what a test
// outside the webhook package can compare. A value that is not a JSON
// object is returned as it is.
func WithoutHashes(record string) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(record), &m); err != nil {
		return record
	}
	delete(m, "hash")
	delete(m, "config")
	b, err := json.Marshal(m) // keys sorted: stable
	if err != nil {
		return record
	}
	return string(b)
}
