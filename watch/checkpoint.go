package watch

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
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
//   - else created before PruneBefore: counts above 1 are new;
//   - else: every count is new.
type Checkpoint struct {
	Watermark   uint64
	PruneBefore time.Time
	Done        map[string]int32
	// Saved is when the checkpoint was taken (for the lag metric).
	Saved time.Time
	// Extra is stored along, opaque here (the causality engine's episode
	// marks, so that traces do not reuse IDs after a restart).
	Extra []byte
}

// DoneCount is how many counts of the Event are known to be done.
func (c *Checkpoint) DoneCount(uid string, rv uint64, created time.Time, count int32) int32 {
	if c == nil {
		return 0
	}
	if d, ok := c.Done[uid]; ok {
		return d
	}
	if rv != 0 && rv <= c.Watermark {
		return count
	}
	if !created.IsZero() && created.Before(c.PruneBefore) {
		return 1
	}
	return 0
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
// UUID (every UID the API server makes), else its length and text. A UUID's
// hex (36 bytes) Huffman-coded took ≈ 19 bytes, and the compressor's tables
// (≈ 1 MB made and cleared per save) were most of a save's cost; the 16 bytes
// need none. Extra (the engine's JSON) follows, its length and then one gzip
// member at the fastest level.
func (c *Checkpoint) Encode() ([]byte, error) { return c.encode(nil) }

// encode is Encode compressing Extra with zw (reset for it) when not nil.
func (c *Checkpoint) encode(zw *gzip.Writer) ([]byte, error) {
	type entry struct {
		r     uidRef
		count int32
	}
	entries := make([]entry, 0, len(c.Done))
	for uid, n := range c.Done {
		entries = append(entries, entry{refOf(uid), n})
	}
	slices.SortFunc(entries, func(a, b entry) int {
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
	// ready: the initial list has been processed; before that the
	// watermark is not meaningful (listed items come in any order).
	ready bool
}

// SetReady marks the end of the initial list.
func (t *Tracker) SetReady() {
	t.mu.Lock()
	t.ready = true
	t.mu.Unlock()
}

type doneEntry struct {
	count   int32
	rv      uint64
	created int64 // unix seconds
}

// DefaultMaxEntries is how many Events a checkpoint tracks one by one by
// default: 35,000 UUIDs encode to ≈ 630 KB, which leaves ≈ 400 KB of a
// ConfigMap (1 MiB of data) for the causality engine's part (its marks and
// open episodes, cut to fit: see checkpointFit in the command).
const DefaultMaxEntries = 35000

// MaxEntries is the most a checkpoint can track one by one: ≈ 900 KB of
// UUIDs, the rest of a ConfigMap for the engine's smallest part.
const MaxEntries = 50000

// NewTracker returns a tracker seeded with a loaded checkpoint (or nil).
func NewTracker(cp *Checkpoint, maxEntries int) *Tracker {
	t := &Tracker{maxEntries: maxEntries}
	if t.maxEntries <= 0 {
		t.maxEntries = DefaultMaxEntries
	}
	if cp != nil {
		t.maxSeen = cp.Watermark
		for uid, c := range cp.Done {
			t.done.set(uid, doneEntry{count: c, created: cp.PruneBefore.Unix()})
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
		t.begin(nil, uid, rv, created, count, 0)
		return func() {}
	}
	u := &trackedUpdate{}
	t.begin(u, uid, rv, created, count, n)
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
	left    int    // occurrences not yet done, guarded by t.mu
	seq     uint64 // its place in t.pending, 0: not there (no resourceVersion)
}

// begin is Begin keeping the update's state in u (which may be nil when n
// is 0); it returns false when there is nothing to wait for (n is 0: the
// update is done already).
func (t *Tracker) begin(u *trackedUpdate, uid string, rv uint64, created time.Time, count int32, n int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if rv > t.maxSeen {
		t.maxSeen = rv
	}
	if n == 0 {
		t.markDone(uid, rv, created, count)
		return false
	}
	*u = trackedUpdate{t: t, uid: uid, rv: rv, created: created, count: count, left: n}
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
		t.markDone(u.uid, u.rv, u.created, u.count)
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

func (t *Tracker) markDone(uid string, rv uint64, created time.Time, count int32) {
	r := refOf(uid)
	e, _ := t.done.getRef(r)
	if count > e.count {
		e.count = count
	}
	if rv > e.rv {
		e.rv = rv
	}
	if !created.IsZero() {
		e.created = created.Unix()
	}
	t.done.setRef(r, e)
	t.changed = true
}

// Forget drops an Event deleted from the API server.
func (t *Tracker) Forget(uid string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done.remove(uid) {
		t.changed = true
	}
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
	for r, e := range t.done.all() {
		if e.count <= 1 && e.rv != 0 && e.rv <= w && e.created < prune {
			t.done.removeRef(r)
		}
	}
	if t.done.len() > t.maxEntries {
		t.shrinkLocked()
	}
	cp := &Checkpoint{Watermark: w, PruneBefore: time.Unix(prune, 0).UTC(), Done: make(map[string]int32, t.done.len()), Saved: now}
	for r, e := range t.done.all() {
		cp.Done[r.String()] = e.count
	}
	changed := t.changed
	t.changed = false
	return cp, changed
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
	sort.Slice(all, func(i, j int) bool { return all[i].e.rv < all[j].e.rv })
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
