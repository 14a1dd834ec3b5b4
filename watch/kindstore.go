package watch

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

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
	// streamed holds the UIDs a watch-list streamed so far (Transformer);
	// a new watch-list attempt starts it afresh (startStream).
	streamed *uidSet
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
// kind and scope that are not listed any more were deleted meanwhile. A
// watch-list's list is the one streamedStub: its objects are the ones it
// streamed (Transformer).
func (s *kindStore) Replace(list []any, _ string) error {
	listed := &uidSet{u: make(map[uuid]struct{}, len(list))}
	for _, obj := range list {
		switch m := obj.(type) {
		case *metav1.PartialObjectMetadata: // a list's item
			listed.add(string(m.UID))
			s.c.observe(s.k, obj)
		case *listedStub: // a watch-list's: observed as it was streamed (Transformer)
			s.mu.Lock()
			if s.streamed != nil {
				listed.merge(s.streamed)
			}
			s.streamed = nil
			s.mu.Unlock()
		}
	}
	if s.synced.Load() {
		s.c.markUnlisted(s.k.kind, s.ns, listed, s.c.opts.Now())
	}
	s.synced.Store(true)
	return nil
}

// startStream forgets what an earlier watch-list attempt streamed: a new one
// streams every object again, and one that was streamed before but not now
// was deleted meanwhile.
func (s *kindStore) startStream() {
	s.mu.Lock()
	s.streamed = nil
	s.mu.Unlock()
}

func (s *kindStore) Resync() error { return nil }

// uidSet is a set of UIDs.
type uidSet struct {
	u map[uuid]struct{}
	s map[string]struct{}
}

// merge adds the UIDs of o (taking its maps when l has none of its own).
func (l *uidSet) merge(o *uidSet) {
	if len(l.u) == 0 {
		l.u = o.u
	} else {
		for u := range o.u {
			l.u[u] = struct{}{}
		}
	}
	for uid := range o.s {
		if l.s == nil {
			l.s = map[string]struct{}{}
		}
		l.s[uid] = struct{}{}
	}
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
	var gone []string
	c.mu.RLock()
	unlisted := func(e *entry) bool {
		k, _ := c.kindOf(e)
		return k == kind && !e.isDeleted() && (ns == "" || c.namespaceOf(e) == ns)
	}
	for e := range c.uuids.all() {
		if _, ok := listed.u[e.uid]; !ok && unlisted(e) {
			gone = append(gone, e.uid.String())
		}
	}
	for uid, e := range c.byStr {
		if _, ok := listed.s[uid]; !ok && unlisted(e) {
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
			l, err := ri.List(ctx, o)
			if err != nil {
				c.watchError(what, err)
				return nil, err
			}
			for i := range l.Items {
				slimListed(&l.Items[i].ObjectMeta)
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
	return cache.ToListWatcherWithWatchListSemantics(lw, client)
}
