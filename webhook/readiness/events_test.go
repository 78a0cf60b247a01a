package readiness

import (
	"testing"
	"time"

	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
)

func TestEventNotifierRateLimit(t *testing.T) {
	rec := record.NewFakeRecorder(100)
	now := time.Unix(0, 0)
	n := NewEventNotifier(rec, EventNotifierOptions{Now: func() time.Time { return now }})
	who := Identity{Namespace: "app", PodName: "web", PodUID: "u1"}
	job := Target{Kind: KindJob, Namespace: "app", Name: "migrate"}
	waiting := Result{StateWaiting, "0/1 succeeded"}

	n.Notify(who, job, waiting)
	n.Notify(who, job, waiting) // same reason, too soon
	now = now.Add(29 * time.Second)
	n.Notify(who, job, waiting)
	now = now.Add(2 * time.Second)
	n.Notify(who, job, waiting) // 31s after the first
	n.Notify(who, job, Result{StateWaiting, "0/1 succeeded, suspended"})
	n.Notify(who, job, Result{StateReady, "1/1 succeeded"}) // no Event for ready
	n.Notify(who, job, Result{StateFailed, "BackoffLimitExceeded: x"})
	other := Identity{Namespace: "app", PodName: "web-2", PodUID: "u2"}
	n.Notify(other, Target{Kind: KindDeployment, Namespace: "shared", Name: "api"}, Result{StateWaiting, "1/3 available"})
	close(rec.Events)
	var got []string
	for e := range rec.Events {
		got = append(got, e)
	}
	want := []string{
		"Normal DependencyWaiting Waiting for job/migrate: 0/1 succeeded",
		"Normal DependencyWaiting Waiting for job/migrate: 0/1 succeeded",
		"Normal DependencyWaiting Waiting for job/migrate: 0/1 succeeded, suspended",
		"Warning DependencyFailed Dependency job/migrate failed: BackoffLimitExceeded: x",
		"Normal DependencyWaiting Waiting for deployment/shared/api: 1/3 available",
	}
	if len(got) != len(want) {
		t.Fatalf("events:\n%q\nwant\n%q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: %q, want %q", i, got[i], want[i])
		}
	}
}

func TestEventNotifierBounded(t *testing.T) {
	rec := record.NewFakeRecorder(100)
	n := NewEventNotifier(rec, EventNotifierOptions{MaxTracked: 3})
	job := Target{Kind: KindJob, Namespace: "app", Name: "migrate"}
	for _, uid := range []string{"a", "b", "c", "d", "e"} {
		n.Notify(Identity{Namespace: "app", PodName: uid, PodUID: k8stypes.UID("uid-" + uid)}, job, Result{StateWaiting, "x"})
	}
	if len(n.last) != 3 || len(rec.Events) != 3 {
		t.Errorf("tracked %d pairs and recorded %d events, want 3 and 3", len(n.last), len(rec.Events))
	}
}
