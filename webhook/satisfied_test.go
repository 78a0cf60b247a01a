package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
)

// fakeSatisfier answers a fixed verdict (or error), optionally after a delay
// that honours ctx, and records what it was asked.
type fakeSatisfier struct {
	verdict Verdict
	err     error
	delay   time.Duration

	mu    sync.Mutex
	asked [][]string
	ns    []string
}

func (f *fakeSatisfier) Satisfied(ctx context.Context, namespace string, targets []string) (Verdict, error) {
	f.mu.Lock()
	f.asked = append(f.asked, targets)
	f.ns = append(f.ns, namespace)
	f.mu.Unlock()
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return VerdictUnknown, ctx.Err()
		}
	}
	return f.verdict, f.err
}

func (f *fakeSatisfier) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.asked)
}

const jobPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","annotations":{"depends-on.dev/jobs":"migrate","depends-on.dev/workloads":"deployment/api.shared"}},
"spec":{"containers":[{"name":"app","image":"busybox:1.28"}]}}`

// admit sends doc through a Handler with s (and deadline) as the API server
// would, and returns the patched document, the outcome and the operations.
func admit(t *testing.T, s Satisfier, deadline time.Duration, doc string) (string, Outcome, []jsonpatch.Operation) {
	t.Helper()
	rec := &countRecorder{}
	h := NewHandler(testInjector(t), HandlerOptions{Recorder: rec, Satisfier: s, SatisfiedDeadline: deadline})
	srv := httptest.NewServer(NewReviewHandler(h, ReviewOptions{Recorder: rec}))
	defer srv.Close()
	resp := post(t, srv.URL, review(t, admissionv1.Create, podKind, "shop", doc))
	if !resp.Allowed {
		t.Fatalf("denied: %+v", resp.Result)
	}
	var ops []jsonpatch.Operation
	if len(resp.Patch) > 0 {
		if err := json.Unmarshal(resp.Patch, &ops); err != nil {
			t.Fatal(err)
		}
	}
	out := doc
	if len(ops) > 0 {
		out = string(applyPatch(t, []byte(doc), ops))
	}
	var got Outcome
	for o := range rec.outcomes {
		got = o
	}
	return out, got, ops
}

// skipRecord is the record of jobPod's skip, but for its hashes.
var skipRecord = regexp.MustCompile(`^\{"version":2,"initContainers":\[\],"hash":"[0-9a-f]{16}","config":"[0-9a-f]{16}","satisfied":\{"checked":\["job:shop/migrate","deployment:shared/api"\]\}\}$`)

func TestSatisfiedSkipsInjection(t *testing.T) {
	s := &fakeSatisfier{verdict: VerdictSatisfied}
	out, outcome, ops := admit(t, s, 0, jobPod)
	if outcome != (Outcome{DecisionPatched, ReasonSatisfied}) {
		t.Errorf("outcome %v", outcome)
	}
	if len(ops) != 1 || ops[0].Path != injectedAnnotationPath {
		t.Errorf("patch %+v: want the record only", ops)
	}
	pod := decodePod(t, []byte(out))
	if len(pod.Spec.InitContainers) != 0 || len(pod.Spec.Volumes) != 0 {
		t.Errorf("injected %+v %+v", pod.Spec.InitContainers, pod.Spec.Volumes)
	}
	if got := pod.Annotations[AnnotationInjected]; !skipRecord.MatchString(got) {
		t.Errorf("record %s, want %s", got, skipRecord)
	}
	if s.calls() != 1 || strings.Join(s.asked[0], " ") != "job:shop/migrate deployment:shared/api" || s.ns[0] != "shop" {
		t.Errorf("asked %v in %v", s.asked, s.ns)
	}

	// Reinvocation (and a Pod re-created from the stored one): the same
	// answer, no patch, the readiness service not asked again.
	again, outcome, ops := admit(t, s, 0, out)
	if len(ops) != 0 || again != out || outcome != (Outcome{DecisionAllowed, ReasonAlreadyInjected}) {
		t.Errorf("reinvocation: %v %+v", outcome, ops)
	}
	if s.calls() != 1 {
		t.Errorf("reinvocation asked the readiness service: %v", s.asked)
	}

	// The annotations changed since (a job added): asked again; now not
	// satisfied, so injected, and the old record replaced.
	changed := strings.Replace(out, `"depends-on.dev/jobs":"migrate"`, `"depends-on.dev/jobs":"migrate, seed"`, 1)
	s.verdict = VerdictNotSatisfied
	out, outcome, _ = admit(t, s, 0, changed)
	pod = decodePod(t, []byte(out))
	if outcome != (Outcome{DecisionPatched, ReasonInjected}) || len(pod.Spec.InitContainers) != 1 || strings.Contains(pod.Annotations[AnnotationInjected], "satisfied") {
		t.Errorf("changed annotations: %v, init containers %v, record %s", outcome, names(pod.Spec.InitContainers), pod.Annotations[AnnotationInjected])
	}
	if s.calls() != 2 {
		t.Errorf("asked %v", s.asked)
	}
}

func TestSatisfiedDoubtInjects(t *testing.T) {
	want := injectedAs(t, jobPod)
	for _, tc := range []struct {
		name string
		s    *fakeSatisfier
	}{
		{"not satisfied", &fakeSatisfier{verdict: VerdictNotSatisfied}},
		{"unknown (not synced)", &fakeSatisfier{verdict: VerdictUnknown}},
		{"error", &fakeSatisfier{verdict: VerdictSatisfied, err: errors.New("readiness service unreachable")}},
		{"deadline passed", &fakeSatisfier{verdict: VerdictSatisfied, delay: 5 * time.Second}},
		{"an unexpected verdict", &fakeSatisfier{verdict: "yes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			out, outcome, _ := admit(t, tc.s, 50*time.Millisecond, jobPod)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("admission took %s with a 50ms deadline", took)
			}
			if out != want || outcome != (Outcome{DecisionPatched, ReasonInjected}) {
				t.Errorf("%v:\n%s\nwant as without a Satisfier:\n%s", outcome, out, want)
			}
			if tc.s.calls() != 1 {
				t.Errorf("asked %d times", tc.s.calls())
			}
		})
	}
}

// injectedAs is doc as admitted without a Satisfier.
func injectedAs(t *testing.T, doc string) string {
	out, outcome, _ := admit(t, nil, 0, doc)
	if outcome != (Outcome{DecisionPatched, ReasonInjected}) {
		t.Fatalf("without a Satisfier: %v", outcome)
	}
	return out
}

func TestSatisfiedNotAskedForNetworkWaits(t *testing.T) {
	many := make([]string, 30)
	for i := range many {
		many[i] = fmt.Sprintf("migration-job-with-a-long-name-%02d", i)
	}
	for name, annotations := range map[string]string{
		"services and a job": `"depends-on.dev/services":"db:5432","depends-on.dev/jobs":"migrate"`,
		"tcp and endpoints":  `"depends-on.dev/tcp":"db.example.com:5432","depends-on.dev/endpoints":"db"`,
		"http and a job":     `"depends-on.dev/http":"http://api/healthz","depends-on.dev/jobs":"migrate"`,
		"fetch and a job":    `"depends-on.dev/fetch":"/etc/app/config.json=http://config/app.json","depends-on.dev/jobs":"migrate"`,
		"services only":      `"depends-on.dev/services":"db"`,
		// The record would not fit in what a later call reads back.
		"too many targets to record": `"depends-on.dev/jobs":"` + strings.Join(many, ",") + `"`,
	} {
		t.Run(name, func(t *testing.T) {
			doc := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","annotations":{` + annotations + `}},"spec":{"containers":[{"name":"app","image":"busybox:1.28"}]}}`
			s := &fakeSatisfier{verdict: VerdictSatisfied}
			out, _, _ := admit(t, s, 0, doc)
			if s.calls() != 0 {
				t.Errorf("asked %v", s.asked)
			}
			if want, _, _ := admit(t, nil, 0, doc); out != want {
				t.Errorf("got\n%s\nwant as without a Satisfier\n%s", out, want)
			}
		})
	}
}

// A Pod that was injected keeps its container on reinvocation, even if its
// dependencies are satisfied by then: the decision is taken once.
func TestSatisfiedKeepsEarlierInjection(t *testing.T) {
	injected := injectedAs(t, jobPod)
	s := &fakeSatisfier{verdict: VerdictSatisfied}
	out, outcome, ops := admit(t, s, 0, injected)
	if len(ops) != 0 || out != injected || outcome != (Outcome{DecisionAllowed, ReasonAlreadyInjected}) || s.calls() != 0 {
		t.Errorf("reinvocation of an injected Pod: %v %+v, asked %d times", outcome, ops, s.calls())
	}
}

// With the shortcut off (no Satisfier) a Pod carrying a skip record is
// injected: off means the container, always.
func TestSatisfiedRecordWithoutSatisfier(t *testing.T) {
	s := &fakeSatisfier{verdict: VerdictSatisfied}
	skipped, _, _ := admit(t, s, 0, jobPod)
	out, outcome, _ := admit(t, nil, 0, skipped)
	pod := decodePod(t, []byte(out))
	if outcome != (Outcome{DecisionPatched, ReasonInjected}) || len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Name != WaitContainerName {
		t.Errorf("%v %v", outcome, names(pod.Spec.InitContainers))
	}
}
