package watch

import (
	"strings"
	"time"
)

// The object cache keeps one entry per UID in a compact form (the public
// Object is built from it on demand): what 100,000s of pods have in common
// is encoded in a few bytes, and what is rare goes to an optional extension.

// uuid is a UID in the canonical form the API server generates (36
// characters, lowercase 8-4-4-4-12 hex) kept in 16 bytes: a string copy of
// it costs a 16-byte header and a 48-byte allocation. Other UIDs (upper
// case, names, anything else) are kept as strings, so that the UID handed
// back is always the one given.
type uuid [16]byte

// uuidHex are the offsets of the 16 hex pairs in a canonical UUID.
var uuidHex = [16]int{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}

// parseUUID parses a canonical UUID; ok is false for anything else,
// including upper-case hex (which would not format back the same).
func parseUUID(s string) (u uuid, ok bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	// A table, not comparisons: every Event's UID is parsed on the watch
	// path and in the checkpoint, and the branches mispredicted on hex.
	var bad byte
	for j, i := range uuidHex {
		hi, lo := hexValue[s[i]], hexValue[s[i+1]]
		bad |= hi | lo
		u[j] = hi<<4 | lo&0xf
	}
	if bad&0xf0 != 0 {
		return uuid{}, false
	}
	return u, true
}

// hexValue is the value of a lowercase hex digit, 0xff for other bytes.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c-'a') + 10
	}
	return t
}()

// String formats u canonically: parseUUID(u.String()) == u.
func (u uuid) String() string {
	const digits = "0123456789abcdef"
	b := [36]byte{8: '-', 13: '-', 18: '-', 23: '-'}
	for j, i := range uuidHex {
		b[i], b[i+1] = digits[u[j]>>4], digits[u[j]&0xf]
	}
	return string(b[:])
}

// kindAV is a kind with its API version; entries refer to it by its index
// in ObjectCache.kinds.
type kindAV struct{ kind, apiVersion string }

// maxKinds bounds the kind table (indexes are uint8, 0 meaning "not in the
// table"); kinds past it are kept in the entry's extension.
const maxKinds = 255

// entry is the cache's form of an Object. 96 bytes (one size class) with
// everything a pod, ReplicaSet or Deployment usually has inline.
type entry struct {
	uid uuid // unless ext.uid is set
	// ownerUID, ownerName and ownerKind are the single owner reference most
	// objects have, when ownerKind != 0 (else any owners are in ext).
	ownerUID  uuid
	name      string // see flagNameSuffix
	ownerName string
	// generation is metadata.generation.
	generation int64
	// stamp is, in a tombstone (flagDeleted), the deletion time in Unix
	// nanoseconds unless ext.deleted holds it; in a live entry, the
	// resourceVersion the watch last delivered (ParseRV; 0 unknown: not a
	// number, or not from a watch), which Events about the object are held
	// for (seenAtLeast). One field: a tombstone needs no resourceVersion,
	// and a ninth word would take the entry to the next size class.
	stamp     int64
	ext       *entryExt
	ns        uint32 // index in ObjectCache.nss, unless flagNamespaceExt
	kind      uint8  // index in ObjectCache.kinds; 0: ext.kind, ext.apiVersion
	ownerKind uint8  // index in ObjectCache.kinds; 0: no inline owner
	flags     uint8
	// streamed is the list of its kind store that last streamed it
	// (kindStore.streamList); it fills the entry's padding.
	streamed uint8
}

const (
	flagDeleted         = 1 << iota // a tombstone
	flagDeletedUTC                  // deleted is in UTC (else time.Local)
	flagOwnerController             // the inline owner reference is the controller
	flagNamespaceExt                // the namespace is ext.namespace
	// flagNameSuffix: name is only what follows "<ownerName>-" in the
	// object's name (generated names: pods of a ReplicaSet, ReplicaSets of
	// a Deployment), so that the full name is not kept twice.
	flagNameSuffix
)

// entryExt holds what does not fit an entry's compact fields; most
// entries have none.
type entryExt struct {
	uid              string // a UID that is not a canonical UUID
	kind, apiVersion string // a kind not in the kind table
	namespace        string // with flagNamespaceExt
	traceparent      string
	owners           []OwnerRef // owners unless inline (several, or not compact)
	deleted          time.Time  // a tombstone time not kept in entry.stamp
}

func (e *entry) extra() *entryExt {
	if e.ext == nil {
		e.ext = &entryExt{}
	}
	return e.ext
}

// fullName is the object's name (allocating when it is kept as a suffix).
func (e *entry) fullName() string {
	if e.flags&flagNameSuffix != 0 {
		return e.ownerName + "-" + e.name
	}
	return e.name
}

// nameIs reports whether the object's name is name, without allocating.
func (e *entry) nameIs(name string) bool {
	if e.flags&flagNameSuffix == 0 {
		return e.name == name
	}
	n := len(e.ownerName)
	return len(name) == n+1+len(e.name) && name[n] == '-' && strings.HasPrefix(name, e.ownerName) && name[n+1:] == e.name
}

// setName keeps name, as a suffix after "<ownerName>-" when it is one.
// Call it after the inline owner is set.
func (e *entry) setName(name string) {
	e.flags &^= flagNameSuffix
	e.name = name
	if e.ownerKind == 0 || e.ownerName == "" {
		return
	}
	n := len(e.ownerName)
	if len(name) > n+1 && name[n] == '-' && strings.HasPrefix(name, e.ownerName) {
		// A copy: a substring would keep the whole name alive.
		e.name = strings.Clone(name[n+1:])
		e.flags |= flagNameSuffix
	}
}

// isDeleted reports whether the entry is a tombstone.
func (e *entry) isDeleted() bool { return e.flags&flagDeleted != 0 }

// setDeleted makes the entry a tombstone deleted at t (t zero: live). A time
// in UTC or time.Local whose Unix nanoseconds round-trip is kept inline; any
// other (another location, out of int64 range) in the extension. The
// monotonic clock reading is not kept: tombstone ages are wall-clock.
func (e *entry) setDeleted(t time.Time) {
	e.flags &^= flagDeleted | flagDeletedUTC
	e.stamp = 0
	if e.ext != nil {
		e.ext.deleted = time.Time{}
	}
	if t.IsZero() {
		return
	}
	e.flags |= flagDeleted
	n := t.UnixNano()
	loc := t.Location()
	if (loc == time.UTC || loc == time.Local) && time.Unix(0, n).Equal(t) {
		e.stamp = n
		if loc == time.UTC {
			e.flags |= flagDeletedUTC
		}
		return
	}
	e.extra().deleted = t.Round(0)
}

// setRV records, in a live entry, the resourceVersion the watch delivered
// (ParseRV).
func (e *entry) setRV(rv uint64) {
	if !e.isDeleted() {
		e.stamp = int64(rv)
	}
}

// seenAtLeast reports whether the cache holds the object at resourceVersion
// rv (ParseRV) or later: an Event written after an update of its object
// names the object at that update's resourceVersion, and the object cache,
// fed by watches of its own, may not have read the update yet. Unknown
// versions (0 on either side, the cache's entry from a recording) and
// tombstones (no later version will come) count as seen.
func (e *entry) seenAtLeast(rv uint64) bool {
	return rv == 0 || e.isDeleted() || e.stamp == 0 || uint64(e.stamp) >= rv
}

// deletedAt is the tombstone time; zero while the object lives.
func (e *entry) deletedAt() time.Time {
	if e.flags&flagDeleted == 0 {
		return time.Time{}
	}
	if e.ext != nil && !e.ext.deleted.IsZero() {
		return e.ext.deleted
	}
	t := time.Unix(0, e.stamp)
	if e.flags&flagDeletedUTC != 0 {
		t = t.UTC()
	}
	return t
}
