package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func runArgs(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runMain(context.Background(), &cmdEnv{
		stdin: strings.NewReader(""), stdout: &out, stderr: &errOut,
		getenv: func(k string) string { return env[k] },
	}, args)
	return code, out.String(), errOut.String()
}

func TestDispatch(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		code       int
		stdout     string
		stderrPart string
	}{
		{nil, exitUsage, "", "Commands:"},
		{[]string{"--help"}, exitOK, "certs", ""},
		{[]string{"help"}, exitOK, "Exit codes: 0 success, 1 the command failed, 2 usage error.", ""},
		{[]string{"bogus"}, exitUsage, "", `unknown command "bogus"`},
		{[]string{"version"}, exitOK, "depends-on dev (wait image depends-on/wait-for-service:dev)\n", ""},
		{[]string{"--version"}, exitOK, "depends-on dev", ""},
		{[]string{"version", "extra"}, exitUsage, "", "unexpected arguments"},
		{[]string{"certs", "--help"}, exitOK, "", "--serving"},
		{[]string{"certs", "--bogus"}, exitUsage, "", "flag provided but not defined"},
		{[]string{"certs", "--serving", "secret=x"}, exitUsage, "", "no service=NAME or dns=NAME"},
		{[]string{"certs", "--kubeconfig", filepath.Join(t.TempDir(), "missing")}, exitFailed, "", "kubeconfig"},
	} {
		code, stdout, stderr := runArgs(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderrPart) {
			t.Errorf("%q: code %d stdout %q stderr %q; want code %d, stdout with %q, stderr with %q",
				tc.args, code, stdout, stderr, tc.code, tc.stdout, tc.stderrPart)
		}
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range commands() {
		if c.summary == "" {
			t.Errorf("%s: no summary", c.name)
		}
		if code, _, stderr := runArgs(t, nil, c.name, "--help"); code != exitOK || !strings.Contains(stderr, "Usage: depends-on "+c.name) {
			t.Errorf("%s --help: code %d, %q", c.name, code, stderr)
		}
	}
}
