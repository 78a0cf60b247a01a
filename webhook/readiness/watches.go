package readiness

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Completions remembers the Jobs this service saw complete, so a Job deleted
// afterwards (ttlSecondsAfterFinished) still counts as ready.
type Completions interface {
	// Remember records that the Job ns/name with uid completed.
	Remember(ns, name string, uid types.UID)
	// Completed reports whether a Job ns/name was seen complete (and not expired).
	// It must not block: a slow refresh may report the answer later through
	// the callback given to SetOnChange.
	Completed(ns, name string) bool
	// SetOnChange registers f, called after entries learnt from elsewhere
	// (another replica) were added.
	SetOnChange(f func())
}

// WatchOptions configure NewWatches.
type WatchOptions struct {
	// Linger keeps a watch open this long after its last waiter left (default 30s),
	// so a client's next long-poll reuses it.
	Linger time.Duration
	// Completions, if set, makes absent Jobs seen complete before ready.
	Completions Completions
	// OnWatches is called with +n / -n as API watch streams open and close (metrics).
	OnWatches func(delta int)
	Log       logr.Logger
}

// Watches opens one API watch per distinct target (kind, namespace, name) on
// demand, shares it among all its waiters and closes it Linger after the last
// one leaves. A Service's endpoints take two watches: the Service by name and
// its EndpointSlices by the kubernetes.io/service-name label.
type Watches struct {
	client kubernetes.Interface
	opts   WatchOptions
	ctx    context.Context

	mu      sync.Mutex
	entries map[watchKey]*watchEntry
}

type watchKey struct {
	kind      Kind
	namespace string
	name      string
}

// NewWatches returns a Watches whose watches live at most as long as ctx.
func NewWatches(ctx context.Context, client kubernetes.Interface, o WatchOptions) *Watches {
	if o.Linger <= 0 {
		o.Linger = 30 * time.Second
	}
	if o.OnWatches == nil {
		o.OnWatches = func(int) {}
	}
	w := &Watches{client: client, opts: o, ctx: ctx, entries: map[watchKey]*watchEntry{}}
	if o.Completions != nil {
		o.Completions.SetOnChange(w.notifyJobs)
	}
	return w
}

// Subscription is one waiter's hold on a target's state. Release it when done.
type Subscription interface {
	// Synced is closed once the target's current state is known.
	Synced() <-chan struct{}
	// Changed returns a channel closed at the next change of the target's
	// objects. Take it before calling Result, so no change is missed.
	Changed() <-chan struct{}
	// Result evaluates the target now. Before Synced it may say "not found".
	Result() Result
	// Release gives the subscription back.
	Release()
}

// Source hands out subscriptions to targets; *Watches is the real one.
type Source interface {
	Subscribe(t Target) Subscription
}

// subscription is one waiter's hold on a shared watch.
type subscription struct {
	w       *Watches
	e       *watchEntry
	target  Target
	release sync.Once
}

// Subscribe returns a subscription to t's watch, opening the watch if needed.
func (w *Watches) Subscribe(t Target) Subscription {
	k := watchKey{t.Kind, t.Namespace, t.Name}
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.entries[k]
	if e == nil {
		e = w.start(k)
		w.entries[k] = e
	}
	e.refs++
	if e.linger != nil {
		e.linger.Stop()
		e.linger = nil
	}
	return &subscription{w: w, e: e, target: t}
}

// Active returns the number of targets currently watched (open or lingering).
func (w *Watches) Active() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.entries)
}

// Release implements Subscription; the watch closes Linger after the last.
func (s *subscription) Release() {
	s.release.Do(func() {
		w := s.w
		w.mu.Lock()
		defer w.mu.Unlock()
		e := s.e
		e.refs--
		if e.refs > 0 {
			return
		}
		e.linger = time.AfterFunc(w.opts.Linger, func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			if e.refs == 0 && w.entries[e.key] == e {
				delete(w.entries, e.key)
				e.stop()
			}
		})
	})
}

// Synced implements Subscription: closed once the watch listed the target.
func (s *subscription) Synced() <-chan struct{} { return s.e.synced }

// Changed implements Subscription.
func (s *subscription) Changed() <-chan struct{} {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	return s.e.changed
}

// Result implements Subscription over the watch's current objects.
func (s *subscription) Result() Result {
	e := s.e
	switch s.target.Kind {
	case KindJob:
		j, _ := first(e.stores[0]).(*batchv1.Job)
		if j == nil && s.w.opts.Completions != nil && s.w.opts.Completions.Completed(s.target.Namespace, s.target.Name) {
			return Result{State: StateReady, Reason: ReasonDeletedSince}
		}
		return EvaluateJob(j)
	case KindDeployment:
		d, _ := first(e.stores[0]).(*appsv1.Deployment)
		return EvaluateDeployment(d)
	case KindStatefulSet:
		st, _ := first(e.stores[0]).(*appsv1.StatefulSet)
		return EvaluateStatefulSet(st)
	case KindDaemonSet:
		d, _ := first(e.stores[0]).(*appsv1.DaemonSet)
		return EvaluateDaemonSet(d)
	case KindEndpoints:
		svc, _ := first(e.stores[0]).(*corev1.Service)
		var slices []*discoveryv1.EndpointSlice
		for _, o := range e.stores[1].List() {
			if sl, ok := o.(*discoveryv1.EndpointSlice); ok {
				slices = append(slices, sl)
			}
		}
		return EvaluateEndpoints(svc, slices, s.target.Port)
	}
	return Result{State: StateWaiting, Reason: "unsupported kind " + string(s.target.Kind)}
}

// first returns the only object of a store filtered to one name, or nil.
func first(s cache.Store) any {
	items := s.List()
	if len(items) == 0 {
		return nil
	}
	return items[0]
}

type watchEntry struct {
	key    watchKey
	refs   int         // guarded by Watches.mu
	linger *time.Timer // guarded by Watches.mu
	stop   func()
	synced chan struct{}
	stores []cache.Store

	mu      sync.Mutex
	changed chan struct{}
}

func (e *watchEntry) notify() {
	e.mu.Lock()
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
}

func (w *Watches) notifyJobs() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, e := range w.entries {
		if k.kind == KindJob {
			e.notify()
		}
	}
}

// start opens the informers of k. Called with w.mu held.
func (w *Watches) start(k watchKey) *watchEntry {
	e := &watchEntry{key: k, synced: make(chan struct{}), changed: make(chan struct{})}
	byName := func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", k.name).String()
	}
	c, ns := w.client, k.namespace
	var lws []cache.ListerWatcher
	var objTypes []runtime.Object
	switch k.kind {
	case KindJob:
		lws = append(lws, listWatch(c, byName,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return c.BatchV1().Jobs(ns).List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return c.BatchV1().Jobs(ns).Watch(ctx, o)
			}))
		objTypes = append(objTypes, &batchv1.Job{})
	case KindDeployment:
		lws = append(lws, listWatch(c, byName,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return c.AppsV1().Deployments(ns).List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return c.AppsV1().Deployments(ns).Watch(ctx, o)
			}))
		objTypes = append(objTypes, &appsv1.Deployment{})
	case KindStatefulSet:
		lws = append(lws, listWatch(c, byName,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return c.AppsV1().StatefulSets(ns).List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return c.AppsV1().StatefulSets(ns).Watch(ctx, o)
			}))
		objTypes = append(objTypes, &appsv1.StatefulSet{})
	case KindDaemonSet:
		lws = append(lws, listWatch(c, byName,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return c.AppsV1().DaemonSets(ns).List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return c.AppsV1().DaemonSets(ns).Watch(ctx, o)
			}))
		objTypes = append(objTypes, &appsv1.DaemonSet{})
	case KindEndpoints:
		bySvc := func(o *metav1.ListOptions) {
			o.LabelSelector = labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: k.name}).String()
		}
		lws = append(lws,
			listWatch(c, byName,
				func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
					return c.CoreV1().Services(ns).List(ctx, o)
				},
				func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
					return c.CoreV1().Services(ns).Watch(ctx, o)
				}),
			listWatch(c, bySvc,
				func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
					return c.DiscoveryV1().EndpointSlices(ns).List(ctx, o)
				},
				func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
					return c.DiscoveryV1().EndpointSlices(ns).Watch(ctx, o)
				}))
		objTypes = append(objTypes, &corev1.Service{}, &discoveryv1.EndpointSlice{})
	}

	ctx, cancel := context.WithCancel(w.ctx)
	log := w.opts.Log.WithValues("kind", string(k.kind), "namespace", k.namespace, "name", k.name)
	onChange := func(obj any) {
		if j, ok := obj.(*batchv1.Job); ok && w.opts.Completions != nil && JobCompleted(j) {
			w.opts.Completions.Remember(j.Namespace, j.Name, j.UID)
		}
		e.notify()
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { onChange(obj) },
		UpdateFunc: func(_, obj any) { onChange(obj) },
		DeleteFunc: func(any) { e.notify() },
	}
	var synced []<-chan struct{}
	for i, lw := range lws {
		store, ctrl := cache.NewInformerWithOptions(cache.InformerOptions{
			Logger:        &log,
			ListerWatcher: lw,
			ObjectType:    objTypes[i],
			Handler:       handler,
		})
		e.stores = append(e.stores, store)
		synced = append(synced, ctrl.HasSyncedChecker().Done())
		go ctrl.RunWithContext(ctx)
	}
	w.opts.OnWatches(len(lws))
	log.V(1).Info("watch opened")
	go func() {
		for _, ch := range synced {
			select {
			case <-ch:
			case <-ctx.Done():
				return
			}
		}
		close(e.synced)
		e.notify()
	}()
	e.stop = func() {
		cancel()
		w.opts.OnWatches(-len(lws))
		log.V(1).Info("watch closed")
	}
	return e
}

func listWatch(client kubernetes.Interface, sel func(*metav1.ListOptions),
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	wt func(context.Context, metav1.ListOptions) (watch.Interface, error)) cache.ListerWatcher {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			sel(&o)
			return list(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			sel(&o)
			return wt(ctx, o)
		},
	}
	return cache.ToListWatcherWithWatchListSemantics(lw, client)
}
