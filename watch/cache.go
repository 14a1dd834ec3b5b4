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
	// OnDelete, if set, is called after an object is deleted (Deleted set).
	// It must not block. The daemon needs deletions only: building an
	// Object for every update of every pod for OnChange was 4 % of its CPU
	// in a rollout storm.
	OnDelete func(o *Object)
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
// tombstones for deleted objects. It keeps compact entries (see entry) and
// hands out Objects built from them.
type ObjectCache struct {
	opts CacheOptions

	mu        sync.RWMutex
	uuids     uuidIndex         // objects whose UID is a canonical UUID
	byStr     map[string]*entry // objects with any other UID
	nodeNames map[string]string // node name → UID (kubelets name nodes by name in UIDs)
	// kinds and namespaces many objects share are kept once, entries refer
	// to them by index (kinds[0] and nss[0] are "none" and "").
	kinds   []kindAV
	kindIdx map[kindAV]uint8
	nss     []string
	nsIdx   map[string]uint32
	// uidStrs holds the UID strings of canonical entries that owner chains
	// handed out (keepUIDs): chains give owners' UIDs per occurrence, and
	// formatting them from the compact uuid each time would allocate per
	// link. Entries that never are in a chain (most pods) cost nothing.
	uidStrs map[uuid]string

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
	c := &ObjectCache{opts: opts, byStr: map[string]*entry{}, nodeNames: map[string]string{},
		kinds: []kindAV{{}}, kindIdx: map[kindAV]uint8{}, nss: []string{""}, nsIdx: map[string]uint32{"": 0}, uidStrs: map[uuid]string{}}
	for _, k := range WatchedKinds {
		c.kindLocked(k.kind, k.apiVersion)
	}
	return c, nil
}

// Watches is how many watches Start runs: one per kind and namespace
// (Nodes: one).
func (c *ObjectCache) Watches() int {
	n := 0
	for _, k := range WatchedKinds {
		n += len(c.namespacesOf(k))
	}
	return n
}

// namespacesOf are the namespaces k is watched in ("": all).
func (c *ObjectCache) namespacesOf(k watchedKind) []string {
	if len(c.opts.Namespaces) == 0 || k.kind == "Node" {
		return []string{metav1.NamespaceAll}
	}
	return c.opts.Namespaces
}

// Start creates the metadata informers and starts them; use WaitForSync.
func (c *ObjectCache) Start(ctx context.Context, client metadata.Interface) error {
	for _, k := range WatchedKinds {
		for _, ns := range c.namespacesOf(k) {
			what := fmt.Sprintf("%s %s", k.apiVersion, k.gvr.Resource)
			if ns != "" {
				what += " in namespace " + ns
			}
			// A reflector whose store is the cache itself: an informer would
			// keep a second copy of every object's metadata.
			st := &kindStore{c: c, k: k, ns: ns}
			r := cache.NewReflectorWithOptions(c.listWatch(client, st, what), &metav1.PartialObjectMetadata{}, st,
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

func (c *ObjectCache) observe(k watchedKind, obj any) { c.observeStreamed(k, obj, 0, false) }

// observeStreamed is observe, noting in the entry, when streamed, the
// watch-list attempt that streamed it.
func (c *ObjectCache) observeStreamed(k watchedKind, obj any, attempt uint8, streamed bool) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok || m.UID == "" {
		return
	}
	var buf [2]OwnerRef
	owners := buf[:0]
	for _, r := range m.OwnerReferences {
		owners = append(owners, OwnerRef{APIVersion: r.APIVersion, Kind: r.Kind, Name: r.Name, UID: string(r.UID),
			Controller: r.Controller != nil && *r.Controller})
	}
	uid := string(m.UID)
	c.mu.Lock()
	var prevGen int64
	if m.DeletionTimestamp != nil {
		if old := c.findLocked(uid); old != nil {
			prevGen = old.generation
		}
	}
	e := c.putLocked(uid, k.kind, k.apiVersion, m.Namespace, m.Name, owners)
	e.generation = terminatingGeneration(prevGen, m)
	e.setRV(ParseRV(m.ResourceVersion))
	if streamed {
		e.streamed = attempt
	}
	if tp := traceparent(m.Annotations); tp != "" {
		e.extra().traceparent = tp
	}
	if k.kind == "Node" {
		c.nodeNames[m.Name] = uid
	}
	var changed *Object
	if c.opts.OnChange != nil {
		changed = c.objectLocked(e, uid, m.Name)
	}
	c.mu.Unlock()
	if changed != nil {
		c.opts.OnChange(changed)
	}
}

// putLocked stores (or overwrites) the entry of uid, live, with generation
// and traceparent unset; it returns the entry for the caller to complete.
// owners are not retained.
func (c *ObjectCache) putLocked(uid, kind, apiVersion, ns, name string, owners []OwnerRef) *entry {
	u, canonical := parseUUID(uid)
	var e *entry
	if canonical {
		if e = c.uuids.get(u); e == nil {
			e = &entry{uid: u}
			c.uuids.add(e)
		}
	} else if e = c.byStr[uid]; e == nil {
		e = &entry{}
		c.byStr[uid] = e
	}
	var prevUID string
	if e.ext != nil {
		prevUID = e.ext.uid
	}
	*e = entry{uid: u}
	if !canonical {
		if prevUID == uid {
			uid = prevUID // the copy already kept
		}
		e.extra().uid = uid
	}
	if e.kind = c.kindLocked(kind, apiVersion); e.kind == 0 {
		x := e.extra()
		x.kind, x.apiVersion = kind, apiVersion
	}
	if i, ok := c.nsLocked(ns); ok {
		e.ns = i
	} else {
		e.extra().namespace = ns
		e.flags |= flagNamespaceExt
	}
	switch {
	case len(owners) == 1 && c.inlineOwnerLocked(e, &owners[0]):
	case len(owners) > 0:
		x := e.extra()
		x.owners = make([]OwnerRef, len(owners))
		for i, r := range owners {
			if ki := c.kindLocked(r.Kind, r.APIVersion); ki != 0 {
				r.Kind, r.APIVersion = c.kinds[ki].kind, c.kinds[ki].apiVersion
			}
			if owner := c.byStr[r.UID]; owner != nil && owner.ext != nil {
				r.UID = owner.ext.uid // the owner's own copy
			}
			x.owners[i] = r
		}
	}
	e.setName(name)
	return e
}

// uuidStringLocked is u formatted; kept reports that it is the string kept
// for u (keepUIDs), which costs no allocation.
func (c *ObjectCache) uuidStringLocked(u uuid) (s string, kept bool) {
	if s, ok := c.uidStrs[u]; ok {
		return s, true
	}
	return u.String(), false
}

// uidStringLocked is e's UID; kept as for uuidStringLocked (always true for
// a UID that is not a canonical UUID: e keeps it as it is).
func (c *ObjectCache) uidStringLocked(e *entry) (s string, kept bool) {
	if e.ext != nil && e.ext.uid != "" {
		return e.ext.uid, true
	}
	return c.uuidStringLocked(e.uid)
}

// inlineOwnerLocked keeps r as e's inline owner if it can be (a canonical
// UID and a kind in the table).
func (c *ObjectCache) inlineOwnerLocked(e *entry, r *OwnerRef) bool {
	ou, ok := parseUUID(r.UID)
	if !ok {
		return false
	}
	ki := c.kindLocked(r.Kind, r.APIVersion)
	if ki == 0 {
		return false
	}
	e.ownerUID, e.ownerKind, e.ownerName = ou, ki, r.Name
	if r.Controller {
		e.flags |= flagOwnerController
	}
	// Share the owner's copy of its name; an owner that keeps its name as
	// a suffix keeps r's copy from now on, for its other dependents.
	if owner := c.uuids.get(ou); owner != nil && owner.nameIs(r.Name) {
		if owner.flags&flagNameSuffix != 0 {
			owner.name = r.Name
			owner.flags &^= flagNameSuffix
		}
		e.ownerName = owner.name
	}
	return true
}

// kindLocked returns the index of a kind in the table, adding it; 0 when
// the table is full.
func (c *ObjectCache) kindLocked(kind, apiVersion string) uint8 {
	k := kindAV{kind, apiVersion}
	if i, ok := c.kindIdx[k]; ok {
		return i
	}
	if len(c.kinds) > maxKinds {
		return 0
	}
	i := uint8(len(c.kinds))
	c.kinds = append(c.kinds, k)
	c.kindIdx[k] = i
	return i
}

// nsLocked returns the index of a namespace in the table, adding it; false
// past maxInterned namespaces.
func (c *ObjectCache) nsLocked(ns string) (uint32, bool) {
	if i, ok := c.nsIdx[ns]; ok {
		return i, true
	}
	if len(c.nss) >= maxInterned {
		return 0, false
	}
	i := uint32(len(c.nss))
	c.nss = append(c.nss, ns)
	c.nsIdx[ns] = i
	return i, true
}

const maxInterned = 100000

func (c *ObjectCache) kindOf(e *entry) (kind, apiVersion string) {
	if e.kind == 0 {
		return e.ext.kind, e.ext.apiVersion
	}
	k := &c.kinds[e.kind]
	return k.kind, k.apiVersion
}

func (c *ObjectCache) namespaceOf(e *entry) string {
	if e.flags&flagNamespaceExt != 0 {
		return e.ext.namespace
	}
	return c.nss[e.ns]
}

// objectLocked builds the Object of e. uid and name, when not empty, are
// the object's (saving their formatting).
func (c *ObjectCache) objectLocked(e *entry, uid, name string) *Object {
	if uid == "" {
		uid, _ = c.uidStringLocked(e)
	}
	if name == "" {
		name = e.fullName()
	}
	o := &Object{UID: uid, Namespace: c.namespaceOf(e), Name: name, Generation: e.generation, Deleted: e.deletedAt()}
	o.Kind, o.APIVersion = c.kindOf(e)
	if e.ext != nil {
		o.Traceparent = e.ext.traceparent
		o.Owners = e.ext.owners
	}
	if e.ownerKind != 0 {
		k := &c.kinds[e.ownerKind]
		ownerUID, _ := c.uuidStringLocked(e.ownerUID)
		o.Owners = []OwnerRef{{APIVersion: k.apiVersion, Kind: k.kind, Name: e.ownerName, UID: ownerUID,
			Controller: e.flags&flagOwnerController != 0}}
	}
	return o
}

func (c *ObjectCache) findLocked(uid string) *entry {
	if u, ok := parseUUID(uid); ok {
		return c.uuids.get(u)
	}
	return c.byStr[uid]
}

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

// Upsert adds or replaces an object. The cache keeps its own form of o.
func (c *ObjectCache) Upsert(o *Object) {
	if o == nil || o.UID == "" {
		return
	}
	c.mu.Lock()
	e := c.putLocked(o.UID, o.Kind, o.APIVersion, o.Namespace, o.Name, o.Owners)
	e.generation = o.Generation
	if o.Traceparent != "" {
		e.extra().traceparent = o.Traceparent
	}
	e.setDeleted(o.Deleted)
	if o.Kind == "Node" {
		c.nodeNames[o.Name] = o.UID
	}
	c.mu.Unlock()
	if c.opts.OnChange != nil {
		c.opts.OnChange(o)
	}
	if c.opts.OnDelete != nil && !o.Deleted.IsZero() {
		c.opts.OnDelete(o)
	}
}

// MarkDeleted turns an object into a tombstone, kept for the TTL.
func (c *ObjectCache) MarkDeleted(uid string, at time.Time) {
	c.mu.Lock()
	e := c.findLocked(uid)
	if e == nil || e.isDeleted() {
		c.mu.Unlock()
		return
	}
	c.markDeletedLocked(e, uid, at)
}

// markDeletedLocked makes e a tombstone, unlocks c.mu and tells OnChange
// and OnDelete.
func (c *ObjectCache) markDeletedLocked(e *entry, uid string, at time.Time) {
	e.setDeleted(at)
	var changed *Object
	if c.opts.OnChange != nil || c.opts.OnDelete != nil {
		changed = c.objectLocked(e, uid, "")
		changed.Deleted = at
	}
	c.mu.Unlock()
	if changed == nil {
		return
	}
	if c.opts.OnChange != nil {
		c.opts.OnChange(changed)
	}
	if c.opts.OnDelete != nil {
		c.opts.OnDelete(changed)
	}
}

// Get returns the object with the UID, tombstones included. Each call
// builds the Object anew; callers must not modify its Owners.
func (c *ObjectCache) Get(uid string) (*Object, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.findLocked(uid)
	if e == nil {
		return nil, false
	}
	return c.objectLocked(e, uid, ""), true
}

// Root returns what the causality engine needs of an episode's root object
// (its generation and traceparent annotation) without building an Object:
// it is looked up once per occurrence.
func (c *ObjectCache) Root(uid string) (generation int64, traceparent string, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.findLocked(uid)
	if e == nil {
		return 0, "", false
	}
	if e.ext != nil {
		traceparent = e.ext.traceparent
	}
	return e.generation, traceparent, true
}

// Len is the number of objects and tombstones held.
func (c *ObjectCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.uuids.len() + len(c.byStr)
}

// lookupLocked finds the entry of r, by UID or, for a node, by name (then
// byName is true).
func (c *ObjectCache) lookupLocked(r *convert.Ref) (e *entry, byName bool) {
	if e := c.findLocked(r.UID); e != nil {
		return e, false
	}
	if r.Kind == "Node" {
		if uid, ok := c.nodeNames[r.Name]; ok {
			if e := c.findLocked(uid); e != nil {
				return e, true
			}
		}
	}
	return nil, false
}

// maxChain bounds owner chains; real ones have at most 4 links.
const maxChain = 16

// Chain appends to chain (which holds the regarding object as its first
// element) the owners of that object up to the root, following controller
// owner references (else the first owner) by UID. known is false when the
// regarding object is of a watched kind but not (yet) in the cache, or in
// the cache at a resourceVersion older than the one the Event names (see
// entry.seenAtLeast), so the caller may wait for the watch to catch up:
// a controller's Event about the update it acted on (a Deployment's new
// generation: ScalingReplicaSet) must not be traced with the object as it
// was before. An owner cycle ends the chain at the first repeated UID.
func (c *ObjectCache) Chain(chain []convert.Ref) (out []convert.Ref, known bool) {
	if len(chain) == 0 {
		return chain, true
	}
	c.mu.RLock()
	out, known, formatted := c.chainLocked(chain)
	c.mu.RUnlock()
	if formatted != 0 {
		c.keepUIDs(out, formatted)
	}
	return out, known
}

// chainLocked is Chain under the read lock; formatted has bit i set when
// chain[i].UID was formatted from the compact UID of a cached entry (for
// keepUIDs).
func (c *ObjectCache) chainLocked(chain []convert.Ref) (out []convert.Ref, known bool, formatted uint32) {
	cur, byName := c.lookupLocked(&chain[0])
	if cur == nil {
		return chain, chain[0].Kind == "" || !isWatchedKind(chain[0].Kind) || chain[0].UID == "", 0
	}
	// Behind the Event: the chain as cached, for the caller to use if the
	// version never comes.
	known = cur.seenAtLeast(ParseRV(chain[0].ResourceVersion))
	if byName {
		// e.g. a kubelet's node event names the node by name in the UID field.
		var kept bool
		chain[0].UID, kept = c.uidStringLocked(cur)
		if !kept {
			formatted |= 1
		}
	}
	for len(chain) < maxChain {
		ref, next, kept, ok := c.ownerLocked(cur)
		if !ok {
			break
		}
		if seen(chain, ref.UID) {
			break
		}
		ref.Namespace = c.namespaceOf(cur)
		if next != nil {
			ref.Namespace = c.namespaceOf(next)
			if !kept {
				formatted |= 1 << len(chain)
			}
		}
		chain = append(chain, ref)
		if next == nil {
			break
		}
		cur = next
	}
	return chain, known, formatted
}

// keepUIDs keeps the UIDs of chain marked in formatted (see chainLocked) as
// the string forms of their entries, so that later chains through the same
// owners do not format them again. Only objects that turn up in owner
// chains pay for it: most cached objects are pods nobody owns through.
func (c *ObjectCache) keepUIDs(chain []convert.Ref, formatted uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range chain {
		if formatted&(1<<i) == 0 {
			continue
		}
		uid := chain[i].UID
		u, ok := parseUUID(uid)
		if !ok || c.uuids.get(u) == nil {
			continue // gone meanwhile: nothing would remove its string
		}
		if _, ok := c.uidStrs[u]; !ok {
			c.uidStrs[u] = uid // formatted by chainLocked: a string of its own
		}
	}
}

func seen(chain []convert.Ref, uid string) bool {
	for i := range chain {
		if chain[i].UID == uid {
			return true
		}
	}
	return false
}

// ownerLocked returns the owner of e that chains follow (the controller,
// else the first owner) as a Ref without namespace, and its entry if
// cached; ok is false when e has no owner. kept is false when the UID was
// formatted from e's compact owner UID, not taken from a string kept.
func (c *ObjectCache) ownerLocked(e *entry) (ref convert.Ref, next *entry, kept, ok bool) {
	if e.ownerKind != 0 {
		k := &c.kinds[e.ownerKind]
		uid, kept := c.uuidStringLocked(e.ownerUID)
		return convert.Ref{Kind: k.kind, APIVersion: k.apiVersion, Name: e.ownerName, UID: uid}, c.uuids.get(e.ownerUID), kept, true
	}
	if e.ext == nil {
		return ref, nil, true, false
	}
	r := controllerOf(e.ext.owners)
	if r == nil {
		return ref, nil, true, false
	}
	return convert.Ref{Kind: r.Kind, APIVersion: r.APIVersion, Name: r.Name, UID: r.UID}, c.findLocked(r.UID), true, true
}

func controllerOf(owners []OwnerRef) *OwnerRef {
	for i := range owners {
		if owners[i].Controller {
			return &owners[i]
		}
	}
	if len(owners) > 0 {
		return &owners[0]
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
	expired := func(e *entry) bool {
		if !e.isDeleted() || now.Sub(e.deletedAt()) <= c.opts.TombstoneTTL {
			return false
		}
		if kind, _ := c.kindOf(e); kind == "Node" {
			name := e.fullName()
			if uid, _ := c.uidStringLocked(e); c.nodeNames[name] == uid {
				delete(c.nodeNames, name)
			}
		}
		n++
		return true
	}
	var gone []uuid
	for e := range c.uuids.all() {
		if expired(e) {
			gone = append(gone, e.uid)
		}
	}
	for _, u := range gone {
		c.uuids.delete(u)
		delete(c.uidStrs, u)
	}
	for uid, e := range c.byStr {
		if expired(e) {
			delete(c.byStr, uid)
		}
	}
	return n
}

// terminatingGeneration is the generation to keep for m, whose cached entry
// had prev (0: none). Graceful deletion bumps metadata.generation as it sets
// deletionTimestamp (pods too, since they have a generation): that is no new
// rollout, and must not start a new episode for the Events that come while
// the object terminates, so a terminating object keeps the one it had.
func terminatingGeneration(prev int64, m *metav1.PartialObjectMetadata) int64 {
	if m.DeletionTimestamp != nil && prev > 0 && m.Generation > prev {
		return prev
	}
	return m.Generation
}
