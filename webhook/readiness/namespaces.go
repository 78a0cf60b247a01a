package readiness

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// NamespaceCache watches all namespaces once (for the shared label) and
// implements NamespaceGetter from memory.
type NamespaceCache struct {
	store cache.Store
	ctrl  cache.Controller
}

// NewNamespaceCache returns a cache; call Run to fill it.
func NewNamespaceCache(client kubernetes.Interface, log logr.Logger) *NamespaceCache {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return client.CoreV1().Namespaces().List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return client.CoreV1().Namespaces().Watch(ctx, o)
		},
	}
	log = log.WithName("namespaces")
	store, ctrl := cache.NewInformerWithOptions(cache.InformerOptions{
		Logger:        &log,
		ListerWatcher: cache.ToListWatcherWithWatchListSemantics(lw, client),
		ObjectType:    &corev1.Namespace{},
		Handler:       cache.ResourceEventHandlerFuncs{}, // the store is all that is read
		// Only the labels matter: drop the rest to keep memory flat on big clusters.
		Transform: func(obj any) (any, error) {
			if ns, ok := obj.(*corev1.Namespace); ok {
				return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
					Name: ns.Name, Labels: ns.Labels, ResourceVersion: ns.ResourceVersion,
				}}, nil
			}
			return obj, nil
		},
	})
	return &NamespaceCache{store: store, ctrl: ctrl}
}

// Run fills the cache until ctx is done.
func (c *NamespaceCache) Run(ctx context.Context) { c.ctrl.RunWithContext(ctx) }

// HasSynced reports whether the initial list is in (readiness of the server).
func (c *NamespaceCache) HasSynced() bool { return c.ctrl.HasSynced() }

// GetNamespace implements NamespaceGetter.
func (c *NamespaceCache) GetNamespace(name string) (*corev1.Namespace, error) {
	if !c.ctrl.HasSynced() {
		return nil, fmt.Errorf("namespaces not synced yet")
	}
	obj, ok, err := c.store.GetByKey(name)
	if err != nil || !ok {
		return nil, err
	}
	ns, _ := obj.(*corev1.Namespace)
	return ns, nil
}
