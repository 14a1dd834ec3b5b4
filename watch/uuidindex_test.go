package watch

import (
	"math/rand/v2"
	"testing"
)

// checkIndex verifies t against want: the count, every entry found from its
// home slot without crossing an empty one, nothing else in it.
func checkIndex(tb testing.TB, t *uuidIndex, want map[uuid]*entry) {
	tb.Helper()
	if t.len() != len(want) {
		tb.Fatalf("len = %d, want %d", t.len(), len(want))
	}
	n := 0
	for e := range t.all() {
		n++
		if want[e.uid] != e {
			tb.Fatalf("index holds %x, not wanted", e.uid)
		}
	}
	if n != len(want) {
		tb.Fatalf("all yields %d entries, want %d", n, len(want))
	}
	for u, e := range want {
		if got := t.get(u); got != e {
			tb.Fatalf("get(%x) = %p, want %p", u, got, e)
		}
	}
	if len(t.slots) > 0 && (len(t.slots)&(len(t.slots)-1) != 0 || t.n*4 > len(t.slots)*3) {
		tb.Fatalf("%d entries in %d slots", t.n, len(t.slots))
	}
}

func TestUUIDIndex(t *testing.T) {
	var ix uuidIndex
	if ix.get(uuid{}) != nil || ix.len() != 0 {
		t.Fatal("empty index finds something")
	}
	ix.delete(uuid{1}) // no-op
	want := map[uuid]*entry{}
	rng := rand.New(rand.NewPCG(1, 2))
	// Keys that differ in few bits, as generated test UIDs do, and the
	// zero UUID.
	key := func() uuid {
		var u uuid
		u[15] = byte(rng.IntN(200))
		u[0] = byte(rng.IntN(3))
		return u
	}
	for step := 0; step < 20000; step++ {
		u := key()
		switch {
		case step > 15000 || rng.IntN(3) == 0: // a phase of deletions empties it
			ix.delete(u)
			delete(want, u)
		case want[u] == nil:
			e := &entry{uid: u}
			ix.add(e)
			want[u] = e
		}
		if step%97 == 0 {
			checkIndex(t, &ix, want)
		}
		if ix.get(u) != want[u] {
			t.Fatalf("step %d: get(%x) = %p, want %p", step, u, ix.get(u), want[u])
		}
	}
	checkIndex(t, &ix, want)
	if len(want) != 0 || len(ix.slots) != minIndexSlots {
		t.Errorf("after deleting everything: %d entries, %d slots", len(want), len(ix.slots))
	}
	// Grows and shrinks.
	for i := 0; i < 10000; i++ {
		e := &entry{uid: uuid{byte(i), byte(i >> 8), 7}}
		ix.add(e)
		want[e.uid] = e
	}
	checkIndex(t, &ix, want)
	if len(ix.slots) != 16384 {
		t.Errorf("10000 entries in %d slots", len(ix.slots))
	}
	for u := range want {
		ix.delete(u)
		delete(want, u)
		if len(want) == 100 {
			break
		}
	}
	checkIndex(t, &ix, want)
	if len(ix.slots) > 1024 {
		t.Errorf("100 entries in %d slots", len(ix.slots))
	}
}
