package causality

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// A restarted engine that restored the saved marks never reuses a trace ID:
// the next episode of a root gets the next key and links to the last one.
func TestStateRestartNeverReusesTraceIDs(t *testing.T) {
	a := newDriver(t, Config{})
	r1 := a.observe(occ("e1", 1, "Started", "x", at(0), podA, rs, dep), gen(3))
	a.advance(at(10 * time.Minute)) // idle: "3.0" closed
	r2 := a.observe(occ("e2", 1, "Killing", "x", at(11*time.Minute), podA, rs, dep), gen(3))
	state, err := a.e.SaveState(at(12*time.Minute), time.Hour, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	a.flush()

	b := newDriver(t, Config{})
	if err := b.e.RestoreState(state); err != nil {
		t.Fatal(err)
	}
	r3 := b.observe(occ("e3", 1, "Started", "x", at(13*time.Minute), podA, rs, dep), gen(3))
	if r3.TraceID == r1.TraceID || r3.TraceID == r2.TraceID {
		t.Fatalf("restarted engine reused a trace ID")
	}
	ss := b.flush()
	root := ss.rootOf(r3.TraceID)
	if attrOf(root, "k8s.episode.key") != "3.2" {
		t.Errorf("episode key %q, want 3.2", attrOf(root, "k8s.episode.key"))
	}
	if len(root.Links) != 1 || root.Links[0].TraceID != r2.TraceID {
		t.Errorf("links %+v, want the episode open at the save", root.Links)
	}
	for _, bad := range [][]byte{[]byte("not gzip"), {0x1f, 0x8b, 0, 0}} {
		if err := newEngine(t).RestoreState(bad); err == nil {
			t.Errorf("RestoreState(%q): no error", bad)
		}
	}
	if err := newEngine(t).RestoreState(nil); err != nil {
		t.Errorf("empty state: %v", err)
	}
}

func newEngine(t *testing.T) *Engine {
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Forgetting a root's marks (a day without episodes) must not make its next
// episode reuse the trace ID of its first one.
func TestForgottenRootDoesNotReuseTraceIDs(t *testing.T) {
	d := newDriver(t, Config{})
	r1 := d.observe(occ("e1", 1, "Started", "x", at(0), podA, rs, dep), gen(1))
	d.advance(at(10 * time.Minute))
	if n := d.e.ForgetBefore(at(25 * time.Hour)); n != 1 {
		t.Fatalf("forgot %d marks, want 1", n)
	}
	r2 := d.observe(occ("e2", 1, "Started", "x", at(26*time.Hour), podA, rs, dep), gen(1))
	if r2.TraceID == r1.TraceID {
		t.Fatal("the episode after a forgotten mark reused the first episode's trace ID")
	}
}

// Carrying open episodes over a restart gives exactly the spans of a run
// without the restart: same IDs, same tree, object spans exported once.
func TestSaveOpenContinuesTheSameSpans(t *testing.T) {
	feed := func(d *driver, from, to int) {
		steps := []*convert.Occurrence{
			occ("e1", 1, "ScalingReplicaSet", "Scaled up replica set web-1 from 0 to 2", at(0), dep),
			occ("e2", 1, "SuccessfulCreate", "Created pod: web-1-a", at(time.Second), rs, dep),
			occ("e3", 1, "Scheduled", "x", at(2*time.Second), podA, rs, dep),
			occ("e4", 1, "SuccessfulCreate", "Created pod: web-1-b", at(3*time.Second), rs, dep),
			occ("e5", 1, "Scheduled", "y", at(4*time.Second), podB, rs, dep),
			occ("e6", 1, "Started", "z", at(5*time.Second), podB, rs, dep),
		}
		for _, o := range steps[from:to] {
			d.observe(o, gen(1))
		}
	}
	whole := newDriver(t, Config{})
	feed(whole, 0, 6)
	want := whole.flush()

	a := newDriver(t, Config{})
	feed(a, 0, 3)
	open, closed, err := a.e.SaveOpen(1 << 20)
	if err != nil || len(closed) != 0 {
		t.Fatalf("SaveOpen: %v, %d spans closed", err, len(closed))
	}
	if a.e.Stats().OpenEpisodes != 0 {
		t.Fatal("saved episodes must leave the engine")
	}
	b := newDriver(t, Config{})
	if err := b.e.RestoreOpen(open); err != nil {
		t.Fatal(err)
	}
	feed(b, 3, 6)
	all := append(append(append([]Span(nil), a.spans...), b.spans...), b.e.Flush()...)
	for _, err := range checkInvariants(all) {
		t.Error(err)
	}
	got := index(all)
	if len(got.all) != len(want.all) {
		t.Fatalf("%d spans with a restart, %d without", len(got.all), len(want.all))
	}
	for _, w := range want.all {
		g, ok := got.byID[spanKey{w.TraceID, w.SpanID}]
		if !ok || g.Parent != w.Parent || g.Name != w.Name || !g.Start.Equal(w.Start) || !g.End.Equal(w.End) {
			t.Errorf("span %s %s: with a restart %+v", w.Name, w.SpanID, g)
		}
	}
	// A budget too small closes the episode instead (its spans come back).
	c := newDriver(t, Config{})
	feed(c, 0, 3)
	if _, closed, _ := c.e.SaveOpen(10); len(closed) == 0 {
		t.Error("an episode over the budget must be closed and its spans returned")
	}
	if err := newEngine(t).RestoreOpen([]byte("[{}]")); err == nil {
		t.Error("RestoreOpen accepted an episode without a root")
	}
}

// Marks past the budget are left out, the least recently closed first; a
// root whose mark was left out must still not reuse a trace ID of the same
// day after a restore (its first episode's key had no sequence to go on),
// and that holds over a further save and restore.
func TestStateBudgetKeepsTraceIDsNew(t *testing.T) {
	x := ref("Deployment", "ns", "x", "x-uid")
	y := ref("Deployment", "ns", "y", "y-uid")
	a := newDriver(t, Config{})
	seen := map[string]bool{}
	note := func(r Result) {
		t.Helper()
		if seen[r.TraceID.String()] {
			t.Fatalf("trace ID %s reused", r.TraceID)
		}
		seen[r.TraceID.String()] = true
	}
	// x: two episodes (keys 1.0.d<day> and 1.1), then y, closing later.
	note(a.observe(occ("x1", 1, "ScalingReplicaSet", "up", at(0), x), gen(1)))
	a.advance(at(10 * time.Minute))
	note(a.observe(occ("x2", 1, "ScalingReplicaSet", "down", at(11*time.Minute), x), gen(1)))
	a.advance(at(20 * time.Minute))
	note(a.observe(occ("y1", 1, "ScalingReplicaSet", "up", at(21*time.Minute), y), gen(1)))
	a.advance(at(30 * time.Minute))
	a.flush()

	full, err := a.e.SaveState(at(31*time.Minute), time.Hour, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	oneMark := len("ns/y") + 32 + 16 + 60 + len("Deployment/") + 20
	small, err := a.e.SaveState(at(31*time.Minute), time.Hour, oneMark)
	if err != nil {
		t.Fatal(err)
	}
	b := newDriver(t, Config{})
	if err := b.e.RestoreState(small); err != nil {
		t.Fatal(err)
	}
	if len(b.e.last) != 1 {
		t.Fatalf("restored %d marks from a budget for one, want 1 (y's, the latest)", len(b.e.last))
	}
	// x has no mark now: its next episode, the same day and generation.
	rx := b.observe(occ("x3", 1, "ScalingReplicaSet", "up", at(32*time.Minute), x), gen(1))
	note(rx)
	// y continues its sequence.
	ry := b.observe(occ("y2", 1, "ScalingReplicaSet", "up", at(33*time.Minute), y), gen(1))
	note(ry)
	b.advance(at(45 * time.Minute))
	ss := b.flush()
	if k := attrOf(ss.rootOf(ry.TraceID), "k8s.episode.key"); k != "1.1" {
		t.Errorf("y's episode key %q after the restore, want 1.1", k)
	}

	// Saved again within budget and restored: the time of the marks left
	// out the first time goes along (a root left out then and idle since
	// still needs the suffix), until the horizon passes.
	again, err := b.e.SaveState(at(46*time.Minute), time.Hour, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	c := newDriver(t, Config{})
	if err := c.e.RestoreState(again); err != nil {
		t.Fatal(err)
	}
	if c.e.forgot == 0 {
		t.Error("the time of the marks left out was not carried over a further save")
	}
	late, err := b.e.SaveState(at(3*time.Hour), time.Hour, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, Config{})
	if err := d.e.RestoreState(late); err != nil {
		t.Fatal(err)
	}
	if d.e.forgot != 0 {
		t.Error("marks left out longer ago than the horizon still change keys")
	}

	// The full state restores every mark and no suffix.
	e := newDriver(t, Config{})
	if err := e.e.RestoreState(full); err != nil {
		t.Fatal(err)
	}
	if len(e.e.last) != 2 || e.e.forgot != 0 {
		t.Errorf("full state: %d marks, forgot %d; want 2, 0", len(e.e.last), e.e.forgot)
	}
}

// Marks saved before the budget existed (a bare JSON array) still restore.
func TestStateReadsBareMarks(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(`[{"r":"Deployment/ns/web","g":3,"s":1,"t":"0102030405060708090a0b0c0d0e0f10","i":"0102030405060708","c":1764000000}]`))
	zw.Close()
	e := newEngine(t)
	if err := e.RestoreState(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if l, ok := e.last["Deployment/ns/web"]; !ok || l.gen != 3 || l.seq != 1 {
		t.Errorf("restored %+v", e.last)
	}
}

// SnapshotOpen writes each open episode's JSON, most recently active first,
// as long as the array fits the budget.
func TestSnapshotOpenBudget(t *testing.T) {
	d := newDriver(t, Config{})
	for i := range 5 {
		pod := ref("Pod", "ns", fmt.Sprintf("p-%d", i), fmt.Sprintf("uid-p-%d", i))
		d.observe(occ(fmt.Sprintf("e-%d", i), 1, "BackOff", "Back-off", at(time.Duration(i)*time.Second), pod))
	}
	var parts [][]byte
	for _, ep := range d.e.byActivity() {
		b, err := json.Marshal(ep.save())
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, b)
	}
	all := append(append([]byte{'['}, bytes.Join(parts, []byte{','})...), ']')
	for _, tt := range []struct {
		budget, want int
	}{
		{len(all), 5}, {len(all) - 2, 4}, {1 + len(parts[0]), 1}, {len(parts[0]), 0},
	} {
		got, err := d.e.SnapshotOpen(tt.budget)
		if err != nil {
			t.Fatal(err)
		}
		want := append(append([]byte{'['}, bytes.Join(parts[:tt.want], []byte{','})...), ']')
		if !bytes.Equal(got, want) {
			t.Errorf("budget %d: got %d bytes, want the first %d episodes (%d bytes)", tt.budget, len(got), tt.want, len(want))
		}
	}
	d.flush()
}

// The snapshot keeps the JSON of idle episodes only: an episode that
// changed since the snapshot before holds none (in a rollout storm every
// episode does, and copies of them all cost ≈ 10 MiB of peak RSS), one a
// snapshot finds unchanged is kept, and the next snapshot reuses it.
func TestSnapshotOpenKeepsIdleEpisodesOnly(t *testing.T) {
	d := newDriver(t, Config{})
	active := ref("Pod", "ns", "busy", "uid-busy")
	idle := ref("Pod", "ns", "quiet", "uid-quiet")
	d.observe(occ("e-idle", 1, "BackOff", "Back-off", at(0), idle))
	n := int32(0)
	held := func() (busy, quiet []byte) {
		for _, ep := range d.e.open {
			switch ep.rootKey {
			case objectKey(&active):
				busy = ep.snap.json
			case objectKey(&idle):
				quiet = ep.snap.json
			}
		}
		return busy, quiet
	}
	for snap := range 4 {
		n++
		d.observe(occ("e-busy", n, "BackOff", "Back-off", at(time.Duration(n)*time.Second), active))
		got, err := d.e.SnapshotOpen(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		want, err := d.e.snapshotOpen(1<<20, false)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("snapshot %d differs from one encoded afresh:\n%s\n%s", snap, got, want)
		}
		busy, quiet := held()
		if busy != nil {
			t.Errorf("snapshot %d: the episode that changed since the last snapshot holds %d bytes of JSON", snap, len(busy))
		}
		if wantQuiet := snap >= 1; (quiet != nil) != wantQuiet {
			t.Errorf("snapshot %d: the idle episode holds JSON: %v, want %v", snap, quiet != nil, wantQuiet)
		}
	}
	// Once idle, the busy one is kept too, from its second unchanged snapshot.
	for range 2 {
		if _, err := d.e.SnapshotOpen(1 << 20); err != nil {
			t.Fatal(err)
		}
	}
	if busy, _ := held(); busy == nil {
		t.Error("an episode idle over two snapshots holds no JSON")
	}
	d.flush()
}
