package watch

import (
	"context"
	"strings"
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
// which Events changed or went away. Objects go straight to the worker.
type eventStore struct {
	s      *EventSource
	ctx    context.Context
	mu     sync.Mutex
	known  map[string]knownEvent // by namespace/name
	synced atomic.Bool
	// streamed holds the keys (known's own) of the Events the current list
	// streamed so far (streamList); nil outside one.
	streamed map[string]struct{}
}

type knownEvent struct {
	// id is the Event's key in known (namespace/name) followed by its UID,
	// in one string of its own: the map key is id's prefix and the UID the
	// worker keys its maps with its rest, so that a new Event costs one
	// allocation and an update of a known one none.
	id string
	// rv is the resourceVersion packed by packRV, or 0 with rvText holding
	// it.
	rv     uint64
	rvText string
}

// uid is the Event's UID, k being the entry of key.
func (k knownEvent) uid(key string) types.UID { return types.UID(k.id[len(key):]) }

func newEventStore(ctx context.Context, s *EventSource) *eventStore {
	return &eventStore{s: s, ctx: ctx, known: map[string]knownEvent{}}
}

// maxStackKey is the longest key built without allocating (an Event's
// namespace and name are at most 63 and 253 bytes; most are far shorter).
const maxStackKey = 128

// appendKey appends m's key in known: namespace/name.
func appendKey(b []byte, m metav1.Object) []byte {
	b = append(b, m.GetNamespace()...)
	b = append(b, '/')
	return append(b, m.GetName()...)
}

func (st *eventStore) remember(obj any) (string, bool) {
	m, err := metaOf(obj)
	if err != nil {
		return "", false
	}
	var buf [maxStackKey]byte
	key := appendKey(buf[:0], m)
	st.mu.Lock()
	// Looked up with the key in buf (no allocation), stored with the key
	// in the entry's own string.
	k := st.own(st.known[string(key)], key, m)
	stored := k.id[:len(key)]
	st.known[stored] = k
	st.mu.Unlock()
	return stored, true
}

// own returns the entry of m (key being its key), reusing prev's id when the
// UID is the same, and puts its UID back into m so that the worker keys its
// maps with the same copy (observed.ownUID). The decoded Event's strings
// share one allocation with its note and names (EventDecoder); keeping them
// in the map for the Event's lifetime would keep all of that.
func (st *eventStore) own(prev knownEvent, key []byte, m metav1.Object) knownEvent {
	k := knownEvent{id: prev.id}
	uid := string(m.GetUID())
	if prev.id == "" || prev.id[len(key):] != uid {
		k.id = joinID(key, uid)
	}
	m.SetUID(types.UID(k.id[len(key):]))
	k.rv, k.rvText = packRV(m.GetResourceVersion())
	return k
}

// joinID returns key followed by uid in one allocation (string(key) + uid
// would allocate a second time for a key longer than 32 bytes).
func joinID(key []byte, uid string) string {
	var b strings.Builder
	b.Grow(len(key) + len(uid))
	b.Write(key)
	b.WriteString(uid)
	return b.String()
}

// packRV returns a resourceVersion of 1 to 16 decimal digits (etcd's are)
// as its value with its length in the top byte, so that leading zeros
// survive and keeping it costs no string; anything else as a copy of its
// own (and 0).
func packRV(rv string) (uint64, string) {
	if len(rv) == 0 || len(rv) > 16 {
		return 0, strings.Clone(rv)
	}
	var n uint64
	for i := 0; i < len(rv); i++ {
		c := rv[i]
		if c < '0' || c > '9' {
			return 0, strings.Clone(rv)
		}
		n = n*10 + uint64(c-'0')
	}
	return n | uint64(len(rv))<<56, "" // 10^16 < 2^56
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
		var buf [maxStackKey]byte
		key := appendKey(buf[:0], m)
		st.mu.Lock()
		if k, ok := st.known[string(key)]; ok {
			delete(st.known, k.id[:len(key)]) // the stored key: no new string
		}
		st.mu.Unlock()
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

// stream hands one listed Event on (see streamList) and notes its key.
func (st *eventStore) stream(obj any) {
	m, err := metaOf(obj)
	if err != nil {
		return
	}
	initial := !st.synced.Load()
	var buf [maxStackKey]byte
	key := appendKey(buf[:0], m)
	st.mu.Lock()
	prev, had := st.known[string(key)]
	k := st.own(prev, key, m)
	stored := k.id[:len(key)]
	st.known[stored] = k
	if st.streamed == nil {
		st.streamed = map[string]struct{}{}
	}
	st.streamed[stored] = struct{}{}
	st.mu.Unlock()
	if initial || !had || prev != k {
		obj, _ = slimEvent(obj)
		st.s.enqueue(st.ctx, obj, initial)
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
		st.replaceStreamed()
		return nil
	}
	initial := !st.synced.Load()
	fresh := make(map[string]knownEvent, len(list))
	var changed []any
	var buf [maxStackKey]byte
	st.mu.Lock()
	for _, obj := range list {
		m, err := metaOf(obj)
		if err != nil {
			continue
		}
		key := appendKey(buf[:0], m)
		prev, had := st.known[string(key)]
		k := st.own(prev, key, m)
		fresh[k.id[:len(key)]] = k
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
		st.s.enqueueDelete(st.ctx, &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: k.uid(goneKeys[i])}})
	}
	st.synced.Store(true)
	return nil
}

// replaceStreamed ends a streamList: the known Events it did not stream
// were deleted meanwhile.
func (st *eventStore) replaceStreamed() {
	var gone []knownEvent
	var goneKeys []string
	st.mu.Lock()
	for key, k := range st.known {
		if _, ok := st.streamed[key]; !ok {
			gone, goneKeys = append(gone, k), append(goneKeys, key)
			delete(st.known, key)
		}
	}
	st.streamed = nil
	st.mu.Unlock()
	for i, k := range gone {
		ns, name, _ := cache.SplitMetaNamespaceKey(goneKeys[i])
		st.s.enqueueDelete(st.ctx, &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: k.uid(goneKeys[i])}})
	}
	st.synced.Store(true)
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
