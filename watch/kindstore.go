package watch

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	watchapi "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
)

// kindStore is the store of one kind's metadata reflector: it feeds the
// slim cache directly, so only the slim Object is kept per UID.
type kindStore struct {
	c      *ObjectCache
	k      watchedKind
	ns     string
	synced atomic.Bool

	mu sync.Mutex
	// attempt numbers the lists (startStream); the entries a list streams
	// are marked with it (streamList), so that Replace can tell them from
	// the others without a set of their UIDs. It wraps: an entry a list
	// does not stream is marked deleted at its Replace, so no live entry is
	// 256 attempts old.
	attempt uint8
}

func (s *kindStore) Add(obj any) error {
	s.c.observe(s.k, obj)
	return nil
}

func (s *kindStore) Update(obj any) error { return s.Add(obj) }

func (s *kindStore) Delete(obj any) error {
	s.c.observeDelete(obj)
	return nil
}

// Replace is a (re)list: every listed object is current; objects of this
// kind and scope that are not listed any more were deleted meanwhile.
// streamList's list stands for the objects it streamed into the cache.
func (s *kindStore) Replace(list []any, _ string) error {
	if isStreamed(firstItem(list)) {
		s.mu.Lock()
		attempt := s.attempt
		s.mu.Unlock()
		if s.synced.Load() {
			s.c.markUnstreamed(s.k.kind, s.ns, attempt, s.c.opts.Now())
		}
		s.synced.Store(true)
		return nil
	}
	listed := &uidSet{u: make(map[uuid]struct{}, len(list))}
	for _, obj := range list {
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
			listed.add(string(m.UID))
			s.c.observe(s.k, obj)
		}
	}
	if s.synced.Load() {
		s.c.markUnlisted(s.k.kind, s.ns, listed, s.c.opts.Now())
	}
	s.synced.Store(true)
	return nil
}

// listPageSize is the page size of streamList, client-go's pager's.
const listPageSize = 500

// streamedName names the one item of the lists streamList returns (an
// object's UID is never empty).
const streamedName = "streamed"

// streamList is a LIST that puts the objects into the cache page by page
// as they arrive, marked with the attempt, instead of handing the reflector
// every page at once: client-go's pager keeps all pages until the list
// ends, and an API server's watch cache answers the reflector's first LIST
// (resourceVersion 0) in one response whatever the limit, 600 MB of
// metadata for 100,000 pods (BenchmarkObjectCacheStartup). Its pages are
// consistent reads (resourceVersion ""), from etcd on servers whose watch
// cache does not serve them: the same load as `kubectl get pods -A`. The
// list returned holds one item named streamedName, which tells Replace to
// take the objects this attempt marked. When a continue token expires
// (etcd compacted meanwhile) the list starts over as a new attempt.
func (s *kindStore) streamList(ctx context.Context, ri metadata.ResourceInterface) (runtime.Object, error) {
	s.startStream()
	opts := metav1.ListOptions{Limit: listPageSize}
	for {
		s.mu.Lock()
		attempt := s.attempt
		s.mu.Unlock()
		l, err := ri.List(ctx, opts)
		if apierrors.IsResourceExpired(err) && opts.Continue != "" {
			s.startStream()
			opts.Continue = ""
			continue
		}
		if err != nil {
			return nil, err
		}
		for i := range l.Items {
			s.c.observeStreamed(s.k, &l.Items[i], attempt, true)
		}
		if l.Continue == "" {
			return &metav1.PartialObjectMetadataList{ListMeta: metav1.ListMeta{ResourceVersion: l.ResourceVersion},
				Items: []metav1.PartialObjectMetadata{{ObjectMeta: metav1.ObjectMeta{Name: streamedName}}}}, nil
		}
		opts.Continue = l.Continue
	}
}

// startStream begins a list: it streams every object again, and one that
// an earlier list streamed but this one does not was deleted meanwhile.
func (s *kindStore) startStream() {
	s.mu.Lock()
	s.attempt++
	s.mu.Unlock()
}

func (s *kindStore) Resync() error { return nil }

// uidSet is a set of UIDs.
type uidSet struct {
	u map[uuid]struct{}
	s map[string]struct{}
}

// isStreamed reports whether item is the one item of streamList's list.
func isStreamed(item any) bool {
	m, ok := item.(*metav1.PartialObjectMetadata)
	return ok && m.Name == streamedName && m.UID == ""
}

// firstItem is list's first item, nil for none.
func firstItem(list []any) any {
	if len(list) == 0 {
		return nil
	}
	return list[0]
}

func (l *uidSet) add(uid string) {
	if u, ok := parseUUID(uid); ok {
		l.u[u] = struct{}{}
		return
	}
	if l.s == nil {
		l.s = map[string]struct{}{}
	}
	l.s[uid] = struct{}{}
}

// markUnlisted marks deleted at now the live objects of a kind in a
// namespace ("" all) that are not in listed.
func (c *ObjectCache) markUnlisted(kind, ns string, listed *uidSet, now time.Time) {
	c.markLive(kind, ns, now, func(e *entry, uid string) bool {
		if uid != "" {
			_, ok := listed.s[uid]
			return ok
		}
		_, ok := listed.u[e.uid]
		return ok
	})
}

// markUnstreamed marks deleted at now the live objects of a kind in a
// namespace ("" all) that list attempt did not stream.
func (c *ObjectCache) markUnstreamed(kind, ns string, attempt uint8, now time.Time) {
	c.markLive(kind, ns, now, func(e *entry, _ string) bool { return e.streamed == attempt })
}

// markLive marks deleted at now the live objects of a kind in a namespace
// ("" all) that keep does not keep; keep gets the entry and, for a UID
// that is not a canonical UUID, the UID.
func (c *ObjectCache) markLive(kind, ns string, now time.Time, keep func(e *entry, uid string) bool) {
	var gone []string
	c.mu.RLock()
	unlisted := func(e *entry) bool {
		k, _ := c.kindOf(e)
		return k == kind && !e.isDeleted() && (ns == "" || c.namespaceOf(e) == ns)
	}
	for e := range c.uuids.all() {
		if unlisted(e) && !keep(e, "") {
			gone = append(gone, e.uid.String())
		}
	}
	for uid, e := range c.byStr {
		if unlisted(e) && !keep(e, uid) {
			gone = append(gone, uid)
		}
	}
	c.mu.RUnlock()
	for _, uid := range gone {
		c.MarkDeleted(uid, now)
	}
}

// listWatch lists and watches the metadata of st's kind in its scope,
// reporting refusals (RBAC) and failures through watchError.
func (c *ObjectCache) listWatch(client metadata.Interface, st *kindStore, what string) cache.ListerWatcher {
	ri := client.Resource(st.k.gvr).Namespace(st.ns)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l, err := st.streamList(ctx, ri)
			if err != nil {
				c.watchError(what, err)
				return nil, err
			}
			return l, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watchapi.Interface, error) {
			if o.SendInitialEvents != nil && *o.SendInitialEvents {
				st.startStream() // a watch-list attempt
			}
			w, err := ri.Watch(ctx, o)
			if err != nil {
				c.watchError(what, err)
			}
			return w, err
		},
	}
	// LIST and watch, never watch-list: a watch-list's temporary store
	// keeps a key per object until the list ends (1.75x the steady heap at
	// the peak for 100,000 pods), where streamList keeps nothing (1.3x).
	return cache.ToListWatcherWithWatchListSemantics(lw, listOnly{})
}

// listOnly tells client-go's reflector not to sync by watch-list.
type listOnly struct{}

func (listOnly) IsWatchListSemanticsUnSupported() bool { return true }
