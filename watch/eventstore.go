package watch

import (
	"context"
	"strconv"
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

// knownEvent is an Event's UID and resourceVersion, packed when they have
// the API server's forms (a lowercase UUID, a decimal number): 24 bytes
// and no allocation instead of two strings (≈ 100 bytes) per live Event.
// Other forms are kept as they are.
type knownEvent struct {
	uuid  [16]byte
	rv    uint64
	other *knownStrings // the UID or the resourceVersion had another form
}

type knownStrings struct {
	uid types.UID
	rv  string
}

func newKnownEvent(uid types.UID, rv string) knownEvent {
	u, okU := parseUUID(string(uid))
	v, errV := strconv.ParseUint(rv, 10, 64)
	if okU && errV == nil && strconv.FormatUint(v, 10) == rv {
		return knownEvent{uuid: u, rv: v}
	}
	return knownEvent{other: &knownStrings{uid: uid, rv: rv}}
}

// UID is the Event's UID as the API server wrote it.
func (k knownEvent) UID() types.UID {
	if k.other != nil {
		return k.other.uid
	}
	return types.UID(formatUUID(k.uuid))
}

// same reports whether a and b are the same UID and resourceVersion.
func (k knownEvent) same(o knownEvent) bool {
	if k.other != nil || o.other != nil {
		return k.other != nil && o.other != nil && *k.other == *o.other
	}
	return k.uuid == o.uuid && k.rv == o.rv
}

// parseUUID reads a UUID in its canonical lowercase form (8-4-4-4-12 hex
// digits); ok is false for any other string.
func parseUUID(s string) (u [16]byte, ok bool) {
	if len(s) != 36 {
		return u, false
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return u, false
			}
			i++
			continue
		}
		hi, ok1 := fromHex(s[i])
		lo, ok2 := fromHex(s[i+1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[j] = hi<<4 | lo
		j++
		i += 2
	}
	return u, true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func formatUUID(u [16]byte) string {
	const hexDigits = "0123456789abcdef"
	var b [36]byte
	j := 0
	for i, x := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j], b[j+1] = hexDigits[x>>4], hexDigits[x&0xf]
		j += 2
	}
	return string(b[:])
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
	st.known[key] = newKnownEvent(m.GetUID(), m.GetResourceVersion())
	st.mu.Unlock()
	return key, true
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
		k := newKnownEvent(m.GetUID(), m.GetResourceVersion())
		fresh[key] = k
		if old, ok := st.known[key]; initial || !ok || !old.same(k) {
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
		st.s.enqueueDelete(st.ctx, &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: k.UID()}})
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
