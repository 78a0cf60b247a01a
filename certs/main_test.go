package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/depends-on/depends-on/certs/certgen"
)

func readFile(t *testing.T, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestRunReusesAndRotatesCA covers the rotation story of certs/README.md:
// a plain re-run keeps the CA (the caBundle does not change), --rotate-ca
// trusts old and new CA, and the next plain run drops the old one.
func TestRunReusesAndRotatesCA(t *testing.T) {
	out := t.TempDir()
	args := []string{"--out", out, "--host", "localhost,127.0.0.1"}
	if err := run(args); err != nil {
		t.Fatal(err)
	}
	ca1, cert1, patch1 := readFile(t, out, certgen.CACertFile), readFile(t, out, certgen.CertFile), readFile(t, out, certgen.CABundlePatchFile)

	if err := run(args); err != nil {
		t.Fatal(err)
	}
	if readFile(t, out, certgen.CACertFile) != ca1 {
		t.Error("plain re-run replaced the CA")
	}
	if readFile(t, out, certgen.CertFile) == cert1 {
		t.Error("plain re-run did not issue a new serving certificate")
	}
	if readFile(t, out, certgen.CABundlePatchFile) != patch1 {
		t.Error("plain re-run changed the caBundle")
	}

	if err := run(append(args, "--rotate-ca")); err != nil {
		t.Fatal(err)
	}
	ca2 := readFile(t, out, certgen.CACertFile)
	if ca2 == ca1 {
		t.Fatal("--rotate-ca kept the CA")
	}
	if readFile(t, out, previousCAFile) != ca1 {
		t.Error("previous CA not kept")
	}
	bundle := readFile(t, out, certgen.CABundlePatchFile)
	if bundle == patch1 {
		t.Error("caBundle unchanged after rotation")
	}
	// The patch holds base64(new CA + old CA): longer than a single CA.
	if len(bundle) < 2*len(patch1)-200 {
		t.Errorf("caBundle after rotation does not look like two CAs (%d vs %d bytes)", len(bundle), len(patch1))
	}

	if err := run(args); err != nil {
		t.Fatal(err)
	}
	if readFile(t, out, certgen.CACertFile) != ca2 {
		t.Error("run after rotation replaced the CA again")
	}
	if _, err := os.Stat(filepath.Join(out, previousCAFile)); !os.IsNotExist(err) {
		t.Errorf("previous CA still present: %v", err)
	}
	if got := readFile(t, out, certgen.CABundlePatchFile); len(got) > len(patch1)+50 {
		t.Error("old CA still in the caBundle")
	}
}

func TestRunNoKustomizeAndBadArgs(t *testing.T) {
	out := t.TempDir()
	if err := run([]string{"--out", out, "--kustomize=false"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, certgen.ComponentFile)); !os.IsNotExist(err) {
		t.Errorf("kustomization written with --kustomize=false: %v", err)
	}
	for _, f := range []string{certgen.CertFile, certgen.KeyFile, certgen.CACertFile} {
		if !strings.Contains(readFile(t, out, f), "-----BEGIN") {
			t.Errorf("%s is not PEM", f)
		}
	}
	if err := run([]string{"extra"}); err == nil {
		t.Error("positional argument accepted")
	}
	if err := run([]string{"--bogus"}); err == nil {
		t.Error("unknown flag accepted")
	}
}
