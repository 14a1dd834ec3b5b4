package watch

import (
	"context"
	"sync/atomic"

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
func (s *kindStore) Replace(list []any, _ string) error {
	listed := make(map[string]bool, len(list))
	for _, obj := range list {
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
			listed[string(m.UID)] = true
			s.c.observe(s.k, obj)
		}
	}
	if s.synced.Load() {
		now := s.c.opts.Now()
		for _, uid := range s.c.liveUIDs(s.k.kind, s.ns) {
			if !listed[uid] {
				s.c.MarkDeleted(uid, now)
			}
		}
	}
	s.synced.Store(true)
	return nil
}

func (s *kindStore) Resync() error { return nil }

// liveUIDs lists the UIDs of live (not deleted) objects of a kind in a
// namespace ("" all).
func (c *ObjectCache) liveUIDs(kind, ns string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []string
	for uid, o := range c.byUID {
		if o.Kind == kind && o.Deleted.IsZero() && (ns == "" || o.Namespace == ns) {
			out = append(out, uid)
		}
	}
	return out
}

// listWatch lists and watches one kind's metadata, reporting refusals
// (RBAC) and failures through watchError.
func (c *ObjectCache) listWatch(client metadata.Interface, k watchedKind, ns, what string) cache.ListerWatcher {
	ri := client.Resource(k.gvr).Namespace(ns)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l, err := ri.List(ctx, o)
			if err != nil {
				c.watchError(what, err)
				return nil, err
			}
			return l, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watchapi.Interface, error) {
			w, err := ri.Watch(ctx, o)
			if err != nil {
				c.watchError(what, err)
			}
			return w, err
		},
	}
	return cache.ToListWatcherWithWatchListSemantics(lw, client)
}
