package watch

import (
	"hash/maphash"
	"iter"
)

// uuidIndex finds entries by their canonical UID. It is an open-addressing
// hash table (linear probing) of entry pointers keyed by the entries' own
// uid: 8 bytes a slot, against the 24 of a map[uuid]*entry slot (key and
// value) plus its control bytes, and it shrinks when emptied. Past 16
// slots the load stays between 3/16 and 3/4. Not safe for concurrent use.
type uuidIndex struct {
	slots []*entry // nil or a power of two long
	n     int
	seed  maphash.Seed
}

const minIndexSlots = 16

func (t *uuidIndex) home(u uuid) int {
	return int(maphash.Comparable(t.seed, u)) & (len(t.slots) - 1)
}

// len is the number of entries.
func (t *uuidIndex) len() int { return t.n }

// get returns the entry with uid u, or nil.
func (t *uuidIndex) get(u uuid) *entry {
	if t.n == 0 {
		return nil
	}
	mask := len(t.slots) - 1
	for i := t.home(u); ; i = (i + 1) & mask {
		e := t.slots[i]
		if e == nil || e.uid == u {
			return e
		}
	}
}

// add inserts e, whose uid must not be in the index yet.
func (t *uuidIndex) add(e *entry) {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.resize(max(2*len(t.slots), minIndexSlots))
	}
	t.insert(e)
	t.n++
}

func (t *uuidIndex) insert(e *entry) {
	mask := len(t.slots) - 1
	i := t.home(e.uid)
	for t.slots[i] != nil {
		i = (i + 1) & mask
	}
	t.slots[i] = e
}

func (t *uuidIndex) resize(size int) {
	old := t.slots
	if old == nil {
		t.seed = maphash.MakeSeed()
	}
	t.slots = make([]*entry, size)
	for _, e := range old {
		if e != nil {
			t.insert(e)
		}
	}
}

// delete removes the entry with uid u, if any. Entries after it in its
// probe run move back (no deletion markers), so the index may shrink.
func (t *uuidIndex) delete(u uuid) {
	if t.n == 0 {
		return
	}
	mask := len(t.slots) - 1
	i := t.home(u)
	for {
		e := t.slots[i]
		if e == nil {
			return
		}
		if e.uid == u {
			break
		}
		i = (i + 1) & mask
	}
	t.slots[i] = nil
	t.n--
	// Move back every later entry of the run that may live at i: one whose
	// home is not cyclically within (i, j].
	for j := (i + 1) & mask; t.slots[j] != nil; j = (j + 1) & mask {
		h := t.home(t.slots[j].uid)
		if i <= j && (i < h && h <= j) || i > j && (i < h || h <= j) {
			continue
		}
		t.slots[i], t.slots[j] = t.slots[j], nil
		i = j
	}
	if len(t.slots) > minIndexSlots && t.n*16 < len(t.slots)*3 {
		t.resize(len(t.slots) / 2)
	}
}

// all yields every entry; the index must not change meanwhile.
func (t *uuidIndex) all() iter.Seq[*entry] {
	return func(yield func(*entry) bool) {
		for _, e := range t.slots {
			if e != nil && !yield(e) {
				return
			}
		}
	}
}
