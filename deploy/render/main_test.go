package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/depends-on/depends-on/deploy"
)

func TestRenderToDir(t *testing.T) {
	dir, err := deploy.Dir()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	err = run([]string{"--image", "example.org/webhook:v9", "--wait-image", "example.org/wait:v9",
		"--out-dir", out, filepath.Join(dir, "cert-manager"), filepath.Join(dir, "base")})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(out, "cert-manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"image: example.org/webhook:v9", "--wait-image=example.org/wait:v9", "kind: Certificate"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("cert-manager.yaml lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "base.yaml")); err != nil {
		t.Error(err)
	}
}

func TestRenderErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--image", "=x", "deploy/base"},
		{filepath.Join(t.TempDir(), "missing")},
	} {
		if err := run(args); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}

// Outside a checkout, overlay names resolve to the embedded manifests.
func TestRenderEmbeddedOutsideCheckout(t *testing.T) {
	t.Chdir(t.TempDir())
	out := filepath.Join(t.TempDir(), "out")
	if err := run([]string{"--out-dir", out, "deploy/self-signed", "cert-manager"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"self-signed.yaml", "cert-manager.yaml"} {
		data, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "kind: MutatingWebhookConfiguration") {
			t.Errorf("%s: no webhook configuration", f)
		}
	}
}
