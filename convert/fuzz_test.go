package convert

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
)

// FuzzFromEvent feeds arbitrary JSON Events (plus raw bytes that JSON cannot
// carry, injected into the string fields, and a message limit) through
// FromEvent and LogRecord: no panic, every string valid UTF-8, the body
// within the limit, no duplicate or empty attributes.
func FuzzFromEvent(f *testing.F) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "events", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, in := range inputs {
		ev, _, err := loadEvent(in)
		if err != nil {
			f.Fatal(err)
		}
		// Seed with the raw strings JSON would have mangled (capped: the
		// 1 MiB message would only slow the fuzzer down).
		raw := ev.Note
		if len(raw) > 256 {
			raw = raw[:256]
		}
		ev.Note, ev.Reason = "seed", "seed"
		data, err := json.Marshal(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "", uint16(0))
		f.Add(data, raw, uint16(7))
	}
	f.Add([]byte(`{}`), "\xff\xc3(\xe2\x82", uint16(1))
	f.Add([]byte(`{"series":{"count":-3},"deprecatedCount":-1}`), "€€€", uint16(4))

	observed := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte, raw string, limit uint16) {
		var ev eventsv1.Event
		if err := json.Unmarshal(data, &ev); err != nil {
			return
		}
		if raw != "" {
			ev.Note += raw
			ev.Reason += raw
			ev.Type = raw
			ev.Regarding.Kind += raw
			ev.Regarding.Name += raw
			ev.DeprecatedSource.Host += raw
			ev.ReportingController += raw
		}
		opts := Options{MaxMessageBytes: int(limit)}
		o, err := FromEvent(&ev, EventCount(&ev), observed, opts)
		if err != nil {
			t.Fatalf("FromEvent: %v", err)
		}
		if o.Count < 1 {
			t.Errorf("Count %d", o.Count)
		}
		if o.Time.IsZero() {
			t.Error("zero Time")
		}
		lim := opts.maxMessageBytes()
		if o.NoteTruncated != (o.NoteOriginalBytes > 0) || (o.NoteTruncated && len(o.Note) > lim) {
			t.Errorf("truncation: %v, %d original, %d kept (limit %d)", o.NoteTruncated, o.NoteOriginalBytes, len(o.Note), lim)
		}
		rec := LogRecord(&o)
		checkRecord(t, &rec, lim)
		if _, err := renderRecord(&rec); err != nil {
			t.Errorf("render: %v", err)
		}
	})
}

func BenchmarkLogRecord(b *testing.B) {
	_, o := benchOccurrence(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = LogRecord(&o)
	}
}

func BenchmarkFromEvent(b *testing.B) {
	ev, _ := benchOccurrence(b)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = FromEvent(ev, 27, goldenObserved, Options{})
	}
}

// BenchmarkOccurrence is the whole convert path of one occurrence: event to
// occurrence, owner chain appended, log record.
func BenchmarkOccurrence(b *testing.B) {
	ev, full := benchOccurrence(b)
	owners := full.Chain[1:]
	b.ReportAllocs()
	for b.Loop() {
		o, _ := FromEvent(ev, 27, goldenObserved, Options{})
		o.Chain = append(o.Chain, owners...)
		_ = LogRecord(&o)
	}
}
