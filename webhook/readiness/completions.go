package readiness

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// StateConfigMap is the ConfigMap (in the service's own namespace) that holds
// the remembered Job completions.
const StateConfigMap = "depends-on-readiness-state"

// ConfigMapGetUpdater reads and writes ConfigMaps of one namespace; the typed
// client's CoreV1().ConfigMaps(ns) satisfies it.
type ConfigMapGetUpdater interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.ConfigMap, error)
	Update(ctx context.Context, cm *corev1.ConfigMap, opts metav1.UpdateOptions) (*corev1.ConfigMap, error)
}

// CompletionOptions configure NewConfigMapCompletions.
type CompletionOptions struct {
	// TTL: entries older than this are forgotten (default 7 days).
	TTL time.Duration
	// MaxEntries bounds the ConfigMap (default 5000, ~500 KB, half the 1 MiB limit);
	// the oldest entries go first.
	MaxEntries int
	// FlushDelay batches writes (default 1s).
	FlushDelay time.Duration
	// RefreshInterval: at most one re-read of the ConfigMap per interval, when a
	// Job is absent and not known locally (another replica may have seen it; default 10s).
	RefreshInterval time.Duration
	Now             func() time.Time
	Log             logr.Logger
}

// completion is one remembered Job.
type completion struct {
	UID       types.UID `json:"uid"`
	Completed time.Time `json:"completed"`
}

// ConfigMapCompletions implements Completions over the ConfigMap
// depends-on-readiness-state: data key "<namespace>.<name>" (a namespace has
// no dot, so the first dot splits), value {"uid":...,"completed":RFC3339}.
//
// The rule: a Job this service saw with Complete=True stays ready for TTL
// after it is deleted (ttlSecondsAfterFinished), across restarts of the
// service. A Job it never saw complete and that is absent is "not found" and
// waits. A Job recreated under the same name is evaluated on its own.
// Replicas merge their entries into the same ConfigMap (optimistic
// concurrency, retried on conflict).
type ConfigMapCompletions struct {
	cms  ConfigMapGetUpdater
	opts CompletionOptions

	mu          sync.Mutex
	entries     map[string]completion
	dirty       bool
	flushTimer  *time.Timer
	lastRefresh time.Time
	refreshing  bool
	onChange    func()
	ctx         context.Context
}

// NewConfigMapCompletions returns a store writing to the ConfigMap StateConfigMap.
// Call Load before serving; writes happen in the background until ctx is done.
func NewConfigMapCompletions(ctx context.Context, cms ConfigMapGetUpdater, o CompletionOptions) *ConfigMapCompletions {
	if o.TTL <= 0 {
		o.TTL = 7 * 24 * time.Hour
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 5000
	}
	if o.FlushDelay <= 0 {
		o.FlushDelay = time.Second
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &ConfigMapCompletions{cms: cms, opts: o, entries: map[string]completion{}, onChange: func() {}, ctx: ctx}
}

func completionKey(ns, name string) string { return ns + "." + name }

// SetOnChange implements Completions.
func (c *ConfigMapCompletions) SetOnChange(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onChange = f
}

// Load reads the ConfigMap once, merging its entries into memory.
func (c *ConfigMapCompletions) Load(ctx context.Context) error {
	cm, err := c.cms.Get(ctx, StateConfigMap, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read ConfigMap %s: %w", StateConfigMap, err)
	}
	c.mu.Lock()
	added := c.mergeLocked(cm.Data)
	c.lastRefresh = c.opts.Now()
	f := c.onChange
	c.mu.Unlock()
	if added {
		f()
	}
	return nil
}

// mergeLocked adds the unexpired entries of data unknown in memory (or newer).
func (c *ConfigMapCompletions) mergeLocked(data map[string]string) (added bool) {
	now := c.opts.Now()
	for k, v := range data {
		var e completion
		if json.Unmarshal([]byte(v), &e) != nil || now.Sub(e.Completed) > c.opts.TTL {
			continue
		}
		if old, ok := c.entries[k]; !ok || old.UID != e.UID && e.Completed.After(old.Completed) {
			c.entries[k] = e
			added = true
		}
	}
	return added
}

// Remember implements Completions.
func (c *ConfigMapCompletions) Remember(ns, name string, uid types.UID) {
	k := completionKey(ns, name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[k]; ok && old.UID == uid {
		return
	}
	c.entries[k] = completion{UID: uid, Completed: c.opts.Now().UTC().Truncate(time.Second)}
	c.dirty = true
	if c.flushTimer == nil {
		c.flushTimer = time.AfterFunc(c.opts.FlushDelay, c.flush)
	}
}

// Completed implements Completions. A miss may start a background re-read.
func (c *ConfigMapCompletions) Completed(ns, name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[completionKey(ns, name)]
	if ok && c.opts.Now().Sub(e.Completed) <= c.opts.TTL {
		return true
	}
	if !c.refreshing && c.opts.Now().Sub(c.lastRefresh) >= c.opts.RefreshInterval {
		c.refreshing = true
		go func() {
			if err := c.Load(c.ctx); err != nil {
				c.opts.Log.Error(err, "refresh remembered Job completions")
			}
			c.mu.Lock()
			c.refreshing = false
			c.lastRefresh = c.opts.Now()
			c.mu.Unlock()
		}()
	}
	return false
}

// Flush writes pending entries now (also called by the background timer).
func (c *ConfigMapCompletions) Flush(ctx context.Context) error {
	c.mu.Lock()
	if c.flushTimer != nil {
		c.flushTimer.Stop()
		c.flushTimer = nil
	}
	if !c.dirty {
		c.mu.Unlock()
		return nil
	}
	c.dirty = false
	c.mu.Unlock()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = c.write(ctx); err == nil || !apierrors.IsConflict(err) {
			break
		}
	}
	if err != nil {
		c.mu.Lock()
		c.dirty = true // try again with the next Remember or Flush
		c.mu.Unlock()
		return fmt.Errorf("write ConfigMap %s: %w", StateConfigMap, err)
	}
	return nil
}

func (c *ConfigMapCompletions) flush() {
	if err := c.Flush(c.ctx); err != nil {
		c.opts.Log.Error(err, "persist remembered Job completions")
		c.mu.Lock()
		if c.flushTimer == nil && c.ctx.Err() == nil {
			c.flushTimer = time.AfterFunc(10*c.opts.FlushDelay, c.flush)
		}
		c.mu.Unlock()
	}
}

// write merges memory into the ConfigMap's current content and updates it.
func (c *ConfigMapCompletions) write(ctx context.Context) error {
	cm, err := c.cms.Get(ctx, StateConfigMap, metav1.GetOptions{})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.mergeLocked(cm.Data)
	data := c.dataLocked()
	c.mu.Unlock()
	cm.Data = data
	_, err = c.cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: "depends-on-readiness"})
	return err
}

// dataLocked drops expired entries and keeps the newest MaxEntries.
func (c *ConfigMapCompletions) dataLocked() map[string]string {
	now := c.opts.Now()
	keys := make([]string, 0, len(c.entries))
	for k, e := range c.entries {
		if now.Sub(e.Completed) > c.opts.TTL {
			delete(c.entries, k)
			continue
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := c.entries[keys[i]].Completed, c.entries[keys[j]].Completed
		if !a.Equal(b) {
			return a.After(b)
		}
		return strings.Compare(keys[i], keys[j]) < 0
	})
	if len(keys) > c.opts.MaxEntries {
		for _, k := range keys[c.opts.MaxEntries:] {
			delete(c.entries, k)
		}
		keys = keys[:c.opts.MaxEntries]
	}
	data := make(map[string]string, len(keys))
	for _, k := range keys {
		v, _ := json.Marshal(c.entries[k])
		data[k] = string(v)
	}
	return data
}
