package watch

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// coreCountEvent is an Event as the core/v1 API maps it: deprecatedCount.
func coreCountEvent(uid string, count int32) *eventsv1.Event {
	return &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1.abc", Namespace: "demo", UID: types.UID(uid),
			CreationTimestamp: metav1.NewTime(testT0)},
		Reason:                   "BackOff",
		Type:                     corev1.EventTypeWarning,
		Note:                     "Back-off restarting failed container",
		Regarding:                corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: "demo", Name: "web-1", UID: "pod-uid"},
		DeprecatedCount:          count,
		DeprecatedFirstTimestamp: metav1.NewTime(testT0),
		DeprecatedLastTimestamp:  metav1.NewTime(testT0.Add(time.Duration(count) * time.Second)),
	}
}

// seriesEvent is an events.k8s.io/v1 Event with a series.
func seriesEvent(uid string, count int32) *eventsv1.Event {
	ev := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1.def", Namespace: "demo", UID: types.UID(uid)},
		EventTime:  metav1.NewMicroTime(testT0),
		Reason:     "Unhealthy",
		Regarding:  corev1.ObjectReference{Kind: "Pod", Namespace: "demo", Name: "web-1", UID: "pod-uid"},
	}
	if count > 1 {
		ev.Series = &eventsv1.EventSeries{Count: count, LastObservedTime: metav1.NewMicroTime(testT0.Add(time.Duration(count) * time.Second))}
	}
	return ev
}

func counts(occs []convert.Occurrence) []int32 {
	out := []int32{}
	for _, o := range occs {
		out = append(out, o.Count)
	}
	return out
}

func mustOccurrences(t *testing.T, d *Dedup, ev *eventsv1.Event) []int32 {
	t.Helper()
	occs, err := Occurrences(d, ev, testT0.Add(time.Hour), convert.Options{})
	if err != nil {
		t.Fatalf("Occurrences: %v", err)
	}
	for _, o := range occs {
		if o.EventUID != string(ev.UID) {
			t.Errorf("occurrence EventUID = %q, want %q", o.EventUID, ev.UID)
		}
		if len(o.Chain) != 1 || o.Chain[0] != o.Regarding {
			t.Errorf("occurrence chain = %+v, want just the regarding object", o.Chain)
		}
	}
	return counts(occs)
}

func wantCounts(t *testing.T, step string, got []int32, want ...int32) {
	t.Helper()
	if want == nil {
		want = []int32{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: occurrence counts = %v, want %v", step, got, want)
	}
}

func TestOccurrencesCountByCount(t *testing.T) {
	for name, mk := range map[string]func(string, int32) *eventsv1.Event{
		"deprecatedCount": coreCountEvent,
		"series":          seriesEvent,
	} {
		t.Run(name, func(t *testing.T) {
			d := NewDedup()
			var all []int32
			for c := int32(1); c <= 5; c++ {
				got := mustOccurrences(t, d, mk("uid-1", c))
				wantCounts(t, fmt.Sprintf("count %d", c), got, c)
				all = append(all, got...)
			}
			wantCounts(t, "all", all, 1, 2, 3, 4, 5)
			if d.Len() != 1 {
				t.Errorf("Dedup.Len = %d, want 1", d.Len())
			}
		})
	}
}

func TestOccurrencesJump(t *testing.T) {
	for name, mk := range map[string]func(string, int32) *eventsv1.Event{
		"deprecatedCount": coreCountEvent,
		"series":          seriesEvent,
	} {
		t.Run(name, func(t *testing.T) {
			d := NewDedup()
			wantCounts(t, "first", mustOccurrences(t, d, mk("uid-1", 1)), 1)
			occs, err := Occurrences(d, mk("uid-1", 5), testT0.Add(time.Hour), convert.Options{})
			if err != nil {
				t.Fatal(err)
			}
			wantCounts(t, "jump to 5", counts(occs), 2, 3, 4, 5)
			// The missed occurrences share the Event's latest time.
			want := testT0.Add(5 * time.Second)
			for _, o := range occs {
				if !o.Time.Equal(want) {
					t.Errorf("count %d: Time = %s, want %s", o.Count, o.Time, want)
				}
			}
			// Resending the same state (relist, resync) emits nothing.
			wantCounts(t, "resend 5", mustOccurrences(t, d, mk("uid-1", 5)))
		})
	}
}

func TestOccurrencesFirstSeenAtHigherCount(t *testing.T) {
	d := NewDedup()
	wantCounts(t, "first seen at 3", mustOccurrences(t, d, coreCountEvent("uid-1", 3)), 1, 2, 3)
}

func TestOccurrencesUnrelatedUpdateSameCount(t *testing.T) {
	d := NewDedup()
	wantCounts(t, "count 2", mustOccurrences(t, d, coreCountEvent("uid-1", 2)), 1, 2)
	ev := coreCountEvent("uid-1", 2)
	ev.Note = "a different message"
	ev.ResourceVersion = "999"
	ev.Annotations = map[string]string{"x": "y"}
	wantCounts(t, "same count, other fields", mustOccurrences(t, d, ev))
}

func TestOccurrencesLowerCount(t *testing.T) {
	d := NewDedup()
	wantCounts(t, "count 4", mustOccurrences(t, d, coreCountEvent("uid-1", 4)), 1, 2, 3, 4)
	wantCounts(t, "count 2", mustOccurrences(t, d, coreCountEvent("uid-1", 2)))
	wantCounts(t, "count 1", mustOccurrences(t, d, coreCountEvent("uid-1", 1)))
	// The lower count must not have lowered the high-water mark.
	wantCounts(t, "count 5", mustOccurrences(t, d, coreCountEvent("uid-1", 5)), 5)
}

func TestOccurrencesBaseline(t *testing.T) {
	d := NewDedup()
	d.Baseline("uid-1", 3)
	wantCounts(t, "baselined count", mustOccurrences(t, d, coreCountEvent("uid-1", 3)))
	wantCounts(t, "below baseline", mustOccurrences(t, d, coreCountEvent("uid-1", 2)))
	wantCounts(t, "after baseline", mustOccurrences(t, d, coreCountEvent("uid-1", 6)), 4, 5, 6)
	// A lower baseline never lowers the mark.
	d.Baseline("uid-1", 2)
	wantCounts(t, "lower baseline", mustOccurrences(t, d, coreCountEvent("uid-1", 7)), 7)
	// Baseline of one UID does not affect another.
	wantCounts(t, "other uid", mustOccurrences(t, d, coreCountEvent("uid-2", 2)), 1, 2)
}

func TestOccurrencesForget(t *testing.T) {
	d := NewDedup()
	wantCounts(t, "first", mustOccurrences(t, d, coreCountEvent("uid-1", 2)), 1, 2)
	wantCounts(t, "other", mustOccurrences(t, d, coreCountEvent("uid-2", 1)), 1)
	d.Forget("uid-1")
	if d.Len() != 1 {
		t.Errorf("Len after Forget = %d, want 1", d.Len())
	}
	wantCounts(t, "after forget", mustOccurrences(t, d, coreCountEvent("uid-1", 2)), 1, 2)
	wantCounts(t, "other untouched", mustOccurrences(t, d, coreCountEvent("uid-2", 1)))
	d.Forget("never-seen") // no-op
	if d.Len() != 2 {
		t.Errorf("Len = %d, want 2", d.Len())
	}
}

func TestDedupNext(t *testing.T) {
	d := NewDedup()
	for _, tc := range []struct {
		count    int32
		from, to int32
	}{
		{1, 1, 1}, {1, 2, 1}, {4, 2, 4}, {3, 5, 4}, {5, 5, 5},
	} {
		from, to := d.Next("u", tc.count)
		if from != tc.from || to != tc.to {
			t.Errorf("Next(%d) = %d..%d, want %d..%d", tc.count, from, to, tc.from, tc.to)
		}
	}
}

// TestDedupConcurrent: racing observers of one Event still emit each count
// exactly once.
func TestDedupConcurrent(t *testing.T) {
	d := NewDedup()
	var mu sync.Mutex
	seen := map[int32]int{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := int32(1); c <= 200; c++ {
				from, to := d.Next("u", c)
				mu.Lock()
				for n := from; n <= to; n++ {
					seen[n]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 200 {
		t.Errorf("%d distinct counts emitted, want 200", len(seen))
	}
	for n, k := range seen {
		if k != 1 {
			t.Errorf("count %d emitted %d times", n, k)
		}
	}
}

func TestOccurrencesSeriesPrecedence(t *testing.T) {
	// series.count wins over deprecatedCount when both are set.
	d := NewDedup()
	ev := seriesEvent("uid-1", 3)
	ev.DeprecatedCount = 7
	wantCounts(t, "series 3, deprecated 7", mustOccurrences(t, d, ev), 1, 2, 3)
	// A series with an invalid count falls back to deprecatedCount.
	ev = seriesEvent("uid-2", 2)
	ev.Series.Count = 0
	ev.DeprecatedCount = 2
	wantCounts(t, "series 0, deprecated 2", mustOccurrences(t, d, ev), 1, 2)
	// No count at all is one occurrence.
	ev = seriesEvent("uid-3", 1)
	wantCounts(t, "no count", mustOccurrences(t, d, ev), 1)
}

func TestOccurrencesMicroseconds(t *testing.T) {
	first := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)
	last := time.Date(2026, 3, 1, 12, 0, 9, 654321000, time.UTC)
	ev := seriesEvent("uid-1", 1)
	ev.EventTime = metav1.NewMicroTime(first)
	d := NewDedup()
	occs, err := Occurrences(d, ev, testT0, convert.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(occs) != 1 || !occs[0].Time.Equal(first) || occs[0].Time.Nanosecond() != 123456000 {
		t.Fatalf("first occurrence time = %v, want %s with microseconds", occs, first)
	}
	ev = ev.DeepCopy()
	ev.Series = &eventsv1.EventSeries{Count: 2, LastObservedTime: metav1.NewMicroTime(last)}
	occs, err = Occurrences(d, ev, testT0, convert.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(occs) != 1 || occs[0].Count != 2 {
		t.Fatalf("second observation: %v", counts(occs))
	}
	if !occs[0].Time.Equal(last) || occs[0].Time.Nanosecond() != 654321000 {
		t.Errorf("series occurrence Time = %s, want %s", occs[0].Time, last)
	}
	if !occs[0].FirstTime.Equal(first) {
		t.Errorf("FirstTime = %s, want %s", occs[0].FirstTime, first)
	}
	if occs[0].Time.Location() != time.UTC {
		t.Errorf("Time not in UTC: %s", occs[0].Time.Location())
	}
}

func TestOccurrencesObservedAndFields(t *testing.T) {
	observed := testT0.Add(42 * time.Millisecond)
	ev := coreCountEvent("uid-1", 2)
	occs, err := Occurrences(NewDedup(), ev, observed, convert.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range occs {
		if !o.Observed.Equal(observed) || o.EventName != ev.Name || o.Namespace != ev.Namespace ||
			o.Reason != ev.Reason || o.Regarding.UID != "pod-uid" {
			t.Errorf("occurrence %d: %+v", o.Count, o)
		}
	}
	// Distinct occurrences must not share their chain backing array: the
	// source appends owners to each one independently.
	if len(occs) == 2 {
		occs[0].Chain = append(occs[0].Chain, convert.Ref{UID: "a"})
		occs[1].Chain = append(occs[1].Chain, convert.Ref{UID: "b"})
		if occs[0].Chain[1].UID != "a" {
			t.Errorf("occurrence chains share storage")
		}
	}
}

func TestOccurrencesErrors(t *testing.T) {
	d := NewDedup()
	if _, err := Occurrences(d, nil, testT0, convert.Options{}); err == nil {
		t.Error("nil event: no error")
	}
	if _, err := Occurrences(d, coreCountEvent("uid-1", 1), testT0, convert.Options{MaxMessageBytes: -1}); err == nil {
		t.Error("invalid options: no error")
	}
}
