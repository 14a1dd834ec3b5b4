package watch

import (
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

func TestUIDTable(t *testing.T) {
	uids := []string{
		"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",             // canonical: a 16-byte key
		"0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0",             // upper case: text (would not format back)
		"uid-1", "", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f", // text
		"00000000-0000-0000-0000-000000000000", // canonical, not to be confused with ""
	}
	var tab uidTable[int]
	for i, uid := range uids {
		if _, ok := tab.get(uid); ok {
			t.Fatalf("%q found in an empty table", uid)
		}
		tab.set(uid, i)
	}
	if tab.len() != len(uids) || len(tab.ids) != 2 || len(tab.text) != len(uids)-2 {
		t.Fatalf("len %d (%d ids, %d text), want %d (2, %d)", tab.len(), len(tab.ids), len(tab.text), len(uids), len(uids)-2)
	}
	for i, uid := range uids {
		if v, ok := tab.get(uid); !ok || v != i {
			t.Errorf("get(%q) = %d, %v; want %d", uid, v, ok, i)
		}
	}
	var got []string
	for r, v := range tab.all() {
		got = append(got, fmt.Sprintf("%s=%d", r, v))
		tab.setRef(r, v+10) // updating the entry the loop is at
	}
	sort.Strings(got)
	var want []string
	for i, uid := range uids {
		want = append(want, fmt.Sprintf("%s=%d", uid, i))
	}
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("all: %v, want %v", got, want)
	}
	for r := range tab.all() {
		if r.String() == "uid-1" || r.String() == uids[0] {
			tab.removeRef(r) // removing the entry the loop is at
		}
	}
	if tab.remove(uids[0]) || tab.remove("uid-1") || !tab.remove(uids[1]) {
		t.Error("remove reported wrongly whether there was an entry")
	}
	if v, ok := tab.get(""); !ok || v != 13 || tab.len() != 3 {
		t.Errorf(`get("") = %d, %v with %d entries; want 13 (updated in the loop), 3 entries`, v, ok, tab.len())
	}
}

// A text UID is kept in a string of the table's own, set again or not: the
// caller's may share its memory with a whole decoded Event.
func TestUIDTableOwnsTextKeys(t *testing.T) {
	blob := "note note note|uid-1|uid-1"
	first, second := blob[15:20], blob[21:26]
	var tab uidTable[int]
	tab.set(first, 1)
	tab.set(second, 2)
	for uid, e := range tab.text {
		for _, s := range []string{uid, e.uid} {
			p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
			if b := uintptr(unsafe.Pointer(unsafe.StringData(blob))); p >= b && p < b+uintptr(len(blob)) {
				t.Fatalf("the table keeps the caller's string %q", s)
			}
		}
	}
	if v, _ := tab.get(strings.Clone("uid-1")); v != 2 || tab.len() != 1 {
		t.Errorf("got %d in %d entries, want 2 in 1", v, tab.len())
	}
}

// Text resourceVersions (never etcd's) live beside the table and go with
// their Event.
func TestDedupTextResourceVersions(t *testing.T) {
	for _, uid := range []string{"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "uid-1"} {
		d := NewDedup()
		for _, step := range []struct {
			rv      string
			changed bool
		}{{"a", true}, {"a", false}, {"7", true}, {"7", false}, {"b", true}, {"b", false}, {"c", true}} {
			if got := d.see(uid, step.rv); got != step.changed {
				t.Errorf("%s: see(%q) changed %v, want %v", uid, step.rv, got, step.changed)
			}
		}
		if d.rvText.len() != 1 {
			t.Errorf("%s: %d text resourceVersions kept, want 1", uid, d.rvText.len())
		}
		if from, to := d.Next(uid, 3); from != 1 || to != 3 {
			t.Errorf("%s: Next = %d..%d, want 1..3", uid, from, to)
		}
		d.markGone(uid)
		if d.Len() != 0 {
			t.Errorf("%s: Len %d after the deletion, want 0", uid, d.Len())
		}
		d.Forget(uid)
		if d.events.len() != 0 || d.rvText.len() != 0 || d.gone != 0 {
			t.Errorf("%s: forgotten Event left %d entries, %d text resourceVersions, %d gone", uid, d.events.len(), d.rvText.len(), d.gone)
		}
	}
}

// A Go map never gives back the room it grew to: after a burst the table
// is made again, holding what is left, once it is down to a quarter of its
// peak, also while a loop over all removes entries.
func TestUIDTableShrinksAfterABurst(t *testing.T) {
	uid := testEventUID
	heap := func() uint64 { return memAfterGC().HeapInuse }
	tab := uidTable[int32]{shrinks: true}
	const burst, left = 100_000, 1_000
	before := heap()
	for i := range burst {
		tab.set(uid(i), int32(i))
	}
	grown := heap()
	for i := left; i < burst; i++ {
		if !tab.remove(uid(i)) {
			t.Fatalf("entry %d missing", i)
		}
	}
	if tab.peak >= shrinkMin && tab.len() < tab.peak/4 {
		t.Errorf("%d entries left of a peak of %d: not made again", tab.len(), tab.peak)
	}
	after := heap()
	t.Logf("heap in use: %.1f MiB before, %.1f MiB with %d entries, %.1f MiB with %d left",
		float64(before)/(1<<20), float64(grown)/(1<<20), burst, float64(after)/(1<<20), tab.len())
	if grown > before && after > before+(grown-before)/4 {
		t.Errorf("the table kept %.1f of the %.1f MiB it grew to, for %d of %d entries",
			float64(after-before)/(1<<20), float64(grown-before)/(1<<20), tab.len(), burst)
	}
	for i := range left {
		if v, ok := tab.get(uid(i)); !ok || v != int32(i) {
			t.Fatalf("entry %d: %d, %v after the shrink", i, v, ok)
		}
	}

	// Removing every entry during a loop over all (as the tracker's
	// pruning does) sees each entry once.
	for i := range burst {
		tab.set(uid(i), int32(i))
	}
	seen := map[uidRef]bool{}
	for r := range tab.all() {
		if seen[r] {
			t.Fatalf("%v yielded twice", r)
		}
		seen[r] = true
		tab.removeRef(r)
	}
	if len(seen) != burst || tab.len() != 0 {
		t.Errorf("loop saw %d of %d entries; %d left", len(seen), burst, tab.len())
	}
}

// Dedup's table of the live Events is one that shrinks.
func TestDedupTableShrinks(t *testing.T) {
	d := NewDedup()
	uid := testEventUID
	for i := range 2 * shrinkMin {
		d.Next(uid(i), 1)
	}
	for i := 100; i < 2*shrinkMin; i++ {
		d.Forget(uid(i))
	}
	// Made again when it fell below a quarter of its peak (2,048); below
	// shrinkMin it is left as it is.
	if d.Len() != 100 || d.events.peak >= shrinkMin {
		t.Errorf("%d Events left, table peak %d: want 100, and the table made again below %d", d.Len(), d.events.peak, shrinkMin)
	}
}

// TestDedupTableFlatUnderChurn: with a steady number of live Events, each
// new one replacing the oldest (the API server's TTL), in bursts as a
// rollout writes them, dedup's table stays near the size it had before the
// churn. A Go map keeps the deletion markers of removed keys and grows for
// them: the table doubled (1.22 → 2.47 MiB for 20,000 live Events, as in
// the soak's heap profiles: 1.28 → 2.49 MB) until it is made again after
// twice its size in new keys. Bytes are counted exactly, after every round.
func TestDedupTableFlatUnderChurn(t *testing.T) {
	uid := testEventUID
	heap := func() uint64 { return memAfterGC().HeapAlloc }
	const live, burst, rounds = 20_000, 500, 20
	d := NewDedup()
	base := heap()
	next, oldest := 0, 0
	for ; next < live; next++ {
		d.Next(uid(next), 1)
		d.see(uid(next), strconv.Itoa(next)) // the resourceVersion, as the reflector records it
	}
	fresh := heap() - base
	var most, last uint64
	for r := 1; r <= rounds; r++ {
		for range live / burst {
			for range burst {
				d.Forget(uid(oldest))
				oldest++
			}
			for range burst {
				d.Next(uid(next), 1)
				d.see(uid(next), strconv.Itoa(next))
				next++
			}
		}
		if d.Len() != live {
			t.Fatalf("round %d: %d live Events, want %d", r, d.Len(), live)
		}
		last = heap() - base
		most = max(most, last)
	}
	runtime.KeepAlive(d) // measured with the table live
	t.Logf("%d live Events, %d replaced: %.2f MiB before the churn, at most %.2f MiB after a round of it, %.2f MiB after %d (%.1f bytes per live Event)",
		live, rounds*live, float64(fresh)/(1<<20), float64(most)/(1<<20), float64(last)/(1<<20), rounds, float64(last)/live)
	if most > fresh+fresh/2 {
		t.Errorf("the table grew from %.2f to %.2f MiB with %d live Events throughout", float64(fresh)/(1<<20), float64(most)/(1<<20), live)
	}
}

// testEventUID is the i-th of a series of canonical UIDs.
func testEventUID(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i) }

// memAfterGC is the memory statistics after a collection.
func memAfterGC() runtime.MemStats {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// Under churn the table is made again many times (after twice its size in
// new keys, and after falling to a quarter of its peak); it holds exactly
// what a plain map given the same operations holds, values included.
func TestUIDTableMadeAgainUnderChurnKeepsEveryEntry(t *testing.T) {
	uid := testEventUID
	tab := uidTable[int32]{shrinks: true}
	want := map[string]int32{}
	rng := uint64(1)
	rand := func(n int) int { // xorshift: the same sequence every run
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		return int(rng % uint64(n))
	}
	next, made := 0, 0
	var live []string
	ids := fmt.Sprintf("%p", tab.ids)
	for op := range 400_000 {
		size := 1_000 + 5_000*((op/50_000)%2) // a live set that changes size
		switch {
		case len(want) < size || rand(2) == 0:
			u := uid(next)
			next++
			tab.set(u, int32(op))
			want[u] = int32(op)
			live = append(live, u)
		case rand(10) == 0: // one never there
			if u := uid(1<<40 + rand(10)); tab.remove(u) {
				t.Fatalf("op %d: remove(%s) found one", op, u)
			}
		default: // a live one
			i := rand(len(live))
			u := live[i]
			live[i] = live[len(live)-1]
			live = live[:len(live)-1]
			if !tab.remove(u) {
				t.Fatalf("op %d: remove(%s) found nothing", op, u)
			}
			delete(want, u)
		}
		if rand(1000) == 0 { // an update of a live one
			u := live[rand(len(live))]
			tab.set(u, -int32(op))
			want[u] = -int32(op)
		}
		if p := fmt.Sprintf("%p", tab.ids); p != ids {
			ids = p
			made++
		}
	}
	if made < 5 {
		t.Fatalf("the table was made again %d times: the test does not exercise it", made)
	}
	if tab.len() != len(want) {
		t.Fatalf("%d entries, want %d", tab.len(), len(want))
	}
	for r, v := range tab.all() {
		if w, ok := want[r.String()]; !ok || w != v {
			t.Fatalf("%s = %d, want %d (present %v)", r, v, w, ok)
		}
	}
}
