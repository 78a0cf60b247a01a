package readiness

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// The real, informer-backed Watches against client-go's fake clientset (the
// API server's field selectors are exercised in test/integration).
func TestWatchesJobLifecycle(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset()
	cms := client.CoreV1().ConfigMaps("depends-on-system")
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: StateConfigMap}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	store := NewConfigMapCompletions(ctx, cms, CompletionOptions{FlushDelay: time.Millisecond})
	var open atomic.Int64
	w := NewWatches(ctx, client, WatchOptions{
		Linger: 50 * time.Millisecond, Completions: store, Log: logr.Discard(),
		OnWatches: func(d int) { open.Add(int64(d)) },
	})
	jobs := client.BatchV1().Jobs("app")
	job, err := jobs.Create(ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "migrate", Namespace: "app", UID: "uid-1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	target := Target{Kind: KindJob, Namespace: "app", Name: "migrate"}
	a, b := w.Subscribe(target), w.Subscribe(target)
	if w.Active() != 1 || open.Load() != 1 {
		t.Fatalf("two subscriptions to one target: %d targets, %d watches; want 1, 1", w.Active(), open.Load())
	}
	select {
	case <-a.Synced():
	case <-time.After(5 * time.Second):
		t.Fatal("not synced")
	}
	if r := a.Result(); r != (Result{StateWaiting, "0/1 succeeded"}) {
		t.Fatalf("new Job: %+v", r)
	}
	changed := b.Changed()
	job.Status = batchv1.JobStatus{Succeeded: 1, Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}}
	if _, err := jobs.UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("no change notified")
	}
	if r := b.Result(); r.State != StateReady {
		t.Fatalf("completed Job: %+v", r)
	}
	if err := jobs.Delete(ctx, "migrate", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return a.Result() == Result{StateReady, ReasonDeletedSince} })
	a.Release()
	a.Release() // idempotent
	if w.Active() != 1 {
		t.Fatal("watch closed while a subscription holds it")
	}
	b.Release()
	waitFor(t, func() bool { return w.Active() == 0 && open.Load() == 0 })

	// Persisted: a new store (a restarted service) still knows the completion.
	waitFor(t, func() bool {
		cm, _ := cms.Get(ctx, StateConfigMap, metav1.GetOptions{})
		return cm != nil && cm.Data["app.migrate"] != ""
	})
	restarted := NewConfigMapCompletions(ctx, cms, CompletionOptions{})
	if err := restarted.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if !restarted.Completed("app", "migrate") || restarted.Completed("app", "other") {
		t.Error("restarted store lost the completion or invented one")
	}
}

func TestCompletionsExpiryAndBound(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: StateConfigMap, Namespace: "ns"},
		Data: map[string]string{
			"app.old":     `{"uid":"u0","completed":"2026-01-01T00:00:00Z"}`,
			"app.garbage": `not json`,
			"other.keep":  `{"uid":"u9","completed":"2026-01-07T00:00:00Z"}`,
		}})
	now := time.Date(2026, 1, 8, 12, 0, 0, 0, time.UTC)
	c := NewConfigMapCompletions(ctx, client.CoreV1().ConfigMaps("ns"), CompletionOptions{
		MaxEntries: 3, FlushDelay: time.Hour, Now: func() time.Time { return now },
	})
	if err := c.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Completed("app", "old") || !c.Completed("other", "keep") || c.Completed("app", "garbage") {
		t.Fatal("7-day expiry or garbage handling wrong")
	}
	for i, name := range []string{"a", "b", "c"} {
		now = now.Add(time.Duration(i+1) * time.Minute)
		c.Remember("app", name, "u")
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cm, _ := client.CoreV1().ConfigMaps("ns").Get(ctx, StateConfigMap, metav1.GetOptions{})
	if len(cm.Data) != 3 || cm.Data["app.a"] == "" || cm.Data["app.c"] == "" || cm.Data["other.keep"] != "" || cm.Data["app.old"] != "" {
		t.Errorf("persisted %v: want the newest 3, nothing expired", cm.Data)
	}
}
