package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/depends-on/depends-on/test/internal/readinessenv"
	"github.com/depends-on/depends-on/test/testutil"
)

// TestWaitForServiceObjects runs the real wait-for-service binary against the
// real readiness service, as the injected container does: a projected-style
// Pod-bound token in a file, the CA in DEPENDS_ON_READINESS_CA. It exits 0
// when its Job completes, and 1 with the reason when a Job fails.
func TestWaitForServiceObjects(t *testing.T) {
	p, _, cs := readinessServer(t)
	ctx := testCtx(t)
	ns := newNamespace(t, nil)
	_, token, err := readinessenv.PodToken(ctx, cs, ns, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "wait-for-service")
	build := exec.Command("go", "build", "-o", bin, "./cmd/wait-for-service")
	build.Dir = suite.repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/wait-for-service: %v\n%s", err, out)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(name, target string) (*exec.Cmd, *testutil.SyncBuffer, string) {
		term := filepath.Join(dir, name+".termination-log")
		cmd := exec.Command(bin, "--timeout=60s", "--termination-log="+term,
			"--readiness-url="+p.URL(), "--readiness-token-file="+tokenFile, target)
		cmd.Env = append(os.Environ(), "DEPENDS_ON_READINESS_CA="+string(suite.ca.CertPEM))
		out := &testutil.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return cmd, out, term
	}
	wait := func(cmd *exec.Cmd, out *testutil.SyncBuffer) int {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return ee.ExitCode()
			}
			if err != nil {
				t.Fatal(err)
			}
			return 0
		case <-time.After(30 * time.Second):
			t.Fatalf("wait-for-service still running after 30s:\n%s", out.String())
			return -1
		}
	}

	t.Run("job completes", func(t *testing.T) {
		j := createJob(t, cs, ns, "migrate")
		target := "job:" + ns + "/migrate"
		cmd, out, _ := start("completes", target)
		waitUntil(t, 20*time.Second, func() bool { return strings.Contains(out.String(), target+" not ready: 0/1 succeeded") },
			func() string { return out.String() })
		completeJob(t, cs, j)
		if code := wait(cmd, out); code != 0 {
			t.Fatalf("exit %d, want 0:\n%s", code, out.String())
		}
		if !strings.Contains(out.String(), target+" ready after") {
			t.Errorf("output lacks %q:\n%s", target+" ready after", out.String())
		}
	})

	t.Run("job fails", func(t *testing.T) {
		j := createJob(t, cs, ns, "seed")
		target := "job:" + ns + "/seed"
		cmd, out, term := start("fails", target)
		waitUntil(t, 20*time.Second, func() bool { return strings.Contains(out.String(), target+" not ready: 0/1 succeeded") },
			func() string { return out.String() })
		failJob(t, cs, j)
		if code := wait(cmd, out); code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", code, out.String())
		}
		msg, err := os.ReadFile(term)
		if err != nil {
			t.Fatal(err)
		}
		if want := target + " failed: BackoffLimitExceeded"; !bytes.Contains(msg, []byte(want)) {
			t.Errorf("termination message %q lacks %q", msg, want)
		}
	})
}
