package watch

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// TraceparentAnnotation on a root object makes that W3C context the parent of
// the object's episodes (a CI/CD pipeline continuing into a rollout).
// The plain "traceparent" key is read too (what CI tools that propagate W3C
// context into annotations tend to write); the prefixed key wins.
const TraceparentAnnotation = "kube-otel-bridge.io/traceparent"

func traceparent(ann map[string]string) string {
	if tp := ann[TraceparentAnnotation]; tp != "" {
		return tp
	}
	return ann["traceparent"]
}

// watchedKind is one kind the slim cache follows with a metadata-only informer.
type watchedKind struct {
	gvr        schema.GroupVersionResource
	kind       string
	apiVersion string
}

// WatchedKinds are the kinds whose owner chains the cache can resolve.
var WatchedKinds = []watchedKind{
	{schema.GroupVersionResource{Version: "v1", Resource: "pods"}, "Pod", "v1"},
	{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}, "ReplicaSet", "apps/v1"},
	{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, "Deployment", "apps/v1"},
	{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}, "StatefulSet", "apps/v1"},
	{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}, "DaemonSet", "apps/v1"},
	{schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}, "Job", "batch/v1"},
	{schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "cronjobs"}, "CronJob", "batch/v1"},
	{schema.GroupVersionResource{Version: "v1", Resource: "nodes"}, "Node", "v1"},
}

func isWatchedKind(kind string) bool {
	for _, k := range WatchedKinds {
		if k.kind == kind {
			return true
		}
	}
	return false
}

// CacheOptions configure an ObjectCache.
type CacheOptions struct {
	// TombstoneTTL is how long a deleted object is kept so that late events
	// about it still resolve (default 10m).
	TombstoneTTL time.Duration
	// Namespaces limits the namespaced informers (nil: all namespaces).
	Namespaces []string
	Logger     *slog.Logger
	// Now is the clock (default time.Now); replay injects a virtual one.
	Now func() time.Time
	// OnChange, if set, is called after an object is added, changed or
	// deleted (with Deleted set); recorders use it. It must not block.
	OnChange func(o *Object)
}

// Validate reports whether the options are usable.
func (o CacheOptions) Validate() error {
	if o.TombstoneTTL < 0 {
		return fmt.Errorf("tombstone TTL must not be negative, got %s", o.TombstoneTTL)
	}
	return nil
}

// ObjectCache is the slim object cache: per UID only what owner chains and
// rollouts need, fed by metadata-only informers (or by a recording), with
// tombstones for deleted objects.
type ObjectCache struct {
	opts CacheOptions

	mu        sync.RWMutex
	byUID     map[string]*Object
	nodeNames map[string]string // node name → UID (kubelets name nodes by name in UIDs)
	interned  map[string]string

	stores []*kindStore

	errMu  sync.Mutex
	denied error
}

// NewObjectCache returns an empty cache; Start attaches it to a cluster.
func NewObjectCache(opts CacheOptions) (*ObjectCache, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("object cache: %w", err)
	}
	if opts.TombstoneTTL == 0 {
		opts.TombstoneTTL = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &ObjectCache{opts: opts, byUID: map[string]*Object{}, nodeNames: map[string]string{}, interned: map[string]string{}}, nil
}

// Start creates the metadata informers and starts them; use WaitForSync.
func (c *ObjectCache) Start(ctx context.Context, client metadata.Interface) error {
	namespaces := c.opts.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	for _, k := range WatchedKinds {
		nss := namespaces
		if k.kind == "Node" {
			nss = []string{metav1.NamespaceAll}
		}
		for _, ns := range nss {
			what := fmt.Sprintf("%s %s", k.apiVersion, k.gvr.Resource)
			if ns != "" {
				what += " in namespace " + ns
			}
			// A reflector whose store is the cache itself: an informer would
			// keep a second copy of every object's metadata.
			st := &kindStore{c: c, k: k, ns: ns}
			r := cache.NewReflectorWithOptions(c.listWatch(client, k, ns, what), &metav1.PartialObjectMetadata{}, st,
				cache.ReflectorOptions{Name: "objects", TypeDescription: what})
			c.stores = append(c.stores, st)
			go r.RunWithContext(ctx)
		}
	}
	go c.collect(ctx)
	return nil
}

// WaitForSync waits until every informer has listed. It gives up (false)
// when ctx ends or an informer is refused access (Err says which).
func (c *ObjectCache) WaitForSync(ctx context.Context) bool {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		synced := true
		for _, st := range c.stores {
			synced = synced && st.synced.Load()
		}
		if synced {
			return true
		}
		if c.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// Err reports an informer the API server refuses (RBAC): the bridge cannot
// resolve owner chains without it.
func (c *ObjectCache) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.denied
}

// watchError logs a failed list or watch of the cache (the informer retries
// by itself) and remembers a refusal, which retrying does not cure.
func (c *ObjectCache) watchError(what string, err error) {
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		c.errMu.Lock()
		first := c.denied == nil
		if first {
			c.denied = fmt.Errorf("object cache: cannot list/watch %s: %w (the bridge needs get, list and watch on it)", what, err)
		}
		c.errMu.Unlock()
		if first {
			c.opts.Logger.Error("object cache refused by the API server", "resource", what, "err", err)
		}
		return
	}
	c.opts.Logger.Warn("object cache watch failed; the informer lists or watches again", "resource", what, "err", err)
}

// isController is the shared value of slimmed controller owner references
// (stored objects are read-only).
var isController = true

func (c *ObjectCache) observe(k watchedKind, obj any) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	// Strings many objects share are kept once: namespaces, owner kinds and
	// API versions, and an owner's UID (the owner's own copy).
	c.mu.Lock()
	o := &Object{
		UID:         string(m.UID),
		APIVersion:  k.apiVersion,
		Kind:        k.kind,
		Namespace:   c.internLocked(m.Namespace),
		Name:        m.Name,
		Generation:  m.Generation,
		Traceparent: traceparent(m.Annotations),
	}
	if prev, ok := c.byUID[o.UID]; ok {
		o.UID = prev.UID
	}
	if len(m.OwnerReferences) > 0 {
		o.Owners = make([]OwnerRef, 0, len(m.OwnerReferences))
		for _, r := range m.OwnerReferences {
			uid := string(r.UID)
			if owner, ok := c.byUID[uid]; ok {
				uid = owner.UID
			}
			o.Owners = append(o.Owners, OwnerRef{APIVersion: c.internLocked(r.APIVersion), Kind: c.internLocked(r.Kind),
				Name: r.Name, UID: uid, Controller: r.Controller != nil && *r.Controller})
		}
	}
	c.mu.Unlock()
	c.Upsert(o)
}

// internLocked returns one shared copy of a short, often repeated string
// (namespaces, kinds, API versions). Bounded: past maxInterned, strings are
// kept as they come.
func (c *ObjectCache) internLocked(s string) string {
	if v, ok := c.interned[s]; ok {
		return v
	}
	if len(c.interned) < maxInterned {
		c.interned[s] = s
	}
	return s
}

const maxInterned = 100000

func (c *ObjectCache) observeDelete(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	c.MarkDeleted(string(m.UID), c.opts.Now())
}

// Upsert adds or replaces an object.
func (c *ObjectCache) Upsert(o *Object) {
	if o == nil || o.UID == "" {
		return
	}
	c.mu.Lock()
	c.byUID[o.UID] = o
	if o.Kind == "Node" {
		c.nodeNames[o.Name] = o.UID
	}
	c.mu.Unlock()
	if c.opts.OnChange != nil {
		c.opts.OnChange(o)
	}
}

// MarkDeleted turns an object into a tombstone, kept for the TTL.
func (c *ObjectCache) MarkDeleted(uid string, at time.Time) {
	c.mu.Lock()
	o, ok := c.byUID[uid]
	if !ok || !o.Deleted.IsZero() {
		c.mu.Unlock()
		return
	}
	cp := *o
	cp.Deleted = at
	c.byUID[uid] = &cp
	c.mu.Unlock()
	if c.opts.OnChange != nil {
		c.opts.OnChange(&cp)
	}
}

// Get returns the object with the UID, tombstones included. Objects are
// never modified after insertion; callers must not modify them either.
func (c *ObjectCache) Get(uid string) (*Object, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	o, ok := c.byUID[uid]
	return o, ok
}

// Len is the number of objects and tombstones held.
func (c *ObjectCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byUID)
}

func (c *ObjectCache) lookup(r *convert.Ref) *Object {
	if o, ok := c.byUID[r.UID]; ok {
		return o
	}
	if r.Kind == "Node" {
		if uid, ok := c.nodeNames[r.Name]; ok {
			return c.byUID[uid]
		}
	}
	return nil
}

// maxChain bounds owner chains; real ones have at most 4 links.
const maxChain = 16

// Chain appends to chain (which holds the regarding object as its first
// element) the owners of that object up to the root, following controller
// owner references (else the first owner) by UID. known is false when the
// regarding object is of a watched kind but not (yet) in the cache, so the
// caller may wait for the informer to catch up. An owner cycle ends the chain
// at the first repeated UID.
func (c *ObjectCache) Chain(chain []convert.Ref) (out []convert.Ref, known bool) {
	if len(chain) == 0 {
		return chain, true
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	cur := c.lookup(&chain[0])
	if cur == nil {
		return chain, chain[0].Kind == "" || !isWatchedKind(chain[0].Kind) || chain[0].UID == ""
	}
	if chain[0].UID == "" || chain[0].UID != cur.UID {
		// e.g. a kubelet's node event names the node by name in the UID field.
		chain[0].UID = cur.UID
	}
	for len(chain) < maxChain {
		owner := controllerOf(cur)
		if owner == nil {
			break
		}
		if seen(chain, owner.UID) {
			break
		}
		ref := convert.Ref{Kind: owner.Kind, APIVersion: owner.APIVersion, Name: owner.Name, UID: owner.UID, Namespace: cur.Namespace}
		next, ok := c.byUID[owner.UID]
		if ok {
			ref.Namespace = next.Namespace
		}
		chain = append(chain, ref)
		if !ok {
			break
		}
		cur = next
	}
	return chain, true
}

func seen(chain []convert.Ref, uid string) bool {
	for i := range chain {
		if chain[i].UID == uid {
			return true
		}
	}
	return false
}

func controllerOf(o *Object) *OwnerRef {
	for i := range o.Owners {
		if o.Owners[i].Controller {
			return &o.Owners[i]
		}
	}
	if len(o.Owners) > 0 {
		return &o.Owners[0]
	}
	return nil
}

// collect removes tombstones older than the TTL, once a minute.
func (c *ObjectCache) collect(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Collect(c.opts.Now())
		}
	}
}

// Collect removes tombstones older than the TTL at now.
func (c *ObjectCache) Collect(now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for uid, o := range c.byUID {
		if !o.Deleted.IsZero() && now.Sub(o.Deleted) > c.opts.TombstoneTTL {
			delete(c.byUID, uid)
			if o.Kind == "Node" && c.nodeNames[o.Name] == uid {
				delete(c.nodeNames, o.Name)
			}
			n++
		}
	}
	return n
}
