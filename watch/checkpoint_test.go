package watch

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

var cpT0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func TestCheckpointRoundTrip(t *testing.T) {
	cp := &Checkpoint{Watermark: 12345, PruneBefore: cpT0, Saved: cpT0.Add(time.Second),
		Done: map[string]int32{"a": 3, "b-uid-0000": 1}, Extra: []byte("episodes")}
	data, err := cp.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeCheckpoint(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Watermark != cp.Watermark || !got.PruneBefore.Equal(cp.PruneBefore) || !got.Saved.Equal(cp.Saved) ||
		len(got.Done) != 2 || got.Done["a"] != 3 || got.Done["b-uid-0000"] != 1 || string(got.Extra) != "episodes" {
		t.Fatalf("round trip: %+v", got)
	}
	for _, bad := range [][]byte{nil, []byte("garbage"), data[:len(data)/2]} {
		if _, err := DecodeCheckpoint(bad); err == nil {
			t.Errorf("decoded %q without error", bad)
		}
	}
}

// Checkpoints of the earlier gzip form (one member at the default level, or
// the entries Huffman-coded and Extra in a second member) read the same as
// the current form, with and without Extra, for UUIDs and other UIDs.
func TestCheckpointEncodings(t *testing.T) {
	done := map[string]int32{"": 2, "Not-A-UUID": 7, "0000000A-4b5a-6978-8796-000000000001": 1}
	for i := range 300 {
		done[fmt.Sprintf("%08x-4b5a-6978-8796-%012x", rand.Uint32(), rand.Uint64()>>16)] = int32(i%4 + 1)
	}
	for _, extra := range [][]byte{nil, []byte(strings.Repeat(`{"root":"Deployment/shop/web","gen":3}`, 50))} {
		cp := &Checkpoint{Watermark: 99, PruneBefore: cpT0, Saved: cpT0, Done: done, Extra: extra}
		data, err := cp.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
			t.Fatal("the current form should not be gzip as a whole")
		}
		for name, b := range map[string][]byte{"now": data, "gzip, one member": encodeCP1(t, cp, false), "gzip, two members": encodeCP1(t, cp, true)} {
			got, err := DecodeCheckpoint(b)
			if err != nil {
				t.Fatalf("%s, extra %d bytes: %v", name, len(extra), err)
			}
			if got.Watermark != 99 || !got.PruneBefore.Equal(cpT0) || !got.Saved.Equal(cpT0) || !reflect.DeepEqual(got.Done, done) || !bytes.Equal(got.Extra, extra) {
				t.Errorf("%s, extra %d bytes: watermark %d, %d entries, extra %d bytes", name, len(extra), got.Watermark, len(got.Done), len(got.Extra))
			}
		}
	}
}

// encodeCP1 writes the earlier form ("kob-cp1" in gzip, UIDs as text).
func encodeCP1(t *testing.T, c *Checkpoint, twoMembers bool) []byte {
	var raw bytes.Buffer
	raw.WriteString(checkpointMagicGzip)
	put := func(v uint64) { raw.Write(binary.AppendUvarint(nil, v)) }
	put(c.Watermark)
	put(uint64(c.PruneBefore.Unix()))
	put(uint64(c.Saved.UnixMilli()))
	put(uint64(len(c.Done)))
	for uid, n := range c.Done {
		put(uint64(len(uid)))
		raw.WriteString(uid)
		put(uint64(n))
	}
	put(uint64(len(c.Extra)))
	var out bytes.Buffer
	if !twoMembers {
		raw.Write(c.Extra)
		zw := gzip.NewWriter(&out)
		zw.Write(raw.Bytes())
		zw.Close()
		return out.Bytes()
	}
	if err := gzipTo(&out, gzip.HuffmanOnly, raw.Bytes()); err != nil {
		t.Fatal(err)
	}
	if len(c.Extra) > 0 {
		if err := gzipTo(&out, gzip.BestSpeed, c.Extra); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

// Whatever the bytes, decoding returns a checkpoint or an error, never
// panics; what it returns encodes and decodes to the same.
func FuzzDecodeCheckpoint(f *testing.F) {
	cp := &Checkpoint{Watermark: 5, PruneBefore: cpT0, Saved: cpT0, Done: map[string]int32{"x": 2, "0a0b0c0d-0000-4000-8000-000000000001": 1}, Extra: []byte(`{"marks":1}`)}
	data, err := cp.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add(data[:len(data)-3])
	f.Add([]byte(checkpointMagic + "\x01\x02\x03\x05\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeCheckpoint(b)
		if err != nil {
			return
		}
		again, err := got.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeCheckpoint(again)
		if err != nil {
			t.Fatalf("re-encoded checkpoint does not decode: %v", err)
		}
		if back.Watermark != got.Watermark || !reflect.DeepEqual(back.Done, got.Done) || !bytes.Equal(back.Extra, got.Extra) {
			t.Fatalf("round trip changed the checkpoint: %+v -> %+v", got, back)
		}
	})
}

// A checkpoint of DefaultMaxEntries Events (random UIDs, as the API
// server's, the counts of repeaters, with as many names as the tracker
// keeps: MaxEntries less the entries) leaves a ConfigMap (1 MiB of data)
// room for the engine's part: up to 1 MiB of JSON, which compresses to
// ≈ 150 KB.
func TestCheckpointFitsAConfigMap(t *testing.T) {
	// The default leaves the engine's part 330 KB; the most allowed, 100 KB
	// (its marks' smallest form is a few hundred bytes).
	for _, c := range []struct{ entries, engineRoom int }{{DefaultMaxEntries, 330 << 10}, {MaxEntries, 100 << 10}} {
		rng := rand.New(rand.NewPCG(3, 5))
		cp := &Checkpoint{Watermark: 1 << 40, PruneBefore: cpT0, Saved: cpT0, Done: map[string]int32{}, Names: map[string]uint32{}}
		for len(cp.Done) < c.entries {
			uid := fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xfff, 0x8000|rng.Uint32()&0x3fff, rng.Uint64()>>16)
			cp.Done[uid] = int32(2 + rng.IntN(5000))
			if len(cp.Names) < MaxEntries-c.entries {
				cp.Names[uid] = rng.Uint32() | 1
			}
		}
		data, err := cp.Encode()
		if err != nil {
			t.Fatal(err)
		}
		size := len(data) + len(cp.EncodeNames(data))
		if size > MaxCheckpointBytes-c.engineRoom {
			t.Errorf("%d Events and %d names encode to %d bytes: over %d, which leaves %d for the engine's part in a ConfigMap", c.entries, len(cp.Names), size, MaxCheckpointBytes-c.engineRoom, c.engineRoom)
		}
		t.Logf("%d Events, %d names: %d bytes", c.entries, len(cp.Names), size)
	}
}

func TestDoneCountRules(t *testing.T) {
	cp := &Checkpoint{Watermark: 100, PruneBefore: cpT0, Done: map[string]int32{"rep": 4}}
	for _, tc := range []struct {
		name    string
		uid     string
		rv      uint64
		created time.Time
		first   time.Time // the series' (convert.FirstTime); zero: as created
		count   int32
		want    int32
	}{
		{"tracked repeater", "rep", 150, cpT0.Add(-time.Hour), time.Time{}, 7, 4},
		{"covered by watermark", "x", 90, cpT0.Add(time.Hour), time.Time{}, 3, 3},
		{"pruned count-1 event updated while down", "y", 150, cpT0.Add(-time.Minute), time.Time{}, 2, 1},
		{"created while down", "z", 150, cpT0.Add(time.Minute), time.Time{}, 2, 0},
		{"unparsable rv, new", "w", 0, cpT0.Add(time.Minute), time.Time{}, 1, 0},
		// The recorder created it again while down after the TTL deleted
		// an Event of count 1 (pruned: no name kept): its series began
		// long before.
		{"created again while down after count 1", "r", 150, cpT0.Add(time.Hour), cpT0.Add(-time.Hour), 2, 1},
		{"created again, counts held back meanwhile", "r", 150, cpT0.Add(time.Hour), cpT0.Add(-time.Hour), 5, 1},
		{"a series within the clock skew allowed", "r", 150, cpT0.Add(time.Hour), cpT0.Add(-SeriesSkew / 2), 2, 0},
		{"a series begun while down", "r", 150, cpT0.Add(time.Hour), cpT0.Add(time.Minute), 2, 0},
		{"an old series' first count: not created again", "r", 150, cpT0.Add(time.Hour), cpT0.Add(-time.Hour), 1, 0},
	} {
		first := tc.first
		if first.IsZero() {
			first = tc.created
		}
		if got := cp.DoneCount(tc.uid, 0, tc.rv, tc.created, first, tc.count); got != tc.want {
			t.Errorf("%s: DoneCount = %d, want %d", tc.name, got, tc.want)
		}
	}
	var none *Checkpoint
	if none.DoneCount("a", 0, 1, cpT0, cpT0, 5) != 0 {
		t.Error("nil checkpoint must count nothing done")
	}
}

func TestTrackerWatermarkWaitsForEveryOutput(t *testing.T) {
	tr := NewTracker(nil, 0)
	if _, ok := tr.Snapshot(cpT0); ok {
		t.Fatal("snapshot before the initial list was processed")
	}
	tr.SetReady()
	d10 := tr.Begin("e1", 10, cpT0, 1, 2) // two occurrences
	d11 := tr.Begin("e2", 11, cpT0, 1, 1)
	tr.Begin("e3", 12, cpT0, 1, 0) // an update with nothing new
	if w := tr.Watermark(); w != 9 {
		t.Fatalf("watermark %d with 10 in flight, want 9", w)
	}
	d11()
	d10()
	if w := tr.Watermark(); w != 9 {
		t.Fatalf("watermark %d with one of 10's occurrences in flight, want 9", w)
	}
	d10()
	if w := tr.Watermark(); w != 12 {
		t.Fatalf("watermark %d, want 12", w)
	}
	tr.SetLimit(func() uint64 { return 11 })
	if w := tr.Watermark(); w != 11 {
		t.Fatalf("watermark %d above the informer's last synced 11", w)
	}
}

func TestTrackerSnapshotPrunesWhatTheWatermarkCovers(t *testing.T) {
	tr := NewTracker(nil, 0)
	tr.SetReady()
	tr.Begin("old", 5, cpT0, 1, 0)
	tr.Begin("repeater", 6, cpT0, 3, 0)
	tr.Begin("recent", 7, cpT0.Add(time.Minute), 1, 0)
	inflight := tr.Begin("pending", 8, cpT0.Add(time.Minute), 1, 1)
	cp, ok := tr.Snapshot(cpT0.Add(2 * time.Minute))
	if !ok {
		t.Fatal("no snapshot")
	}
	if cp.Watermark != 7 {
		t.Errorf("watermark %d, want 7", cp.Watermark)
	}
	if _, ok := cp.Done["old"]; ok {
		t.Error("an old count-1 Event under the watermark must be pruned")
	}
	if cp.Done["repeater"] != 3 || cp.Done["recent"] != 1 {
		t.Errorf("done %v: repeaters and recent Events must stay", cp.Done)
	}
	// Restart semantics for the pruned one: listed again with a new count.
	if got := cp.DoneCount("old", 0, 20, cpT0, cpT0, 2); got != 1 {
		t.Errorf("pruned Event updated while down: done %d, want 1", got)
	}
	inflight()
	if _, changed := tr.Snapshot(cpT0.Add(3 * time.Minute)); !changed {
		t.Error("a finished update must mark the tracker changed")
	}
	if _, changed := tr.Snapshot(cpT0.Add(4 * time.Minute)); changed {
		t.Error("nothing new: snapshot must report no change")
	}
}

func TestTrackerBoundsEntries(t *testing.T) {
	tr := NewTracker(nil, 10)
	tr.SetReady()
	for i := range 30 {
		tr.Begin(string(rune('a'+i)), uint64(100+i), cpT0.Add(time.Duration(i)*time.Minute), 2, 0)
	}
	cp, _ := tr.Snapshot(cpT0.Add(time.Hour))
	if len(cp.Done) != 10 || tr.Dropped() != 20 {
		t.Errorf("%d entries, %d dropped; want 10 and 20", len(cp.Done), tr.Dropped())
	}
}

// pendingQueue against a map of the updates not done: the same lowest
// resourceVersion and count after every step, the array bounded by the
// updates in flight, in any order of completion.
func TestPendingQueue(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	var q pendingQueue
	model := map[uint64]uint64{} // seq → rv
	var seqs []uint64
	rv := uint64(100)
	for step := 0; step < 20000; step++ {
		if len(seqs) == 0 || (len(seqs) < 300 && rng.IntN(2) == 0) {
			rv += uint64(1 + rng.IntN(3))
			if rng.IntN(10) == 0 { // a list's items come in any order
				rv -= uint64(rng.IntN(50))
			}
			seq := q.push(rv)
			if _, dup := model[seq]; dup {
				t.Fatalf("step %d: sequence number %d given twice", step, seq)
			}
			model[seq] = rv
			seqs = append(seqs, seq)
		} else {
			// Mostly in order, sometimes out of it.
			i := 0
			if rng.IntN(4) == 0 {
				i = rng.IntN(len(seqs))
			}
			q.done(seqs[i])
			delete(model, seqs[i])
			seqs = append(seqs[:i], seqs[i+1:]...)
		}
		var want uint64
		for _, r := range model {
			if want == 0 || r < want {
				want = r
			}
		}
		if got := q.min(); got != want || q.n != len(model) {
			t.Fatalf("step %d: min %d, n %d; want %d, %d", step, got, q.n, want, len(model))
		}
		if live := len(q.rvs) - q.off; live > 2*len(model)+300 {
			t.Fatalf("step %d: %d slots for %d updates in flight", step, live, len(model))
		}
		if cap(q.rvs) > 4096 {
			t.Fatalf("step %d: the array grew to %d", step, cap(q.rvs))
		}
	}
}

// BenchmarkTrackerCheckpoint is the checkpoint's cost per Event at a steady
// rate: each op is one interval (5 s at 1,400 new Events/s, one count
// each, done in order) followed by the Snapshot and save the daemon makes
// at its end.
func BenchmarkTrackerCheckpoint(b *testing.B) {
	const perInterval, perSecond = 7000, 1400
	tr := NewTracker(nil, 50000)
	tr.SetReady()
	// Random UIDs, as the API server's are (sequential ones would
	// compress like nothing real does), reused after 200,000.
	uids := make([]string, 200000)
	for i := range uids {
		uids[i] = fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", rand.Uint32(), rand.Uint32()&0xffff, rand.Uint32()&0xfff, rand.Uint32()&0xfff, rand.Uint64()>>16)
	}
	uid := func(i int) string { return uids[i%len(uids)] }
	// Saved through the store (a fake API server), with an engine's part
	// of the size the load test's have (≈ 50 KB of JSON).
	f := &fakeConfigMaps{}
	store := &ConfigMapStore{Client: f, Namespace: "ns", Name: "cp"}
	var extra []byte
	for i := 0; len(extra) < 50<<10; i++ {
		extra = fmt.Appendf(extra, `{"root":"Pod/load/p-%d","key":"0.0.d20430","t":"%032x","objects":[{"k":"Pod","n":"p-%d","s":"%016x"}]},`, i, rand.Uint64(), i, rand.Uint64())
	}
	b.ResetTimer()
	rv, n := uint64(1000), 0
	var size int
	for b.Loop() {
		for range perInterval {
			rv++
			n++
			created := cpT0.Add(time.Duration(n) * time.Second / perSecond).Truncate(time.Second)
			u := &trackedUpdate{}
			if tr.begin(u, uid(n), 0, rv, created, 1, 1) {
				u.done()
			}
		}
		cp, _ := tr.Snapshot(cpT0.Add(time.Duration(n) * time.Second / perSecond))
		cp.Extra = extra
		if err := store.Save(context.Background(), cp); err != nil {
			b.Fatal(err)
		}
		size = len(f.cms["cp"].BinaryData[checkpointKey])
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perInterval), "ns/event")
	b.ReportMetric(float64(size), "checkpoint-B")
}

// gzipTo appends data to out as one gzip member compressed at level.
func gzipTo(out *bytes.Buffer, level int, data []byte) error {
	zw, err := gzip.NewWriterLevel(out, level)
	if err != nil {
		return err
	}
	if _, err := zw.Write(data); err != nil {
		return err
	}
	return zw.Close()
}
