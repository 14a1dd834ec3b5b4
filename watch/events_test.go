package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/racebuild"
)

// delivered is what a test handler saw of one occurrence.
type delivered struct {
	uid      string
	count    int32
	chain    []convert.Ref
	observed time.Time
	occ      convert.Occurrence
	ev       *eventsv1.Event
}

type sink struct {
	mu   sync.Mutex
	got  []delivered
	fail func(o *convert.Occurrence) error
}

func (s *sink) handle(_ context.Context, ev *eventsv1.Event, o *convert.Occurrence) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, delivered{uid: o.EventUID, count: o.Count, chain: slices.Clone(o.Chain), observed: o.Observed, occ: *o, ev: ev})
	if s.fail != nil {
		return s.fail(o)
	}
	return nil
}

func (s *sink) all() []delivered {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// of returns the counts delivered for the Event uid, in delivery order.
func (s *sink) of(uid string) []int32 {
	out := []int32{}
	for _, d := range s.all() {
		if d.uid == uid {
			out = append(out, d.count)
		}
	}
	return out
}

func (s *sink) has(uid string, count int32) bool {
	return slices.Contains(s.of(uid), count)
}

// runSource starts src and runs it until the test ends.
func runSource(t *testing.T, src *EventSource) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := src.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	if !src.WaitForSync(ctx) {
		cancel()
		t.Fatal("event informers not synced")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return ctx
}

func newSource(t *testing.T, client *fake.Clientset, objects *ObjectCache, s *sink, opts SourceOptions) *EventSource {
	t.Helper()
	if objects == nil {
		objects = newTestCache(t, CacheOptions{})
	}
	src, err := NewEventSource(eventClient(client), objects, s.handle, opts)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// widgetEvent is an events.k8s.io/v1 Event about an object of a kind the
// cache does not watch, so it is never held.
func widgetEvent(ns, uid string, count int32, at time.Time) *eventsv1.Event {
	ev := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: ns, Name: "ev-" + uid, UID: types.UID(uid), CreationTimestamp: metav1.NewTime(at)},
		EventTime:           metav1.NewMicroTime(at),
		ReportingController: "example.com/widget-controller",
		ReportingInstance:   "widget-controller-0",
		Action:              "Reconcile",
		Reason:              "Synced",
		Type:                corev1.EventTypeNormal,
		Note:                "widget synced",
		Regarding:           corev1.ObjectReference{Kind: "Widget", APIVersion: "example.com/v1", Namespace: ns, Name: "w", UID: "widget-uid"},
	}
	setSeries(ev, count, at)
	return ev
}

func setSeries(ev *eventsv1.Event, count int32, at time.Time) {
	if count > 1 {
		ev.Series = &eventsv1.EventSeries{Count: count, LastObservedTime: metav1.NewMicroTime(at)}
	} else {
		ev.Series = nil
	}
}

func createEvent(t *testing.T, client *fake.Clientset, ev *eventsv1.Event) {
	t.Helper()
	if _, err := client.EventsV1().Events(ev.Namespace).Create(context.Background(), ev, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func updateEvent(t *testing.T, client *fake.Clientset, ns, name string, mutate func(*eventsv1.Event)) {
	t.Helper()
	ev, err := client.EventsV1().Events(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mutate(ev)
	if _, err := client.EventsV1().Events(ns).Update(context.Background(), ev, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// barrier creates a marker Event in ns and waits for it: everything the
// single informer of ns saw before has then been processed.
func barrier(t *testing.T, client *fake.Clientset, s *sink, ns, uid string) {
	t.Helper()
	createEvent(t, client, widgetEvent(ns, uid, 1, testT0))
	waitFor(t, 5*time.Second, "marker event "+uid, func() bool { return s.has(uid, 1) })
}

func TestEventSourceInitialLookback(t *testing.T) {
	clock := newFakeClock(testT0)
	client := fake.NewClientset(
		widgetEvent("demo", "old", 3, testT0.Add(-2*time.Hour)),
		widgetEvent("demo", "recent", 2, testT0.Add(-time.Minute)),
		widgetEvent("demo", "edge", 1, testT0.Add(-10*time.Minute)),
	)
	s := &sink{}
	src := newSource(t, client, nil, s, SourceOptions{API: "events.k8s.io/v1", InitialLookback: 10 * time.Minute, Now: clock.Now})
	runSource(t, src)
	if src.API() != "events.k8s.io/v1" {
		t.Errorf("API() = %q", src.API())
	}

	waitFor(t, 5*time.Second, "recent event", func() bool { return len(s.of("recent")) == 2 })
	// The old Event goes on: only the new count is emitted.
	clock.Advance(time.Minute)
	updateEvent(t, client, "demo", "ev-old", func(ev *eventsv1.Event) { setSeries(ev, 4, testT0.Add(time.Minute)) })
	waitFor(t, 5*time.Second, "old event's new count", func() bool { return s.has("old", 4) })
	barrier(t, client, s, "demo", "marker")

	wantCounts(t, "old (baselined at 3)", s.of("old"), 4)
	wantCounts(t, "recent (within lookback)", s.of("recent"), 1, 2)
	wantCounts(t, "edge (exactly at lookback)", s.of("edge"), 1)
	for _, d := range s.all() {
		if d.uid == "old" && !d.observed.Equal(testT0.Add(time.Minute)) {
			t.Errorf("observed = %s, want the injected clock", d.observed)
		}
	}
}

func TestEventSourceCountUpdates(t *testing.T) {
	clock := newFakeClock(testT0)
	client := fake.NewClientset()
	s := &sink{}
	src := newSource(t, client, nil, s, SourceOptions{API: "events.k8s.io/v1", Now: clock.Now})
	runSource(t, src)

	createEvent(t, client, widgetEvent("demo", "e1", 1, testT0))
	waitFor(t, 5*time.Second, "count 1", func() bool { return s.has("e1", 1) })
	updateEvent(t, client, "demo", "ev-e1", func(ev *eventsv1.Event) { setSeries(ev, 3, testT0.Add(time.Second)) })
	waitFor(t, 5*time.Second, "count 3", func() bool { return s.has("e1", 3) })
	// Updates that do not raise the count emit nothing.
	updateEvent(t, client, "demo", "ev-e1", func(ev *eventsv1.Event) { ev.Note = "edited" })
	updateEvent(t, client, "demo", "ev-e1", func(ev *eventsv1.Event) { setSeries(ev, 2, testT0.Add(2*time.Second)) })
	updateEvent(t, client, "demo", "ev-e1", func(ev *eventsv1.Event) { setSeries(ev, 4, testT0.Add(4*time.Second)) })
	updateEvent(t, client, "demo", "ev-e1", func(ev *eventsv1.Event) { ev.Note = "edited again" })
	barrier(t, client, s, "demo", "marker")

	wantCounts(t, "e1", s.of("e1"), 1, 2, 3, 4)
	for _, d := range s.all() {
		if d.uid != "e1" {
			continue
		}
		if d.ev == nil || string(d.ev.UID) != "e1" {
			t.Errorf("handler got event %+v", d.ev)
		}
		if d.occ.Reason != "Synced" || d.occ.Regarding.Kind != "Widget" || len(d.chain) != 1 {
			t.Errorf("occurrence %d: %+v", d.count, d.occ)
		}
	}

	// Deleting the Event drops its dedup state.
	if src.dedup.Len() != 2 {
		t.Errorf("dedup tracks %d events, want 2", src.dedup.Len())
	}
	if err := client.EventsV1().Events("demo").Delete(context.Background(), "ev-e1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "dedup forgets the deleted event", func() bool { return src.dedup.Len() == 1 })
}

// An Event the watch sees created with a count above 1 yields that count
// only: client-go's event recorder creates an Event again, with the count
// it had plus one, when the API server deleted it (its TTL) while the
// recorder still remembers the series, and the earlier counts went out
// with the Event it replaces. A count that rises by several in one update
// still yields each count, and so does an Event first seen in a list (its
// earlier counts may have passed while the bridge was not watching).
func TestEventSourceCreatedCountIsNotBackfilled(t *testing.T) {
	clock := newFakeClock(testT0)
	client := fake.NewClientset(widgetEvent("demo", "listed", 3, testT0.Add(-time.Minute)))
	s := &sink{}
	src := newSource(t, client, nil, s, SourceOptions{API: "events.k8s.io/v1", InitialLookback: 10 * time.Minute, Now: clock.Now})
	runSource(t, src)
	waitFor(t, 5*time.Second, "listed event", func() bool { return len(s.of("listed")) == 3 })

	// The series as a recorder writes it: created, counted up, deleted by
	// the TTL, created again (a new UID) with the next count.
	createEvent(t, client, widgetEvent("demo", "first", 1, testT0))
	updateEvent(t, client, "demo", "ev-first", func(ev *eventsv1.Event) { setSeries(ev, 2, testT0.Add(time.Second)) })
	updateEvent(t, client, "demo", "ev-first", func(ev *eventsv1.Event) { setSeries(ev, 3, testT0.Add(2*time.Second)) })
	waitFor(t, 5*time.Second, "count 3", func() bool { return s.has("first", 3) })
	if err := client.EventsV1().Events("demo").Delete(context.Background(), "ev-first", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	again := widgetEvent("demo", "again", 1, testT0)
	again.Name = "ev-first" // the recorder keeps the name
	setSeries(again, 4, testT0.Add(time.Hour))
	createEvent(t, client, again)
	// A count that jumps in an update (updates in between were merged).
	updateEvent(t, client, "demo", "ev-first", func(ev *eventsv1.Event) { setSeries(ev, 7, testT0.Add(time.Hour+time.Second)) })
	barrier(t, client, s, "demo", "marker")

	wantCounts(t, "listed (first seen in the list)", s.of("listed"), 1, 2, 3)
	wantCounts(t, "first", s.of("first"), 1, 2, 3)
	wantCounts(t, "again (created with count 4)", s.of("again"), 4, 5, 6, 7)
}

// TestEventSourceDeleteAfterQueuedUpdate: the deletion of an Event must not
// overtake updates of it still in the queue, or their counts would be
// emitted again.
func TestEventSourceDeleteAfterQueuedUpdate(t *testing.T) {
	client := fake.NewClientset()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s := &sink{}
	handler := func(ctx context.Context, ev *eventsv1.Event, o *convert.Occurrence) error {
		if o.EventUID == "e1" && o.Count == 1 && len(s.of("e1")) == 0 {
			close(entered)
			<-release // the handler applies backpressure
		}
		return s.handle(ctx, ev, o)
	}
	src, err := NewEventSource(eventClient(client), newTestCache(t, CacheOptions{}), handler, SourceOptions{API: "events.k8s.io/v1", Now: newFakeClock(testT0).Now})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, src)
	t.Cleanup(func() { once.Do(func() { close(release) }) })

	createEvent(t, client, widgetEvent("demo", "e1", 1, testT0))
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("count 1 never reached the handler")
	}
	updateEvent(t, client, "demo", "ev-e1", func(ev *eventsv1.Event) { setSeries(ev, 2, testT0.Add(time.Second)) })
	waitFor(t, 5*time.Second, "update queued", func() bool { return len(src.queue) == 1 })
	if err := client.EventsV1().Events("demo").Delete(context.Background(), "ev-e1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The informer hands events over in order: once the next Event is
	// queued, the deletion has been handled.
	createEvent(t, client, widgetEvent("demo", "after", 1, testT0))
	waitFor(t, 5*time.Second, "later event queued", func() bool { return len(src.queue) >= 2 })
	once.Do(func() { close(release) })
	waitFor(t, 5*time.Second, "later event", func() bool { return s.has("after", 1) })
	wantCounts(t, "e1", s.of("e1"), 1, 2)
	waitFor(t, 5*time.Second, "dedup forgets the deleted event", func() bool { return src.dedup.Len() == 1 })
}

func TestEventSourceOwnerWait(t *testing.T) {
	clock := newFakeClock(testT0)
	objects := newTestCache(t, CacheOptions{Now: clock.Now})
	objects.Upsert(&Object{UID: "dep-uid", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "demo", Name: "web"})
	objects.Upsert(&Object{UID: "rs-uid", APIVersion: "apps/v1", Kind: "ReplicaSet", Namespace: "demo", Name: "web-5d",
		Owners: []OwnerRef{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "dep-uid", Controller: true}}})
	client := fake.NewClientset()
	s := &sink{}
	src := newSource(t, client, objects, s, SourceOptions{API: "events.k8s.io/v1", OwnerWait: time.Second, Now: clock.Now})
	runSource(t, src)

	podEvent := func(uid, pod, podUID string) *eventsv1.Event {
		ev := widgetEvent("demo", uid, 1, testT0)
		ev.Reason = "Scheduled"
		ev.Regarding = corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: "demo", Name: pod, UID: types.UID(podUID)}
		return ev
	}

	// The pod shows up late.
	createEvent(t, client, podEvent("late", "web-5d-x", "pod-uid"))
	waitFor(t, 5*time.Second, "event processed", func() bool { return src.dedup.Len() == 1 })
	clock.Advance(900 * time.Millisecond) // within OwnerWait
	time.Sleep(250 * time.Millisecond)    // a few retry ticks
	if got := s.of("late"); len(got) != 0 {
		t.Fatalf("delivered before the pod was cached: %v", got)
	}
	objects.Upsert(&Object{UID: "pod-uid", APIVersion: "v1", Kind: "Pod", Namespace: "demo", Name: "web-5d-x",
		Owners: []OwnerRef{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d", UID: "rs-uid", Controller: true}}})
	waitFor(t, 5*time.Second, "held occurrence", func() bool { return s.has("late", 1) })
	d := s.all()[0]
	wantChain(t, d.chain, []convert.Ref{
		{Kind: "Pod", APIVersion: "v1", Namespace: "demo", Name: "web-5d-x", UID: "pod-uid"},
		{Kind: "ReplicaSet", APIVersion: "apps/v1", Namespace: "demo", Name: "web-5d", UID: "rs-uid"},
		{Kind: "Deployment", APIVersion: "apps/v1", Namespace: "demo", Name: "web", UID: "dep-uid"},
	})

	// The pod never shows up: after OwnerWait the occurrence goes out alone.
	createEvent(t, client, podEvent("ghost", "ghost", "ghost-uid"))
	waitFor(t, 5*time.Second, "event processed", func() bool { return src.dedup.Len() == 2 })
	clock.Advance(time.Second) // exactly OwnerWait: still waiting
	time.Sleep(250 * time.Millisecond)
	if got := s.of("ghost"); len(got) != 0 {
		t.Fatalf("delivered before OwnerWait passed: %v", got)
	}
	clock.Advance(time.Millisecond)
	waitFor(t, 5*time.Second, "occurrence past OwnerWait", func() bool { return s.has("ghost", 1) })
	for _, d := range s.all() {
		if d.uid == "ghost" {
			wantChain(t, d.chain, []convert.Ref{{Kind: "Pod", APIVersion: "v1", Namespace: "demo", Name: "ghost", UID: "ghost-uid"}})
		}
	}

	// An event about a known pod goes out at once, with its chain.
	clock.Advance(time.Hour)
	createEvent(t, client, podEvent("known", "web-5d-x", "pod-uid"))
	waitFor(t, 5*time.Second, "known pod", func() bool { return s.has("known", 1) })
	wantCounts(t, "late", s.of("late"), 1)
	wantCounts(t, "ghost", s.of("ghost"), 1)
}

// TestEventSourceHeldOrder: occurrences of one Event held for their object
// must not be overtaken by later occurrences of the same Event.
func TestEventSourceHeldOrder(t *testing.T) {
	clock := newFakeClock(testT0)
	objects := newTestCache(t, CacheOptions{})
	s := &sink{}
	src, err := NewEventSource(eventClient(fake.NewClientset()), objects, s.handle, SourceOptions{OwnerWait: time.Minute, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	src.start = testT0
	ev := widgetEvent("demo", "e1", 1, testT0)
	ev.Regarding = corev1.ObjectReference{Kind: "Pod", Namespace: "demo", Name: "p", UID: "pod-uid"}
	ctx := context.Background()
	held := src.process(ctx, observed{ev: ev, at: testT0}, nil)
	if len(held) != 1 || len(s.all()) != 0 {
		t.Fatalf("held %d, delivered %d; want 1 held", len(held), len(s.all()))
	}
	objects.Upsert(&Object{UID: "pod-uid", Kind: "Pod", Namespace: "demo", Name: "p"})
	ev2 := ev.DeepCopy()
	setSeries(ev2, 2, testT0.Add(time.Second))
	held = src.process(ctx, observed{ev: ev2, at: testT0.Add(time.Second)}, held)
	held = src.retry(ctx, held, false)
	if len(held) != 0 {
		t.Errorf("%d still held", len(held))
	}
	wantCounts(t, "e1 delivery order", s.of("e1"), 1, 2)
}

func TestEventSourceCoreV1(t *testing.T) {
	clock := newFakeClock(testT0)
	first := metav1.NewTime(testT0.Add(-time.Minute))
	last := metav1.NewTime(testT0)
	core := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: "demo", Name: "web-1.17a", UID: "c1"},
		InvolvedObject: corev1.ObjectReference{Kind: "Widget", APIVersion: "example.com/v1", Namespace: "demo", Name: "w", UID: "w-uid", FieldPath: "spec"},
		Reason:         "BackOff",
		Message:        "Back-off restarting failed container",
		Source:         corev1.EventSource{Component: "kubelet", Host: "worker-1"},
		FirstTimestamp: first,
		LastTimestamp:  last,
		Count:          1,
		Type:           corev1.EventTypeWarning,
	}
	client := fake.NewClientset()
	s := &sink{}
	src := newSource(t, client, nil, s, SourceOptions{API: "v1", Now: clock.Now})
	runSource(t, src)
	if src.API() != "v1" {
		t.Errorf("API() = %q", src.API())
	}
	events := client.CoreV1().Events("demo")
	if _, err := events.Create(context.Background(), core, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "count 1", func() bool { return s.has("c1", 1) })
	core.Count = 3
	core.LastTimestamp = metav1.NewTime(testT0.Add(time.Minute))
	if _, err := events.Update(context.Background(), core, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "count 3", func() bool { return s.has("c1", 3) })
	core.Message = "edited"
	if _, err := events.Update(context.Background(), core, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	marker := core.DeepCopy()
	marker.Name, marker.UID, marker.Count = "marker", "marker", 1
	if _, err := events.Create(context.Background(), marker, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "marker", func() bool { return s.has("marker", 1) })
	wantCounts(t, "core event", s.of("c1"), 1, 2, 3)

	for _, d := range s.all() {
		if d.uid != "c1" {
			continue
		}
		o := d.occ
		if o.Reason != "BackOff" || o.Type != "Warning" || o.ReportingController != "kubelet" || o.SourceHost != "worker-1" ||
			o.Regarding.FieldPath != "spec" || o.Regarding.UID != "w-uid" || !o.FirstTime.Equal(first.Time) {
			t.Errorf("occurrence %d: %+v", o.Count, o)
		}
		wantTime := last.Time
		if o.Count > 1 {
			wantTime = testT0.Add(time.Minute)
		}
		if !o.Time.Equal(wantTime) {
			t.Errorf("occurrence %d: Time %s, want %s", o.Count, o.Time, wantTime)
		}
		if d.ev.DeprecatedSource.Host != "worker-1" || d.ev.Regarding.Name != "w" {
			t.Errorf("handler event not converted: %+v", d.ev)
		}
	}
}

func TestEventSourceAPIDiscovery(t *testing.T) {
	for _, tc := range []struct {
		name      string
		resources []*metav1.APIResourceList
		want      string
	}{
		{"events.k8s.io served", []*metav1.APIResourceList{{GroupVersion: "events.k8s.io/v1", APIResources: []metav1.APIResource{{Name: "events", Namespaced: true, Kind: "Event"}}}}, "events.k8s.io/v1"},
		{"only core", []*metav1.APIResourceList{{GroupVersion: "v1"}}, "v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			client.Resources = tc.resources
			s := &sink{}
			src := newSource(t, client, nil, s, SourceOptions{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if err := src.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if src.API() != tc.want {
				t.Errorf("API() = %q, want %q", src.API(), tc.want)
			}
		})
	}
}

func TestEventSourceNamespaces(t *testing.T) {
	client := fake.NewClientset()
	s := &sink{}
	src := newSource(t, client, nil, s, SourceOptions{API: "events.k8s.io/v1", Namespaces: []string{"a", "b"}, ExcludeNamespaces: []string{"kube-system", "c"}})
	runSource(t, src)
	// One informer (resourceVersion order for the checkpoint); several
	// included namespaces are picked client-side.
	if len(src.stores) != 1 {
		t.Errorf("%d Event watches, want one", len(src.stores))
	}
	createEvent(t, client, widgetEvent("c", "in-c", 1, testT0))
	createEvent(t, client, widgetEvent("a", "in-a", 1, testT0))
	createEvent(t, client, widgetEvent("b", "in-b", 1, testT0))
	waitFor(t, 5*time.Second, "events in a and b", func() bool { return s.has("in-a", 1) && s.has("in-b", 1) })
	barrier(t, client, s, "a", "marker-a")
	barrier(t, client, s, "b", "marker-b")
	if s.has("in-c", 1) {
		t.Error("event of an unwatched namespace delivered")
	}

	// Exclusions go to the API server as a field selector.
	var lists int
	for _, a := range client.Actions() {
		la, ok := a.(k8stesting.ListActionImpl)
		if !ok || a.GetResource().Resource != "events" {
			continue
		}
		lists++
		sel := la.GetListOptions().FieldSelector
		if sel != "metadata.namespace!=kube-system,metadata.namespace!=c" {
			t.Errorf("list field selector = %q", sel)
		}
		if ns := la.GetNamespace(); ns != "" {
			t.Errorf("list in namespace %q, want all namespaces", ns)
		}
	}
	if lists != 1 {
		t.Errorf("%d event lists, want 1", lists)
	}
}

func TestEventSourceNoExclusionsNoSelector(t *testing.T) {
	client := fake.NewClientset()
	src := newSource(t, client, nil, &sink{}, SourceOptions{API: "v1"})
	runSource(t, src)
	for _, a := range client.Actions() {
		if la, ok := a.(k8stesting.ListActionImpl); ok {
			if sel := la.GetListOptions().FieldSelector; sel != "" {
				t.Errorf("field selector %q without exclusions", sel)
			}
			if la.GetNamespace() != "" {
				t.Errorf("list in namespace %q, want all", la.GetNamespace())
			}
		}
	}
}

func TestEventSourceHandlerError(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	client := fake.NewClientset()
	s := &sink{fail: func(o *convert.Occurrence) error {
		if o.EventUID == "bad" {
			return errors.New("backend down")
		}
		return nil
	}}
	src := newSource(t, client, nil, s, SourceOptions{API: "events.k8s.io/v1", Logger: logger})
	runSource(t, src)
	createEvent(t, client, widgetEvent("demo", "bad", 1, testT0))
	createEvent(t, client, widgetEvent("demo", "good", 1, testT0))
	waitFor(t, 5*time.Second, "good after bad", func() bool { return s.has("good", 1) })
	wantCounts(t, "bad", s.of("bad"), 1)
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "occurrence not delivered") || !strings.Contains(logs.String(), "backend down") {
		t.Errorf("handler error not logged: %s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestSourceOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts SourceOptions
		ok   bool
	}{
		{"zero", SourceOptions{}, true},
		{"events api", SourceOptions{API: "events.k8s.io/v1"}, true},
		{"core api", SourceOptions{API: "v1"}, true},
		{"bad api", SourceOptions{API: "events.k8s.io/v1beta1"}, false},
		{"include and exclude", SourceOptions{Namespaces: []string{"a", "b"}, ExcludeNamespaces: []string{"c", "b"}}, false},
		{"exclude only", SourceOptions{ExcludeNamespaces: []string{"kube-system"}}, true},
		{"disjoint", SourceOptions{Namespaces: []string{"a"}, ExcludeNamespaces: []string{"b"}}, true},
		{"negative lookback", SourceOptions{InitialLookback: -1}, false},
		{"negative owner wait", SourceOptions{OwnerWait: -1}, false},
		{"negative queue", SourceOptions{QueueSize: -1}, false},
		{"bad convert options", SourceOptions{Convert: convert.Options{MaxMessageBytes: -1}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if (err == nil) != tc.ok {
				t.Errorf("Validate = %v, want ok %v", err, tc.ok)
			}
			_, err = NewEventSource(eventClient(fake.NewClientset()), newTestCache(t, CacheOptions{}), (&sink{}).handle, tc.opts)
			if (err == nil) != tc.ok {
				t.Errorf("NewEventSource = %v, want ok %v", err, tc.ok)
			}
		})
	}
	err := SourceOptions{Namespaces: []string{"b"}, ExcludeNamespaces: []string{"b"}}.Validate()
	if err == nil || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("error does not name the namespace: %v", err)
	}
}

func TestFromCoreEvent(t *testing.T) {
	eventTime := metav1.NewMicroTime(time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC))
	seriesTime := metav1.NewMicroTime(time.Date(2026, 3, 1, 12, 5, 0, 654321000, time.UTC))
	related := &corev1.ObjectReference{Kind: "Node", Name: "worker-1", UID: "node-uid"}
	in := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web-1.17a", UID: "c1", ResourceVersion: "42",
			Labels: map[string]string{"a": "b"}, CreationTimestamp: metav1.NewTime(testT0)},
		InvolvedObject:      corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: "demo", Name: "web-1", UID: "pod-uid", FieldPath: "spec.containers{web}", ResourceVersion: "7"},
		Reason:              "BackOff",
		Message:             "Back-off restarting failed container",
		Source:              corev1.EventSource{Component: "kubelet", Host: "worker-1"},
		FirstTimestamp:      metav1.NewTime(testT0.Add(-time.Hour)),
		LastTimestamp:       metav1.NewTime(testT0),
		Count:               7,
		Type:                corev1.EventTypeWarning,
		EventTime:           eventTime,
		Series:              &corev1.EventSeries{Count: 5, LastObservedTime: seriesTime},
		Action:              "Restart",
		Related:             related,
		ReportingController: "kubelet",
		ReportingInstance:   "kubelet-worker-1",
	}
	out := FromCoreEvent(in)
	checks := []struct {
		field     string
		got, want any
	}{
		{"Name", out.Name, in.Name},
		{"Namespace", out.Namespace, in.Namespace},
		{"UID", out.UID, in.UID},
		{"ResourceVersion", out.ResourceVersion, in.ResourceVersion},
		{"CreationTimestamp", out.CreationTimestamp, in.CreationTimestamp},
		{"EventTime", out.EventTime, in.EventTime},
		{"ReportingController", out.ReportingController, in.ReportingController},
		{"ReportingInstance", out.ReportingInstance, in.ReportingInstance},
		{"Action", out.Action, in.Action},
		{"Reason", out.Reason, in.Reason},
		{"Regarding", out.Regarding, in.InvolvedObject},
		{"Related", out.Related, in.Related},
		{"Note", out.Note, in.Message},
		{"Type", out.Type, in.Type},
		{"DeprecatedSource", out.DeprecatedSource, in.Source},
		{"DeprecatedFirstTimestamp", out.DeprecatedFirstTimestamp, in.FirstTimestamp},
		{"DeprecatedLastTimestamp", out.DeprecatedLastTimestamp, in.LastTimestamp},
		{"DeprecatedCount", out.DeprecatedCount, in.Count},
		{"Series.Count", out.Series.Count, int32(5)},
		{"Series.LastObservedTime", out.Series.LastObservedTime, seriesTime},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
	if out.Series.LastObservedTime.Nanosecond() != 654321000 || out.EventTime.Nanosecond() != 123456000 {
		t.Errorf("microseconds lost: %s %s", out.Series.LastObservedTime, out.EventTime)
	}
	if convert.EventCount(out) != 5 {
		t.Errorf("EventCount = %d, want the series count 5", convert.EventCount(out))
	}
	if !convert.OccurrenceTime(out).Equal(seriesTime.Time) {
		t.Errorf("OccurrenceTime = %s", convert.OccurrenceTime(out))
	}
	in.Series = nil
	out = FromCoreEvent(in)
	if out.Series != nil {
		t.Errorf("Series = %+v, want nil", out.Series)
	}
	if convert.EventCount(out) != 7 {
		t.Errorf("EventCount = %d, want the count 7", convert.EventCount(out))
	}
}

func TestToEventsV1(t *testing.T) {
	ev := &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{UID: "x"}}
	if toEventsV1(ev) != ev {
		t.Error("events.k8s.io Event not passed through")
	}
	if got := toEventsV1(&corev1.Event{ObjectMeta: metav1.ObjectMeta{UID: "y"}, Message: "m"}); got == nil || got.UID != "y" || got.Note != "m" {
		t.Errorf("core Event: %+v", got)
	}
	if toEventsV1(&corev1.Pod{}) != nil || toEventsV1(nil) != nil {
		t.Error("non-Event converted")
	}
}

func TestSlimEvent(t *testing.T) {
	ev := &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{UID: "x", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}}}
	out, err := slimEvent(ev)
	if err != nil || out.(*eventsv1.Event).ManagedFields != nil || out.(*eventsv1.Event).UID != "x" {
		t.Errorf("slimEvent = %+v, %v", out, err)
	}
}

func TestSplitList(t *testing.T) {
	for in, want := range map[string][]string{
		"":             nil,
		" , ,":         nil,
		"a":            {"a"},
		" a , b,,c ":   {"a", "b", "c"},
		"kube-system,": {"kube-system"},
		"a,a":          {"a", "a"},
		"\tx\n,\ny\t ": {"x", "y"},
	} {
		if got := SplitList(in); !slices.Equal(got, want) {
			t.Errorf("SplitList(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSourceDefaults(t *testing.T) {
	src, err := NewEventSource(eventClient(fake.NewClientset()), newTestCache(t, CacheOptions{}), (&sink{}).handle, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if src.opts.OwnerWait != 2*time.Second || src.opts.QueueSize != 1024 || cap(src.queue) != 1024 ||
		src.opts.Logger == nil || src.opts.Now == nil {
		t.Errorf("defaults not applied: %+v", src.opts)
	}
	src, err = NewEventSource(eventClient(fake.NewClientset()), newTestCache(t, CacheOptions{}), (&sink{}).handle, SourceOptions{OwnerWait: time.Minute, QueueSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	if src.opts.OwnerWait != time.Minute || cap(src.queue) != 3 {
		t.Errorf("explicit options overridden: %+v", src.opts)
	}
}

// TestEventSourceDeleteTombstone: a deletion the informer only learns from a
// relist (DeletedFinalStateUnknown) also drops the dedup state, core/v1 too.
func TestEventSourceDeleteTombstone(t *testing.T) {
	src, err := NewEventSource(eventClient(fake.NewClientset()), newTestCache(t, CacheOptions{}), (&sink{}).handle, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	src.dedup.Baseline("e1", 3)
	src.dedup.Baseline("c1", 2)
	src.dedup.Baseline("keep", 1)
	src.enqueueDelete(ctx, cache.DeletedFinalStateUnknown{Key: "demo/e1", Obj: widgetEvent("demo", "e1", 3, testT0)})
	src.enqueueDelete(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "c", UID: "c1"}})
	src.enqueueDelete(ctx, cache.DeletedFinalStateUnknown{Key: "x", Obj: &corev1.Pod{}}) // ignored
	if len(src.queue) != 2 {
		t.Fatalf("%d queued, want 2", len(src.queue))
	}
	for len(src.queue) > 0 {
		ob := <-src.queue
		if !ob.deleted {
			t.Errorf("queued %+v, want a deletion", ob)
		}
		src.process(ctx, ob, nil)
	}
	if src.dedup.Len() != 1 {
		t.Errorf("dedup tracks %d, want only the kept event", src.dedup.Len())
	}
}

// The delivery of an update with one occurrence is reused once the
// handler's done callback ran (Handler), never before: an occurrence whose
// done never ran stays as it was handed over, and done still reaches the
// tracker.
func TestEventSourceRecyclesDeliveries(t *testing.T) {
	type kept struct {
		o    *convert.Occurrence
		snap convert.Occurrence
	}
	var (
		mu      sync.Mutex
		held    []kept                           // done never called
		doneAt  = map[*convert.Occurrence]bool{} // addresses whose done ran
		reused  int
		handled int
	)
	handler := func(ctx context.Context, _ *eventsv1.Event, o *convert.Occurrence) error {
		mu.Lock()
		defer mu.Unlock()
		handled++
		if doneAt[o] {
			reused++
			delete(doneAt, o)
		}
		if o.EventUID == "marker" || !strings.HasPrefix(o.EventUID, "keep-") {
			doneAt[o] = true
			DoneFromContext(ctx)()
			return nil
		}
		snap := *o
		snap.Chain = slices.Clone(o.Chain)
		held = append(held, kept{o: o, snap: snap})
		return nil
	}
	client := fake.NewClientset()
	tracker := NewTracker(nil, 0)
	src, err := NewEventSource(eventClient(client), newTestCache(t, CacheOptions{}), handler,
		SourceOptions{API: "events.k8s.io/v1", Now: newFakeClock(testT0).Now, Tracker: tracker})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, src)
	const n = 40
	for i := range n {
		uid := fmt.Sprintf("ack-%d", i)
		if i%4 == 0 {
			uid = fmt.Sprintf("keep-%d", i)
		}
		createEvent(t, client, widgetEvent("demo", uid, 1, testT0))
		// One at a time, so that the spare deliveries are there to reuse.
		waitFor(t, 5*time.Second, uid, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return handled == i+1
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if reused == 0 {
		t.Errorf("no delivery was reused after its done ran (%d handled)", handled)
	}
	for _, k := range held {
		if !reflect.DeepEqual(*k.o, k.snap) {
			t.Errorf("occurrence %s changed after it was handed over, though its done never ran:\n got %+v\nwant %+v", k.snap.EventUID, *k.o, k.snap)
		}
	}
	if len(held) != n/4 {
		t.Errorf("%d occurrences kept, want %d", len(held), n/4)
	}
	cp, _ := tracker.Snapshot(testT0)
	for i := range n {
		uid, want := fmt.Sprintf("ack-%d", i), int32(1)
		if i%4 == 0 {
			uid, want = fmt.Sprintf("keep-%d", i), 0
		}
		if got := cp.Done[uid]; got != want {
			t.Errorf("tracker: %s done count %d, want %d", uid, got, want)
		}
	}
}

// The delivery histogram measures from the watch handing an update over to
// the last output's ack: an occurrence acked 3 s (fake clock) after it was
// seen lands in the 5 s bucket, not in the 2.5 s one; one never acked is not
// counted.
func TestDeliveryHistogram(t *testing.T) {
	clock := newFakeClock(testT0)
	acks := make(chan func(), 10)
	handler := func(ctx context.Context, _ *eventsv1.Event, o *convert.Occurrence) error {
		if o.EventUID != "never" {
			acks <- DoneFromContext(ctx)
		}
		return nil
	}
	client := fake.NewClientset()
	src, err := NewEventSource(eventClient(client), newTestCache(t, CacheOptions{}), handler,
		SourceOptions{API: "events.k8s.io/v1", Now: clock.Now, Tracker: NewTracker(nil, 0)})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, src)
	createEvent(t, client, widgetEvent("demo", "never", 1, testT0))
	createEvent(t, client, widgetEvent("demo", "slow", 1, testT0))
	var done func()
	select {
	case done = <-acks:
	case <-time.After(5 * time.Second):
		t.Fatal("no occurrence handed over")
	}
	clock.Advance(3 * time.Second)
	done()
	h := src.Stats().Delivery
	if h.Count != 1 || h.Cumulative[2.5] != 0 || h.Cumulative[5] != 1 || h.Sum != 3 {
		t.Errorf("histogram %+v, want one observation of 3 s", h)
	}

	// An update with several occurrences (the count jumped from 1 to 3):
	// each is timed when it is acked.
	updateEvent(t, client, "demo", "ev-slow", func(ev *eventsv1.Event) { setSeries(ev, 3, clock.Now()) })
	var two []func()
	for len(two) < 2 {
		select {
		case f := <-acks:
			two = append(two, f)
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of 2 occurrences handed over", len(two))
		}
	}
	clock.Advance(time.Second)
	two[0]()
	clock.Advance(20 * time.Second)
	two[1]()
	h = src.Stats().Delivery
	if h.Count != 3 || h.Cumulative[0.5] != 0 || h.Cumulative[1] != 1 || h.Cumulative[5] != 2 || h.Cumulative[10] != 2 || h.Cumulative[30] != 3 || h.Sum != 3+1+21 {
		t.Errorf("histogram %+v, want observations of 3, 1 and 21 s", h)
	}
}

// TestEventSourceWaitsForRegardingVersion: a controller's Event about an
// update it acted on names the object at that update's resourceVersion.
// When the object cache, fed by a watch of its own, has not read the update
// yet, the occurrence waits for it: a Deployment's ScalingReplicaSet must
// reach the trace engine with the Deployment's new generation, not the one
// before (the previous rollout's trace). A tombstone, an unknown version
// and OwnerWait end the wait as for an object not in the cache.
func TestEventSourceWaitsForRegardingVersion(t *testing.T) {
	clock := newFakeClock(testT0)
	objects := newTestCache(t, CacheOptions{})
	deployments := WatchedKinds[2]
	if deployments.kind != "Deployment" {
		t.Fatalf("WatchedKinds[2] is %s", deployments.kind)
	}
	deployment := func(rv string, gen int64) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web", UID: "dep-uid", ResourceVersion: rv, Generation: gen}}
	}
	objects.observe(deployments, deployment("100", 1))

	// What the handler sees of the root when it gets the occurrence (the
	// pipeline reads the generation then).
	var mu sync.Mutex
	gens, links := map[string]int64{}, map[string]int{}
	handle := func(_ context.Context, _ *eventsv1.Event, o *convert.Occurrence) error {
		gen, _, _ := objects.Root(o.Chain[len(o.Chain)-1].UID)
		mu.Lock()
		defer mu.Unlock()
		gens[o.EventUID] = gen
		links[o.EventUID] = len(o.Chain)
		return nil
	}
	genOf := func(uid string) (int64, bool) {
		mu.Lock()
		defer mu.Unlock()
		g, ok := gens[uid]
		return g, ok
	}
	src, err := NewEventSource(eventClient(fake.NewClientset()), objects, handle, SourceOptions{OwnerWait: time.Second, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	src.start = testT0
	ctx := context.Background()
	scaled := func(uid, rv string) observed {
		ev := widgetEvent("demo", uid, 1, testT0)
		ev.Reason = "ScalingReplicaSet"
		ev.Regarding = corev1.ObjectReference{Kind: "Deployment", APIVersion: "apps/v1", Namespace: "demo", Name: "web", UID: "dep-uid", ResourceVersion: rv}
		return observed{ev: ev, at: clock.Now()}
	}

	// Written after the update to resourceVersion 105, read before it.
	held := src.process(ctx, scaled("rollout", "105"), nil)
	if len(held) != 1 {
		t.Fatalf("held %d, want 1: the cache has the Deployment at 100, the Event names 105", len(held))
	}
	objects.observe(deployments, deployment("104", 1)) // an earlier update: still waiting
	if held = src.retry(ctx, held, false); len(held) != 1 {
		t.Fatalf("held %d after resourceVersion 104, want 1", len(held))
	}
	objects.observe(deployments, deployment("105", 2))
	if held = src.retry(ctx, held, false); len(held) != 0 {
		t.Fatalf("held %d after resourceVersion 105, want 0", len(held))
	}
	if g, ok := genOf("rollout"); !ok || g != 2 {
		t.Fatalf("delivered with generation %d (%v), want 2", g, ok)
	}

	// An Event naming an older or the same version, or none, goes at once.
	for uid, rv := range map[string]string{"older": "90", "same": "105", "unversioned": "", "not-a-number": "x7"} {
		if held = src.process(ctx, scaled(uid, rv), held); len(held) != 0 {
			t.Fatalf("%s (resourceVersion %q): held %d, want 0", uid, rv, len(held))
		}
		if _, ok := genOf(uid); !ok {
			t.Fatalf("%s not delivered", uid)
		}
	}

	// The version never comes: after OwnerWait the occurrence goes out
	// with the object as cached.
	held = src.process(ctx, scaled("never", "200"), held)
	clock.Advance(time.Second + time.Millisecond)
	if held = src.retry(ctx, held, false); len(held) != 0 {
		t.Fatalf("held %d past OwnerWait, want 0", len(held))
	}
	if g, ok := genOf("never"); !ok || g != 2 {
		t.Fatalf("past OwnerWait: delivered with generation %d (%v), want 2", g, ok)
	}
	// So does one about a ReplicaSet, with the owners as cached.
	controller := true
	objects.observe(WatchedKinds[1], &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web-5d", UID: "rs-uid", ResourceVersion: "150",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "dep-uid", Controller: &controller}}}})
	rsEvent := scaled("rs-never", "160")
	rsEvent.ev.Regarding = corev1.ObjectReference{Kind: "ReplicaSet", APIVersion: "apps/v1", Namespace: "demo", Name: "web-5d", UID: "rs-uid", ResourceVersion: "160"}
	if held = src.process(ctx, rsEvent, held); len(held) != 1 {
		t.Fatalf("held %d, want 1", len(held))
	}
	clock.Advance(time.Second + time.Millisecond)
	if held = src.retry(ctx, held, false); len(held) != 0 {
		t.Fatalf("held %d past OwnerWait, want 0", len(held))
	}
	mu.Lock()
	if n := links["rs-never"]; n != 2 {
		t.Errorf("past OwnerWait: a chain of %d, want 2 (ReplicaSet, Deployment)", n)
	}
	mu.Unlock()
	if st := src.Stats(); st.Waited != 3 || st.Behind != 2 || st.Unresolved != 0 {
		t.Errorf("waited %d, behind %d, unresolved %d; want 3, 2 and 0", st.Waited, st.Behind, st.Unresolved)
	}

	// A deleted object's Events wait for nothing newer.
	held = src.process(ctx, scaled("gone-wait", "300"), held)
	if len(held) != 1 {
		t.Fatalf("held %d, want 1", len(held))
	}
	objects.MarkDeleted("dep-uid", clock.Now())
	if held = src.retry(ctx, held, false); len(held) != 0 {
		t.Fatalf("held %d after the deletion, want 0", len(held))
	}
	if held = src.process(ctx, scaled("after-delete", "400"), held); len(held) != 0 {
		t.Fatalf("an Event about a deleted object held (%d)", len(held))
	}
}

var parseRVSeeds = []string{"", "0", "1", "42", "007", "18446744073709551615", "18446744073709551616", "99999999999999999999",
	"123456789012345678901", "-1", "+1", " 1", "1 ", "1e3", "0x10", "12a", "٣", "1_000"}

// ParseRV reads what strconv.ParseUint reads (0 for what it refuses).
func TestParseRV(t *testing.T) {
	for _, rv := range parseRVSeeds {
		checkParseRV(t, rv)
	}
	if n := testing.AllocsPerRun(100, func() { ParseRV("not-a-number") }); n != 0 && !racebuild.Enabled {
		t.Errorf("ParseRV allocates %v times on a non-number", n)
	}
}

func FuzzParseRV(f *testing.F) {
	for _, rv := range parseRVSeeds {
		f.Add(rv)
	}
	f.Fuzz(checkParseRV)
}

func checkParseRV(t *testing.T, rv string) {
	want, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		want = 0
	}
	if got := ParseRV(rv); got != want {
		t.Errorf("ParseRV(%q) = %d, want %d", rv, got, want)
	}
}
