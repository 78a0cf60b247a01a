package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/depends-on/depends-on/test/testutil"
)

func TestMain(m *testing.M) {
	// The HTTP client honours proxy variables; tests talk to local servers.
	for _, v := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"} {
		os.Unsetenv(v)
	}
	os.Exit(m.Run())
}

// syncBuffer: see testutil.
type syncBuffer = testutil.SyncBuffer

type result struct {
	code           int
	stdout, stderr string
	termLog        string // "" if not written
	start, end     time.Time
}

func (r result) elapsed() time.Duration { return r.end.Sub(r.start) }

// runCLI runs the command with args (a --termination-log in a temporary
// directory is added in front) and the given tuning.
func runCLI(t *testing.T, ctx context.Context, tu tuning, args ...string) result {
	t.Helper()
	termLog := filepath.Join(t.TempDir(), "termination-log")
	var stdout, stderr syncBuffer
	r := result{start: time.Now()}
	r.code = runWith(ctx, append([]string{"--termination-log", termLog}, args...), &stdout, &stderr, tu)
	r.end = time.Now()
	r.stdout, r.stderr = stdout.String(), stderr.String()
	if b, err := os.ReadFile(termLog); err == nil {
		r.termLog = string(b)
	} else if !os.IsNotExist(err) {
		t.Fatal(err)
	}
	t.Logf("exit %d after %v; stderr:\n%s", r.code, r.elapsed().Round(time.Millisecond), r.stderr)
	return r
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want []string // in stderr
	}{
		{"no targets", nil, []string{"no targets given"}},
		{"only flags", []string{"--timeout", "1s"}, []string{"no targets given"}},
		{"unknown flag", []string{"--nope", "dns:a."}, []string{"flag provided but not defined: -nope"}},
		{"bad duration", []string{"--timeout", "soon", "dns:a."}, []string{"invalid value", "-timeout"}},
		{"negative timeout", []string{"--timeout=-1s", "dns:a."}, []string{"--timeout must not be negative"}},
		{"zero max-bytes", []string{"--max-bytes", "0", "dns:a."}, []string{"--max-bytes must be positive"}},
		{"bad dns server", []string{"--dns-server", "1.2.3.4:x", "dns:a."}, []string{"invalid --dns-server"}},
		{"bad target", []string{"dns:ok.", "tcp:mydb"}, []string{`invalid target "tcp:mydb"`, "missing port"}},
		{"unknown scheme", []string{"ftp://h/x"}, []string{`invalid target "ftp://h/x"`}},
		{"flag after target", []string{"dns:a.", "--timeout", "1s"}, []string{`invalid target "--timeout"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, t.Context(), defaultTuning(), tt.args...)
			if r.code != exitUsage {
				t.Errorf("exit code = %d, want %d", r.code, exitUsage)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not contain %q", w)
				}
			}
			if !strings.Contains(r.stderr, "--help") {
				t.Errorf("stderr does not point to --help")
			}
			if r.elapsed() > time.Second {
				t.Errorf("usage error took %v: it must not wait for anything", r.elapsed())
			}
		})
	}
}

func TestUsageErrorWritesTerminationLog(t *testing.T) {
	t.Parallel()
	r := runCLI(t, t.Context(), defaultTuning(), "dns:ok.", "tcp:[::1]")
	if r.code != exitUsage {
		t.Fatalf("exit code = %d, want %d", r.code, exitUsage)
	}
	if !strings.Contains(r.termLog, `invalid target "tcp:[::1]"`) {
		t.Errorf("termination log = %q, want the invalid target named", r.termLog)
	}
}

func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "--help", "-help"} {
		r := runCLI(t, t.Context(), defaultTuning(), arg)
		if r.code != exitReady {
			t.Errorf("%s: exit code = %d, want 0", arg, r.code)
		}
		for _, w := range []string{"Usage: wait-for-service [flags] TARGET...", "dns:NAME", "tcp:HOST:PORT", "https://URL", "fetch:/ABS/PATH=URL",
			"--timeout DURATION", "--termination-log PATH", "--max-bytes BYTES", "--dns-server HOST:PORT", "--version", "Examples:"} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("%s: usage does not contain %q", arg, w)
			}
		}
	}
	r := runCLI(t, t.Context(), defaultTuning(), "--version", "dns:ignored.")
	if r.code != exitReady || r.stdout != "wait-for-service dev\n" {
		t.Errorf("--version: exit %d, stdout %q; want 0, %q", r.code, r.stdout, "wait-for-service dev\n")
	}
}

func TestTruncate(t *testing.T) {
	if got := truncate("short", 10); got != "short" {
		t.Errorf("truncate(short) = %q", got)
	}
	s := strings.Repeat("x", 5000)
	got := truncate(s, maxTerminationMessage)
	if len(got) != maxTerminationMessage || !strings.HasSuffix(got, "…") {
		t.Errorf("len = %d, suffix %q; want %d bytes ending in …", len(got), got[len(got)-5:], maxTerminationMessage)
	}
	// Never cut inside a multi-byte character.
	s = strings.Repeat("é", 3000) // 2 bytes each
	got = truncate(s, 4095)
	if len(got) > 4095 || !strings.HasSuffix(got, "…") || strings.ContainsRune(got, '\uFFFD') || !strings.HasPrefix(got, "éé") {
		t.Errorf("bad truncation: len %d, tail %q", len(got), got[len(got)-8:])
	}
	for _, r := range strings.TrimSuffix(got, "…") {
		if r != 'é' {
			t.Fatalf("truncation split a character: %q", r)
		}
	}
}

func TestFormatElapsed(t *testing.T) {
	for d, want := range map[time.Duration]string{
		12345 * time.Microsecond:  "12ms",
		3240 * time.Millisecond:   "3.2s",
		65300 * time.Millisecond:  "1m5.3s",
		999600 * time.Microsecond: "1s",
	} {
		if got := formatElapsed(d); got != want {
			t.Errorf("formatElapsed(%v) = %q, want %q", d, got, want)
		}
	}
}
