package webhook

import (
	"flag"
	"io"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
)

func TestBindConfigFlags(t *testing.T) {
	parse := func(args ...string) (Config, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		config := BindConfigFlags(fs, "img:1", nil)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return config()
	}
	got, err := parse()
	want := DefaultConfig()
	want.WaitImage = "img:1"
	if err != nil || !apiequality.Semantic.DeepEqual(got, want) {
		t.Errorf("defaults: %+v, %v; want %+v", got, err, want)
	}
	got, err = parse("--wait-cpu-limit=", "--fetch-size-limit=1Mi", "--default-timeout=1m")
	if _, ok := got.Resources.Limits[corev1.ResourceCPU]; err != nil || ok || got.FetchSizeLimit.String() != "1Mi" || got.DefaultTimeout.String() != "1m0s" {
		t.Errorf("got %+v, %v", got, err)
	}
	_, err = parse("--wait-memory-request=x", "--wait-cpu-request=y")
	for _, s := range []string{`--wait-memory-request="x"`, `--wait-cpu-request="y"`} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("error %v does not name %s", err, s)
		}
	}
	if _, err := parse("--wait-memory-request=1Gi"); err == nil || !strings.Contains(err.Error(), "exceeds its limit") {
		t.Errorf("request above limit: %v", err)
	}
}
