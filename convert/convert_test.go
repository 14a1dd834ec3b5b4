package convert

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/racebuild"
)

func mt(s string) metav1.MicroTime {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return metav1.NewMicroTime(t.In(time.Local)) // as the API machinery decodes it
}

func tm(s string) metav1.Time { return metav1.NewTime(mt(s).Time) }

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestEventCount(t *testing.T) {
	tests := []struct {
		name string
		ev   *eventsv1.Event
		want int32
	}{
		{"nil event", nil, 1},
		{"nothing set", &eventsv1.Event{}, 1},
		{"deprecatedCount", &eventsv1.Event{DeprecatedCount: 5}, 5},
		{"series wins over deprecatedCount", &eventsv1.Event{DeprecatedCount: 5, Series: &eventsv1.EventSeries{Count: 7}}, 7},
		{"series without deprecatedCount", &eventsv1.Event{Series: &eventsv1.EventSeries{Count: 2}}, 2},
		{"invalid series count falls back", &eventsv1.Event{DeprecatedCount: 3, Series: &eventsv1.EventSeries{Count: 0}}, 3},
		{"negative series and count", &eventsv1.Event{DeprecatedCount: -4, Series: &eventsv1.EventSeries{Count: -1}}, 1},
		{"negative deprecatedCount", &eventsv1.Event{DeprecatedCount: -4}, 1},
		{"count 1", &eventsv1.Event{DeprecatedCount: 1}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EventCount(tt.ev); got != tt.want {
				t.Errorf("EventCount = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestOccurrenceTime(t *testing.T) {
	const (
		series   = "2026-03-01T10:04:12.654321Z"
		evTime   = "2026-03-01T10:00:01.123456Z"
		last     = "2026-03-01T10:03:00Z"
		first    = "2026-03-01T10:02:00Z"
		creation = "2026-03-01T10:01:00Z"
	)
	full := func() *eventsv1.Event {
		ev := &eventsv1.Event{
			EventTime:                mt(evTime),
			Series:                   &eventsv1.EventSeries{Count: 2, LastObservedTime: mt(series)},
			DeprecatedLastTimestamp:  tm(last),
			DeprecatedFirstTimestamp: tm(first),
		}
		ev.CreationTimestamp = tm(creation)
		return ev
	}
	tests := []struct {
		name   string
		mutate func(*eventsv1.Event)
		want   string // "" = zero time
	}{
		{"series.lastObservedTime first, microseconds kept", func(*eventsv1.Event) {}, series},
		{"series without time falls to eventTime", func(e *eventsv1.Event) { e.Series.LastObservedTime = metav1.MicroTime{} }, evTime},
		{"no series: eventTime, microseconds kept", func(e *eventsv1.Event) { e.Series = nil }, evTime},
		{"deprecatedLastTimestamp", func(e *eventsv1.Event) { e.Series = nil; e.EventTime = metav1.MicroTime{} }, last},
		{"deprecatedFirstTimestamp", func(e *eventsv1.Event) {
			e.Series = nil
			e.EventTime = metav1.MicroTime{}
			e.DeprecatedLastTimestamp = metav1.Time{}
		}, first},
		{"creationTimestamp", func(e *eventsv1.Event) {
			e.Series = nil
			e.EventTime = metav1.MicroTime{}
			e.DeprecatedLastTimestamp = metav1.Time{}
			e.DeprecatedFirstTimestamp = metav1.Time{}
		}, creation},
		{"nothing", func(e *eventsv1.Event) { *e = eventsv1.Event{} }, ""},
		{"sub-microsecond precision is kept as given", func(e *eventsv1.Event) {
			e.Series.LastObservedTime = metav1.NewMicroTime(utc("2026-03-01T10:04:12.000000789Z"))
		}, "2026-03-01T10:04:12.000000789Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := full()
			tt.mutate(ev)
			got := OccurrenceTime(ev)
			if tt.want == "" {
				if !got.IsZero() {
					t.Fatalf("OccurrenceTime = %v, want zero", got)
				}
				return
			}
			want := utc(tt.want)
			if !got.Equal(want) || got.Location() != time.UTC {
				t.Fatalf("OccurrenceTime = %v (%v), want %v in UTC", got, got.Location(), want)
			}
		})
	}
	if got := OccurrenceTime(nil); !got.IsZero() {
		t.Errorf("OccurrenceTime(nil) = %v, want zero", got)
	}
}

func TestFirstTime(t *testing.T) {
	ev := &eventsv1.Event{
		EventTime:                mt("2026-03-01T10:00:01.5Z"),
		Series:                   &eventsv1.EventSeries{Count: 2, LastObservedTime: mt("2026-03-01T10:09:00Z")},
		DeprecatedFirstTimestamp: tm("2026-03-01T10:00:00Z"),
	}
	ev.CreationTimestamp = tm("2026-03-01T10:00:02Z")
	steps := []struct {
		want   string
		mutate func()
	}{
		{"2026-03-01T10:00:00Z", func() { ev.DeprecatedFirstTimestamp = metav1.Time{} }},
		{"2026-03-01T10:00:01.5Z", func() { ev.EventTime = metav1.MicroTime{} }},
		{"2026-03-01T10:00:02Z", func() { ev.CreationTimestamp = metav1.Time{} }},
		{"2026-03-01T10:09:00Z", func() { ev.Series = nil }},
		{"", nil},
	}
	for i, s := range steps {
		got := FirstTime(ev)
		if s.want == "" {
			if !got.IsZero() {
				t.Errorf("step %d: firstTime = %v, want zero", i, got)
			}
		} else if !got.Equal(utc(s.want)) {
			t.Errorf("step %d: firstTime = %v, want %s", i, got, s.want)
		}
		if s.mutate != nil {
			s.mutate()
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := (Options{}).Validate(); err != nil {
		t.Errorf("zero Options: %v", err)
	}
	if err := (Options{MaxMessageBytes: 1}).Validate(); err != nil {
		t.Errorf("limit 1: %v", err)
	}
	if err := (Options{MaxMessageBytes: -1}).Validate(); err == nil {
		t.Error("negative limit accepted")
	}
	if _, err := FromEvent(&eventsv1.Event{}, 1, time.Time{}, Options{MaxMessageBytes: -1}); err == nil {
		t.Error("FromEvent accepted invalid options")
	}
}

func TestFromEventNil(t *testing.T) {
	if _, err := FromEvent(nil, 1, time.Now(), Options{}); err == nil {
		t.Fatal("FromEvent(nil) returned no error")
	}
}

func TestFromEventFields(t *testing.T) {
	observed := utc("2026-03-01T12:00:00.25Z")
	ev := &eventsv1.Event{
		EventTime:           mt("2026-03-01T11:00:00.000001Z"),
		ReportingController: "kubelet",
		ReportingInstance:   "node-1",
		Action:              "Pull",
		Reason:              "Pulling",
		Regarding: corev1.ObjectReference{
			Kind: "Pod", APIVersion: "v1", Namespace: "ns", Name: "p", UID: "pod-uid",
			ResourceVersion: "42", FieldPath: "spec.containers{c}",
		},
		Related:          &corev1.ObjectReference{Kind: "Node", Name: "node-1", UID: "node-uid"},
		Note:             "msg",
		Type:             "Normal",
		DeprecatedSource: corev1.EventSource{Component: "ignored", Host: "node-1"},
		DeprecatedCount:  3,
	}
	ev.Name, ev.Namespace, ev.UID = "p.123", "ns", "ev-uid"

	o, err := FromEvent(ev, 0, observed, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := Ref{Kind: "Pod", APIVersion: "v1", Namespace: "ns", Name: "p", UID: "pod-uid", ResourceVersion: "42", FieldPath: "spec.containers{c}"}
	switch {
	case o.EventUID != "ev-uid" || o.EventName != "p.123" || o.Namespace != "ns":
		t.Errorf("identity = %q %q %q", o.EventUID, o.EventName, o.Namespace)
	case o.Count != 3:
		t.Errorf("Count = %d, want 3 (from EventCount when count < 1)", o.Count)
	case o.Regarding != want:
		t.Errorf("Regarding = %+v", o.Regarding)
	case o.Related == nil || o.Related.Name != "node-1" || o.Related.Kind != "Node":
		t.Errorf("Related = %+v", o.Related)
	case o.ReportingController != "kubelet" || o.ReportingInstance != "node-1" || o.SourceHost != "node-1":
		t.Errorf("reporter = %q %q %q", o.ReportingController, o.ReportingInstance, o.SourceHost)
	case o.Reason != "Pulling" || o.Action != "Pull" || o.Note != "msg" || o.Type != "Normal":
		t.Errorf("reason/action/note/type = %q %q %q %q", o.Reason, o.Action, o.Note, o.Type)
	case !o.Time.Equal(utc("2026-03-01T11:00:00.000001Z")) || o.TimeFromObserved:
		t.Errorf("Time = %v (from observed %v)", o.Time, o.TimeFromObserved)
	case !o.FirstTime.Equal(o.Time):
		t.Errorf("FirstTime = %v", o.FirstTime)
	case !o.Observed.Equal(observed):
		t.Errorf("Observed = %v", o.Observed)
	case len(o.Chain) != 1 || o.Chain[0] != want:
		t.Errorf("Chain = %+v, want [Regarding]", o.Chain)
	case o.NoteTruncated || o.NoteOriginalBytes != 0:
		t.Errorf("truncation = %v %d", o.NoteTruncated, o.NoteOriginalBytes)
	}
	if o.Key() != (Key{EventUID: "ev-uid", Count: 3}) {
		t.Errorf("Key = %+v", o.Key())
	}

	// An explicit count wins; the reporter falls back to deprecatedSource.
	ev.ReportingController = ""
	o, _ = FromEvent(ev, 9, observed, Options{})
	if o.Count != 9 || o.ReportingController != "ignored" {
		t.Errorf("count %d, controller %q", o.Count, o.ReportingController)
	}

	// No time at all: observed stands in and is marked.
	o, _ = FromEvent(&eventsv1.Event{}, 1, observed, Options{})
	if !o.Time.Equal(observed) || !o.TimeFromObserved || !o.FirstTime.IsZero() {
		t.Errorf("no-time event: Time %v, fromObserved %v, FirstTime %v", o.Time, o.TimeFromObserved, o.FirstTime)
	}
	if len(o.Chain) != 1 || !o.Chain[0].IsZero() || !o.Regarding.IsZero() {
		t.Errorf("missing regarding: Chain %+v", o.Chain)
	}
}

func TestFromEventInvalidUTF8(t *testing.T) {
	bad := "a\xffb\xc3(c\xe2\x82"
	ev := &eventsv1.Event{
		Reason: bad, Action: bad, Note: bad, Type: bad,
		ReportingController: bad, ReportingInstance: bad,
		Regarding:        corev1.ObjectReference{Kind: bad, APIVersion: bad, Namespace: bad, Name: bad, UID: "u\xff", ResourceVersion: bad, FieldPath: bad},
		Related:          &corev1.ObjectReference{Kind: bad, Name: bad},
		DeprecatedSource: corev1.EventSource{Host: bad},
	}
	ev.Name, ev.Namespace, ev.UID = bad, bad, "e\xff"
	o, err := FromEvent(ev, 1, time.Unix(0, 0), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if o.Note != "a\uFFFDb\uFFFD(c\uFFFD" {
		t.Errorf("Note = %q", o.Note)
	}
	strs := []string{o.EventUID, o.EventName, o.Namespace, o.Type, o.Reason, o.Action, o.Note,
		o.ReportingController, o.ReportingInstance, o.SourceHost}
	for _, r := range append(o.Chain, o.Regarding, *o.Related) {
		strs = append(strs, r.Kind, r.APIVersion, r.Namespace, r.Name, r.UID, r.ResourceVersion, r.FieldPath)
	}
	for i, s := range strs {
		if !utf8.ValidString(s) {
			t.Errorf("string %d invalid UTF-8: %q", i, s)
		}
	}
	rec := LogRecord(&o)
	checkRecord(t, &rec, DefaultMaxMessageBytes)
}

func TestTruncateMessage(t *testing.T) {
	tests := []struct {
		in        string
		limit     int
		want      string
		truncated bool
	}{
		{"", 4, "", false},
		{"abcd", 4, "abcd", false},
		{"abcde", 4, "abcd", true},
		{"ab€", 4, "ab", true},   // € is 3 bytes: cut before it
		{"abc€", 4, "abc", true}, // cut before it
		{"a€b", 4, "a€", true},   // fits exactly
		{"€€", 1, "", true},      // no whole rune fits
		{"😀x", 3, "", true},      // 4-byte rune
		{"😀x", 4, "😀", true},
	}
	for _, tt := range tests {
		got, tr := truncateMessage(tt.in, tt.limit)
		if got != tt.want || tr != tt.truncated {
			t.Errorf("truncateMessage(%q, %d) = %q, %v; want %q, %v", tt.in, tt.limit, got, tr, tt.want, tt.truncated)
		}
	}
}

func TestFromEventMessageLimit(t *testing.T) {
	note := strings.Repeat("é", 100) // 200 bytes
	ev := &eventsv1.Event{Note: note}
	o, err := FromEvent(ev, 1, time.Time{}, Options{MaxMessageBytes: 51})
	if err != nil {
		t.Fatal(err)
	}
	if o.Note != strings.Repeat("é", 25) || !o.NoteTruncated || o.NoteOriginalBytes != 200 {
		t.Errorf("Note %d bytes, truncated %v, original %d", len(o.Note), o.NoteTruncated, o.NoteOriginalBytes)
	}
	rec := LogRecord(&o)
	attrs := recordAttrs(&rec)
	if v, ok := attrs[attrEventMessageTruncated]; !ok || !v.AsBool() {
		t.Errorf("%s = %v, %v", attrEventMessageTruncated, v, ok)
	}
	if v := attrs[attrEventMessageOrigBytes]; v.Type() != attribute.INT64 || v.AsInt64() != 200 {
		t.Errorf("%s = %v", attrEventMessageOrigBytes, v)
	}

	// Default limit: exactly 64 KiB is kept, one byte more is cut.
	ev.Note = strings.Repeat("x", DefaultMaxMessageBytes)
	if o, _ := FromEvent(ev, 1, time.Time{}, Options{}); o.NoteTruncated || len(o.Note) != DefaultMaxMessageBytes {
		t.Errorf("64 KiB message: truncated %v, %d bytes", o.NoteTruncated, len(o.Note))
	}
	ev.Note += "y"
	if o, _ := FromEvent(ev, 1, time.Time{}, Options{}); !o.NoteTruncated || len(o.Note) != DefaultMaxMessageBytes || o.NoteOriginalBytes != DefaultMaxMessageBytes+1 {
		t.Errorf("64 KiB+1 message: truncated %v, %d bytes, original %d", o.NoteTruncated, len(o.Note), o.NoteOriginalBytes)
	}
}

func recordAttrs(r *log.Record) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	r.WalkAttributes(func(kv attribute.KeyValue) bool {
		m[string(kv.Key)] = kv.Value
		return true
	})
	return m
}

// checkRecord asserts the invariants every record must hold.
func checkRecord(t testing.TB, r *log.Record, limit int) {
	t.Helper()
	if r.EventName() != EventName {
		t.Errorf("EventName = %q", r.EventName())
	}
	body := r.Body()
	if body.Type() != attribute.STRING {
		t.Fatalf("body type %s", body.Type())
	}
	if s := body.AsString(); !utf8.ValidString(s) || len(s) > limit {
		t.Errorf("body: valid UTF-8 %v, %d bytes (limit %d)", utf8.ValidString(s), len(s), limit)
	}
	if !utf8.ValidString(r.SeverityText()) {
		t.Errorf("severity text %q not valid UTF-8", r.SeverityText())
	}
	if s := r.Severity(); s != log.SeverityInfo && s != log.SeverityWarn {
		t.Errorf("severity %v", s)
	}
	seen := map[attribute.Key]bool{}
	r.WalkAttributes(func(kv attribute.KeyValue) bool {
		if seen[kv.Key] {
			t.Errorf("duplicate attribute %q", kv.Key)
		}
		seen[kv.Key] = true
		if !kv.Valid() || !utf8.ValidString(string(kv.Key)) {
			t.Errorf("invalid attribute %q", kv.Key)
		}
		if kv.Value.Type() == attribute.STRING {
			if s := kv.Value.AsString(); s == "" || !utf8.ValidString(s) {
				t.Errorf("attribute %q = %q: empty or invalid UTF-8", kv.Key, s)
			}
		}
		return true
	})
}

func TestLogRecordSeverity(t *testing.T) {
	tests := []struct {
		typ  string
		want log.Severity
	}{
		{"Normal", log.SeverityInfo},
		{"Warning", log.SeverityWarn},
		{"warning", log.SeverityWarn},
		{"Error", log.SeverityInfo},
		{"", log.SeverityInfo},
	}
	for _, tt := range tests {
		o := Occurrence{Type: tt.typ}
		r := LogRecord(&o)
		if r.Severity() != tt.want || r.SeverityText() != tt.typ {
			t.Errorf("type %q: severity %v %q, want %v %q", tt.typ, r.Severity(), r.SeverityText(), tt.want, tt.typ)
		}
	}
	if log.SeverityInfo != 9 || log.SeverityWarn != 13 {
		t.Fatal("severity numbers changed")
	}
}

func TestLogRecordChain(t *testing.T) {
	pod := Ref{Kind: "Pod", APIVersion: "v1", Namespace: "ns", Name: "p", UID: "pu"}
	o := Occurrence{
		Count:      1,
		Regarding:  pod,
		SourceHost: "host-1",
		Chain: []Ref{
			pod,
			{Kind: "ReplicaSet", APIVersion: "apps/v1", Name: "rs", UID: "rsu"},
			{Kind: "ReplicaSet", APIVersion: "apps/v1", Name: "rs2", UID: "rs2u"}, // second of a kind: ignored
			{Kind: "Deployment", APIVersion: "extensions/v1beta1", Name: "d", UID: "du"},
			{Kind: "Job", APIVersion: "batch.volcano.sh/v1alpha1", Name: "vj", UID: "vju"}, // CRD named Job
			{Kind: "CronJob", Name: "cj"},                                                  // no APIVersion: built-in assumed
			{Kind: "Widget", APIVersion: "example.com/v1", Name: "w", UID: "wu"},
		},
	}
	r := LogRecord(&o)
	checkRecord(t, &r, DefaultMaxMessageBytes)
	got := recordAttrs(&r)
	want := map[string]string{
		"k8s.pod.name": "p", "k8s.pod.uid": "pu",
		"k8s.replicaset.name": "rs", "k8s.replicaset.uid": "rsu",
		"k8s.deployment.name": "d", "k8s.deployment.uid": "du",
		"k8s.cronjob.name": "cj",
		"k8s.node.name":    "host-1",
	}
	for k, v := range want {
		if got[k].AsString() != v {
			t.Errorf("%s = %q, want %q", k, got[k].AsString(), v)
		}
	}
	for _, k := range []string{"k8s.job.name", "k8s.job.uid", "k8s.cronjob.uid", "k8s.node.uid", "k8s.widget.name"} {
		if _, ok := got[k]; ok {
			t.Errorf("unexpected %s", k)
		}
	}

	// A Node in the chain owns k8s.node.name (with its uid), not the host.
	o = Occurrence{Regarding: Ref{Kind: "Node", APIVersion: "v1", Name: "n1", UID: "nu"}, SourceHost: "other"}
	o.Chain = []Ref{o.Regarding}
	r = LogRecord(&o)
	checkRecord(t, &r, DefaultMaxMessageBytes)
	got = recordAttrs(&r)
	if got["k8s.node.name"].AsString() != "n1" || got["k8s.node.uid"].AsString() != "nu" {
		t.Errorf("node attrs %v %v", got["k8s.node.name"], got["k8s.node.uid"])
	}

	// An occurrence built without Chain still gets Regarding's semconv attrs.
	o = Occurrence{Regarding: pod}
	r = LogRecord(&o)
	if got := recordAttrs(&r); got["k8s.pod.uid"].AsString() != "pu" {
		t.Errorf("no chain: k8s.pod.uid = %v", got["k8s.pod.uid"])
	}
}

func TestLogRecordEmpty(t *testing.T) {
	r := LogRecord(nil)
	if r.AttributesLen() != 0 || r.EventName() != "" {
		t.Error("LogRecord(nil) not empty")
	}
	var o Occurrence
	r = LogRecord(&o)
	if n := r.AttributesLen(); n != 0 {
		t.Errorf("zero occurrence has %d attributes: %v", n, recordAttrs(&r))
	}
	checkRecord(t, &r, DefaultMaxMessageBytes)
}

func TestResource(t *testing.T) {
	render := func(kvs []attribute.KeyValue) string {
		var b strings.Builder
		for _, kv := range kvs {
			b.WriteString(string(kv.Key) + "=" + kv.Value.Emit() + ";")
		}
		return b.String()
	}
	tests := []struct {
		svc, name, uid string
		want           string
	}{
		{"", "", "", "service.name=kube-otel-bridge;"},
		{"bridge-eu", "prod-eu", "b1c2", "service.name=bridge-eu;k8s.cluster.name=prod-eu;k8s.cluster.uid=b1c2;"},
		{"", "prod", "", "service.name=kube-otel-bridge;k8s.cluster.name=prod;"},
		{"x\xff", "", "u", "service.name=x\uFFFD;k8s.cluster.uid=u;"},
	}
	for _, tt := range tests {
		if got := render(Resource(tt.svc, tt.name, tt.uid)); got != tt.want {
			t.Errorf("Resource(%q, %q, %q) = %s, want %s", tt.svc, tt.name, tt.uid, got, tt.want)
		}
	}
}

// benchOccurrence is a typical kubelet event on a Deployment's pod.
func benchOccurrence(tb testing.TB) (*eventsv1.Event, Occurrence) {
	ev, chain, err := loadEvent("testdata/events/kubelet-backoff.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	o, err := FromEvent(ev, EventCount(ev), goldenObserved, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	o.Chain = append(o.Chain, chain...)
	return ev, o
}

// TestAllocs pins the allocation budget of the hot path.
func TestAllocs(t *testing.T) {
	racebuild.SkipAllocs(t)
	ev, o := benchOccurrence(t)
	if n := testing.AllocsPerRun(200, func() { _ = LogRecord(&o) }); n > 2 {
		t.Errorf("LogRecord: %v allocs per occurrence, want <= 2", n)
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = FromEvent(ev, 3, goldenObserved, Options{}) }); n > 1 {
		t.Errorf("FromEvent: %v allocs per occurrence, want <= 1", n)
	}
	var into Occurrence
	chain := make([]Ref, 0, 3)
	if n := testing.AllocsPerRun(200, func() { _ = FromEventInto(&into, chain, ev, 3, goldenObserved, Options{}) }); n > 0 {
		t.Errorf("FromEventInto with room for the chain: %v allocs per occurrence, want 0", n)
	}
}
