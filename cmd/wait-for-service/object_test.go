package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// objectTuning is the default tuning with long-polls of 1 s (instead of
// 30 s), backoff capped at 1 s and the CA of f in DEPENDS_ON_READINESS_CA.
func objectTuning(f *fakeReadiness) tuning {
	tu := defaultTuning()
	tu.readiness.wait = time.Second
	tu.readiness.grace = 2 * time.Second
	tu.readiness.maxBackoff = time.Second
	tu.readiness.getenv = func(k string) string {
		if k == envReadinessCA {
			return f.ca.pem
		}
		return ""
	}
	return tu
}

// writeToken writes token to a file and returns its path.
func writeToken(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// objectArgs are the readiness flags for f, then args.
func objectArgs(f *fakeReadiness, tokenPath string, args ...string) []string {
	return append([]string{"--readiness-url", f.url(), "--readiness-token-file", tokenPath}, args...)
}

// after runs fn after d, unless the test has ended.
func after(t *testing.T, d time.Duration, fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-time.After(d):
			fn()
		case <-t.Context().Done():
		}
	}()
	t.Cleanup(func() { <-done })
}

func TestObjectStateChangesThenReady(t *testing.T) {
	t.Parallel()
	f := newFakeReadiness(t, "tok")
	const job = "job:app/migrate"
	readyAt := make(chan time.Time, 1)
	after(t, 300*time.Millisecond, func() { f.set(job, "waiting", "0/1 succeeded") })
	after(t, 600*time.Millisecond, func() {
		readyAt <- time.Now()
		f.set(job, "ready", "1/1 succeeded")
	})
	r := runCLI(t, t.Context(), objectTuning(f), objectArgs(f, writeToken(t, "tok"), "--timeout", "20s", job)...)
	if r.code != exitReady {
		t.Fatalf("exit code = %d, want 0", r.code)
	}
	for _, w := range []string{
		"waiting for 1 target: job:app/migrate (timeout 20s)",
		"job:app/migrate not ready: not found",
		"job:app/migrate not ready: 0/1 succeeded",
		"job:app/migrate ready after ",
		"(1/1 succeeded)",
		"all 1 target ready after ",
	} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("log does not contain %q", w)
		}
	}
	// Event-driven: each change is answered by the held request, so the
	// client saw it within a few ms (slack for a loaded machine).
	if lag := r.end.Sub(<-readyAt); lag > 500*time.Millisecond {
		t.Errorf("exit %v after the Job turned ready, want a few ms", lag)
	}
	reqs := f.log()
	// The first asks with no seen=; the next ones carry the last reason.
	wantSeen := []string{"", "not found", "0/1 succeeded"}
	if len(reqs) != len(wantSeen) {
		t.Fatalf("%d requests, want %d (one per state): %+v", len(reqs), len(wantSeen), reqs)
	}
	for i, req := range reqs {
		if req.target != job || req.seen != wantSeen[i] || req.token != "tok" || req.wait != "1s" {
			t.Errorf("request %d = target %q seen %q token %q wait %q, want %q %q tok 1s", i, req.target, req.seen, req.token, req.wait, job, wantSeen[i])
		}
	}
}

func TestObjectLongPollIsHeld(t *testing.T) {
	t.Parallel()
	f := newFakeReadiness(t, "tok")
	const target = "deployment:app/api"
	f.set(target, "waiting", "1/3 available")
	after(t, 2500*time.Millisecond, func() { f.set(target, "ready", "3/3 available") })
	r := runCLI(t, t.Context(), objectTuning(f), objectArgs(f, writeToken(t, "tok"), "--timeout", "20s", target)...)
	if r.code != exitReady {
		t.Fatalf("exit code = %d, want 0", r.code)
	}
	// 2.5 s with 1 s holds: the first (answered at once) and three or four
	// held requests, not a poll every few hundred ms.
	reqs := f.log()
	if len(reqs) < 3 || len(reqs) > 5 {
		t.Errorf("%d requests in 2.5s with 1s long-polls, want 3-5: %+v", len(reqs), reqs)
	}
	for i := 1; i < len(reqs)-1; i++ {
		if gap := reqs[i+1].at.Sub(reqs[i].at); gap < 800*time.Millisecond {
			t.Errorf("request %d came %v after the previous one: the hold of 1s was not used", i+1, gap)
		}
	}
	// An unchanged state is logged once, not on every answer.
	if n := strings.Count(r.stderr, "not ready: 1/3 available"); n != 1 {
		t.Errorf("%d 'not ready: 1/3 available' lines, want 1", n)
	}
}

func TestObjectServerThatDoesNotHoldIsNotSpun(t *testing.T) {
	t.Parallel()
	f := newFakeReadiness(t, "tok")
	f.update(func(f *fakeReadiness) { f.noHold = true })
	r := runCLI(t, t.Context(), objectTuning(f), objectArgs(f, writeToken(t, "tok"), "--timeout", "2s", "job:app/migrate")...)
	if r.code != exitFail {
		t.Fatalf("exit code = %d, want 1", r.code)
	}
	// Backoff 200 ms doubling to 1 s: about 5 requests in 2 s, not thousands.
	if n := len(f.log()); n > 10 {
		t.Errorf("%d requests in 2s to a server answering at once, want at most 10", n)
	}
}

func TestObjectUnavailableThenReady(t *testing.T) {
	t.Parallel()
	f := newFakeReadiness(t, "tok")
	f.update(func(f *fakeReadiness) { f.unavailable = 4 })
	f.set("statefulset:db/pg", "ready", "3/3 ready")
	r := runCLI(t, t.Context(), objectTuning(f), objectArgs(f, writeToken(t, "tok"), "--timeout", "20s", "statefulset:db/pg")...)
	if r.code != exitReady {
		t.Fatalf("exit code = %d, want 0", r.code)
	}
	// Logged once, though answered four times.
	const line = "statefulset:db/pg not ready: readiness service: 503 Service Unavailable: watches not synced yet"
	if n := strings.Count(r.stderr, line); n != 1 {
		t.Errorf("%d lines %q, want 1", n, line)
	}
	reqs := f.log()
	if len(reqs) != 5 {
		t.Fatalf("%d requests, want 5 (4 refused, then ready): %+v", len(reqs), reqs)
	}
	// Backoff from 200 ms (+/- 20%), doubling: 200, 400, 800, 1000 (cap).
	for i, base := range []time.Duration{200, 400, 800, 1000} {
		base *= time.Millisecond
		gap := reqs[i+1].at.Sub(reqs[i].at)
		if gap < base*8/10 || gap > base*12/10+300*time.Millisecond {
			t.Errorf("retry %d came after %v, want %v +/- 20%%", i+1, gap, base)
		}
	}
}

func TestObjectRefusalsArePermanent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		token    string // the token file's content; the server accepts "tok"
		target   string
		refusal  fakeRefusal
		wantTerm string
	}{
		{
			name: "403 namespace not shared", token: "tok", target: "job:shared/migrate",
			refusal:  fakeRefusal{http.StatusForbidden, `namespace "shared" does not share its objects with namespace "app": label it depends-on.dev/shared=true`},
			wantTerm: `job:shared/migrate failed: readiness service answered 403 Forbidden: namespace "shared" does not share its objects with namespace "app": label it depends-on.dev/shared=true`,
		},
		{
			name: "401 bad token", token: "forged", target: "job:app/migrate",
			wantTerm: "job:app/migrate failed: readiness service answered 401 Unauthorized: invalid bearer token",
		},
		{
			name: "400 bad target", token: "tok", target: "daemonset:app/agent",
			refusal:  fakeRefusal{http.StatusBadRequest, "unknown kind daemonset"},
			wantTerm: "daemonset:app/agent failed: readiness service answered 400 Bad Request: unknown kind daemonset",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeReadiness(t, "tok")
			if tt.refusal.code != 0 {
				f.update(func(f *fakeReadiness) { f.refuse[tt.target] = tt.refusal })
			}
			args := []string{"--timeout", "30s", tt.target}
			if tt.refusal.code != 0 {
				// A second, unready target: the refusal must end the whole wait.
				args = append(args, "job:app/other")
			}
			r := runCLI(t, t.Context(), objectTuning(f), objectArgs(f, writeToken(t, tt.token), args...)...)
			if r.code != exitFail {
				t.Fatalf("exit code = %d, want 1", r.code)
			}
			if r.termLog != tt.wantTerm {
				t.Errorf("termination message:\n got %q\nwant %q", r.termLog, tt.wantTerm)
			}
			if r.elapsed() > 3*time.Second {
				t.Errorf("took %v, want an immediate failure", r.elapsed())
			}
			n := 0
			for _, req := range f.log() {
				if req.target == tt.target {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s asked %d times, want once (no retry of a refusal)", tt.target, n)
			}
		})
	}
}

func TestObjectFailedEndsWaitAtOnce(t *testing.T) {
	t.Parallel()
	f := newFakeReadiness(t, "tok")
	const job = "job:app/migrate"
	f.set(job, "waiting", "0/1 succeeded")
	after(t, 400*time.Millisecond, func() {
		f.set(job, "failed", "BackoffLimitExceeded: Job has reached the specified backoff limit")
	})
	port := freePort(t) // never opens
	r := runCLI(t, t.Context(), objectTuning(f), objectArgs(f, writeToken(t, "tok"), job, fmt.Sprintf("tcp:127.0.0.1:%d", port))...)
	if r.code != exitFail {
		t.Fatalf("exit code = %d, want 1", r.code)
	}
	const want = "job:app/migrate failed: BackoffLimitExceeded: Job has reached the specified backoff limit"
	if r.termLog != want {
		t.Errorf("termination message:\n got %q\nwant %q", r.termLog, want)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("log does not contain %q", want)
	}
	if r.elapsed() > 2*time.Second {
		t.Errorf("took %v without a --timeout: the failure did not end the wait", r.elapsed())
	}
}

func TestObjectTimeoutNamesEveryUnreadyObject(t *testing.T) {
	t.Parallel()
	f := newFakeReadiness(t, "tok")
	f.set("deployment:app/api", "waiting", "1/3 available")
	f.set("endpoints:app/db:5432", "waiting", "no ready endpoint for port 5432")
	f.set("daemonset:app/agent", "ready", "2/2 ready")
	tu := objectTuning(f)
	tu.readiness.wait = 5 * time.Second // longer than the timeout: the hold asked for is cut
	r := runCLI(t, t.Context(), tu, objectArgs(f, writeToken(t, "tok"), "--timeout", "1500ms",
		"deployment:app/api", "endpoints:app/db:5432", "daemonset:app/agent")...)
	if r.code != exitFail {
		t.Fatalf("exit code = %d, want 1", r.code)
	}
	const want = "timed out after 1.5s waiting for: deployment:app/api (1/3 available); endpoints:app/db:5432 (no ready endpoint for port 5432)"
	if r.termLog != want {
		t.Errorf("termination message:\n got %q\nwant %q", r.termLog, want)
	}
	if r.elapsed() < 1500*time.Millisecond || r.elapsed() > 3*time.Second {
		t.Errorf("took %v, want about 1.5s", r.elapsed())
	}
	for _, req := range f.log() {
		if req.wait != "1s" && req.wait != "2s" {
			t.Errorf("asked wait=%s with 1.5s left, want 1s or 2s", req.wait)
		}
	}
}

func TestObjectTokenIsReadAgainForEachRequest(t *testing.T) {
	t.Parallel()
	f := newFakeReadiness(t, "tok-1")
	const target = "job:app/migrate"
	f.set(target, "waiting", "0/1 succeeded")
	tokenPath := writeToken(t, "tok-1")
	// Rotate as the kubelet does (write a new file, rename it over the old
	// one), and revoke the old token at the same moment.
	after(t, 1200*time.Millisecond, func() {
		tmp := tokenPath + ".new"
		if err := os.WriteFile(tmp, []byte("tok-2"), 0o600); err != nil {
			t.Error(err)
		}
		f.setTokens("tok-2")
		if err := os.Rename(tmp, tokenPath); err != nil {
			t.Error(err)
		}
	})
	after(t, 2600*time.Millisecond, func() { f.set(target, "ready", "1/1 succeeded") })
	r := runCLI(t, t.Context(), objectTuning(f), objectArgs(f, tokenPath, "--timeout", "20s", target)...)
	if r.code != exitReady {
		t.Fatalf("exit code = %d, want 0", r.code)
	}
	var tokens []string
	for _, req := range f.log() {
		tokens = append(tokens, req.token)
	}
	if tokens[0] != "tok-1" || tokens[len(tokens)-1] != "tok-2" {
		t.Errorf("tokens sent %v, want tok-1 first and tok-2 last", tokens)
	}
}

func TestObjectTokenFileUnreadableFailsAtOnce(t *testing.T) {
	t.Parallel()
	f := newFakeReadiness(t, "tok")
	missing := filepath.Join(t.TempDir(), "token")
	r := runCLI(t, t.Context(), objectTuning(f), objectArgs(f, missing, "--timeout", "30s", "job:app/migrate")...)
	if r.code != exitFail {
		t.Fatalf("exit code = %d, want 1", r.code)
	}
	want := "job:app/migrate failed: cannot read the readiness token: open " + missing + ": no such file or directory"
	if r.termLog != want {
		t.Errorf("termination message:\n got %q\nwant %q", r.termLog, want)
	}
	if n := len(f.log()); n != 0 {
		t.Errorf("%d requests without a token, want 0", n)
	}
}

func TestObjectServerRestartMidWait(t *testing.T) {
	t.Parallel()
	f := newFakeReadiness(t, "tok")
	const target = "job:app/migrate"
	f.set(target, "waiting", "0/1 succeeded")
	restarted := make(chan struct{})
	// Kill the server while a request is held, keep it down 700 ms, and
	// complete the Job while it is down.
	after(t, 500*time.Millisecond, func() {
		defer close(restarted)
		f.stop()
		f.set(target, "ready", "1/1 succeeded")
		time.Sleep(700 * time.Millisecond)
		l, err := listenAgain(f.addr)
		if err != nil {
			t.Errorf("cannot listen again on %s: %v", f.addr, err)
			return
		}
		f.start(l)
	})
	r := runCLI(t, t.Context(), objectTuning(f), objectArgs(f, writeToken(t, "tok"), "--timeout", "20s", target)...)
	<-restarted
	if r.code != exitReady {
		t.Fatalf("exit code = %d, want 0", r.code)
	}
	if !strings.Contains(r.stderr, "job:app/migrate not ready: readiness service: ") {
		t.Errorf("the outage was not logged")
	}
	reqs := f.log()
	cut, ready := 0, 0
	for _, req := range reqs {
		switch {
		case req.code == 0:
			cut++
		case req.state == "ready":
			ready++
		}
	}
	if cut != 1 || ready != 1 {
		t.Errorf("requests: %d cut off, %d answered ready, want 1 and 1: %+v", cut, ready, reqs)
	}
	// Reconnected within the backoff cap (1 s) of the port reopening.
	if last := reqs[len(reqs)-1]; last.state != "ready" || last.seen != "0/1 succeeded" {
		t.Errorf("last request = %+v, want a ready answer to seen=0/1 succeeded", last)
	}
}

func TestObjectCAFromEnvironment(t *testing.T) {
	// Not parallel: the real environment variable, through run.
	f := newFakeReadiness(t, "tok")
	f.set("job:app/migrate", "ready", "1/1 succeeded")
	dns := newTestDNS(t)
	dns.Set("readiness.test.", localhost())
	_, port, _ := strings.Cut(f.addr, ":")
	t.Setenv(envReadinessCA, f.ca.pem)
	termLog := filepath.Join(t.TempDir(), "termination-log")
	var out syncBuffer
	// The server name checked is the URL's host: readiness.test.
	code := run(t.Context(), []string{"--termination-log", termLog, "--timeout", "10s", "--dns-server", dns.Addr,
		"--readiness-url", "https://readiness.test.:" + port, "--readiness-token-file", writeToken(t, "tok"), "job:app/migrate"}, &out, &out)
	if code != exitReady {
		t.Fatalf("exit code = %d, want 0; output:\n%s", code, out.String())
	}
}

func TestObjectTLSIsVerified(t *testing.T) {
	t.Parallel()
	f := newFakeReadiness(t, "tok")
	f.set("job:app/migrate", "ready", "1/1 succeeded")
	other := newTestCA(t, "127.0.0.1")
	tests := []struct {
		name, caPEM, want string
	}{
		{"unknown CA", other.pem, "certificate signed by unknown authority"},
		{"system roots", "", "certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tu := objectTuning(f)
			tu.readiness.getenv = func(string) string { return tt.caPEM }
			r := runCLI(t, t.Context(), tu, objectArgs(f, writeToken(t, "tok"), "--timeout", "1s", "job:app/migrate")...)
			if r.code != exitFail {
				t.Fatalf("exit code = %d, want 1", r.code)
			}
			if !strings.Contains(r.termLog, "timed out after 1s waiting for: job:app/migrate (readiness service: ") || !strings.Contains(r.termLog, tt.want) {
				t.Errorf("termination message %q, want the TLS error %q", r.termLog, tt.want)
			}
			for _, req := range f.log() {
				if req.token != "tok" {
					continue
				}
				t.Errorf("a request reached the server over unverified TLS")
			}
		})
	}
}

func TestObjectServerNameIsChecked(t *testing.T) {
	t.Parallel()
	// The certificate names readiness.test only; the URL says 127.0.0.1.
	f := newFakeReadiness(t, "tok")
	f.ca = newTestCA(t, "readiness.test")
	f.stop()
	l, err := listenAgain(f.addr)
	if err != nil {
		t.Fatal(err)
	}
	f.start(l)
	r := runCLI(t, t.Context(), objectTuning(f), objectArgs(f, writeToken(t, "tok"), "--timeout", "1s", "job:app/migrate")...)
	if r.code != exitFail {
		t.Fatalf("exit code = %d, want 1", r.code)
	}
	if want := "x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs"; !strings.Contains(r.termLog, want) {
		t.Errorf("termination message %q, want %q", r.termLog, want)
	}
}

func TestObjectUsageErrors(t *testing.T) {
	t.Parallel()
	tok := writeToken(t, "tok")
	tests := []struct {
		name string
		args []string
		ca   string
		want string
	}{
		{"no url", []string{"--readiness-token-file", tok, "job:app/migrate"}, "", `target "job:app/migrate" needs the readiness service: set --readiness-url and --readiness-token-file`},
		{"no token", []string{"--readiness-url", "https://r.test", "job:app/migrate"}, "", "needs the readiness service"},
		{"plain http", []string{"--readiness-url", "http://r.test", "--readiness-token-file", tok, "job:app/migrate"}, "", `invalid --readiness-url "http://r.test": want https://HOST[:PORT][/PATH] (TLS is required)`},
		{"bad port", []string{"--readiness-url", "https://r.test:0", "--readiness-token-file", tok, "job:app/migrate"}, "", `port "0" must be a number`},
		{"query", []string{"--readiness-url", "https://r.test/?a=b", "--readiness-token-file", tok, "job:app/migrate"}, "", "want no user, query or fragment"},
		{"bad CA", []string{"--readiness-url", "https://r.test", "--readiness-token-file", tok, "job:app/migrate"}, "not a certificate", "environment variable DEPENDS_ON_READINESS_CA holds no PEM certificate"},
		{"bad target", []string{"--readiness-url", "https://r.test", "--readiness-token-file", tok, "job:app"}, "", `invalid target "job:app": want job:NAMESPACE/NAME`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tu := defaultTuning()
			tu.readiness.getenv = func(string) string { return tt.ca }
			r := runCLI(t, t.Context(), tu, tt.args...)
			if r.code != exitUsage {
				t.Fatalf("exit code = %d, want 2", r.code)
			}
			if !strings.Contains(r.stderr, tt.want) || !strings.Contains(r.termLog, tt.want) {
				t.Errorf("stderr %q / termination message %q, want both to contain %q", r.stderr, r.termLog, tt.want)
			}
		})
	}
}

func TestReadinessFlagsIgnoredWithoutObjectTargets(t *testing.T) {
	t.Parallel()
	// The webhook may always pass them; a wait for network targets only
	// must not depend on the readiness service (nor on its CA).
	port := freePort(t)
	tu := defaultTuning()
	tu.readiness.getenv = func(string) string { return "garbage" }
	r := runCLI(t, context.Background(), tu, "--readiness-url", "https://127.0.0.1:1", "--readiness-token-file", "/nonexistent",
		"--timeout", "300ms", fmt.Sprintf("tcp:127.0.0.1:%d", port))
	if r.code != exitFail || !strings.Contains(r.termLog, "connection refused") {
		t.Errorf("exit %d, termination message %q: want the tcp timeout, nothing about the readiness service", r.code, r.termLog)
	}
}

func TestDecodeAnswer(t *testing.T) {
	c := &readinessClient{target: "job:app/migrate"}
	tests := []struct {
		body, want, wantErr string
	}{
		{`{"target":"job:app/migrate","state":"waiting","reason":"0/1 succeeded"}`, "waiting 0/1 succeeded", ""},
		{`{"state":"ready","reason":" 1/1 succeeded\n"}`, "ready 1/1 succeeded", ""},
		{`{"target":"job:app/migrate","state":"failed","reason":"DeadlineExceeded: line one\nline two"}`, "failed DeadlineExceeded: line one line two", ""},
		{`{"target":"job:app/other","state":"ready"}`, "", `bad answer: about "job:app/other", not "job:app/migrate"`},
		{`{"target":"job:app/migrate","state":"unknown"}`, "", `bad answer: unknown state "unknown"`},
		{`not json`, "", "bad answer: invalid character"},
		{`{"state":"waiting","reason":"` + strings.Repeat("x", 5000) + `"}`, "waiting " + strings.Repeat("x", maxReasonBytes-3) + "…", ""},
	}
	for _, tt := range tests {
		a, err := c.decode([]byte(tt.body))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("decode(%.40q) error = %v, want %q", tt.body, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("decode(%.40q): %v", tt.body, err)
			continue
		}
		if got := a.State + " " + a.Reason; got != tt.want {
			t.Errorf("decode(%.40q) = %.60q, want %.60q", tt.body, got, tt.want)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	for body, want := range map[string]string{
		`{"error":"invalid token"}`: "invalid token",
		"upstream connect error\n":  "upstream connect error",
		"":                          "no message",
		`{"other":1}`:               `{"other":1}`,
	} {
		if got := errorMessage([]byte(body)); got != want {
			t.Errorf("errorMessage(%q) = %q, want %q", body, got, want)
		}
	}
}

func TestHoldFor(t *testing.T) {
	if got := holdFor(context.Background(), 30*time.Second); got != 30*time.Second {
		t.Errorf("no deadline: %v, want 30s", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2300*time.Millisecond)
	defer cancel()
	if got := holdFor(ctx, 30*time.Second); got != 3*time.Second {
		t.Errorf("2.3s left: %v, want 3s (rounded up)", got)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	time.Sleep(2 * time.Millisecond)
	if got := holdFor(ctx, 30*time.Second); got != time.Second {
		t.Errorf("past the deadline: %v, want 1s", got)
	}
}

func TestHelpNamesObjectTargets(t *testing.T) {
	t.Parallel()
	r := runCLI(t, t.Context(), defaultTuning(), "--help")
	for _, w := range []string{"job:NS/NAME", "deployment:NS/NAME", "statefulset:NS/NAME", "daemonset:NS/NAME", "endpoints:NS/NAME:PORT",
		"--readiness-url URL", "--readiness-token-file FILE", "$DEPENDS_ON_READINESS_CA"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("usage does not contain %q", w)
		}
	}
}

func TestParseTargetsObject(t *testing.T) {
	t.Parallel()
	targets, err := parseTargets([]string{"Job:app/migrate", "dns:db.", "job:app/migrate", "endpoints:app/db:5432"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tg := range targets {
		names = append(names, tg.Name)
		if strings.Contains(tg.Name, ":app/") && !tg.Kind.IsObject() {
			t.Errorf("%s: kind %s, want an object kind", tg.Name, tg.Kind)
		}
	}
	if got, want := strings.Join(names, " "), "job:app/migrate dns:db. job:app/migrate endpoints:app/db:5432"; got != want { // only exact duplicates are dropped
		t.Errorf("targets %q, want %q", got, want)
	}
	if _, err := parseTargets([]string{"job:app"}); err == nil || err.Error() != `invalid target "job:app": want job:NAMESPACE/NAME` {
		t.Errorf("error = %v", err)
	}
}
