package watch

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
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
	s := &EventSource{queue: make(chan observed, 16), opts: SourceOptions{}, dedup: NewDedup()}
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
	if !got[1].deleted || got[1].ev.UID != "uc" {
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

// pagedEvents serves Event lists for streamList: pages[continue token],
// next[token] the token after it; a token in expire answers 410 Expired
// once, and then the first page loses the Events in deletedOnExpiry (they
// were deleted before the list started over).
type pagedEvents struct {
	pages           map[string][]*eventsv1.Event
	next            map[string]string
	expire          map[string]bool
	deletedOnExpiry bool
	asked           []metav1.ListOptions
}

func (p *pagedEvents) list(_ context.Context, o metav1.ListOptions) (k8sruntime.Object, error) {
	p.asked = append(p.asked, o)
	if p.expire[o.Continue] {
		delete(p.expire, o.Continue)
		if p.deletedOnExpiry {
			p.pages[""] = nil
		}
		return nil, apierrors.NewResourceExpired("continue token expired")
	}
	l := &eventsv1.EventList{ListMeta: metav1.ListMeta{ResourceVersion: "9", Continue: p.next[o.Continue]}}
	for _, ev := range p.pages[o.Continue] {
		l.Items = append(l.Items, *ev)
	}
	return l, nil
}

// streamList hands each listed Event on as its page comes (initial the
// first time) and returns one marker; Replace with it ends the list: what
// this list did not stream went away, also what a list that broke off (an
// expired continue token) streamed before starting over.
func TestEventStoreStreamList(t *testing.T) {
	s := &EventSource{queue: make(chan observed, 16), opts: SourceOptions{}, dedup: NewDedup()}
	s.opts.Now = time.Now
	st := newEventStore(context.Background(), s)
	list := func(p *pagedEvents) []any {
		t.Helper()
		obj, err := st.streamList(context.Background(), p.list)
		if err != nil {
			t.Fatal(err)
		}
		items, err := meta.ExtractList(obj)
		if err != nil || len(items) != 1 {
			t.Fatalf("streamList returned %v (%v), want one marker", obj, err)
		}
		for _, o := range p.asked {
			if o.Limit != listPageSize || o.ResourceVersion != "" {
				t.Errorf("a page asked with %+v, want limit %d and a consistent read", o, listPageSize)
			}
		}
		return []any{items[0]}
	}
	marker := list(&pagedEvents{
		pages: map[string][]*eventsv1.Event{"": {storeEvent("a", "ua", "1"), storeEvent("b", "ub", "2")}, "p2": {storeEvent("c", "uc", "3")}},
		next:  map[string]string{"": "p2"},
	})
	got := drain(s)
	if len(got) != 3 || !got[0].initial || !got[2].initial || got[0].ev.ManagedFields != nil {
		t.Fatalf("initial list: %+v", got)
	}
	if st.HasSynced() {
		t.Fatal("synced before the list ended")
	}
	_ = st.Replace(marker, "9")
	if got := drain(s); len(got) != 0 || !st.HasSynced() || st.Len() != 3 {
		t.Fatalf("end of the initial list: %+v, synced %v, %d known", got, st.HasSynced(), st.Len())
	}
	_ = st.Update(storeEvent("a", "ua", "4"))
	drain(s)
	// The watch broke for good. The relist's first page streams d, then
	// its continue token expires; d is deleted before the list starts
	// over with a (unchanged) and b (changed); c was deleted meanwhile.
	p := &pagedEvents{
		pages:           map[string][]*eventsv1.Event{"": {storeEvent("d", "ud", "5")}, "p2": {storeEvent("a", "ua", "4"), storeEvent("b", "ub", "7")}},
		next:            map[string]string{"": "p2"},
		expire:          map[string]bool{"p2": true},
		deletedOnExpiry: true,
	}
	_ = st.Replace(list(p), "9")
	if len(p.asked) != 4 {
		t.Errorf("%d LIST calls, want 4: a page, the expired second, then both again", len(p.asked))
	}
	var names []string
	for _, ob := range drain(s) {
		names = append(names, fmt.Sprintf("%s deleted=%v initial=%v", ob.ev.UID, ob.deleted, ob.initial))
	}
	sort.Strings(names)
	want := []string{"ub deleted=false initial=false", "uc deleted=true initial=false", "ud deleted=false initial=false", "ud deleted=true initial=false"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Fatalf("relist: %v, want %v", names, want)
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
		s := &EventSource{queue: make(chan observed, 1), opts: SourceOptions{Now: time.Now}, dedup: NewDedup()}
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

// The table must tell every two resourceVersions apart, leading zeros
// included, as comparing the strings would: seeing an Event again at
// another resourceVersion is a change, at the same one not.
func TestSeeResourceVersions(t *testing.T) {
	rvs := []string{"", "0", "00", "1", "01", "001", "10", "100", "9999999999999999", "09999999999999999", "12345678901234567", "1a", "-1", "+1"}
	d := NewDedup()
	for i, a := range rvs {
		for j, b := range rvs {
			d.see("uid", a)
			if changed := d.see("uid", b); changed != (i != j) {
				t.Errorf("%q then %q: changed %v", a, b, changed)
			}
		}
	}
	if changed := d.see("new-uid", "1"); !changed {
		t.Error("a new Event is not a change")
	}
}
