package watch

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// eventStore is the Event reflector's store. An informer would keep every
// Event whole for the API server's event TTL (an hour of events); the bridge
// needs only, per Event, its UID and resourceVersion: to see on a relist
// which Events changed or went away. Objects go straight to the worker.
type eventStore struct {
	s      *EventSource
	ctx    context.Context
	mu     sync.Mutex
	known  map[string]knownEvent // by namespace/name
	synced atomic.Bool
}

type knownEvent struct {
	uid types.UID
	// rv is the resourceVersion when it is a number written the usual way
	// (etcd's are), so that keeping it costs no string; else rv is 0 and
	// rvText holds it.
	rv     uint64
	rvText string
}

func newEventStore(ctx context.Context, s *EventSource) *eventStore {
	return &eventStore{s: s, ctx: ctx, known: map[string]knownEvent{}}
}

func (st *eventStore) remember(obj any) (string, bool) {
	m, err := metaOf(obj)
	if err != nil {
		return "", false
	}
	key := m.GetNamespace() + "/" + m.GetName()
	st.mu.Lock()
	st.known[key] = st.own(st.known[key], m)
	st.mu.Unlock()
	return key, true
}

// own returns m's UID and resourceVersion in forms of their own, reusing
// prev's UID when it is the same, and puts that UID back into m so that the
// worker keys its maps with the same copy (observed.ownUID). The decoded
// Event's strings share one allocation with its note and names
// (EventDecoder); keeping them in the map for the Event's lifetime would
// keep all of that.
func (st *eventStore) own(prev knownEvent, m metav1.Object) knownEvent {
	k := knownEvent{uid: prev.uid}
	if uid := m.GetUID(); uid != prev.uid {
		k.uid = types.UID(strings.Clone(string(uid)))
	}
	m.SetUID(k.uid)
	rv := m.GetResourceVersion()
	if n, err := strconv.ParseUint(rv, 10, 64); err == nil && rv[0] != '0' {
		k.rv = n // no leading zero: the number gives back the same string
	} else {
		k.rvText = strings.Clone(rv)
	}
	return k
}

func metaOf(obj any) (metav1.Object, error) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	return meta.Accessor(obj)
}

// Add and Update hand the Event to the worker (which blocks when its queue
// is full: backpressure on the watch).
func (st *eventStore) Add(obj any) error {
	if _, ok := st.remember(obj); ok {
		obj, _ = slimEvent(obj)
		st.s.enqueue(st.ctx, obj, false)
	}
	return nil
}

func (st *eventStore) Update(obj any) error { return st.Add(obj) }

func (st *eventStore) Delete(obj any) error {
	if m, err := metaOf(obj); err == nil {
		st.mu.Lock()
		delete(st.known, m.GetNamespace()+"/"+m.GetName())
		st.mu.Unlock()
	}
	st.s.enqueueDelete(st.ctx, obj)
	return nil
}

// Replace is a list: the first one is the initial list; later ones (a
// relist after the watch broke) yield the Events that changed meanwhile and
// the deletions of those that went away.
func (st *eventStore) Replace(list []any, _ string) error {
	initial := !st.synced.Load()
	fresh := make(map[string]knownEvent, len(list))
	var changed []any
	st.mu.Lock()
	for _, obj := range list {
		m, err := metaOf(obj)
		if err != nil {
			continue
		}
		key := m.GetNamespace() + "/" + m.GetName()
		prev, had := st.known[key]
		k := st.own(prev, m)
		fresh[key] = k
		if initial || !had || prev != k {
			changed = append(changed, obj)
		}
	}
	var gone []knownEvent
	var goneKeys []string
	for key, k := range st.known {
		if _, ok := fresh[key]; !ok {
			gone, goneKeys = append(gone, k), append(goneKeys, key)
		}
	}
	st.known = fresh
	st.mu.Unlock()
	for _, obj := range changed {
		obj, _ = slimEvent(obj)
		st.s.enqueue(st.ctx, obj, initial)
	}
	for i, k := range gone {
		ns, name, _ := cache.SplitMetaNamespaceKey(goneKeys[i])
		st.s.enqueueDelete(st.ctx, &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: k.uid}})
	}
	st.synced.Store(true)
	return nil
}

func (st *eventStore) Resync() error { return nil }

// HasSynced reports whether the initial list went to the worker.
func (st *eventStore) HasSynced() bool { return st.synced.Load() }

// Len is the number of Events known.
func (st *eventStore) Len() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.known)
}
