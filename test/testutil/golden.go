package testutil

import (
	"path/filepath"
	"strings"
	"testing"
)

// Golden is one injection golden of webhook/testdata: Input (x.yaml) and
// Injected (x.injected.yaml), the webhook's output for it.
type Golden struct {
	Name, Input, Injected string
}

// Goldens lists the goldens of dir (webhook/testdata), so other packages test
// against the webhook's own files. The webhook's TestGolden keeps them fresh
// and fails on an orphan; this fails when dir holds none.
func Goldens(t testing.TB, dir string) []Golden {
	t.Helper()
	outs, err := filepath.Glob(filepath.Join(dir, "*.injected.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) == 0 {
		t.Fatalf("no *.injected.yaml in %s", dir)
	}
	gs := make([]Golden, 0, len(outs))
	for _, out := range outs {
		base := strings.TrimSuffix(out, ".injected.yaml")
		gs = append(gs, Golden{Name: filepath.Base(base), Input: base + ".yaml", Injected: out})
	}
	return gs
}
