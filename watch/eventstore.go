package watch

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
	// streamed holds the keys (known's own) of the Events the current
	// watch-list streamed so far (Transformer); nil outside one.
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

// Transformer makes eventStore a cache.TransformingStore: a reflector that
// syncs by watch-list (sendInitialEvents, the default with client-go ≥ 1.35
// and an API server with WatchList) keeps every streamed object in a
// temporary store until the initial-events-end bookmark and only then calls
// Replace with its contents: every live Event whole, an hour of them. The
// transform hands each streamed Event on as Replace would (to the worker,
// as initial the first time) and notes its key; the temporary store keeps
// its key and the same streamedStub for every Event, and Replace takes the
// noted keys.
func (st *eventStore) Transformer() cache.TransformFunc {
	return func(obj any) (any, error) {
		m, err := metaOf(obj)
		if err != nil {
			return obj, nil
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
		return streamedStub, nil
	}
}

// startStream forgets what an earlier watch-list attempt streamed: a new one
// streams every Event again, and one streamed before but not now was
// deleted meanwhile.
func (st *eventStore) startStream() {
	st.mu.Lock()
	st.streamed = nil
	st.mu.Unlock()
}

// Replace is a list: the first one is the initial list; later ones (a
// relist after the watch broke) yield the Events that changed meanwhile and
// the deletions of those that went away. A watch-list's list is
// streamedStub, once per Event: its Events went on as they were streamed
// (Transformer), and those not streamed went away.
func (st *eventStore) Replace(list []any, _ string) error {
	if _, ok := firstItem(list).(*listedStub); ok {
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

// replaceStreamed ends a watch-list: the known Events it did not stream
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

// streamedStub is the item the reflector's watch-list temporary store holds
// for every Event streamed (Transformer): the store keys items by the
// object as it came, before the transform, so one stub does for all.
var streamedStub = &listedStub{name: "streamed"}

// listedStub is a store item standing for Events handed on already. The
// getters a store may call (key, resourceVersion for its metrics) answer;
// the embedded nil metav1.Object only completes the interface: its setters
// are never called on a store's items.
type listedStub struct {
	metav1.Object
	name string
}

func (l *listedStub) GetNamespace() string                          { return "" }
func (l *listedStub) GetName() string                               { return l.name }
func (l *listedStub) GetUID() types.UID                             { return "" }
func (l *listedStub) GetResourceVersion() string                    { return "" }
func (l *listedStub) GetGeneration() int64                          { return 0 }
func (l *listedStub) GetLabels() map[string]string                  { return nil }
func (l *listedStub) GetAnnotations() map[string]string             { return nil }
func (l *listedStub) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (l *listedStub) GetDeletionTimestamp() *metav1.Time            { return nil }
func (l *listedStub) GetCreationTimestamp() metav1.Time             { return metav1.Time{} }
func (l *listedStub) GetFinalizers() []string                       { return nil }
func (l *listedStub) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }

// GetObjectKind and DeepCopyObject make it a runtime.Object.
func (l *listedStub) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (l *listedStub) DeepCopyObject() runtime.Object {
	c := *l
	return &c
}
