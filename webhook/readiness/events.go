package readiness

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
)

// Event reasons on the waiting Pod.
const (
	EventWaiting = "DependencyWaiting"
	EventFailed  = "DependencyFailed"
)

// EventNotifierOptions configure NewEventNotifier.
type EventNotifierOptions struct {
	// Interval: at most one Event per Pod and target per Interval while the
	// reason stays the same (default 30s).
	Interval time.Duration
	// MaxTracked bounds the remembered (Pod, target) pairs (default 100000);
	// beyond it, Events are skipped until old pairs expire.
	MaxTracked int
	Now        func() time.Time
}

// EventNotifier records rate-limited Events on waiting Pods: one when a
// (Pod, target) pair's reason changes, else at most one per Interval.
type EventNotifier struct {
	rec  record.EventRecorder
	opts EventNotifierOptions

	mu   sync.Mutex
	last map[eventKey]eventState
}

type eventKey struct {
	pod    types.UID
	target string
}

type eventState struct {
	reason string
	at     time.Time
}

// NewEventNotifier returns a notifier recording with rec.
func NewEventNotifier(rec record.EventRecorder, o EventNotifierOptions) *EventNotifier {
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	if o.MaxTracked <= 0 {
		o.MaxTracked = 100000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &EventNotifier{rec: rec, opts: o, last: map[eventKey]eventState{}}
}

// Notify records an Event for who waiting for t in state r, if the rate limit allows.
func (n *EventNotifier) Notify(who Identity, t Target, r Result) {
	if r.State == StateReady || who.PodUID == "" {
		return
	}
	k := eventKey{who.PodUID, t.String()}
	now := n.opts.Now()
	n.mu.Lock()
	prev, ok := n.last[k]
	if ok && prev.reason == r.Reason && now.Sub(prev.at) < n.opts.Interval {
		n.mu.Unlock()
		return
	}
	if !ok && len(n.last) >= n.opts.MaxTracked {
		for key, s := range n.last {
			if now.Sub(s.at) >= n.opts.Interval {
				delete(n.last, key)
			}
		}
		if len(n.last) >= n.opts.MaxTracked {
			n.mu.Unlock()
			return
		}
	}
	n.last[k] = eventState{reason: r.Reason, at: now}
	n.mu.Unlock()

	pod := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: who.Namespace, Name: who.PodName, UID: who.PodUID}
	what := t.Display(who.Namespace)
	if r.State == StateFailed {
		n.rec.Eventf(pod, corev1.EventTypeWarning, EventFailed, "Dependency %s failed: %s", what, r.Reason)
		return
	}
	n.rec.Eventf(pod, corev1.EventTypeNormal, EventWaiting, "Waiting for %s: %s", what, r.Reason)
}

// Forget drops the state of a finished (Pod, target) pair, keeping the map small.
func (n *EventNotifier) Forget(who Identity, t Target) {
	n.mu.Lock()
	delete(n.last, eventKey{who.PodUID, t.String()})
	n.mu.Unlock()
}
