package watch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

const rolloutRecording = "../examples/recordings/rollout.jsonl"

const testHeader = `{"kubeOtelBridgeRecording":1,"started":"2026-03-01T12:00:00Z"}`

func recordingEvent() *eventsv1.Event {
	return &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web-1.17a", UID: "ev-uid", ResourceVersion: "9",
			CreationTimestamp: metav1.NewTime(testT0),
			ManagedFields:     []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate}}},
		EventTime:           metav1.NewMicroTime(time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)),
		ReportingController: "kubelet",
		Reason:              "Pulled",
		Regarding:           corev1.ObjectReference{Kind: "Pod", Namespace: "demo", Name: "web-1", UID: "pod-uid"},
		Note:                "Successfully pulled image",
		Type:                corev1.EventTypeNormal,
		Series:              &eventsv1.EventSeries{Count: 2, LastObservedTime: metav1.NewMicroTime(time.Date(2026, 3, 1, 12, 0, 5, 1000, time.UTC))},
	}
}

func TestRecorderRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	started := time.Date(2026, 3, 1, 13, 0, 0, 5, time.FixedZone("CET", 3600))
	rec, err := NewRecorder(&buf, started, "mini")
	if err != nil {
		t.Fatal(err)
	}
	dep := &Object{UID: "dep-uid", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "demo", Name: "web", Generation: 1, Traceparent: testTraceparent}
	rs := &Object{UID: "rs-uid", APIVersion: "apps/v1", Kind: "ReplicaSet", Namespace: "demo", Name: "web-5d",
		Owners: []OwnerRef{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "dep-uid", Controller: true}}}
	ev := recordingEvent()
	at := func(s int) time.Time {
		return testT0.Add(time.Duration(s)*time.Second + 250*time.Microsecond).In(started.Location())
	}

	steps := []func() error{
		func() error { return rec.Object(at(0), dep) },
		func() error { return rec.Object(at(1), rs) },
		func() error { return rec.Object(at(2), rs) }, // unchanged: not written
		func() error { return rec.Event(at(3), ev) },
		func() error { d := *dep; d.Generation = 2; return rec.Object(at(4), &d) },
		func() error { r := *rs; r.Deleted = at(5); return rec.Object(at(5), &r) },
		func() error { r := *rs; r.Deleted = at(5); return rec.Object(at(6), &r) }, // same tombstone again
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if !rec.Known("rs-uid") || !rec.Known("dep-uid") || rec.Known("pod-uid") {
		t.Error("Known is wrong")
	}
	if len(ev.ManagedFields) != 1 {
		t.Error("Recorder.Event modified the caller's event")
	}
	if buf.Len() != 0 {
		// Everything is buffered until Flush; nothing is required here,
		// but a partial line would be a bug.
		if !bytes.HasSuffix(buf.Bytes(), []byte("\n")) {
			t.Errorf("partial line written before Flush")
		}
	}
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}

	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d lines, want header + 5:\n%s", len(lines), buf.String())
	}
	var h map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &h); err != nil {
		t.Fatal(err)
	}
	if h["kubeOtelBridgeRecording"] != float64(RecordingVersion) || h["cluster"] != "mini" || h["started"] != "2026-03-01T12:00:00.000000005Z" {
		t.Errorf("header = %s", lines[0])
	}
	if strings.Contains(buf.String(), "managedFields") {
		t.Error("managed fields recorded")
	}

	entries, err := ReadRecording(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 5 {
		t.Fatalf("%d entries, want 5", len(entries))
	}
	wantAt := []time.Time{at(0), at(1), at(3), at(4), at(5)}
	for i, e := range entries {
		if !e.At.Equal(wantAt[i]) || e.At.Location() != time.UTC {
			t.Errorf("entry %d at %s, want %s in UTC", i, e.At, wantAt[i])
		}
	}
	if o := entries[0].Object; o == nil || o.UID != "dep-uid" || o.Traceparent != testTraceparent || o.Generation != 1 || o.Kind != "Deployment" || o.APIVersion != "apps/v1" || o.Namespace != "demo" || !o.Deleted.IsZero() {
		t.Errorf("entry 0 = %+v", o)
	}
	if o := entries[1].Object; o == nil || len(o.Owners) != 1 || o.Owners[0] != rs.Owners[0] {
		t.Errorf("entry 1 = %+v", o)
	}
	e := entries[2].Event
	if e == nil || entries[2].Object != nil {
		t.Fatalf("entry 2 = %+v", entries[2])
	}
	if e.UID != ev.UID || e.Reason != ev.Reason || e.Note != ev.Note || e.Regarding != ev.Regarding || e.Series.Count != 2 ||
		!e.EventTime.Equal(&ev.EventTime) || !e.Series.LastObservedTime.Equal(&ev.Series.LastObservedTime) || e.ManagedFields != nil {
		t.Errorf("event round trip: %+v", e)
	}
	if e.EventTime.Nanosecond() != 123456000 || e.Series.LastObservedTime.Nanosecond() != 1000 {
		t.Errorf("microseconds lost: %s %s", e.EventTime, e.Series.LastObservedTime)
	}
	if o := entries[3].Object; o == nil || o.Generation != 2 {
		t.Errorf("entry 3 = %+v", o)
	}
	if o := entries[4].Object; o == nil || o.UID != "rs-uid" || !o.Deleted.Equal(at(5)) {
		t.Errorf("entry 4 = %+v", o)
	}
}

// TestRecordingReplaysIntoCache: replaying the example recording in file
// order, every event about a pod resolves to pod, replica set, deployment,
// including the pods deleted during the rollout.
func TestRecordingReplaysIntoCache(t *testing.T) {
	f, err := os.Open(rolloutRecording)
	if err != nil {
		t.Skipf("no example recording: %v", err)
	}
	defer f.Close()
	entries, err := ReadRecording(f)
	if err != nil {
		t.Fatal(err)
	}
	c := newTestCache(t, CacheOptions{})
	d := NewDedup()
	var podEvents, tombstones int
	for _, e := range entries {
		if e.Object != nil {
			if e.Object.Deleted.IsZero() {
				c.Upsert(e.Object)
			} else {
				tombstones++
				c.MarkDeleted(e.Object.UID, e.Object.Deleted)
			}
			continue
		}
		occs, err := Occurrences(d, e.Event, e.At, convert.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range occs {
			chain, known := c.Chain(occs[i].Chain)
			if !known {
				t.Errorf("%s %s: regarding object unknown", e.Event.Regarding.Kind, e.Event.Regarding.Name)
				continue
			}
			if e.Event.Regarding.Kind != "Pod" {
				continue
			}
			podEvents++
			if len(chain) != 3 || chain[1].Kind != "ReplicaSet" || chain[2].Kind != "Deployment" || chain[2].Name != "web" {
				t.Errorf("pod %s: chain %+v", e.Event.Regarding.Name, chain)
			}
		}
	}
	if podEvents == 0 || tombstones == 0 {
		t.Errorf("recording exercised %d pod events and %d tombstones", podEvents, tombstones)
	}
}

func TestRecorderWriteError(t *testing.T) {
	w := &failingWriter{}
	rec, err := NewRecorder(w, testT0, "")
	if err != nil {
		t.Fatal(err)
	}
	big := recordingEvent()
	big.Note = strings.Repeat("x", 10_000) // larger than the bufio buffer
	if err := rec.Event(testT0, big); err == nil {
		t.Fatal("write error not reported")
	}
	if err := rec.Object(testT0, &Object{UID: "u", Kind: "Pod", Name: "p"}); err == nil {
		t.Error("error not sticky for Object")
	}
	if err := rec.Flush(); err == nil {
		t.Error("error not sticky for Flush")
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestReadRecordingErrors(t *testing.T) {
	obj := `{"at":"2026-03-01T12:00:00Z","object":{"uid":"u","kind":"Pod","name":"p"}}`
	ev := `{"at":"2026-03-01T12:00:00Z","event":{"metadata":{"name":"e","uid":"e"}}}`
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "empty"},
		{"garbled header", "not json\n" + obj + "\n", "line 1"},
		{"header without version", `{"started":"2026-03-01T12:00:00Z"}` + "\n" + obj + "\n", "line 1"},
		{"entry as header", obj + "\n", "line 1"},
		{"blank first line", "\n" + obj + "\n", "line 1"},
		{"whitespace first line", "  \n" + obj + "\n", "line 1"},
		{"negative version", `{"kubeOtelBridgeRecording":-1,"started":"2026-03-01T12:00:00Z"}` + "\n", "line 1"},
		{"newer version", `{"kubeOtelBridgeRecording":2,"started":"2026-03-01T12:00:00Z"}` + "\n", "version 2"},
		{"both", testHeader + "\n" + obj + "\n" + `{"at":"2026-03-01T12:00:00Z","object":{"uid":"u","kind":"Pod","name":"p"},"event":{"metadata":{"uid":"e"}}}` + "\n", "line 3"},
		{"neither", testHeader + "\n" + `{"at":"2026-03-01T12:00:00Z"}` + "\n", "line 2"},
		{"null object", testHeader + "\n" + `{"at":"2026-03-01T12:00:00Z","object":null}` + "\n", "line 2"},
		{"object without uid", testHeader + "\n" + ev + "\n\n" + `{"at":"2026-03-01T12:00:00Z","object":{"kind":"Pod","name":"p"}}` + "\n", "line 4"},
		{"bad json", testHeader + "\n" + obj + "\n" + `{"at":` + "\n", "line 3"},
		{"bad time", testHeader + "\n" + `{"at":"yesterday","object":{"uid":"u"}}` + "\n", "line 2"},
		{"wrong type", testHeader + "\n" + `{"at":"2026-03-01T12:00:00Z","object":{"uid":5}}` + "\n", "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries, err := ReadRecording(strings.NewReader(tc.in))
			if err == nil {
				t.Fatalf("no error, %d entries", len(entries))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if entries != nil {
				t.Errorf("entries returned with the error: %d", len(entries))
			}
		})
	}
}

func TestReadRecordingAccepts(t *testing.T) {
	obj := `{"at":"2026-03-01T12:00:00Z","object":{"uid":"u","kind":"Pod","name":"p"}}`
	for _, tc := range []struct {
		name string
		in   string
		n    int
	}{
		{"header only", testHeader + "\n", 0},
		{"no trailing newline", testHeader + "\n" + obj, 1},
		{"blank lines between", testHeader + "\n\n" + obj + "\n\n\n" + obj + "\n", 2},
		{"crlf", testHeader + "\r\n" + obj + "\r\n", 1},
		{"older version fields", `{"kubeOtelBridgeRecording":1,"started":"2026-03-01T12:00:00Z","cluster":"c","future":true}` + "\n" + obj + "\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries, err := ReadRecording(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != tc.n {
				t.Errorf("%d entries, want %d", len(entries), tc.n)
			}
		})
	}
}

func TestReadRecordingLongLines(t *testing.T) {
	var buf bytes.Buffer
	rec, err := NewRecorder(&buf, testT0, "")
	if err != nil {
		t.Fatal(err)
	}
	ev := recordingEvent()
	ev.Note = strings.Repeat("ä", 1<<20) // 2 MiB of UTF-8
	if err := rec.Event(testT0, ev); err != nil {
		t.Fatal(err)
	}
	if err := rec.Object(testT0, &Object{UID: "after", Kind: "Pod", Name: "p"}); err != nil {
		t.Fatal(err)
	}
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	entries, err := ReadRecording(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("2 MiB line: %v", err)
	}
	if len(entries) != 2 || entries[0].Event == nil || entries[0].Event.Note != ev.Note || entries[1].Object.UID != "after" {
		t.Errorf("long line not read back intact (%d entries)", len(entries))
	}

	// A line beyond the reader's limit is an error naming its line.
	huge := testHeader + "\n" + `{"at":"2026-03-01T12:00:00Z","object":{"uid":"u","kind":"Pod","name":"p"}}` + "\n" +
		`{"at":"2026-03-01T12:00:00Z","object":{"uid":"u","name":"` + strings.Repeat("x", 17<<20) + `"}}` + "\n"
	_, err = ReadRecording(strings.NewReader(huge))
	if err == nil || !strings.Contains(err.Error(), "line 3") || !errors.Is(err, bufio.ErrTooLong) {
		t.Errorf("over-long line: %v", err)
	}
}

func TestReadRecordingExample(t *testing.T) {
	data, err := os.ReadFile(rolloutRecording)
	if err != nil {
		t.Skipf("no example recording: %v", err)
	}
	entries, err := ReadRecording(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	for _, l := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			lines++
		}
	}
	if len(entries) != lines-1 {
		t.Errorf("%d entries from %d non-empty lines", len(entries), lines)
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].At.Before(entries[i-1].At) {
			t.Errorf("entry %d goes back in time", i)
		}
	}
}

// FuzzReadRecording: arbitrary bytes never panic, and whatever is accepted
// satisfies the reader's own invariants.
func FuzzReadRecording(f *testing.F) {
	if data, err := os.ReadFile(rolloutRecording); err == nil {
		f.Add(data)
		// And a short prefix of it, cut mid-line.
		if len(data) > 900 {
			f.Add(data[:900])
		}
	}
	var buf bytes.Buffer
	rec, err := NewRecorder(&buf, testT0, "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	_ = rec.Object(testT0, &Object{UID: "rs", Kind: "ReplicaSet", Name: "r", Owners: []OwnerRef{{Kind: "Deployment", Name: "d", UID: "d"}}})
	_ = rec.Event(testT0, recordingEvent())
	_ = rec.Object(testT0, &Object{UID: "rs", Kind: "ReplicaSet", Name: "r", Deleted: testT0})
	if err := rec.Flush(); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(""))
	f.Add([]byte("\n"))
	f.Add([]byte(testHeader))
	f.Add([]byte(testHeader + "\n{}\n"))
	f.Add([]byte(`{"kubeOtelBridgeRecording":-1}` + "\n" + `{"at":"2026-03-01T12:00:00Z","object":{"uid":"u"}}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ReadRecording(bytes.NewReader(data))
		if err != nil {
			if entries != nil {
				t.Errorf("entries with error %v", err)
			}
			if !strings.HasPrefix(err.Error(), "recording: ") {
				t.Errorf("error without prefix: %v", err)
			}
			return
		}
		for i, e := range entries {
			if (e.Event == nil) == (e.Object == nil) {
				t.Fatalf("entry %d: want exactly one of event or object", i)
			}
			if e.Object != nil && e.Object.UID == "" {
				t.Fatalf("entry %d: object without uid", i)
			}
		}
		// Feeding accepted entries to the consumers must not panic either.
		c, _ := NewObjectCache(CacheOptions{})
		d := NewDedup()
		for _, e := range entries {
			if e.Object != nil {
				c.Upsert(e.Object)
				if !e.Object.Deleted.IsZero() {
					c.MarkDeleted(e.Object.UID, e.Object.Deleted)
				}
				continue
			}
			// Occurrences expands a count into one occurrence per count;
			// keep the fuzzer away from billions of them.
			if convert.EventCount(e.Event) > 1000 {
				continue
			}
			occs, err := Occurrences(d, e.Event, e.At, convert.Options{})
			if err != nil {
				t.Fatalf("Occurrences: %v", err)
			}
			for i := range occs {
				chain, _ := c.Chain(occs[i].Chain)
				if len(chain) > maxChain {
					t.Fatalf("chain of %d", len(chain))
				}
			}
		}
	})
}
