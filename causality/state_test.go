package causality

import (
	"testing"
	"time"
)

// A restarted engine that restored the saved marks never reuses a trace ID:
// the next episode of a root gets the next key and links to the last one.
func TestStateRestartNeverReusesTraceIDs(t *testing.T) {
	a := newDriver(t, Config{})
	r1 := a.observe(occ("e1", 1, "Started", "x", at(0), podA, rs, dep), gen(3))
	a.advance(at(10 * time.Minute)) // idle: "3.0" closed
	r2 := a.observe(occ("e2", 1, "Killing", "x", at(11*time.Minute), podA, rs, dep), gen(3))
	state, err := a.e.SaveState(at(12*time.Minute), time.Hour)
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
