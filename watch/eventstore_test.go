package watch

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

func storeEvent(name, uid, rv string) *eventsv1.Event {
	return &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(uid), ResourceVersion: rv,
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "x"}}}}
}

func drain(s *EventSource) []observed {
	var out []observed
	for {
		select {
		case ob := <-s.queue:
			out = append(out, ob)
		default:
			return out
		}
	}
}

// The store keeps no Event, only what a relist needs to tell what changed.
func TestEventStoreRelist(t *testing.T) {
	s := &EventSource{queue: make(chan observed, 16), opts: SourceOptions{}}
	s.opts.Now = time.Now
	st := newEventStore(context.Background(), s)
	if st.HasSynced() {
		t.Fatal("synced before the first list")
	}
	_ = st.Replace([]any{storeEvent("a", "ua", "1"), storeEvent("b", "ub", "2"), storeEvent("c", "uc", "3")}, "3")
	got := drain(s)
	if len(got) != 3 || !got[0].initial || !st.HasSynced() {
		t.Fatalf("initial list: %d observed (initial %v), synced %v", len(got), got[0].initial, st.HasSynced())
	}
	if got[0].ev.ManagedFields != nil {
		t.Error("managed fields kept while queued")
	}
	_ = st.Update(storeEvent("a", "ua", "4"))
	if got := drain(s); len(got) != 1 || got[0].initial || got[0].ev.Name != "a" {
		t.Fatalf("watch update: %+v", got)
	}
	// The watch broke; meanwhile b changed and c was deleted (TTL).
	_ = st.Replace([]any{storeEvent("a", "ua", "4"), storeEvent("b", "ub", "7")}, "8")
	got = drain(s)
	if len(got) != 2 {
		t.Fatalf("relist: %d observed, want b changed and c deleted", len(got))
	}
	if got[0].ev.Name != "b" || got[0].initial || got[0].deleted {
		t.Errorf("relist change: %+v", got[0])
	}
	if got[1].ev.Name != "c" || !got[1].deleted || got[1].ev.UID != "uc" {
		t.Errorf("relist deletion: %+v", got[1])
	}
	if st.Len() != 2 {
		t.Errorf("%d Events known, want 2", st.Len())
	}
	_ = st.Delete(storeEvent("a", "ua", "4"))
	if got := drain(s); len(got) != 1 || !got[0].deleted || st.Len() != 1 {
		t.Errorf("delete: %+v, %d known", got, st.Len())
	}
}

// A watch-list streams the Events through the store's transform: each goes
// on as it arrives (initial the first time), the reflector's temporary
// store holds the one stub under every Event's key, and Replace with them
// ends the list: what was not streamed (this attempt) went away.
func TestEventStoreWatchList(t *testing.T) {
	s := &EventSource{queue: make(chan observed, 16), opts: SourceOptions{}}
	s.opts.Now = time.Now
	st := newEventStore(context.Background(), s)
	var _ cache.TransformingStore = st
	stream := func(evs ...*eventsv1.Event) []any {
		t.Helper()
		st.startStream()
		temporary := cache.NewStore(cache.DeletionHandlingMetaNamespaceKeyFunc, cache.WithTransformer(st.Transformer()))
		for _, ev := range evs {
			if err := temporary.Add(ev); err != nil {
				t.Fatal(err)
			}
		}
		return temporary.List()
	}
	list := stream(storeEvent("a", "ua", "1"), storeEvent("b", "ub", "2"), storeEvent("c", "uc", "3"))
	for _, item := range list {
		if item != any(streamedStub) {
			t.Fatalf("the temporary store holds %T %v, want only the stub", item, item)
		}
	}
	got := drain(s)
	if len(got) != 3 || !got[0].initial || !got[2].initial || got[0].ev.ManagedFields != nil {
		t.Fatalf("initial stream: %+v", got)
	}
	if st.HasSynced() {
		t.Fatal("synced before the bookmark")
	}
	_ = st.Replace(list, "3")
	if got := drain(s); len(got) != 0 || !st.HasSynced() || st.Len() != 3 {
		t.Fatalf("end of the initial watch-list: %+v, synced %v, %d known", got, st.HasSynced(), st.Len())
	}
	_ = st.Update(storeEvent("a", "ua", "4"))
	drain(s)
	// The watch broke. An attempt streams d, then breaks too; d is deleted
	// before the next one, which streams a (unchanged) and b (changed);
	// c was deleted meanwhile.
	stream(storeEvent("d", "ud", "5"))
	if got := drain(s); len(got) != 1 || got[0].ev.Name != "d" || got[0].initial {
		t.Fatalf("the broken attempt: %+v", got)
	}
	list = stream(storeEvent("a", "ua", "4"), storeEvent("b", "ub", "7"))
	_ = st.Replace(list, "9")
	got = drain(s)
	var names []string
	for _, ob := range got {
		names = append(names, fmt.Sprintf("%s deleted=%v initial=%v", ob.ev.Name, ob.deleted, ob.initial))
	}
	sort.Strings(names)
	want := []string{"b deleted=false initial=false", "c deleted=true initial=false", "d deleted=true initial=false"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Fatalf("relist by watch-list: %v, want %v", names, want)
	}
	if st.Len() != 2 || st.streamed != nil {
		t.Errorf("%d Events known (want 2), streamed set kept: %v", st.Len(), st.streamed != nil)
	}
}

// BenchmarkEventStoreKnownMemory: bytes the Event store keeps per live Event
// (the informer it replaces kept the whole Event, ~1.2 KB).
func BenchmarkEventStoreKnownMemory(b *testing.B) {
	const n = 100000
	for range b.N {
		s := &EventSource{queue: make(chan observed, 1), opts: SourceOptions{Now: time.Now}}
		st := newEventStore(context.Background(), s)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range n {
			ev := storeEvent(fmt.Sprintf("web-7bc8986495-vz4hj.%016x", i), fmt.Sprintf("0f1e2d3c-4b5a-6978-8796-%012x", i), fmt.Sprint(1000000+i))
			st.remember(ev)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/event")
		runtime.KeepAlive(st)
	}
}

// packRV must tell every two resourceVersions apart, leading zeros included,
// as comparing the strings would.
func TestPackRV(t *testing.T) {
	rvs := []string{"", "0", "00", "1", "01", "001", "10", "100", "9999999999999999", "09999999999999999", "12345678901234567", "1a", "-1", "+1"}
	seen := map[knownEvent]string{}
	for _, rv := range rvs {
		var k knownEvent
		k.rv, k.rvText = packRV(rv)
		if prev, ok := seen[k]; ok {
			t.Errorf("%q and %q pack the same: %+v", prev, rv, k)
		}
		seen[k] = rv
		if k.rv == 0 && k.rvText != rv {
			t.Errorf("%q kept as text %q", rv, k.rvText)
		}
	}
}
