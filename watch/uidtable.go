package watch

import (
	"iter"
	"strings"
)

// uidTable maps Event UIDs to values of V. A canonical UUID (every UID the
// API server generates) is a 16-byte key: the table keeps no string per
// Event (a copy of a UID is a 16-byte header and a 48-byte allocation,
// which a decoded Event's UID cannot be: it shares one allocation with the
// Event's note and names), hashing and comparing it touches no other memory,
// and with a V free of pointers the garbage collector never scans the
// table. Any other UID keys a map of strings of the table's own. The zero
// table is empty and ready; not safe for concurrent use.
type uidTable[V any] struct {
	ids  map[uuid]V
	text map[string]textEntry[V]
	// shrinks: a Go map never gives back the room it grew to, so after a
	// burst of Events (an incident, a relist) ids is made again once it is
	// down to a quarter of its peak, the most entries it held since it was
	// made (see removeRef). And it keeps the deletion markers of removed
	// keys, growing for them: under the Events' churn (as many live, each
	// replaced within the API server's TTL) dedup's table doubled, to ≈ 130
	// bytes per live Event (2.5 MB for 20,000 in the soak), so ids is also
	// made again, at its live entries' room, once twice as many keys as it
	// holds were added since it was made (see setRef). Only for tables that
	// follow the live Events (dedup's): the tracker's fills and empties
	// between two saves, and making it again each time would cost its
	// growth every time.
	shrinks bool
	peak    int
	inserts int // new keys set since ids was made (when shrinks)
}

// shrinkMin is the peak below which ids is never made again: small maps
// are not worth the copy.
const shrinkMin = 4096

// textEntry holds its key so that an update can assign with the table's
// own string: a Go map assignment stores the key it is given.
type textEntry[V any] struct {
	uid string
	v   V
}

// uidRef is a UID as the table keys it: its UUID, or the UID itself when
// isText (any other UID, the empty one included).
type uidRef struct {
	id     uuid
	text   string
	isText bool
}

// String is the UID.
func (r uidRef) String() string {
	if r.isText {
		return r.text
	}
	return r.id.String()
}

func refOf(uid string) uidRef {
	if u, ok := parseUUID(uid); ok {
		return uidRef{id: u}
	}
	return uidRef{text: uid, isText: true}
}

// get returns uid's value.
func (t *uidTable[V]) get(uid string) (V, bool) { return t.getRef(refOf(uid)) }

func (t *uidTable[V]) getRef(r uidRef) (V, bool) {
	if !r.isText {
		v, ok := t.ids[r.id]
		return v, ok
	}
	e, ok := t.text[r.text]
	return e.v, ok
}

// set stores v under uid.
func (t *uidTable[V]) set(uid string, v V) { t.setRef(refOf(uid), v) }

func (t *uidTable[V]) setRef(r uidRef, v V) {
	if !r.isText {
		if t.ids == nil {
			t.ids = map[uuid]V{}
		}
		n := len(t.ids)
		t.ids[r.id] = v
		if len(t.ids) > n {
			t.peak = max(t.peak, len(t.ids))
			if t.shrinks {
				// Amortized: one copy of the table per twice its size in
				// new keys, i.e. at most half an entry's copy per insert.
				if t.inserts++; t.inserts > 2*len(t.ids)+shrinkMin {
					t.shrink()
				}
			}
		}
		return
	}
	if t.text == nil {
		t.text = map[string]textEntry[V]{}
	}
	e, ok := t.text[r.text]
	if !ok {
		e.uid = strings.Clone(r.text)
	}
	e.v = v
	t.text[e.uid] = e
}

// remove deletes uid's entry, if any, and reports whether there was one.
func (t *uidTable[V]) remove(uid string) bool { return t.removeRef(refOf(uid)) }

func (t *uidTable[V]) removeRef(r uidRef) bool {
	if !r.isText {
		if _, ok := t.ids[r.id]; ok {
			delete(t.ids, r.id)
			if t.shrinks && t.peak >= shrinkMin && len(t.ids) < t.peak/4 {
				t.shrink()
			}
			return true
		}
		return false
	}
	if _, ok := t.text[r.text]; ok {
		delete(t.text, r.text)
		return true
	}
	return false
}

// shrink makes ids again at its present size, without deletion markers
// (amortized: it copies the entries left after three quarters of the peak
// were removed, or after twice as many were added). A loop over all that
// removes the entry it is at goes on over the old map, yielding each entry
// once as before.
func (t *uidTable[V]) shrink() {
	m := make(map[uuid]V, len(t.ids))
	for id, v := range t.ids {
		m[id] = v
	}
	t.ids, t.peak, t.inserts = m, len(m), 0
}

// len is the number of entries.
func (t *uidTable[V]) len() int { return len(t.ids) + len(t.text) }

// all yields every entry. The loop may set and remove the entry it is at.
func (t *uidTable[V]) all() iter.Seq2[uidRef, V] {
	return func(yield func(uidRef, V) bool) {
		for id, v := range t.ids {
			if !yield(uidRef{id: id}, v) {
				return
			}
		}
		for uid, e := range t.text {
			if !yield(uidRef{text: uid, isText: true}, e.v) {
				return
			}
		}
	}
}
