package watch

import (
	"context"
	"sync"
	"sync/atomic"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// eventStore is the Event reflector's store. An informer would keep every
// Event whole for the API server's event TTL (an hour of events); the bridge
// needs only, per Event, its UID and resourceVersion: to see on a relist
// which Events changed or went away. It keeps them in the worker's dedup
// table (Dedup), one entry per live Event. Objects go straight to the
// worker.
type eventStore struct {
	s      *EventSource
	ctx    context.Context
	events *Dedup
	synced atomic.Bool
	mu     sync.Mutex
	// streamed holds the UIDs of the Events the current list streamed so
	// far (streamList); nil outside one.
	streamed *uidTable[struct{}]
}

func newEventStore(ctx context.Context, s *EventSource) *eventStore {
	return &eventStore{s: s, ctx: ctx, events: s.dedup}
}

// remember records the Event's resourceVersion; it reports whether the
// Event is new or changed.
func (st *eventStore) remember(obj any) (changed, ok bool) {
	m, err := metaOf(obj)
	if err != nil {
		return false, false
	}
	return st.events.see(string(m.GetUID()), m.GetResourceVersion()), true
}

// packNumericRV returns a resourceVersion of 1 to 16 decimal digits
// (etcd's are) as its value with its length in the top byte, so that
// leading zeros survive and keeping it costs no string; false for anything
// else.
func packNumericRV(rv string) (uint64, bool) {
	if len(rv) == 0 || len(rv) > 16 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(rv); i++ {
		c := rv[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n | uint64(len(rv))<<56, true // 10^16 < 2^56
}

func metaOf(obj any) (metav1.Object, error) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	return meta.Accessor(obj)
}

// Add and Update hand the Event to the worker (which blocks when its queue
// is full: backpressure on the watch). The reflector calls Add for a watch's
// ADDED, which carries the Event as it was created (a watch resumed at a
// resourceVersion replays each change as it was): the worker takes the
// Event's count then as its first (see observed.created). Lists go through
// Replace or streamList instead.
func (st *eventStore) Add(obj any) error { return st.add(obj, true) }

func (st *eventStore) Update(obj any) error { return st.add(obj, false) }

func (st *eventStore) add(obj any, created bool) error {
	if _, ok := st.remember(obj); ok {
		obj, _ = slimEvent(obj)
		st.s.enqueue(st.ctx, obj, observed{created: created})
	}
	return nil
}

// Delete marks the Event gone; the worker drops it from the table when it
// gets to the deletion, after any update of it still queued.
func (st *eventStore) Delete(obj any) error {
	if m, err := metaOf(obj); err == nil {
		st.events.markGone(string(m.GetUID()))
	}
	st.s.enqueueDelete(st.ctx, obj)
	return nil
}

// streamList lists the Events page by page with consistent reads, which
// every API server pages (as the object cache's kind stores do), and hands
// each Event on as it arrives, as Replace would (to the worker, as initial
// the first time), noting its key: client-go's reflector would hold every
// page until the list ends, and an API server's watch cache answers its
// first LIST (resourceVersion 0) in one response whatever the limit: every
// live Event whole, an hour of them. The list returned holds one Event
// named streamedName, which tells Replace to take the noted keys. When a
// continue token expires (etcd compacted meanwhile) the list starts over.
func (st *eventStore) streamList(ctx context.Context, list func(context.Context, metav1.ListOptions) (runtime.Object, error)) (runtime.Object, error) {
	st.startStream()
	opts := metav1.ListOptions{Limit: listPageSize}
	for {
		l, err := list(ctx, opts)
		if apierrors.IsResourceExpired(err) && opts.Continue != "" {
			st.startStream()
			opts.Continue = ""
			continue
		}
		if err != nil {
			return nil, err
		}
		lm, err := meta.ListAccessor(l)
		if err != nil {
			return nil, err
		}
		if err := meta.EachListItem(l, func(obj runtime.Object) error {
			st.stream(obj)
			return nil
		}); err != nil {
			return nil, err
		}
		if lm.GetContinue() == "" {
			return &eventsv1.EventList{ListMeta: metav1.ListMeta{ResourceVersion: lm.GetResourceVersion()},
				Items: []eventsv1.Event{{ObjectMeta: metav1.ObjectMeta{Name: streamedName}}}}, nil
		}
		opts.Continue = lm.GetContinue()
	}
}

// stream hands one listed Event on (see streamList) and notes its UID.
func (st *eventStore) stream(obj any) {
	m, err := metaOf(obj)
	if err != nil {
		return
	}
	initial := !st.synced.Load()
	uid := string(m.GetUID())
	changed := st.events.see(uid, m.GetResourceVersion())
	st.mu.Lock()
	if st.streamed == nil {
		st.streamed = &uidTable[struct{}]{}
	}
	st.streamed.set(uid, struct{}{})
	st.mu.Unlock()
	if initial || changed {
		obj, _ = slimEvent(obj)
		st.s.enqueue(st.ctx, obj, observed{initial: initial, listed: true})
	}
}

// startStream forgets what an earlier list streamed: a new one streams
// every Event again, and one streamed before but not now was deleted
// meanwhile.
func (st *eventStore) startStream() {
	st.mu.Lock()
	st.streamed = nil
	st.mu.Unlock()
}

// Replace is a list: the first one is the initial list; later ones (a
// relist after the watch broke) yield the Events that changed meanwhile and
// the deletions of those that went away. streamList's list stands for the
// Events it handed on as they came; those it did not went away.
func (st *eventStore) Replace(list []any, _ string) error {
	if ev, ok := firstItem(list).(*eventsv1.Event); ok && ev.Name == streamedName && ev.UID == "" {
		st.endStream()
		return nil
	}
	st.startStream()
	for _, obj := range list {
		st.stream(obj)
	}
	st.endStream()
	return nil
}

// endStream ends a list: the Events seen before that it did not stream
// were deleted meanwhile.
func (st *eventStore) endStream() {
	st.mu.Lock()
	streamed := st.streamed
	st.streamed = nil
	st.mu.Unlock()
	if streamed == nil {
		streamed = &uidTable[struct{}]{}
	}
	for _, uid := range st.events.markGoneExcept(streamed) {
		st.s.enqueueDelete(st.ctx, &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid)}})
	}
	st.synced.Store(true)
}

func (st *eventStore) Resync() error { return nil }

// HasSynced reports whether the initial list went to the worker.
func (st *eventStore) HasSynced() bool { return st.synced.Load() }

// Len is the number of Events known.
func (st *eventStore) Len() int { return st.events.Len() }
