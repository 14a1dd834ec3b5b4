package watch

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"reflect"
	"slices"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/racebuild"
)

// client-go's recorder creates an Event the API server's TTL deleted again
// under its name, with a new UID and the series' next count. Listed by a
// bridge that starts after that, the new Event goes on from the count done
// under its name.
func TestDoneCountFindsARecreatedEventByName(t *testing.T) {
	key := nameKey("team-a", "web-1.17f0abcdef000001")
	cp := &Checkpoint{Watermark: 100, PruneBefore: cpT0,
		Done:  map[string]int32{"old-uid": 3, "older-uid": 2, "other": 9},
		Names: map[string]uint32{"old-uid": key, "older-uid": key, "other": nameKey("team-a", "web-2.17f0abcdef000002")}}
	recent := cpT0.Add(time.Minute) // created while the bridge was down
	for _, tc := range []struct {
		name  string
		uid   string
		key   uint32
		rv    uint64
		count int32
		want  int32
	}{
		{"created again with the next count", "new-uid", key, 150, 4, 3},
		{"created again, counts held back meanwhile", "new-uid", key, 150, 9, 3},
		{"a lower count: a new Event reusing the name", "new-uid", key, 150, 2, 0},
		{"the same count: not a continuation either", "new-uid", key, 150, 3, 0},
		{"another name", "new-uid", nameKey("team-b", "web-1.17f0abcdef000001"), 150, 4, 0},
		{"no name given", "new-uid", 0, 150, 4, 0},
		{"the UID's own entry wins", "old-uid", key, 150, 7, 3},
		{"the watermark covers it", "new-uid", key, 90, 4, 4},
	} {
		if got := cp.DoneCount(tc.uid, tc.key, tc.rv, recent, recent, tc.count); got != tc.want {
			t.Errorf("%s: DoneCount = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestNameKeyIsNamespaceAndName(t *testing.T) {
	a, b := nameKey("ns", "x.1"), nameKey("ns", "x.1")
	if a != b || a == 0 {
		t.Errorf("nameKey not stable or zero: %d %d", a, b)
	}
	if a == nameKey("ns2", "x.1") || a == nameKey("ns", "x.2") {
		t.Error("different Events share a key")
	}
}

// Names go with the checkpoint they were encoded for, apart from it: the
// checkpoint alone is the form an earlier release reads (no names), and
// names are refused with any other checkpoint (a rollback's leftovers).
func TestCheckpointNamesRoundTrip(t *testing.T) {
	cp := &Checkpoint{Watermark: 7, PruneBefore: cpT0, Saved: cpT0,
		Done:  map[string]int32{"0a0b0c0d-0000-4000-8000-000000000001": 5, "not-a-uuid": 4, "0a0b0c0d-0000-4000-8000-000000000002": 1},
		Names: map[string]uint32{"0a0b0c0d-0000-4000-8000-000000000001": 0xfffffff0, "not-a-uuid": 1}}
	data, err := cp.Encode()
	if err != nil {
		t.Fatal(err)
	}
	names := cp.EncodeNames(data)
	got, err := DecodeCheckpoint(data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte(checkpointMagic)) || !reflect.DeepEqual(got.Done, cp.Done) || len(got.Names) != 0 {
		t.Fatalf("the checkpoint alone: done %v names %v, want the kob-cp2 form of %v and no names", got.Done, got.Names, cp.Done)
	}
	if err := got.DecodeNames(data, names); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Names, cp.Names) {
		t.Errorf("names %v, want %v", got.Names, cp.Names)
	}

	// Saved by an earlier release after a rollback: another checkpoint.
	later := &Checkpoint{Watermark: 8, PruneBefore: cpT0, Saved: cpT0, Done: cp.Done}
	ldata, err := later.Encode()
	if err != nil {
		t.Fatal(err)
	}
	lcp, err := DecodeCheckpoint(ldata)
	if err != nil {
		t.Fatal(err)
	}
	if err := lcp.DecodeNames(ldata, names); err == nil || len(lcp.Names) != 0 {
		t.Errorf("names of another checkpoint taken: err %v, names %v", err, lcp.Names)
	}
	for _, bad := range [][]byte{names[:len(names)-2], append(slices.Clone(names[:len(names)-5]), 0x7f, 1, 2, 3, 4), []byte("kob-nm9........")} {
		if err := got.DecodeNames(data, bad); err == nil || len(got.Names) != 0 {
			t.Errorf("names %q: err %v, names %v", bad, err, got.Names)
		}
	}
	if cp.EncodeNames(data) == nil || (&Checkpoint{Done: cp.Done}).EncodeNames(data) != nil {
		t.Error("EncodeNames: nil only without names")
	}
}

// Whatever the names bytes, DecodeNames sets names of the checkpoint's
// entries or returns an error, never panics.
func FuzzCheckpointNames(f *testing.F) {
	cp := &Checkpoint{Watermark: 7, PruneBefore: cpT0, Saved: cpT0,
		Done:  map[string]int32{"0a0b0c0d-0000-4000-8000-000000000001": 5, "x": 4, "0a0b0c0d-0000-4000-8000-000000000002": 1},
		Names: map[string]uint32{"0a0b0c0d-0000-4000-8000-000000000001": 9, "x": 1}}
	data, err := cp.Encode()
	if err != nil {
		f.Fatal(err)
	}
	names := cp.EncodeNames(data)
	f.Add(names)
	f.Add(names[:len(names)-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeCheckpoint(data)
		if err != nil {
			t.Fatal(err)
		}
		if err := got.DecodeNames(data, b); err != nil {
			return
		}
		for uid := range got.Names {
			if _, ok := got.Done[uid]; !ok {
				t.Fatalf("a name for %q, not an entry", uid)
			}
		}
	})
}

// A repeater deleted by the API server stays in the checkpoint, by name,
// for DepartedFor; an Event seen once goes at once. A bridge starting from
// that checkpoint continues the Event the recorder created again.
func TestTrackerKeepsADeletedRepeaterByName(t *testing.T) {
	now := cpT0
	tr := NewTracker(nil, 0)
	tr.now = func() time.Time { return now }
	tr.SetReady()
	key := nameKey("ns", "pod.17f0")
	tr.begin(nil, "rep", key, 10, cpT0, 3, 0)
	tr.begin(nil, "once", 0, 11, cpT0, 1, 0)
	tr.Forget("rep")
	tr.Forget("once")
	cp, changed := tr.Snapshot(now.Add(time.Second))
	if !changed {
		t.Error("deletions must mark the tracker changed")
	}
	if cp.Done["rep"] != 3 || cp.Names["rep"] != key {
		t.Fatalf("deleted repeater: done %v names %v, want rep=3 under its name", cp.Done, cp.Names)
	}
	if _, ok := cp.Done["once"]; ok {
		t.Error("an Event seen once must go when deleted")
	}
	data, err := cp.Encode()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := DecodeCheckpoint(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := loaded.DecodeNames(data, cp.EncodeNames(data)); err != nil {
		t.Fatal(err)
	}
	if got := loaded.DoneCount("created-again", key, 50, cpT0.Add(time.Hour), cpT0.Add(time.Hour), 4); got != 3 {
		t.Errorf("the Event created again with count 4 after a restart: %d done, want 3", got)
	}
	// Carried over to the next bridge's tracker, name included.
	next := NewTracker(loaded, 0)
	next.SetReady()
	if cp2, _ := next.Snapshot(now.Add(time.Minute)); cp2.Names["rep"] != key {
		t.Errorf("the next tracker lost the name: %v", cp2.Names)
	}

	now = now.Add(DepartedFor + time.Minute)
	cp, _ = tr.Snapshot(now)
	if _, ok := cp.Done["rep"]; ok {
		t.Errorf("a repeater deleted more than %s ago must go", DepartedFor)
	}
}

// Names never make a checkpoint larger than MaxEntries UUIDs would: past
// that many entries and names together, the deleted repeaters and then the
// least recently updated keep theirs.
func TestTrackerNamesWithinBudget(t *testing.T) {
	const live, departed = MaxEntries - 1000, 300
	tr := NewTracker(nil, MaxEntries)
	tr.SetReady()
	for i := range live + departed {
		tr.begin(nil, fmt.Sprintf("0a0b0c0d-0000-4000-8000-%012x", i), uint32(i+1), uint64(10+i), cpT0, 2, 0)
	}
	for i := range departed {
		tr.Forget(fmt.Sprintf("0a0b0c0d-0000-4000-8000-%012x", live+i))
	}
	cp, _ := tr.Snapshot(cpT0.Add(time.Minute))
	if len(cp.Done) != live+departed {
		t.Fatalf("%d entries, want %d", len(cp.Done), live+departed)
	}
	maxNames := MaxEntries - (live + departed)
	if len(cp.Names) != maxNames {
		t.Errorf("%d names, want %d (MaxEntries less the entries)", len(cp.Names), maxNames)
	}
	var keys []uint32
	for _, k := range cp.Names {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	// Every deleted one (keys live+1..) and the oldest live ones (1..).
	for i := range departed {
		if _, ok := slices.BinarySearch(keys, uint32(live+i+1)); !ok {
			t.Fatalf("deleted repeater %d lost its name", i)
		}
	}
	if keys[0] != 1 || keys[maxNames-departed-1] != uint32(maxNames-departed) {
		t.Errorf("live names kept: %d..%d, want the least recently updated 1..%d", keys[0], keys[maxNames-departed-1], maxNames-departed)
	}
}

// Across a restart, through the EventSource: a repeater deleted while the
// bridge ran (kept by name) and one deleted while it was down (still in the
// checkpoint as live) are both created again by the recorder while no
// bridge runs; the next bridge yields only their new counts, and a new
// Event of the down time (a repeater already) every count.
func TestEventSourceRecreatedWhileDownGoesOnByName(t *testing.T) {
	clock := newFakeClock(testT0)
	client := fake.NewClientset()
	s := &sink{}
	tr := NewTracker(nil, 0)
	// Outputs that acknowledge each occurrence once handled, as the
	// daemon's do once exported.
	acking := func(s *sink) Handler {
		return func(ctx context.Context, ev *eventsv1.Event, o *convert.Occurrence) error {
			err := s.handle(ctx, ev, o)
			DoneFromContext(ctx)()
			return err
		}
	}
	newAckingSource := func(client *fake.Clientset, s *sink, opts SourceOptions) *EventSource {
		src, err := NewEventSource(eventClient(client), newTestCache(t, CacheOptions{}), acking(s), opts)
		if err != nil {
			t.Fatal(err)
		}
		return src
	}
	src := newAckingSource(client, s, SourceOptions{API: "events.k8s.io/v1", Now: clock.Now, Tracker: tr})
	runSource(t, src)
	createEvent(t, client, widgetEvent("demo", "a1", 1, testT0))
	updateEvent(t, client, "demo", "ev-a1", func(ev *eventsv1.Event) { setSeries(ev, 3, testT0.Add(time.Second)) })
	createEvent(t, client, widgetEvent("demo", "b1", 1, testT0))
	updateEvent(t, client, "demo", "ev-b1", func(ev *eventsv1.Event) { setSeries(ev, 2, testT0.Add(time.Second)) })
	waitFor(t, 5*time.Second, "a1#3 and b1#2", func() bool { return s.has("a1", 3) && s.has("b1", 2) })
	// a1 deleted (the API server's TTL) while the bridge runs.
	if err := client.EventsV1().Events("demo").Delete(context.Background(), "ev-a1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var cp *Checkpoint
	waitFor(t, 5*time.Second, "a1's deletion in the tracker", func() bool {
		tr.mu.Lock()
		e, _ := tr.done.get("a1")
		tr.mu.Unlock()
		return e.departed() != 0
	})
	tr.SetReady()
	cp, _ = tr.Snapshot(testT0.Add(time.Minute))
	data, err := cp.Encode()
	if err != nil {
		t.Fatal(err)
	}
	resume, err := DecodeCheckpoint(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := resume.DecodeNames(data, cp.EncodeNames(data)); err != nil {
		t.Fatal(err)
	}

	// While no bridge runs: b1 deleted too; both created again (new UIDs,
	// the same names, the next counts); a new repeater.
	a2 := widgetEvent("demo", "a2", 1, testT0.Add(2*time.Hour))
	a2.Name = "ev-a1"
	setSeries(a2, 4, testT0.Add(2*time.Hour))
	b2 := widgetEvent("demo", "b2", 1, testT0.Add(2*time.Hour))
	b2.Name = "ev-b1"
	setSeries(b2, 5, testT0.Add(2*time.Hour)) // counts 3 and 4 held back by the recorder's spam filter
	fresh := widgetEvent("demo", "fresh", 2, testT0.Add(2*time.Hour))
	next := &sink{}
	src2 := newAckingSource(fake.NewClientset(a2, b2, fresh), next, SourceOptions{API: "events.k8s.io/v1", Now: clock.Now,
		Tracker: NewTracker(resume, 0), Resume: resume, InitialLookback: 24 * time.Hour})
	runSource(t, src2)
	waitFor(t, 5*time.Second, "the listed Events", func() bool { return next.has("a2", 4) && next.has("b2", 5) && next.has("fresh", 2) })
	time.Sleep(100 * time.Millisecond) // anything more would have come by now
	wantCounts(t, "a2 (a1 created again, a1 deleted while the bridge ran)", next.of("a2"), 4)
	wantCounts(t, "b2 (b1 created again, b1 deleted while down)", next.of("b2"), 3, 4, 5)
	wantCounts(t, "fresh", next.of("fresh"), 1, 2)
}

// A relist (the watch broke) lists a repeater under a new UID, created again
// by the recorder meanwhile, while the Event it replaces is still known
// (its deletion comes after the list): only its new counts are yielded. A
// new repeater of another name is yielded whole.
func TestEventSourceRelistRecreatedGoesOnByName(t *testing.T) {
	l := newListingSource(t)
	s, src, st, work := l.sink, l.src, l.store, l.work
	y := widgetEvent("demo", "y", 3, testT0)
	y.ResourceVersion = "10"
	_ = st.Replace([]any{y}, "10")
	work()
	wantCounts(t, "y in the first list", s.of("y"), 1, 2, 3)

	// The watch broke; meanwhile the TTL deleted y and the recorder created
	// it again as x with count 4, then counted it to 5; z is new.
	x := widgetEvent("demo", "x", 5, testT0.Add(2*time.Hour))
	x.Name, x.ResourceVersion = y.Name, "20"
	z := widgetEvent("demo", "z", 2, testT0.Add(2*time.Hour))
	z.ResourceVersion = "21"
	_ = st.Replace([]any{x, z}, "21")
	work()
	wantCounts(t, "x (y created again)", s.of("x"), 4, 5)
	wantCounts(t, "z (new)", s.of("z"), 1, 2)
	if src.dedup.Len() != 2 {
		t.Errorf("%d Events known after the relist, want 2 (y deleted)", src.dedup.Len())
	}
}

// listingSource is an EventSource with a tracker, outputs (sink) that
// acknowledge each occurrence once handled, and the reflector's store to
// list Events into (Replace: a list, a relist); work processes what the
// lists queued.
type listingSource struct {
	src   *EventSource
	sink  *sink
	store *eventStore
	work  func()
}

func newListingSource(t *testing.T) listingSource {
	t.Helper()
	s := &sink{}
	tr := NewTracker(nil, 0)
	src, err := NewEventSource(eventClient(fake.NewClientset()), newTestCache(t, CacheOptions{}), func(ctx context.Context, ev *eventsv1.Event, o *convert.Occurrence) error {
		err := s.handle(ctx, ev, o)
		DoneFromContext(ctx)()
		return err
	}, SourceOptions{API: "events.k8s.io/v1", Tracker: tr, InitialLookback: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st := newEventStore(ctx, src)
	work := func() {
		for _, ob := range drain(src) {
			src.process(ctx, ob, nil)
		}
	}
	return listingSource{src: src, sink: s, store: st, work: work}
}

// An Event of count 1 leaves no name in the checkpoint (it is pruned once
// the watermark passes it). Created again while no bridge ran, under a new
// UID with count 2 and its series' first time, it goes on from count 1:
// the series began long before the checkpoint's PruneBefore, so its count 1
// went out with the Event it replaces (see SeriesSkew). A series that began
// within the skew allowed before it, or after it, is yielded whole. (Before,
// the Event created again gave counts 1 and 2: count 1 twice.)
func TestEventSourceRecreatedAfterCountOneGoesOn(t *testing.T) {
	pruned := testT0.Add(time.Hour)
	resume := &Checkpoint{Watermark: 100, PruneBefore: pruned, Done: map[string]int32{}, Saved: pruned.Add(2 * time.Second)}
	listed := func(uid string, count int32, first time.Time) *eventsv1.Event {
		ev := widgetEvent("demo", uid, count, pruned.Add(time.Hour)) // created while down
		ev.EventTime = metav1.NewMicroTime(first)                    // the series' first time, as the recorder keeps it
		ev.ResourceVersion = "150"
		return ev
	}
	again := listed("again", 2, testT0)
	held := listed("held", 4, testT0) // counts 2 and 3 held back by the recorder's spam filter
	skewed := listed("skewed", 2, pruned.Add(-SeriesSkew/2))
	fresh := listed("fresh", 2, pruned.Add(30*time.Minute))
	s := &sink{}
	src, err := NewEventSource(eventClient(fake.NewClientset(again, held, skewed, fresh)), newTestCache(t, CacheOptions{}), s.handle,
		SourceOptions{API: "events.k8s.io/v1", Resume: resume, Tracker: NewTracker(resume, 0), InitialLookback: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, src)
	waitFor(t, 5*time.Second, "the listed Events", func() bool {
		return s.has("again", 2) && s.has("held", 4) && s.has("skewed", 2) && s.has("fresh", 2)
	})
	time.Sleep(100 * time.Millisecond) // anything more would have come by now
	wantCounts(t, "created again after count 1", s.of("again"), 2)
	wantCounts(t, "created again after count 1, counts held back", s.of("held"), 2, 3, 4)
	wantCounts(t, "a series begun within the skew allowed", s.of("skewed"), 1, 2)
	wantCounts(t, "a series begun while down", s.of("fresh"), 1, 2)
}

// The same through a relist: the tracker's last snapshot pruned the Event
// of count 1 the recorder created again while the watch was broken.
func TestEventSourceRelistRecreatedAfterCountOneGoesOn(t *testing.T) {
	l := newListingSource(t)
	s, tr, st, work := l.sink, l.src.opts.Tracker, l.store, l.work
	once := widgetEvent("demo", "once", 1, testT0)
	once.ResourceVersion = "10"
	later := widgetEvent("demo", "later", 1, testT0.Add(time.Hour))
	later.ResourceVersion = "11"
	_ = st.Replace([]any{once, later}, "11")
	work()
	tr.SetReady()
	if cp, _ := tr.Snapshot(testT0.Add(time.Hour + time.Minute)); cp.Done["once"] != 0 {
		t.Fatalf("the snapshot kept once (%v): the test needs it pruned", cp.Done)
	}

	// The watch broke; meanwhile the TTL deleted once and the recorder
	// created it again with count 2.
	again := widgetEvent("demo", "again", 2, testT0.Add(2*time.Hour))
	again.Name, again.EventTime, again.ResourceVersion = once.Name, once.EventTime, "20"
	fresh := widgetEvent("demo", "fresh", 2, testT0.Add(2*time.Hour))
	fresh.ResourceVersion = "21"
	_ = st.Replace([]any{later, again, fresh}, "21")
	work()
	wantCounts(t, "once", s.of("once"), 1)
	wantCounts(t, "again (once created again)", s.of("again"), 2)
	wantCounts(t, "fresh (new)", s.of("fresh"), 1, 2)
}

// Entries of the checkpoint a bridge starts from whose Events the initial
// list does not show were deleted while no bridge ran: a repeater departs
// (kept by name for DepartedFor, then dropped), the rest go at the end of
// the list; listed ones stay. (Before, they stayed for good, until the
// entry limit pushed them out.)
func TestTrackerDropsEntriesTheInitialListLacks(t *testing.T) {
	now := cpT0.Add(time.Hour)
	cp := &Checkpoint{Watermark: 10, PruneBefore: cpT0, Done: map[string]int32{"listed": 2, "gone-rep": 5, "gone-once": 1},
		Names: map[string]uint32{"listed": 1, "gone-rep": 2}}
	tr := NewTracker(cp, 0)
	tr.now = func() time.Time { return now }
	tr.begin(nil, "listed", 1, 12, cpT0, 2, 0)
	tr.SetReady()
	snap, _ := tr.Snapshot(now)
	if snap.Done["listed"] != 2 || snap.Done["gone-rep"] != 5 || snap.Names["gone-rep"] != 2 {
		t.Errorf("after the list: %v %v, want listed and gone-rep (by name) kept", snap.Done, snap.Names)
	}
	if _, ok := snap.Done["gone-once"]; ok {
		t.Error("an unlisted Event seen once must go")
	}
	now = now.Add(DepartedFor + time.Second)
	snap, _ = tr.Snapshot(now)
	if _, ok := snap.Done["gone-rep"]; ok || snap.Done["listed"] != 2 {
		t.Errorf("after %s: %v, want only listed", DepartedFor, snap.Done)
	}
}

// At most MaxDeparted deleted repeaters stay, the most recently deleted.
func TestTrackerBoundsDepartedRepeaters(t *testing.T) {
	now := cpT0
	tr := NewTracker(nil, 0)
	tr.now = func() time.Time { return now }
	tr.SetReady()
	const n = MaxDeparted + 100
	for i := range n {
		uid := fmt.Sprintf("0a0b0c0d-0000-4000-8000-%012x", i)
		tr.begin(nil, uid, uint32(i+1), uint64(10+i), cpT0, 2, 0)
		now = now.Add(time.Second) // (departures are kept to the second)
		tr.Forget(uid)
	}
	cp, _ := tr.Snapshot(now)
	if len(cp.Done) != MaxDeparted || len(cp.Names) != MaxDeparted {
		t.Fatalf("%d entries, %d names after %d deleted repeaters, want %d", len(cp.Done), len(cp.Names), n, MaxDeparted)
	}
	for i := range 100 {
		if _, ok := cp.Done[fmt.Sprintf("0a0b0c0d-0000-4000-8000-%012x", i)]; ok {
			t.Fatalf("the deleted repeater %d (among the first deleted) stayed", i)
		}
	}
}

func TestNameKeyIsFNV1aAndAllocatesNothing(t *testing.T) {
	h := fnv.New32a()
	h.Write([]byte("team-a/web-1.17f0abcdef000001"))
	if got := nameKey("team-a", "web-1.17f0abcdef000001"); got != h.Sum32() {
		t.Errorf("nameKey = %#x, FNV-1a of namespace/name = %#x", got, h.Sum32())
	}
	ns, name := "team-a", "web-1.17f0abcdef000001"
	if a := testing.AllocsPerRun(100, func() { _ = nameKey(ns, name) }); a != 0 && !racebuild.Enabled {
		t.Errorf("nameKey allocates %.0f times", a)
	}
}
