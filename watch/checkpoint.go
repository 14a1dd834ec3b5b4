package watch

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// The checkpoint makes delivery at-least-once across restarts without
// doubles: it says which Event counts every output has acknowledged.
//
// Events are written to etcd in resourceVersion order and one informer
// delivers its watch in that order, so "every update with resourceVersion
// <= Watermark is done" is a compact statement. The Done map adds the counts
// of Events the watermark cannot describe alone: those updated after it, and
// those that repeat (count > 1). An Event whose only done count was 1 and
// that is older than PruneBefore (by creation) is dropped from the map: if
// it changed while the bridge was down, its count 1 is known to be done.
//
// On start, for an Event listed with resourceVersion rv and count n:
//   - in Done: counts above Done[uid] are new;
//   - else rv <= Watermark: nothing is new;
//   - else n > 1 and a repeater of the same namespace/name is in Done (see
//     Names) with a count d below n: counts above d are new;
//   - else created before PruneBefore: counts above 1 are new;
//   - else n > 1 and its series began more than SeriesSkew before
//     PruneBefore (an Event created again, see SeriesSkew): counts above 1
//     are new;
//   - else: every count is new.
type Checkpoint struct {
	Watermark   uint64
	PruneBefore time.Time
	Done        map[string]int32
	// Names holds, for repeaters in Done (count > 1), the key of the
	// Event's namespace/name (nameKey). client-go's recorder creates an
	// Event the API server's TTL deleted again, under the same name with a
	// new UID and the series' next count: listed at start, that Event's
	// earlier counts are the ones done under its name. Deleted repeaters
	// stay in Done for this a while (Tracker.Forget). Saved apart from the
	// rest (EncodeNames, DecodeNames).
	Names map[string]uint32
	// Saved is when the checkpoint was taken (for the lag metric).
	Saved time.Time
	// Extra is stored along, opaque here (the causality engine's episode
	// marks, so that traces do not reuse IDs after a restart).
	Extra []byte

	// byName maps Names to the highest count done under each, made by the
	// first DoneCount that needs it (DoneCount is for one goroutine: the
	// Event worker's).
	byName map[uint32]int32
}

// nameKey is the key of an Event's namespace/name in a checkpoint: 32 bits
// of FNV-1a (0 is kept for none). Two names sharing a key (≈ 1 in 4·10⁹ per
// pair) could make a re-created Event skip counts only if it also has a
// higher count than the other's; 4 bytes per repeater keep the checkpoint
// within a ConfigMap.
func nameKey(namespace, name string) uint32 {
	// FNV-1a by hand: hash/fnv through its interface would allocate the
	// strings' bytes, for every update of a repeater.
	const offset, prime = 2166136261, 16777619
	k := uint32(offset)
	for i := 0; i < len(namespace); i++ {
		k = (k ^ uint32(namespace[i])) * prime
	}
	k = (k ^ '/') * prime
	for i := 0; i < len(name); i++ {
		k = (k ^ uint32(name[i])) * prime
	}
	return max(k, 1)
}

// SeriesSkew: an Event first seen with a count above 1 whose series began
// (its first timestamp, convert.FirstTime) more than this before a time
// by which every Event created is done (PruneBefore) was created again by
// client-go's recorder after the API server's TTL deleted it: its count 1
// went out with the Event it replaces, which that first occurrence created.
// Higher counts of that one are found by name (repeaters), not by this. The
// margin is for the series' time, which is the recorder's clock (a
// kubelet's, a controller's) and may run behind the API server's, and for
// the recorder's retries before its create got through; the TTL (an hour by
// default) keeps real re-creations far older. Kubernetes itself allows 5
// minutes of clock skew (it backdates the certificates it issues by that).
const SeriesSkew = 10 * time.Minute

// seriesBefore reports whether a series that began at first began more
// than SeriesSkew before prune.
func seriesBefore(first, prune time.Time) bool {
	return !first.IsZero() && !prune.IsZero() && first.Before(prune.Add(-SeriesSkew))
}

// DoneCount is how many counts of the Event are known to be done; name is
// the Event's nameKey (0 when unknown), first when its series began
// (convert.FirstTime).
func (c *Checkpoint) DoneCount(uid string, name uint32, rv uint64, created, first time.Time, count int32) int32 {
	if c == nil {
		return 0
	}
	if d, ok := c.Done[uid]; ok {
		return d
	}
	if rv != 0 && rv <= c.Watermark {
		return count
	}
	if name != 0 && count > 1 {
		// Created again under its name (a new UID) while the bridge was
		// down; a lower count there is a new Event that reuses a name.
		if d, ok := c.doneByName(name); ok && d < count {
			return d
		}
	}
	if !created.IsZero() && created.Before(c.PruneBefore) {
		return 1
	}
	if count > 1 && seriesBefore(first, c.PruneBefore) {
		// Created again while the bridge was down, after an Event whose
		// last count the checkpoint had no name for (count 1, pruned).
		return 1
	}
	return 0
}

func (c *Checkpoint) doneByName(name uint32) (int32, bool) {
	if c.byName == nil {
		c.byName = make(map[uint32]int32, len(c.Names))
		for uid, k := range c.Names {
			if d := c.Done[uid]; d > c.byName[k] {
				c.byName[k] = d
			}
		}
	}
	d, ok := c.byName[name]
	return d, ok
}

// checkpointMagic starts the current form, checkpointMagicGzip (inside
// gzip) the earlier one, which DecodeCheckpoint still reads.
const (
	checkpointMagic     = "kob-cp2"
	checkpointMagicGzip = "kob-cp1"
)

// Encode returns the checkpoint in a compact binary form: a header of
// varints, then the entries sorted by UID, each a varint (count<<1, and 1
// for a UID that is not a canonical UUID) and the UID: the 16 bytes of a
// UUID (every UID the API server makes), else its length and text. Names
// are not in it (see EncodeNames): releases before them read it as theirs. A UUID's
// hex (36 bytes) Huffman-coded took ≈ 19 bytes, and the compressor's tables
// (≈ 1 MB made and cleared per save) were most of a save's cost; the 16 bytes
// need none. Extra (the engine's JSON) follows, its length and then one gzip
// member at the fastest level.
func (c *Checkpoint) Encode() ([]byte, error) { return c.encode(nil, c.sortedEntries()) }

// encode is Encode compressing Extra with zw (reset for it) when not nil.
func (c *Checkpoint) encode(zw *gzip.Writer, entries []checkpointEntry) ([]byte, error) {
	out := make([]byte, 0, 64+len(entries)*18+len(c.Extra)/4)
	out = append(out, checkpointMagic...)
	out = binary.AppendUvarint(out, c.Watermark)
	out = binary.AppendUvarint(out, uint64(c.PruneBefore.Unix()))
	out = binary.AppendUvarint(out, uint64(c.Saved.UnixMilli()))
	out = binary.AppendUvarint(out, uint64(len(entries)))
	for _, e := range entries {
		if e.r.isText {
			out = binary.AppendUvarint(out, uint64(uint32(e.count))<<1|1)
			out = binary.AppendUvarint(out, uint64(len(e.r.text)))
			out = append(out, e.r.text...)
			continue
		}
		out = binary.AppendUvarint(out, uint64(uint32(e.count))<<1)
		out = append(out, e.r.id[:]...)
	}
	if len(c.Extra) == 0 {
		return binary.AppendUvarint(out, 0), nil
	}
	var z bytes.Buffer
	if zw == nil {
		var err error
		if zw, err = gzip.NewWriterLevel(&z, gzip.BestSpeed); err != nil {
			return nil, err
		}
	} else {
		zw.Reset(&z)
	}
	if _, err := zw.Write(c.Extra); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	// Its length first: a checkpoint cut short is an error, never one
	// without its Extra.
	out = binary.AppendUvarint(out, uint64(z.Len()))
	return append(out, z.Bytes()...), nil
}

// checkpointEntry is one entry of Done as Encode writes it.
type checkpointEntry struct {
	r     uidRef
	count int32
}

// sortedEntries is Done in the order Encode writes it (and EncodeNames
// refers to): the UUIDs by their bytes, then other UIDs by their text.
func (c *Checkpoint) sortedEntries() []checkpointEntry {
	entries := make([]checkpointEntry, 0, len(c.Done))
	for uid, n := range c.Done {
		entries = append(entries, checkpointEntry{refOf(uid), n})
	}
	slices.SortFunc(entries, func(a, b checkpointEntry) int {
		if a.r.isText != b.r.isText {
			if a.r.isText {
				return 1
			}
			return -1
		}
		if a.r.isText {
			return strings.Compare(a.r.text, b.r.text)
		}
		return bytes.Compare(a.r.id[:], b.r.id[:])
	})
	return entries
}

// namesMagic starts the names that go with a checkpoint (EncodeNames).
const namesMagic = "kob-nm1"

// EncodeNames returns Names in a form that goes with data, the checkpoint
// as Encode wrote it: the names are kept apart from it (the ConfigMap's
// "names" key) so that an earlier release still reads the checkpoint, and
// tied to it by a hash of data, so that names left by a newer release
// before a rollback and then an upgrade again are never read with a
// checkpoint they do not belong to. The form: the magic, 8 bytes of
// FNV-1a of data, the number of entries, then per named entry the gap from
// the previous named entry's index in Encode's order (varint) and the key
// (4 bytes little-endian). Nil when there are no names.
func (c *Checkpoint) EncodeNames(data []byte) []byte {
	if len(c.Names) == 0 {
		return nil
	}
	return c.encodeNames(data, c.sortedEntries())
}

// encodeNames is EncodeNames with Done sorted already (sortedEntries).
func (c *Checkpoint) encodeNames(data []byte, entries []checkpointEntry) []byte {
	if len(c.Names) == 0 {
		return nil
	}
	h := fnv.New64a()
	h.Write(data)
	out := make([]byte, 0, len(namesMagic)+8+binary.MaxVarintLen64+6*len(c.Names))
	out = append(out, namesMagic...)
	out = h.Sum(out)
	out = binary.AppendUvarint(out, uint64(len(entries)))
	prev := -1
	for i, e := range entries {
		k, ok := c.Names[e.r.String()]
		if !ok {
			continue
		}
		out = binary.AppendUvarint(out, uint64(i-prev))
		out = binary.LittleEndian.AppendUint32(out, k)
		prev = i
	}
	return out
}

// DecodeNames sets Names from what EncodeNames wrote for data (the
// checkpoint c was decoded from). Names that belong to another checkpoint
// or cannot be read are an error, and leave c without names: they only
// spare a re-created Event's earlier counts.
func (c *Checkpoint) DecodeNames(data, names []byte) error {
	c.Names, c.byName = nil, nil
	if len(names) == 0 {
		return nil
	}
	if !bytes.HasPrefix(names, []byte(namesMagic)) || len(names) < len(namesMagic)+8 {
		return errors.New("checkpoint names: unknown format")
	}
	h := fnv.New64a()
	h.Write(data)
	if !bytes.Equal(h.Sum(nil), names[len(namesMagic):len(namesMagic)+8]) {
		return errors.New("checkpoint names: written for another checkpoint")
	}
	r := bytes.NewReader(names[len(namesMagic)+8:])
	n, err := binary.ReadUvarint(r)
	if err != nil || n != uint64(len(c.Done)) {
		return fmt.Errorf("checkpoint names: %d entries, the checkpoint has %d", n, len(c.Done))
	}
	entries := c.sortedEntries()
	got := map[string]uint32{}
	i := -1
	for r.Len() > 0 {
		gap, err := binary.ReadUvarint(r)
		if err != nil || gap == 0 || gap > uint64(len(entries)-1-i) {
			return errors.New("checkpoint names: bad entry index")
		}
		i += int(gap)
		var k [4]byte
		if _, err := io.ReadFull(r, k[:]); err != nil {
			return fmt.Errorf("checkpoint names: %w", err)
		}
		got[entries[i].r.String()] = binary.LittleEndian.Uint32(k[:])
	}
	c.Names = got
	return nil
}

// maxExtra bounds the engine's part when reading a checkpoint (a ConfigMap
// holds 1 MiB compressed).
const maxExtra = 64 << 20

// DecodeCheckpoint reads what Encode wrote, or the earlier gzip form.
func DecodeCheckpoint(data []byte) (*Checkpoint, error) {
	if !bytes.HasPrefix(data, []byte(checkpointMagic)) {
		return decodeGzipCheckpoint(data)
	}
	r := bytes.NewReader(data[len(checkpointMagic):])
	get := func() (uint64, error) { return binary.ReadUvarint(r) }
	var c Checkpoint
	n, err := c.readHeader(r)
	if err != nil {
		return nil, err
	}
	for range n {
		h, err := get()
		if err != nil || h>>1 > 1<<31-1 {
			return nil, errors.New("checkpoint: bad count")
		}
		var uid string
		if h&1 == 0 {
			var u uuid
			if _, err := io.ReadFull(r, u[:]); err != nil {
				return nil, fmt.Errorf("checkpoint: %w", err)
			}
			uid = u.String()
		} else {
			n, err := get()
			if err != nil || n > 256 || n > uint64(r.Len()) {
				return nil, errors.New("checkpoint: bad uid")
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(r, b); err != nil {
				return nil, fmt.Errorf("checkpoint: %w", err)
			}
			uid = string(b)
		}
		c.Done[uid] = int32(h >> 1)
	}
	z, err := get()
	if err != nil || z != uint64(r.Len()) {
		return nil, errors.New("checkpoint: bad extra section")
	}
	if z > 0 {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: extra section: %w", err)
		}
		if c.Extra, err = io.ReadAll(io.LimitReader(zr, maxExtra)); err != nil {
			return nil, fmt.Errorf("checkpoint: extra section: %w", err)
		}
	}
	return &c, nil
}

// readHeader reads the watermark, times and entry count, and makes Done
// for the entries.
func (c *Checkpoint) readHeader(r *bytes.Reader) (uint64, error) {
	var v [4]uint64
	for i := range v {
		var err error
		if v[i], err = binary.ReadUvarint(r); err != nil {
			return 0, fmt.Errorf("checkpoint: truncated header: %w", err)
		}
	}
	c.Watermark, c.PruneBefore, c.Saved = v[0], time.Unix(int64(v[1]), 0).UTC(), time.UnixMilli(int64(v[2])).UTC()
	if v[3] > uint64(r.Len()) {
		return 0, errors.New("checkpoint: bad entry count")
	}
	c.Done = make(map[string]int32, v[3])
	return v[3], nil
}

// decodeGzipCheckpoint reads the earlier form: all of it in gzip, each UID
// as text, Extra after its length (in a second gzip member, read as one
// stream with the first).
func decodeGzipCheckpoint(data []byte) (*Checkpoint, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, maxExtra))
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if !bytes.HasPrefix(raw, []byte(checkpointMagicGzip)) {
		return nil, errors.New("checkpoint: unknown format")
	}
	r := bytes.NewReader(raw[len(checkpointMagicGzip):])
	get := func() (uint64, error) { return binary.ReadUvarint(r) }
	var c Checkpoint
	n, err := c.readHeader(r)
	if err != nil {
		return nil, err
	}
	for range n {
		n, err := get()
		if err != nil || n > 256 || n > uint64(r.Len()) {
			return nil, errors.New("checkpoint: bad uid")
		}
		uid := make([]byte, n)
		if _, err := io.ReadFull(r, uid); err != nil {
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
		cnt, err := get()
		if err != nil || cnt > 1<<31-1 {
			return nil, errors.New("checkpoint: bad count")
		}
		c.Done[string(uid)] = int32(cnt)
	}
	extra, err := get()
	if err != nil || extra > uint64(r.Len()) {
		return nil, errors.New("checkpoint: bad extra section")
	}
	if extra > 0 {
		c.Extra = make([]byte, extra)
		if _, err := io.ReadFull(r, c.Extra); err != nil {
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
	}
	return &c, nil
}

// ParseRV reads a resourceVersion as the number etcd gives it; 0 if it is
// not one (then the watermark cannot cover that Event, which costs only
// map space). It allocates nothing (strconv.ParseUint's error does): the
// object cache reads the resourceVersion of every occurrence's object.
func ParseRV(rv string) uint64 {
	if rv == "" || len(rv) > 20 {
		return 0
	}
	var v uint64
	for i := 0; i < len(rv); i++ {
		c := rv[i]
		if c < '0' || c > '9' {
			return 0
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0 // out of range
		}
		v = v*10 + d
	}
	return v
}

// Tracker follows every Event update from the watch until all its
// occurrences are acknowledged by every output, and produces checkpoints.
type Tracker struct {
	mu sync.Mutex
	// pending: updates with occurrences not yet done, in the order they
	// began.
	pending pendingQueue
	maxSeen uint64
	// limit caps the watermark (the informer's last synced resourceVersion).
	limit func() uint64
	// done: by Event UID, what is done of it (see uidTable: 24 bytes and a
	// 16-byte key per Event, no string, no pointer).
	done uidTable[doneEntry]
	// maxEntries bounds done; the oldest repeaters go first.
	maxEntries int
	dropped    uint64
	changed    bool
	// now is the clock of departures (Forget); time.Now but in tests.
	now func() time.Time
	// unlisted: the entries of the checkpoint it started from that the
	// initial list has not (yet) shown; at its end (SetReady) they are
	// Events deleted while no bridge ran: repeaters depart (see
	// doneEntry.created), the rest go. Nil after that.
	unlisted *uidTable[struct{}]
	// pruneBefore: the last snapshot's PruneBefore (at first the
	// checkpoint's), for DoneOfSeries.
	pruneBefore time.Time
	// ready: the initial list has been processed; before that the
	// watermark is not meaningful (listed items come in any order).
	ready bool
}

// SetReady marks the end of the initial list.
func (t *Tracker) SetReady() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ready = true
	if t.unlisted == nil {
		return
	}
	now := t.now().Unix()
	for r := range t.unlisted.all() {
		if e, ok := t.done.getRef(r); ok {
			t.departLocked(r, e, now)
		}
	}
	t.unlisted = nil
}

type doneEntry struct {
	count int32
	// name is the Event's nameKey when count > 1, else 0.
	name uint32
	rv   uint64
	// created is when the Event was created (unix seconds, > 0), or for a
	// deleted repeater minus when the API server deleted it (see departed;
	// 24 bytes an entry rather than 32, and a deleted one's creation time
	// serves nothing). A deleted repeater stays for DepartedFor, saved with
	// its name, so that a bridge starting after the recorder created it
	// again (a new UID, the next count) goes on from its count.
	created int64
}

// departed is when the API server deleted the Event (unix seconds), 0
// while it lives.
func (e doneEntry) departed() int64 { return max(-e.created, 0) }

// DepartedFor is how long a deleted repeater stays in the checkpoint (see
// doneEntry.departed). client-go's recorder creates an Event again on its
// next occurrence after the API server's TTL (an hour by default) deleted
// it; only one created while no bridge ran needs the entry (one the watch
// sees created is taken from its count), so a few hours cover restarts and
// upgrades without keeping every deleted repeater.
const DepartedFor = 3 * time.Hour

// MaxDeparted bounds the deleted repeaters kept (the least recently
// deleted go first): most are never created again (their pod is gone), and
// a large cluster deletes thousands an hour; 4,096 cost ≈ 95 KB of
// checkpoint and ≈ 160 KB of memory at most.
const MaxDeparted = 4096

// DefaultMaxEntries is how many Events a checkpoint tracks one by one by
// default: 35,000 UUIDs encode to ≈ 630 KB, with the names of up to 15,000
// repeaters ≈ 700 KB, which leaves ≈ 330 KB of a ConfigMap (1 MiB of data)
// for the causality engine's part (its marks and open episodes, cut to
// fit: see checkpointFit in the command).
const DefaultMaxEntries = 35000

// MaxEntries is the most a checkpoint can track one by one: ≈ 900 KB of
// UUIDs, the rest of a ConfigMap for the engine's smallest part. Entries
// and repeaters' names together stay within it (names go first).
const MaxEntries = 50000

// NewTracker returns a tracker seeded with a loaded checkpoint (or nil).
func NewTracker(cp *Checkpoint, maxEntries int) *Tracker {
	t := &Tracker{maxEntries: maxEntries, now: time.Now}
	if t.maxEntries <= 0 {
		t.maxEntries = DefaultMaxEntries
	}
	if cp != nil {
		t.maxSeen = cp.Watermark
		t.pruneBefore = cp.PruneBefore
		t.unlisted = &uidTable[struct{}]{}
		// (Never negative: that would mark them deleted.)
		created := max(cp.PruneBefore.Unix(), 0)
		for uid, c := range cp.Done {
			t.done.set(uid, doneEntry{count: c, name: cp.Names[uid], created: created})
			t.unlisted.set(uid, struct{}{})
		}
	}
	return t
}

// SetLimit caps the watermark by the informer's last synced resourceVersion,
// so that a relist in progress never lets it pass updates not yet seen.
func (t *Tracker) SetLimit(f func() uint64) {
	t.mu.Lock()
	t.limit = f
	t.mu.Unlock()
}

// Begin registers one Event update that yields n occurrences (n may be 0)
// and returns the function to call once per occurrence when it is done.
func (t *Tracker) Begin(uid string, rv uint64, created time.Time, count int32, n int) func() {
	if n == 0 {
		t.begin(nil, uid, 0, rv, created, count, 0)
		return func() {}
	}
	u := &trackedUpdate{}
	t.begin(u, uid, 0, rv, created, count, n)
	return u.done
}

// trackedUpdate is one Event update with occurrences not yet done. The
// worker keeps it in the memory of the update's first occurrence, so that
// following the update costs no allocation of its own.
type trackedUpdate struct {
	t       *Tracker
	uid     string
	rv      uint64
	created time.Time
	count   int32
	name    uint32 // nameKey, for a repeater
	left    int    // occurrences not yet done, guarded by t.mu
	seq     uint64 // its place in t.pending, 0: not there (no resourceVersion)
}

// begin is Begin keeping the update's state in u (which may be nil when n
// is 0) and the Event's nameKey (for a repeater, else 0); it returns false
// when there is nothing to wait for (n is 0: the update is done already).
func (t *Tracker) begin(u *trackedUpdate, uid string, name uint32, rv uint64, created time.Time, count int32, n int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if rv > t.maxSeen {
		t.maxSeen = rv
	}
	if t.unlisted != nil {
		t.unlisted.remove(uid) // listed: it lives
	}
	if n == 0 {
		t.markDone(uid, name, rv, created, count)
		return false
	}
	*u = trackedUpdate{t: t, uid: uid, rv: rv, created: created, count: count, name: name, left: n}
	if rv != 0 {
		u.seq = t.pending.push(rv)
	}
	return true
}

// done is called once per occurrence of the update when it is done.
func (u *trackedUpdate) done() {
	t := u.t
	t.mu.Lock()
	defer t.mu.Unlock()
	u.left--
	if u.left == 0 {
		if u.seq != 0 {
			t.pending.done(u.seq)
		}
		t.markDone(u.uid, u.name, u.rv, u.created, u.count)
	}
}

// pendingQueue holds the resourceVersions of the updates not yet done, in
// the order they began (the watch's order, but for lists), each under a
// sequence number from 1: an update's begin and end cost no map operation,
// and the done ones at the front go at once.
type pendingQueue struct {
	rvs   []uint64 // rvs[off:] are the updates from sequence number first on; 0: done
	off   int
	first uint64
	n     int // updates not yet done
}

// push adds an update at resourceVersion rv (not 0) and returns its
// sequence number.
func (q *pendingQueue) push(rv uint64) uint64 {
	if q.first == 0 {
		q.first = 1
	}
	if q.off > 0 && q.off >= len(q.rvs)/2 {
		// Reuse the front: the array does not grow with every update ever.
		m := copy(q.rvs, q.rvs[q.off:])
		q.rvs = q.rvs[:m]
		q.off = 0
	}
	q.rvs = append(q.rvs, rv)
	q.n++
	return q.first + uint64(len(q.rvs)-q.off) - 1
}

// done ends the update of sequence number seq.
func (q *pendingQueue) done(seq uint64) {
	i := q.off + int(seq-q.first)
	if i < q.off || i >= len(q.rvs) || q.rvs[i] == 0 {
		return
	}
	q.rvs[i] = 0
	q.n--
	for q.off < len(q.rvs) && q.rvs[q.off] == 0 {
		q.off++
		q.first++
	}
}

// min is the lowest resourceVersion not yet done, 0 when none.
func (q *pendingQueue) min() uint64 {
	var m uint64
	for _, rv := range q.rvs[q.off:] {
		if rv != 0 && (m == 0 || rv < m) {
			m = rv
		}
	}
	return m
}

func (t *Tracker) markDone(uid string, name uint32, rv uint64, created time.Time, count int32) {
	r := refOf(uid)
	e, _ := t.done.getRef(r)
	if count > e.count {
		e.count = count
	}
	if name != 0 {
		e.name = name
	}
	if rv > e.rv {
		e.rv = rv
	}
	if !created.IsZero() && e.departed() == 0 {
		// (An occurrence done after the deletion leaves it deleted.)
		e.created = created.Unix()
	}
	t.done.setRef(r, e)
	t.changed = true
}

// DoneOfSeries is what a relist's Event with a new UID, the name key name,
// a series that began at first and count carries over when the recorder
// created it again (see Checkpoint.DoneCount): the highest count done of a
// repeater of that name below count, else 1 when the series began more
// than SeriesSkew before the last snapshot's PruneBefore, else 0. It looks at
// every entry: for relists only.
func (t *Tracker) DoneOfSeries(name uint32, first time.Time, count int32) int32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var d int32
	for _, e := range t.done.all() {
		if e.name == name && e.count < count && e.count > d {
			d = e.count
		}
	}
	if d == 0 && count > 1 && seriesBefore(first, t.pruneBefore) {
		d = 1
	}
	return d
}

// Forget drops an Event deleted from the API server; a repeater with its
// name stays for DepartedFor (see doneEntry.departed).
func (t *Tracker) Forget(uid string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := refOf(uid)
	if e, ok := t.done.getRef(r); ok {
		t.departLocked(r, e, t.now().Unix())
	}
}

// departLocked marks the entry of an Event deleted at now (unix seconds):
// a repeater with its name stays for DepartedFor, anything else goes.
func (t *Tracker) departLocked(r uidRef, e doneEntry, now int64) {
	switch {
	case e.departed() != 0:
		return
	case e.count > 1 && e.name != 0:
		e.created = -now
		t.done.setRef(r, e)
	default:
		t.done.removeRef(r)
	}
	t.changed = true
}

// Watermark is the highest resourceVersion up to which every update is done.
func (t *Tracker) Watermark() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.watermarkLocked()
}

func (t *Tracker) watermarkLocked() uint64 {
	w := t.maxSeen
	if rv := t.pending.min(); rv != 0 && rv-1 < w {
		w = rv - 1
	}
	if t.limit != nil {
		if l := t.limit(); l != 0 && l < w {
			w = l
		}
	}
	return w
}

// Snapshot returns the checkpoint to save now, pruning what the watermark
// covers, and whether it should be saved: something changed since the last
// snapshot and the initial list has been processed.
func (t *Tracker) Snapshot(now time.Time) (*Checkpoint, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.ready {
		return nil, false
	}
	w := t.watermarkLocked()
	var newest int64
	for _, e := range t.done.all() {
		if e.rv != 0 && e.rv <= w && e.created > newest {
			newest = e.created
		}
	}
	// Two seconds of margin: creation times have one-second resolution and
	// need not follow resourceVersion order within a second.
	prune := newest - 2
	gone := now.Add(-DepartedFor).Unix()
	named, departed := 0, 0
	for r, e := range t.done.all() {
		switch {
		case e.departed() != 0 && e.departed() < gone,
			e.count <= 1 && e.rv != 0 && e.rv <= w && e.created < prune:
			t.done.removeRef(r)
		case e.departed() != 0:
			departed++
			named++
		case e.name != 0:
			named++
		}
	}
	if departed > MaxDeparted {
		named -= t.dropDepartedLocked(departed - MaxDeparted)
	}
	if t.done.len() > t.maxEntries {
		t.shrinkLocked()
	}
	t.pruneBefore = time.Unix(prune, 0).UTC()
	cp := &Checkpoint{Watermark: w, PruneBefore: t.pruneBefore, Done: make(map[string]int32, t.done.len()), Saved: now}
	// Names cost 4 bytes each: no more of them than entries short of
	// MaxEntries, so that any checkpoint encodes within MaxEntries UUIDs'
	// room (see TestCheckpointFitsAConfigMap).
	maxNames := max(MaxEntries-t.done.len(), 0)
	var keepName func(doneEntry) bool
	if named > maxNames {
		keepName = t.namesToKeep(maxNames)
	}
	for r, e := range t.done.all() {
		uid := r.String()
		cp.Done[uid] = e.count
		if e.name != 0 && (keepName == nil || keepName(e)) {
			if cp.Names == nil {
				cp.Names = map[string]uint32{}
			}
			cp.Names[uid] = e.name
		}
	}
	changed := t.changed
	t.changed = false
	return cp, changed
}

// dropDepartedLocked removes the n least recently deleted repeaters and
// returns n.
func (t *Tracker) dropDepartedLocked(n int) int {
	type kv struct {
		r  uidRef
		at int64
	}
	var all []kv
	for r, e := range t.done.all() {
		if at := e.departed(); at != 0 {
			all = append(all, kv{r, at})
		}
	}
	slices.SortFunc(all, func(a, b kv) int { return cmp.Compare(a.at, b.at) })
	for _, x := range all[:n] {
		t.done.removeRef(x.r)
	}
	return n
}

// namesToKeep chooses which n entries keep their names when not all can:
// the deleted repeaters, then the live ones least recently updated (the
// next the API server's TTL deletes).
func (t *Tracker) namesToKeep(n int) func(doneEntry) bool {
	var rvs []uint64
	departed := 0
	for _, e := range t.done.all() {
		switch {
		case e.name == 0:
		case e.departed() != 0:
			departed++
		default:
			rvs = append(rvs, e.rv)
		}
	}
	if departed >= n {
		// Rare (thousands deleted within DepartedFor): those first, in
		// no particular order.
		left := n
		return func(e doneEntry) bool {
			if e.departed() == 0 || left == 0 {
				return false
			}
			left--
			return true
		}
	}
	slices.Sort(rvs)
	limit := rvs[n-departed-1] // the live ones up to this resourceVersion
	return func(e doneEntry) bool { return e.departed() != 0 || e.rv <= limit }
}

// shrinkLocked drops the oldest entries beyond maxEntries. Their Events may
// then repeat counts after a crash (at-least-once), never lose them.
func (t *Tracker) shrinkLocked() {
	type kv struct {
		r uidRef
		e doneEntry
	}
	all := make([]kv, 0, t.done.len())
	for r, e := range t.done.all() {
		all = append(all, kv{r, e})
	}
	// Deleted repeaters first (they only serve a restart), then the live
	// Events least recently updated.
	sort.Slice(all, func(i, j int) bool {
		if di, dj := all[i].e.departed() != 0, all[j].e.departed() != 0; di != dj {
			return di
		}
		return all[i].e.rv < all[j].e.rv
	})
	for _, x := range all[:len(all)-t.maxEntries] {
		t.done.removeRef(x.r)
		t.dropped++
	}
}

// Dropped counts checkpoint entries dropped to stay within the size limit.
func (t *Tracker) Dropped() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dropped
}

// Pending is the number of updates not yet done.
func (t *Tracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending.n
}

// ackKey carries an occurrence's done callback from the source to the
// handler's outputs.
type ackKey struct{}

// ackContext is the context an occurrence is handed to the handler with: its
// parent plus the done callback under ackKey. It lives in the occurrence's
// own memory (delivery) instead of a context.WithValue of its own per
// occurrence.
type ackContext struct {
	context.Context
	done func()
}

// Value answers ackKey with the done callback, anything else as the parent.
func (c *ackContext) Value(key any) any {
	if key == (ackKey{}) {
		return c.done
	}
	return c.Context.Value(key)
}

// DoneFromContext returns the function the handler calls once when every
// output acknowledged the occurrence (a no-op without a tracker).
func DoneFromContext(ctx context.Context) func() {
	if f, ok := ctx.Value(ackKey{}).(func()); ok {
		return f
	}
	return func() {}
}
