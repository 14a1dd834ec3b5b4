package watch

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	restwatch "k8s.io/client-go/rest/watch"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/racebuild"
)

// ---------------------------------------------------------------------------
// References: the generated decoders, with the fields EventDecoder drops
// cleared.

// keptFields is ev as EventDecoder decodes it: a copy without the dropped
// fields.
func keptFields(ev *eventsv1.Event) *eventsv1.Event {
	out := ev.DeepCopy()
	m := &out.ObjectMeta
	m.GenerateName, m.SelfLink, m.Generation, m.DeletionGracePeriodSeconds = "", "", 0, nil
	m.Labels, m.OwnerReferences, m.Finalizers, m.ManagedFields = nil, nil, nil, nil
	if v, ok := m.Annotations[metav1.InitialEventsAnnotationKey]; ok {
		m.Annotations = map[string]string{metav1.InitialEventsAnnotationKey: v}
	} else {
		m.Annotations = nil
	}
	return out
}

// genEvent is client-go's generated decoding of an events.k8s.io/v1 Event.
func genEvent(data []byte) (*eventsv1.Event, error) {
	ev := &eventsv1.Event{}
	if err := ev.Unmarshal(data); err != nil {
		return nil, err
	}
	return keptFields(ev), nil
}

// genCoreEvent is client-go's generated decoding of a core/v1 Event, then
// FromCoreEvent.
func genCoreEvent(data []byte) (*eventsv1.Event, error) {
	ev := &corev1.Event{}
	if err := ev.Unmarshal(data); err != nil {
		return nil, err
	}
	return keptFields(FromCoreEvent(ev)), nil
}

func genDecode(api EventAPI, data []byte) (*eventsv1.Event, error) {
	if api == CoreV1 {
		return genCoreEvent(data)
	}
	return genEvent(data)
}

func genUnmarshal[T interface{ Unmarshal([]byte) error }](obj T, data []byte) T {
	if err := obj.Unmarshal(data); err != nil {
		panic(err)
	}
	return obj
}

// toCoreEvent is the core/v1 Event FromCoreEvent maps to ev.
func toCoreEvent(ev *eventsv1.Event) *corev1.Event {
	out := &corev1.Event{
		ObjectMeta: ev.ObjectMeta, InvolvedObject: ev.Regarding, Reason: ev.Reason, Message: ev.Note,
		Source: ev.DeprecatedSource, FirstTimestamp: ev.DeprecatedFirstTimestamp, LastTimestamp: ev.DeprecatedLastTimestamp,
		Count: ev.DeprecatedCount, Type: ev.Type, EventTime: ev.EventTime, Action: ev.Action, Related: ev.Related,
		ReportingController: ev.ReportingController, ReportingInstance: ev.ReportingInstance,
	}
	if ev.Series != nil {
		out.Series = &corev1.EventSeries{Count: ev.Series.Count, LastObservedTime: ev.Series.LastObservedTime}
	}
	return out
}

func marshal(tb testing.TB, api EventAPI, ev *eventsv1.Event) []byte {
	tb.Helper()
	var data []byte
	var err error
	if api == CoreV1 {
		data, err = toCoreEvent(ev).Marshal()
	} else {
		data, err = ev.Marshal()
	}
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// ---------------------------------------------------------------------------
// Events to test with.

// randomEvent sets every field, kept or dropped, from r: strings from small
// pools (so that interning sees repeats), unique ones, long ones (beyond the
// intern and own-note limits), invalid UTF-8 and empty ones; times zero or
// anywhere in 0001..9999; pointers present or not.
func randomEvent(r *rand.Rand) *eventsv1.Event {
	pick := func(pool ...string) string { return pool[r.IntN(len(pool))] }
	odd := func() string {
		switch r.IntN(8) {
		case 0:
			return ""
		case 1:
			return "\xff\xfe" + strings.Repeat("é", r.IntN(3)) + "\xc3"
		case 2:
			return strings.Repeat("x", eventInternLen+1+r.IntN(40))
		case 3:
			return strings.Repeat("long ", 1+r.IntN(300))
		}
		return fmt.Sprintf("s-%x", r.Uint64())
	}
	low := func(pool ...string) string {
		if r.IntN(6) == 0 {
			return odd()
		}
		return pick(pool...)
	}
	high := func(prefix string) string {
		if r.IntN(6) == 0 {
			return odd()
		}
		return fmt.Sprintf("%s-%08x", prefix, r.Uint32())
	}
	tm := func() metav1.Time {
		switch r.IntN(4) {
		case 0:
			return metav1.Time{}
		case 1:
			return metav1.NewTime(time.Unix(r.Int64N(253402300799+62135596800)-62135596800, r.Int64N(1e9)))
		}
		return metav1.NewTime(time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC).Add(time.Duration(r.Int64N(int64(48 * time.Hour)))))
	}
	mtm := func() metav1.MicroTime { return metav1.MicroTime(tm()) }
	ref := func() corev1.ObjectReference {
		return corev1.ObjectReference{
			Kind: low("Pod", "Deployment", "ReplicaSet", "Node"), Namespace: low("default", "kube-system", "team-01"),
			Name: high("obj"), UID: types.UID(high("uid")), APIVersion: low("v1", "apps/v1", "batch/v1"),
			ResourceVersion: high("rv"), FieldPath: low("", "spec.containers{app}", "spec.initContainers{init}"),
		}
	}
	strmap := func() map[string]string {
		if r.IntN(3) == 0 {
			return nil
		}
		m := map[string]string{}
		for range r.IntN(4) {
			m[odd()] = odd()
		}
		return m
	}
	ev := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name: high("ev"), GenerateName: odd(), Namespace: low("default", "kube-system", "team-01"), SelfLink: odd(),
			UID: types.UID(high("uid")), ResourceVersion: high("rv"), Generation: r.Int64(),
			CreationTimestamp: tm(), Labels: strmap(), Annotations: strmap(),
		},
		EventTime: mtm(), ReportingController: low("kubelet", "default-scheduler", "deployment-controller"),
		ReportingInstance: low("node-001", "node-002", "default-scheduler-cp-1"), Action: low("", "Binding", "Pulling"),
		Reason: low("Pulled", "Created", "Started", "BackOff", "Scheduled"), Regarding: ref(),
		Note: low("Started container app", "Back-off restarting failed container", ""), Type: low("Normal", "Warning"),
		DeprecatedSource:         corev1.EventSource{Component: low("kubelet", ""), Host: low("node-001", "")},
		DeprecatedFirstTimestamp: tm(), DeprecatedLastTimestamp: tm(), DeprecatedCount: int32(r.Uint32()),
	}
	if r.IntN(2) == 0 {
		ev.Note = odd()
	}
	if r.IntN(3) == 0 {
		ev.Series = &eventsv1.EventSeries{Count: int32(r.Uint32()), LastObservedTime: mtm()}
	}
	if r.IntN(3) == 0 {
		rel := ref()
		ev.Related = &rel
	}
	if r.IntN(4) == 0 {
		t := tm()
		ev.DeletionTimestamp = &t
	}
	if r.IntN(4) == 0 {
		g := r.Int64()
		ev.DeletionGracePeriodSeconds = &g
	}
	if r.IntN(4) == 0 {
		if ev.Annotations == nil {
			ev.Annotations = map[string]string{}
		}
		ev.Annotations[metav1.InitialEventsAnnotationKey] = pick("true", "false", "")
	}
	for range r.IntN(3) {
		ev.OwnerReferences = append(ev.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: odd(), UID: types.UID(odd())})
	}
	for range r.IntN(3) {
		ev.Finalizers = append(ev.Finalizers, odd())
	}
	for range r.IntN(3) {
		t := tm()
		ev.ManagedFields = append(ev.ManagedFields, metav1.ManagedFieldsEntry{Manager: odd(), Operation: metav1.ManagedFieldsOperationUpdate,
			APIVersion: "v1", Time: &t, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:note":{}}`)}})
	}
	return ev
}

// recordedEvents are the Events of examples/recordings.
func recordedEvents(tb testing.TB) []*eventsv1.Event {
	tb.Helper()
	paths, err := filepath.Glob("../examples/recordings/*.jsonl")
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no recordings: %v", err)
	}
	var out []*eventsv1.Event
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			tb.Fatal(err)
		}
		entries, err := ReadRecording(f)
		f.Close()
		if err != nil {
			tb.Fatalf("%s: %v", p, err)
		}
		for _, e := range entries {
			if e.Event != nil {
				out = append(out, e.Event)
			}
		}
	}
	return out
}

func stormEvents(tb testing.TB) []*eventsv1.Event {
	tb.Helper()
	c, err := NewObjectCache(CacheOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return benchStorm(3, 10, c)
}

// testEvents are the storm's, the recordings' and n random Events.
func testEvents(tb testing.TB, n int) []*eventsv1.Event {
	events := append(stormEvents(tb), recordedEvents(tb)...)
	r := rand.New(rand.NewPCG(1, 2))
	for range n {
		events = append(events, randomEvent(r))
	}
	return events
}

// kubeletEvent is a typical Event: a kubelet's, with the managed fields the
// API server adds.
func kubeletEvent(tb testing.TB) *eventsv1.Event {
	for _, ev := range stormEvents(tb) {
		if ev.ReportingController == "kubelet" && ev.Reason == "Pulled" {
			return ev
		}
	}
	tb.Fatal("no kubelet Event in the storm")
	return nil
}

// ---------------------------------------------------------------------------
// Equivalence.

// checkDecode decodes data with d and the generated code and compares; then
// overwrites data (a copy) and compares again: the result must not alias
// the input.
func checkDecode(t *testing.T, d *EventDecoder, api EventAPI, data []byte, what string) {
	t.Helper()
	want, err := genDecode(api, data)
	if err != nil {
		t.Fatalf("%s: generated decoder: %v", what, err)
	}
	buf := bytes.Clone(data)
	got, err := d.Decode(api, buf)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: decoded\n%#v\nwant\n%#v", what, got, want)
	}
	for i := range buf {
		buf[i] = 0xA5
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: the decoded Event changed when the input was overwritten:\n%#v\nwant\n%#v", what, got, want)
	}
}

func TestEventProtoEquivalence(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 600
	}
	events := testEvents(t, n)
	for _, api := range []EventAPI{EventsV1, CoreV1} {
		var d EventDecoder
		for i, ev := range events {
			checkDecode(t, &d, api, marshal(t, api, ev), fmt.Sprintf("api %d event %d (%s)", api, i, ev.Name))
		}
	}
}

// The intern table stays bounded and results stay right across its clears.
func TestEventProtoInternBound(t *testing.T) {
	var d EventDecoder
	ev := kubeletEvent(t).DeepCopy()
	for i := range 3 * eventInternMax {
		ev.Reason = fmt.Sprintf("Reason%d", i)
		ev.Regarding.FieldPath = fmt.Sprintf("spec.containers{c%d}", i)
		checkDecode(t, &d, EventsV1, marshal(t, EventsV1, ev), ev.Reason)
		if len(d.strs) > eventInternMax {
			t.Fatalf("intern table has %d entries, bound %d", len(d.strs), eventInternMax)
		}
	}
	// Too long to intern: copied into the Event's blob instead.
	ev.Reason = strings.Repeat("R", eventInternLen+1)
	checkDecode(t, &d, EventsV1, marshal(t, EventsV1, ev), "long reason")
	if _, ok := d.strs[ev.Reason]; ok {
		t.Fatal("a string longer than the intern limit was interned")
	}
}

// No decoded string points into the input, and the ones that are not
// interned share one blob (the note too, unless it is long).
func TestEventProtoNoAlias(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var d EventDecoder
	for range 200 {
		ev := randomEvent(r)
		for _, api := range []EventAPI{EventsV1, CoreV1} {
			data := marshal(t, api, ev)
			got, err := d.Decode(api, data)
			if err != nil {
				t.Fatal(err)
			}
			lo := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
			for _, s := range eventStrings(got) {
				p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
				if len(s) > 0 && p >= lo && p < lo+uintptr(len(data)) {
					t.Fatalf("string %q points into the input", s)
				}
			}
		}
	}
}

func eventStrings(ev *eventsv1.Event) []string {
	refStrings := func(r *corev1.ObjectReference) []string {
		return []string{r.Kind, r.Namespace, r.Name, string(r.UID), r.APIVersion, r.ResourceVersion, r.FieldPath}
	}
	out := []string{ev.Name, ev.Namespace, string(ev.UID), ev.ResourceVersion, ev.ReportingController, ev.ReportingInstance,
		ev.Action, ev.Reason, ev.Note, ev.Type, ev.DeprecatedSource.Component, ev.DeprecatedSource.Host}
	out = append(out, refStrings(&ev.Regarding)...)
	if ev.Related != nil {
		out = append(out, refStrings(ev.Related)...)
	}
	for k, v := range ev.Annotations {
		out = append(out, k, v)
	}
	return out
}

// The low-cardinality strings of two Events share their storage (interned);
// the others of one Event share one blob.
func TestEventProtoInterned(t *testing.T) {
	ev := kubeletEvent(t)
	var d EventDecoder
	for _, api := range []EventAPI{EventsV1, CoreV1} {
		a, err := d.Decode(api, marshal(t, api, ev))
		if err != nil {
			t.Fatal(err)
		}
		b, err := d.Decode(api, marshal(t, api, ev))
		if err != nil {
			t.Fatal(err)
		}
		same := func(x, y string) bool { return unsafe.StringData(x) == unsafe.StringData(y) }
		for _, f := range []func(*eventsv1.Event) string{
			func(e *eventsv1.Event) string { return e.Namespace },
			func(e *eventsv1.Event) string { return e.Reason },
			func(e *eventsv1.Event) string { return e.Type },
			func(e *eventsv1.Event) string { return e.ReportingController },
			func(e *eventsv1.Event) string { return e.ReportingInstance },
			func(e *eventsv1.Event) string { return e.DeprecatedSource.Component },
			func(e *eventsv1.Event) string { return e.DeprecatedSource.Host },
			func(e *eventsv1.Event) string { return e.Regarding.Kind },
			func(e *eventsv1.Event) string { return e.Regarding.APIVersion },
			func(e *eventsv1.Event) string { return e.Regarding.Namespace },
			func(e *eventsv1.Event) string { return e.Regarding.FieldPath },
		} {
			if x, y := f(a), f(b); x == "" || !same(x, y) {
				t.Errorf("api %d: %q not interned", api, x)
			}
		}
		if same(a.Name, b.Name) || same(string(a.UID), string(b.UID)) {
			t.Errorf("api %d: the Events share a blob", api)
		}
		// One blob: the strings are laid out one after the other.
		next := uintptr(unsafe.Pointer(unsafe.StringData(a.Name)))
		for _, s := range []string{a.Name, string(a.UID), a.ResourceVersion, a.Note, a.Regarding.Name, string(a.Regarding.UID), a.Regarding.ResourceVersion} {
			if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); p != next {
				t.Fatalf("api %d: %q is not where the blob continues", api, s)
			}
			next += uintptr(len(s))
		}
	}
}

// A released Event is decoded into again; what was taken from it before
// (an occurrence, its strings, its series count and time) stays as it was:
// the strings live in the Event's own blob, not in the reused struct.
func TestReleasedEventReuse(t *testing.T) {
	a := kubeletEvent(t)
	a.Series = &eventsv1.EventSeries{Count: 7, LastObservedTime: metav1.NewMicroTime(time.Unix(1e9, 5000))}
	b := a.DeepCopy()
	b.Name, b.UID, b.Note, b.Reason = "other-event", "other-uid", "another note entirely", "Other"
	b.Series = &eventsv1.EventSeries{Count: 2, LastObservedTime: metav1.NewMicroTime(time.Unix(2e9, 0))}
	b.Regarding.Name = "other-pod"
	for _, api := range []EventAPI{EventsV1, CoreV1} {
		var d EventDecoder
		evA, err := d.Decode(api, marshal(t, api, a))
		if err != nil {
			t.Fatal(err)
		}
		occA, err := convert.FromEvent(evA, 0, time.Unix(3e9, 0), convert.Options{})
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%+v", occA)
		ReleaseEvent(evA)
		evB, err := d.Decode(api, marshal(t, api, b))
		if err != nil {
			t.Fatal(err)
		}
		if evB != evA {
			t.Logf("api %d: the pool gave another Event (allowed; nothing reused to check)", api)
		}
		if evB.Name != "other-event" || evB.Series == nil || evB.Series.Count != 2 {
			t.Errorf("api %d: the reused Event decoded as %+v", api, evB)
		}
		if got := fmt.Sprintf("%+v", occA); got != want {
			t.Errorf("api %d: the occurrence taken from the released Event changed:\n got %s\nwant %s", api, got, want)
		}
		if occA.Count != 7 || occA.Note != a.Note || occA.Regarding.Name != a.Regarding.Name {
			t.Errorf("api %d: occurrence %+v", api, occA)
		}
	}
}

func TestEventProtoAllocs(t *testing.T) {
	racebuild.SkipAllocs(t)
	base := kubeletEvent(t)
	if len(base.ManagedFields) == 0 {
		t.Fatal("the typical Event should carry managed fields")
	}
	related := base.Regarding
	related.Name += "-related"
	cases := []struct {
		name string
		edit func(*eventsv1.Event)
		max  float64
	}{
		{"typical", func(*eventsv1.Event) {}, 1},
		{"series", func(ev *eventsv1.Event) {
			ev.Series = &eventsv1.EventSeries{Count: 7, LastObservedTime: metav1.NewMicroTime(time.Unix(1e9, 5000))}
		}, 1},
		{"related", func(ev *eventsv1.Event) { ev.Related = &related }, 1},
		{"series+related", func(ev *eventsv1.Event) {
			ev.Series = &eventsv1.EventSeries{Count: 7}
			ev.Related = &related
		}, 1},
		{"deletionTimestamp", func(ev *eventsv1.Event) { ev.DeletionTimestamp = &ev.CreationTimestamp }, 2},
		{"long note", func(ev *eventsv1.Event) { ev.Note = strings.Repeat("n", eventNoteOwnLen+1) }, 2},
	}
	for _, c := range cases {
		ev := base.DeepCopy()
		c.edit(ev)
		for _, api := range []EventAPI{EventsV1, CoreV1} {
			data := marshal(t, api, ev)
			var d EventDecoder
			// As the watch worker does: the Event back once handled
			// (ReleaseEvent); its strings' blob stays the decoder's one
			// allocation.
			allocs := testing.AllocsPerRun(200, func() {
				ev, err := d.Decode(api, data)
				if err != nil {
					t.Fatal(err)
				}
				ReleaseEvent(ev)
			})
			if allocs > c.max {
				t.Errorf("%s (api %d): %.1f allocations per Event, want at most %.0f", c.name, api, allocs, c.max)
			}
			// The generated decoder, for the record.
			gen := testing.AllocsPerRun(20, func() {
				if api == CoreV1 {
					_ = FromCoreEvent(genUnmarshal(&corev1.Event{}, data))
				} else {
					genUnmarshal(&eventsv1.Event{}, data)
				}
			})
			t.Logf("%s (api %d): %.0f allocations (generated: %.0f)", c.name, api, allocs, gen)
		}
	}
}

// ---------------------------------------------------------------------------
// The wire format, hand-made.

func pbTag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	return protowire.AppendTag(b, num, typ)
}

func pbStr(num protowire.Number, s string) []byte {
	return protowire.AppendString(pbTag(nil, num, protowire.BytesType), s)
}

func pbMsg(num protowire.Number, parts ...[]byte) []byte {
	return protowire.AppendBytes(pbTag(nil, num, protowire.BytesType), bytes.Join(parts, nil))
}

func pbVarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(pbTag(nil, num, protowire.VarintType), v)
}

func pbJoin(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// unknownFields has one unknown field of each wire type (numbers 90..),
// groups nested, the end tags' numbers not matching the start's.
func unknownFields() []byte {
	return pbJoin(
		pbVarint(90, 1<<63),
		protowire.AppendFixed32(pbTag(nil, 91, protowire.Fixed32Type), 7),
		protowire.AppendFixed64(pbTag(nil, 92, protowire.Fixed64Type), 7),
		pbStr(93, "unknown"),
		pbTag(nil, 94, protowire.StartGroupType), pbVarint(1, 5), pbTag(nil, 95, protowire.StartGroupType), pbStr(2, "x"),
		pbTag(nil, 95, protowire.EndGroupType), pbTag(nil, 96, protowire.EndGroupType),
	)
}

func pbTime(num protowire.Number, sec int64, nanos int32) []byte {
	return pbMsg(num, pbVarint(1, uint64(sec)), pbVarint(2, uint64(int64(nanos))))
}

// varint10 is v as a 10-byte varint whose last byte has bits beyond 64
// (the generated code drops them).
func varint10(v uint64) []byte {
	b := make([]byte, 10)
	for i := range 9 {
		b[i] = byte(v>>(7*i))&0x7F | 0x80
	}
	b[9] = byte(v>>63) | 0x7E
	return b
}

// TestEventProtoWire compares with the generated decoder on hand-made
// encodings: repeated and merged fields, unknown fields of every wire type
// at every level, odd varints and tags, annotation entries; and makes sure
// that malformed ones are errors for both.
func TestEventProtoWire(t *testing.T) {
	// The field numbers that differ between the two APIs.
	type fieldNums struct {
		regarding, related, series, source, first, last, eventTime, count protowire.Number
		reason, note, typ, action, controller, instance                   protowire.Number
	}
	apis := map[EventAPI]fieldNums{
		EventsV1: {regarding: 8, related: 9, series: 3, source: 12, first: 13, last: 14, eventTime: 2, count: 15,
			reason: 7, note: 10, typ: 11, action: 6, controller: 4, instance: 5},
		CoreV1: {regarding: 2, related: 13, series: 11, source: 5, first: 6, last: 7, eventTime: 10, count: 8,
			reason: 3, note: 4, typ: 9, action: 12, controller: 14, instance: 15},
	}
	key := metav1.InitialEventsAnnotationKey
	meta := pbMsg(1, pbStr(1, "ev1"), pbStr(3, "ns"), pbStr(5, "uid-1"), pbStr(6, "42"), pbTime(8, 1700000000, 5), unknownFields())
	annotation := func(entry ...[]byte) []byte { return pbMsg(1, pbMsg(12, entry...)) }
	for api, f := range apis {
		ref := func(num protowire.Number) []byte {
			return pbMsg(num, pbStr(1, "Pod"), pbStr(2, "ns"), pbStr(3, "p"), pbStr(4, "puid"), pbStr(5, "v1"), pbStr(6, "7"), pbStr(7, "spec.containers{a}"), unknownFields())
		}
		accepted := map[string][]byte{
			"minimal": pbJoin(meta),
			"empty":   nil,
			"unknown": pbJoin(unknownFields(), meta, unknownFields()),
			"all": pbJoin(meta, ref(f.regarding), ref(f.related), pbMsg(f.series, pbVarint(1, 2), pbTime(2, 5, 6000)),
				pbMsg(f.source, pbStr(1, "kubelet"), pbStr(2, "node-1"), unknownFields()), pbTime(f.first, 1, 0), pbTime(f.last, 2, 0),
				pbTime(f.eventTime, 3, 4567), pbVarint(f.count, 3), pbStr(f.reason, "Pulled"), pbStr(f.note, "note"), pbStr(f.typ, "Normal"),
				pbStr(f.action, "Pull"), pbStr(f.controller, "kubelet"), pbStr(f.instance, "node-1")),
			"merge": pbJoin(
				pbMsg(1, pbStr(1, "first"), pbStr(5, "u")), pbMsg(1, pbStr(3, "ns2"), pbTime(9, 5, 0)), pbMsg(1, pbStr(1, "second")),
				pbMsg(f.regarding, pbStr(1, "Pod")), pbMsg(f.regarding, pbStr(3, "name")),
				pbMsg(f.related, pbStr(1, "Node")), pbMsg(f.related, pbStr(3, "n1")),
				pbMsg(f.series, pbVarint(1, 4)), pbMsg(f.series, pbTime(2, 99, 1500), unknownFields()),
				pbStr(f.reason, "A"), pbStr(f.reason, "B"), pbVarint(f.count, 3), pbVarint(f.count, 9),
				pbTime(f.eventTime, 10, 0), pbTime(f.eventTime, 11, 999999999),
				pbTime(f.first, 100, 0), pbMsg(f.first), pbTime(f.last, 1, 0), pbTime(f.last, 2, 0),
				pbMsg(f.source, pbStr(1, "c")), pbMsg(f.source, pbStr(2, "h")),
			),
			"times": pbJoin(
				pbTime(f.eventTime, -5, -1500),                                          // negative nanos: truncated towards 0
				pbTime(f.first, 100, 999999999),                                         // Time drops the nanos
				pbTime(f.last, -62135596800, 2e9),                                       // nanos beyond a second
				pbMsg(f.series, pbTime(2, 1<<40, 123456)),                               // far future
				pbMsg(1, pbMsg(8, pbVarint(1, 0))),                                      // zero seconds but present: not the zero time
				pbMsg(1, pbMsg(9, pbVarint(2, 7))),                                      // deletionTimestamp
				pbMsg(f.eventTime, unknownFields(), pbVarint(1, 77), pbVarint(2, 3000)), // unknown fields in a Timestamp
			),
			"varint10": pbJoin(pbTag(nil, f.count, protowire.VarintType), varint10(1<<40|5)),
			"big field number": pbJoin( // the tag's number truncated to int32
				protowire.AppendVarint(nil, (1<<32+uint64(f.reason))<<3|uint64(protowire.BytesType)), protowire.AppendString(nil, "Truncated")),
			"count negative": pbJoin(pbVarint(f.count, uint64(1<<64-1))),
			"bookmark":       pbJoin(annotation(pbStr(1, key), pbStr(2, "true")), pbMsg(1, pbStr(6, "123"))),
			"annotations": pbJoin(
				annotation(pbStr(2, "true"), pbStr(1, key)),
				annotation(pbStr(1, "other"), pbStr(2, "x")),
				annotation(pbStr(1, key)),
				annotation(unknownFields(), pbStr(1, key), pbStr(2, "yes"), unknownFields()),
			),
			// The generated code reads the value from beyond its entry.
			"annotation value overrunning its entry": pbJoin(
				pbMsg(1, pbMsg(12, pbStr(1, key), pbTag(nil, 2, protowire.BytesType), []byte{4}), pbStr(6, "rv")),
			),
			"dropped metadata": pbJoin(pbMsg(1, pbStr(2, "gen-"), pbStr(4, "/self"), pbVarint(7, 3), pbVarint(10, 30),
				pbMsg(11, pbStr(1, "k"), pbStr(2, "v")), pbMsg(13, pbStr(1, "v1")), pbStr(14, "fin"), pbMsg(17, pbStr(1, "mgr")), unknownFields())),
		}
		for name, data := range accepted {
			var d EventDecoder
			checkDecode(t, &d, api, data, fmt.Sprintf("%s (api %d)", name, api))
		}

		rejected := map[string][]byte{}
		// A field of the wrong wire type whose bytes would parse if read
		// as the right one: a fixed32 that is a varint (5) or a length (3)
		// followed by a valid unknown field.
		wrong := func(num protowire.Number, varintField bool) []byte {
			if varintField {
				return pbJoin(pbTag(nil, num, protowire.Fixed32Type), []byte{5}, pbVarint(90, 1))
			}
			return pbJoin(pbTag(nil, num, protowire.Fixed32Type), []byte{3}, pbVarint(90, 1))
		}
		// Wrong wire types for every known field, at every level.
		for num := protowire.Number(1); num <= 15; num++ {
			rejected[fmt.Sprintf("top-level field %d", num)] = pbJoin(meta, wrong(num, num == f.count))
		}
		for _, num := range []protowire.Number{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 17} {
			rejected[fmt.Sprintf("metadata field %d", num)] = pbMsg(1, wrong(num, num == 7 || num == 10))
		}
		for num := protowire.Number(1); num <= 7; num++ {
			rejected[fmt.Sprintf("regarding field %d", num)] = pbMsg(f.regarding, wrong(num, false))
			rejected[fmt.Sprintf("related field %d", num)] = pbMsg(f.related, wrong(num, false))
		}
		rejected["source component"] = pbMsg(f.source, wrong(1, false))
		rejected["source host"] = pbMsg(f.source, wrong(2, false))
		rejected["series count"] = pbMsg(f.series, wrong(1, true))
		rejected["series time"] = pbMsg(f.series, wrong(2, false))
		rejected["series time seconds"] = pbMsg(f.series, pbMsg(2, wrong(1, true)))
		rejected["timestamp seconds"] = pbMsg(f.first, wrong(1, true))
		rejected["timestamp nanos"] = pbMsg(f.eventTime, wrong(2, true))
		rejected["metadata timestamp"] = pbMsg(1, pbMsg(8, wrong(1, true)))
		rejected["metadata deletion timestamp"] = pbMsg(1, pbMsg(9, pbTag(nil, 1, protowire.EndGroupType)))
		// Malformed.
		rejected["11-byte varint"] = pbJoin(pbTag(nil, f.count, protowire.VarintType), bytes.Repeat([]byte{0xFF}, 10), []byte{1})
		rejected["truncated varint"] = pbJoin(pbTag(nil, f.count, protowire.VarintType), []byte{0x80})
		rejected["truncated tag"] = []byte{0x80}
		rejected["length beyond the end"] = pbJoin(pbTag(nil, f.note, protowire.BytesType), []byte{10}, []byte("short"))
		rejected["huge length"] = pbJoin(pbTag(nil, f.note, protowire.BytesType), protowire.AppendVarint(nil, 1<<62), []byte("x"))
		rejected["negative length"] = pbJoin(pbTag(nil, f.note, protowire.BytesType), protowire.AppendVarint(nil, 1<<63), []byte("x"))
		rejected["negative message length"] = pbJoin(pbTag(nil, 1, protowire.BytesType), protowire.AppendVarint(nil, 1<<64-1))
		rejected["field 0"] = pbVarint(0, 1)
		rejected["negative field number"] = protowire.AppendVarint(nil, (1<<31)<<3)
		rejected["end group"] = pbTag(nil, 5, protowire.EndGroupType)
		rejected["unended group"] = pbJoin(meta, pbTag(nil, 90, protowire.StartGroupType), pbVarint(1, 1))
		rejected["wire type 6"] = protowire.AppendVarint(nil, 90<<3|6)
		rejected["wire type 7 in metadata"] = pbMsg(1, protowire.AppendVarint(nil, 90<<3|7))
		rejected["unknown fixed64 truncated"] = pbJoin(pbTag(nil, 90, protowire.Fixed64Type), []byte{1, 2, 3})
		rejected["unknown fixed32 truncated"] = pbJoin(pbTag(nil, 90, protowire.Fixed32Type), []byte{1, 2, 3})
		rejected["unknown bytes truncated"] = pbJoin(pbTag(nil, 90, protowire.BytesType), []byte{3, 1})
		rejected["group with huge length inside"] = pbJoin(pbTag(nil, 90, protowire.StartGroupType), pbTag(nil, 1, protowire.BytesType),
			protowire.AppendVarint(nil, 1<<62), pbTag(nil, 90, protowire.EndGroupType))
		rejected["annotation key beyond the buffer"] = pbMsg(1, pbMsg(12, pbTag(nil, 1, protowire.BytesType), []byte{9}))
		rejected["annotation entry with a truncated unknown field"] = pbMsg(1, pbMsg(12, pbTag(nil, 3, protowire.BytesType), []byte{9}), []byte("123456789"))
		rejected["annotation entry end group"] = pbMsg(1, pbMsg(12, pbTag(nil, 3, protowire.EndGroupType)))
		rejected["annotation entry overflowing varint"] = pbMsg(1, pbMsg(12, bytes.Repeat([]byte{0xFF}, 11)))
		for name, data := range rejected {
			var d EventDecoder
			if _, err := genDecode(api, data); err == nil {
				t.Fatalf("%s (api %d): the generated decoder accepts it: a bad test", name, api)
			}
			if ev, err := d.Decode(api, data); err == nil {
				t.Errorf("%s (api %d): accepted: %#v", name, api, ev)
			}
		}
	}
}

// Every prefix of an encoding: accepted exactly when the generated decoder
// accepts it, with the same result.
func TestEventProtoTruncated(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 10 {
		ev := randomEvent(r)
		ev.Series = &eventsv1.EventSeries{Count: 3, LastObservedTime: metav1.NewMicroTime(time.Unix(1e9, 0))}
		rel := ev.Regarding
		ev.Related = &rel
		for _, api := range []EventAPI{EventsV1, CoreV1} {
			data := marshal(t, api, ev)
			var d EventDecoder
			for n := range len(data) {
				compareDecoders(t, &d, api, data[:n], true)
			}
		}
	}
}

// compareDecoders checks one input: no panic; whatever the generated code
// accepts, EventDecoder accepts and decodes the same (unaliased); exact:
// the reverse too.
func compareDecoders(t *testing.T, d *EventDecoder, api EventAPI, data []byte, exact bool) (lenient bool) {
	t.Helper()
	want, wantErr := genDecode(api, data)
	buf := bytes.Clone(data)
	got, err := d.Decode(api, buf)
	switch {
	case wantErr == nil && err != nil:
		t.Fatalf("api %d: rejected what the generated decoder accepts: %v\ninput %q", api, err, data)
	case wantErr != nil && err == nil:
		if exact {
			t.Fatalf("api %d: accepted what the generated decoder rejects (%v)\ninput %q", api, wantErr, data)
		}
		return true
	case err == nil:
		for i := range buf {
			buf[i] = ^buf[i]
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("api %d: decoded\n%#v\nwant\n%#v\ninput %q", api, got, want, data)
		}
	}
	return false
}

// Random mutations of real encodings (bytes changed, inserted, removed):
// the fuzz property, deterministic and quick enough for every run.
func TestEventProtoMutations(t *testing.T) {
	n := 30000
	if testing.Short() {
		n = 8000
	}
	r := rand.New(rand.NewPCG(7, 8))
	var seeds [][]byte
	for _, ev := range testEvents(t, 50) {
		seeds = append(seeds, marshal(t, EventsV1, ev), marshal(t, CoreV1, ev))
	}
	var d EventDecoder
	lenient, accepted := 0, 0
	for i := range n {
		data := bytes.Clone(seeds[r.IntN(len(seeds))])
		for range 1 + r.IntN(3) {
			if len(data) == 0 {
				break
			}
			at := r.IntN(len(data))
			switch r.IntN(4) {
			case 0:
				data[at] ^= byte(1 << r.IntN(8))
			case 1:
				data[at] = byte(r.Uint32())
			case 2:
				data = append(data[:at], data[at+1:]...)
			case 3:
				data = append(data[:at], append([]byte{byte(r.Uint32())}, data[at:]...)...)
			}
		}
		api := EventAPI(1 + i%2)
		if compareDecoders(t, &d, api, data, false) {
			lenient++
		}
		if _, err := genDecode(api, data); err == nil {
			accepted++
		}
	}
	t.Logf("%d mutations: %d accepted by both decoders, %d only by EventDecoder (malformed content of a dropped field)", n, accepted, lenient)
}

// FuzzEventProto: arbitrary bytes never panic EventDecoder; what the
// generated decoder accepts, it accepts and decodes the same (the kept
// fields), without aliasing the input. EventDecoder may accept inputs the
// generated code rejects: malformed content inside the fields it skips.
func FuzzEventProto(f *testing.F) {
	for i, ev := range testEvents(f, 40) {
		if i%8 == 0 {
			f.Add(marshal(f, EventsV1, ev), false)
			f.Add(marshal(f, CoreV1, ev), true)
		}
	}
	f.Add([]byte{}, false)
	f.Add(pbJoin(pbMsg(1, pbMsg(12, pbStr(1, metav1.InitialEventsAnnotationKey), pbStr(2, "true"))), unknownFields()), false)
	var d EventDecoder
	f.Fuzz(func(t *testing.T, data []byte, core bool) {
		api := EventsV1
		if core {
			api = CoreV1
		}
		compareDecoders(t, &d, api, data, false)
		// And as a watch object in its envelope.
		env := append([]byte(protobufPrefix), pbJoin(pbMsg(1, pbStr(1, "events.k8s.io/v1"), pbStr(2, "Event")), pbMsg(2, data))...)
		if a, raw := EventEnvelope(env); a != EventsV1 || !bytes.Equal(raw, data) {
			t.Fatalf("envelope: %d %q", a, raw)
		}
		_, _ = EventEnvelope(data)
	})
}

// ---------------------------------------------------------------------------
// The envelope and client-go's watch decoding.

func protobufInfo(tb testing.TB) k8sruntime.SerializerInfo {
	tb.Helper()
	info, ok := k8sruntime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), k8sruntime.ContentTypeProtobuf)
	if !ok || info.StreamSerializer == nil {
		tb.Fatal("no protobuf serializer")
	}
	return info
}

func encodeProtobuf(tb testing.TB, gv schema.GroupVersion, obj k8sruntime.Object) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := scheme.Codecs.EncoderForVersion(protobufInfo(tb).Serializer, gv).Encode(obj, &buf); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func TestEventEnvelope(t *testing.T) {
	ev := kubeletEvent(t)
	cases := []struct {
		name string
		data []byte
		api  EventAPI
		raw  []byte
	}{
		{"events.k8s.io/v1", encodeProtobuf(t, eventsv1.SchemeGroupVersion, ev), EventsV1, marshal(t, EventsV1, ev)},
		{"core/v1", encodeProtobuf(t, corev1.SchemeGroupVersion, toCoreEvent(ev)), CoreV1, marshal(t, CoreV1, ev)},
		{"list", encodeProtobuf(t, eventsv1.SchemeGroupVersion, &eventsv1.EventList{Items: []eventsv1.Event{*ev}}), NotAnEvent, nil},
		{"status", encodeProtobuf(t, metav1.SchemeGroupVersion, &metav1.Status{Status: "Failure", Code: 410}), NotAnEvent, nil},
		{"pod", encodeProtobuf(t, corev1.SchemeGroupVersion, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}), NotAnEvent, nil},
		{"json", []byte(`{"kind":"Event","apiVersion":"events.k8s.io/v1"}`), NotAnEvent, nil},
		{"prefix only", []byte(protobufPrefix), NotAnEvent, nil},
		{"no raw", append([]byte(protobufPrefix), pbMsg(1, pbStr(1, "v1"), pbStr(2, "Event"))...), NotAnEvent, nil},
		{"content encoding", append([]byte(protobufPrefix), pbJoin(pbMsg(1, pbStr(1, "v1"), pbStr(2, "Event")), pbMsg(2), pbStr(3, "gzip"))...), NotAnEvent, nil},
		{"broken", append([]byte(protobufPrefix), 0x0A, 0x50), NotAnEvent, nil},
		{"empty raw", append([]byte(protobufPrefix), pbJoin(unknownFields(), pbMsg(1, pbStr(1, "v1"), pbStr(2, "Event"), unknownFields()), pbMsg(2), pbStr(4, ""))...), CoreV1, []byte{}},
	}
	for _, c := range cases {
		api, raw := EventEnvelope(c.data)
		if api != c.api || !bytes.Equal(raw, c.raw) || (c.raw != nil) != (raw != nil) {
			t.Errorf("%s: got %d %q, want %d %q", c.name, api, raw, c.api, c.raw)
		}
	}
}

// eventWatchStream is a protobuf watch response as the API server writes
// it: each object encoded for gv, wrapped in a WatchEvent, framed.
func eventWatchStream(tb testing.TB, gv schema.GroupVersion, typs []string, objs []k8sruntime.Object) []byte {
	tb.Helper()
	info := protobufInfo(tb)
	var out, frame bytes.Buffer
	fw := info.StreamSerializer.Framer.NewFrameWriter(&out)
	for i, obj := range objs {
		frame.Reset()
		we := &metav1.WatchEvent{Type: typs[i], Object: k8sruntime.RawExtension{Raw: encodeProtobuf(tb, gv, obj)}}
		if err := info.StreamSerializer.Serializer.Encode(we, &frame); err != nil {
			tb.Fatal(err)
		}
		if _, err := fw.Write(frame.Bytes()); err != nil {
			tb.Fatal(err)
		}
	}
	return out.Bytes()
}

// eventWatchDecoder is the decoder stack of client-go's REST client watch
// (rest.Request.newStreamWatcher) for the protobuf media type, with the
// clientset's codecs, wrapped by WithEventProtoDecoding or not.
func eventWatchDecoder(tb testing.TB, gv schema.GroupVersion, body io.Reader, wrap bool) *restwatch.Decoder {
	tb.Helper()
	var ns k8sruntime.NegotiatedSerializer = rest.CodecFactoryForGeneratedClient(scheme.Scheme, scheme.Codecs).WithoutConversion()
	if wrap {
		ns = WithEventProtoDecoding(ns, true)
	}
	objDec, streamSer, framer, err := k8sruntime.NewClientNegotiator(ns, gv).StreamDecoder(k8sruntime.ContentTypeProtobuf, map[string]string{"stream": "watch"})
	if err != nil {
		tb.Fatal(err)
	}
	return restwatch.NewDecoder(streaming.NewDecoder(framer.NewFrameReader(io.NopCloser(body)), streamSer), objDec)
}

// TestEventProtoWatch runs watch streams through client-go's watch decoder
// with and without WithEventProtoDecoding: the same watch events, the Events
// as the generated decoder makes them minus the dropped fields (core/v1 ones
// as FromCoreEvent makes them), the bookmark's annotation kept, the Status
// of an error event decoded by the wrapped serializer.
func TestEventProtoWatch(t *testing.T) {
	events := testEvents(t, 50)
	for _, gv := range []schema.GroupVersion{eventsv1.SchemeGroupVersion, corev1.SchemeGroupVersion} {
		var typs []string
		var objs []k8sruntime.Object
		add := func(typ string, obj k8sruntime.Object) { typs, objs = append(typs, typ), append(objs, obj) }
		bookmark := &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "9", Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}}
		for i, ev := range events {
			typ := []string{"ADDED", "MODIFIED", "DELETED"}[i%3]
			if gv == corev1.SchemeGroupVersion {
				add(typ, toCoreEvent(ev))
			} else {
				add(typ, ev)
			}
			if i == 10 {
				if gv == corev1.SchemeGroupVersion {
					add("BOOKMARK", toCoreEvent(bookmark))
				} else {
					add("BOOKMARK", bookmark)
				}
			}
		}
		add("ERROR", &metav1.Status{Status: metav1.StatusFailure, Code: 410, Reason: metav1.StatusReasonExpired, Message: "too old"})
		stream := eventWatchStream(t, gv, typs, objs)
		base := eventWatchDecoder(t, gv, bytes.NewReader(stream), false)
		fast := eventWatchDecoder(t, gv, bytes.NewReader(stream), true)
		sawBookmark := false
		for i := range objs {
			wt, want, err := base.Decode()
			if err != nil {
				t.Fatal(err)
			}
			gt, got, err := fast.Decode()
			if err != nil {
				t.Fatalf("%s frame %d: %v", gv, i, err)
			}
			if gt != wt {
				t.Fatalf("%s frame %d: watch event type %s, want %s", gv, i, gt, wt)
			}
			switch w := want.(type) {
			case *eventsv1.Event:
				want = keptFields(w)
			case *corev1.Event:
				want = keptFields(FromCoreEvent(w))
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s frame %d: decoded\n%#v\nwant\n%#v", gv, i, got, want)
			}
			if ev, ok := got.(*eventsv1.Event); ok {
				if ev.ManagedFields != nil || ev.Labels != nil {
					t.Fatalf("%s frame %d: not decoded by EventDecoder", gv, i)
				}
				if gt == "BOOKMARK" {
					sawBookmark = ev.Annotations[metav1.InitialEventsAnnotationKey] == "true"
				}
			}
		}
		if !sawBookmark {
			t.Errorf("%s: the bookmark lost its %s annotation", gv, metav1.InitialEventsAnnotationKey)
		}
		if _, _, err := fast.Decode(); err == nil {
			t.Fatal("decoded past the end of the stream")
		}
	}
}

// The serializer wrapper: Events decoded into an object, other kinds and
// undecodable Events go to the wrapped serializer; core/v1 only if asked.
func TestEventProtoSerializerDelegates(t *testing.T) {
	info := protobufInfo(t)
	ev := kubeletEvent(t)
	evData := encodeProtobuf(t, eventsv1.SchemeGroupVersion, ev)
	coreData := encodeProtobuf(t, corev1.SchemeGroupVersion, toCoreEvent(ev))

	s := NewEventProtoSerializer(info.Serializer, false)
	obj, gvk, err := s.Decode(evData, nil, nil)
	if got, ok := obj.(*eventsv1.Event); err != nil || !ok || got.ManagedFields != nil || *gvk != eventsV1GVK || got.Kind != "Event" || got.APIVersion != "events.k8s.io/v1" {
		t.Fatalf("events.k8s.io/v1 Event: %T %v %v", obj, gvk, err)
	}
	if obj, _, err := s.Decode(coreData, nil, nil); err != nil {
		t.Fatal(err)
	} else if _, ok := obj.(*corev1.Event); !ok {
		t.Fatalf("core/v1 Event without coreV1: %T, want the wrapped serializer's *corev1.Event", obj)
	}
	if obj, _, err := NewEventProtoSerializer(info.Serializer, true).Decode(coreData, nil, nil); err != nil {
		t.Fatal(err)
	} else if got, ok := obj.(*eventsv1.Event); !ok || !reflect.DeepEqual(got.Regarding, ev.Regarding) {
		t.Fatalf("core/v1 Event with coreV1: %T", obj)
	}
	into := &eventsv1.Event{}
	if obj, _, err := s.Decode(evData, nil, into); err != nil || obj != into || into.ManagedFields == nil {
		t.Fatalf("decoding into an object: %T %v (managed fields %v): want the wrapped serializer's", obj, err, into.ManagedFields)
	}
	// An Event EventDecoder rejects: the wrapped serializer's error.
	bad := append([]byte(protobufPrefix), pbJoin(pbMsg(1, pbStr(1, "events.k8s.io/v1"), pbStr(2, "Event")), pbMsg(2, pbVarint(0, 1)))...)
	_, _, wantErr := info.Serializer.Decode(bad, nil, nil)
	if _, _, err := s.Decode(bad, nil, nil); err == nil || wantErr == nil || err.Error() != wantErr.Error() {
		t.Fatalf("bad Event: error %v, want the wrapped serializer's %v", err, wantErr)
	}
	// The negotiated serializer wraps the protobuf media type only.
	ns := WithEventProtoDecoding(scheme.Codecs.WithoutConversion(), false)
	for _, i := range ns.SupportedMediaTypes() {
		_, wrapped := i.Serializer.(*EventProtoSerializer)
		if wrapped != (i.MediaType == k8sruntime.ContentTypeProtobuf) {
			t.Errorf("%s: wrapped %v", i.MediaType, wrapped)
		}
	}
}

// ---------------------------------------------------------------------------
// Benchmarks.

// BenchmarkEventProtoDecode decodes the protobuf encoding of an Event (the
// message inside the envelope) with the generated code (into a heap Event,
// as the serializer does) and with EventDecoder; one op is one Event, the
// storm's mix (kubelet, scheduler, controllers; every one with its managed
// fields). cpu-ns/op is the process's CPU time (the machine may be shared).
func BenchmarkEventProtoDecode(b *testing.B) {
	events := stormEvents(b)
	for _, api := range []EventAPI{EventsV1, CoreV1} {
		name := "events.k8s.io-v1"
		if api == CoreV1 {
			name = "core-v1"
		}
		var data [][]byte
		size := 0
		for _, ev := range events {
			data = append(data, marshal(b, api, ev))
			size += len(data[len(data)-1])
		}
		b.Run(name+"/generated", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size / len(data)))
			defer benchCPU(b)()
			for i := 0; b.Loop(); i++ {
				if api == CoreV1 {
					ev := &corev1.Event{}
					if err := ev.Unmarshal(data[i%len(data)]); err != nil {
						b.Fatal(err)
					}
					benchSinkEvent = FromCoreEvent(ev)
				} else {
					ev := &eventsv1.Event{}
					if err := ev.Unmarshal(data[i%len(data)]); err != nil {
						b.Fatal(err)
					}
					benchSinkEvent = ev
				}
			}
		})
		b.Run(name+"/eventproto", func(b *testing.B) {
			var d EventDecoder
			b.ReportAllocs()
			b.SetBytes(int64(size / len(data)))
			defer benchCPU(b)()
			for i := 0; b.Loop(); i++ {
				ev, err := d.Decode(api, data[i%len(data)])
				if err != nil {
					b.Fatal(err)
				}
				benchSinkEvent = ev
			}
		})
	}
}

// benchSinkEvent keeps decoded Events on the heap, as the watch does.
var benchSinkEvent *eventsv1.Event

// benchCPU reports the CPU time (user+system) per op from now until the
// returned func is called.
func benchCPU(b *testing.B) func() {
	cpu0 := processCPU()
	return func() { b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op") }
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWatchDecodeEventProto is BenchmarkWatchDecode/protobuf (client-go's
// watch decoding of one Event: framing, WatchEvent, the object, slimEvent)
// with the clientset's codecs as they are and wrapped by
// WithEventProtoDecoding.
func BenchmarkWatchDecodeEventProto(b *testing.B) {
	events := benchStorm(20, 10, mustCache(b))
	stream := benchWatchStream(b, k8sruntime.ContentTypeProtobuf, events)
	for _, wrap := range []bool{false, true} {
		name := "generated"
		if wrap {
			name = "eventproto"
		}
		b.Run(name, func(b *testing.B) {
			r := bytes.NewReader(stream)
			dec := eventWatchDecoder(b, eventsv1.SchemeGroupVersion, r, wrap)
			b.ReportAllocs()
			b.ResetTimer()
			defer benchCPU(b)()
			for i := 0; i < b.N; i++ {
				if i%len(events) == 0 && i > 0 {
					b.StopTimer()
					r.Reset(stream)
					dec = eventWatchDecoder(b, eventsv1.SchemeGroupVersion, r, wrap)
					b.StartTimer()
				}
				_, obj, err := dec.Decode()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := slimEvent(obj); err != nil {
					b.Fatal(err)
				}
				if obj.(*eventsv1.Event).UID != events[i%len(events)].UID {
					b.Fatal("decoded the wrong event")
				}
			}
		})
	}
}
