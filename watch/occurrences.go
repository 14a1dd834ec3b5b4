package watch

import (
	"fmt"
	"strings"
	"sync"
	"time"

	eventsv1 "k8s.io/api/events/v1"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// Dedup tracks, per Event UID, the counts already emitted. The
// EventSource's store keeps in the same table what the watch last saw of
// each Event (its resourceVersion) and whether the API server deleted it:
// one entry per live Event, looked up by the reflector and then by the
// worker, instead of two maps (and their growth) of every live Event.
type Dedup struct {
	mu     sync.Mutex
	events uidTable[eventState]
	// rvText holds the resourceVersions that are not numbers (see
	// eventState.rv); etcd's always are.
	rvText uidTable[string]
	gone   int // entries marked gone
}

// eventState is what the bridge keeps of one live Event: 16 bytes and no
// pointer (with its 16-byte key, see uidTable).
type eventState struct {
	// rv is the resourceVersion a watch or list last saw (packNumericRV),
	// 0 with the Dedup's rvText holding it when it is not a number.
	rv   uint64
	last int32 // the highest count emitted
	// seen: a watch or list saw the Event (see).
	seen bool
	// gone: the API server deleted the Event; the worker drops the entry
	// (Forget) when it gets to the deletion, after any update still queued.
	gone bool
}

// NewDedup returns an empty Dedup.
func NewDedup() *Dedup {
	d := &Dedup{}
	d.events.shrinks = true
	return d
}

// Next records that the Event uid now has count and returns the range of
// counts not emitted before (from..to inclusive); from > to when none.
// A count below the last one (an Event recreated under the same UID cannot
// happen; a reporter resetting its count can) is ignored.
func (d *Dedup) Next(uid string, count int32) (from, to int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := refOf(uid)
	st, _ := d.events.getRef(r)
	last := st.last
	if count <= last {
		return last + 1, last
	}
	st.last = count
	d.events.setRef(r, st)
	return last + 1, count
}

// Baseline marks counts up to count as already emitted.
func (d *Dedup) Baseline(uid string, count int32) {
	if count <= 0 {
		// Nothing to mark (a new Event's count 1 less one, a checkpoint
		// that knows none of it): no lookup in the table of every live
		// Event, a cache miss on a large one.
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	r := refOf(uid)
	if st, _ := d.events.getRef(r); count > st.last {
		st.last = count
		d.events.setRef(r, st)
	}
}

// Last is the highest count of the Event emitted, 0 for none.
func (d *Dedup) Last(uid string) int32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, _ := d.events.get(uid)
	return st.last
}

// Forget drops the Event's state (when the API server deleted it).
func (d *Dedup) Forget(uid string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.forgetLocked(refOf(uid))
}

func (d *Dedup) forgetLocked(r uidRef) {
	st, ok := d.events.getRef(r)
	if !ok {
		return
	}
	if st.gone {
		d.gone--
	}
	if st.seen && st.rv == 0 {
		d.rvText.removeRef(r)
	}
	d.events.removeRef(r)
}

// Len is the number of Events tracked and not deleted.
func (d *Dedup) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.events.len() - d.gone
}

// see records that the watch saw the Event uid at resourceVersion rv and
// reports whether the Event is new or changed.
func (d *Dedup) see(uid, rv string) (changed bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := refOf(uid)
	st, _ := d.events.getRef(r)
	wasText := st.seen && st.rv == 0
	if n, ok := packNumericRV(rv); ok {
		changed = !st.seen || st.rv != n
		if wasText {
			d.rvText.removeRef(r)
		}
		st.rv = n
	} else {
		var prev string
		if wasText {
			prev, _ = d.rvText.getRef(r)
		}
		if changed = !wasText || prev != rv; changed {
			st.rv = 0
			d.rvText.setRef(r, strings.Clone(rv))
		}
	}
	if changed {
		st.seen = true
		d.events.setRef(r, st)
	}
	return changed
}

// markGone marks the Event uid deleted; the worker forgets it when it gets
// to the deletion (Forget).
func (d *Dedup) markGone(uid string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := refOf(uid)
	if st, ok := d.events.getRef(r); ok && !st.gone {
		st.gone = true
		d.gone++
		d.events.setRef(r, st)
	}
}

// markGoneExcept marks deleted every Event a watch saw that is not in keep
// nor marked already, and returns their UIDs: a list ended without them.
func (d *Dedup) markGoneExcept(keep *uidTable[struct{}]) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var gone []string
	for r, st := range d.events.all() {
		if _, ok := keep.getRef(r); ok || st.gone || !st.seen {
			continue
		}
		st.gone = true
		d.gone++
		d.events.setRef(r, st)
		gone = append(gone, r.String())
	}
	return gone
}

// MaxBackfill bounds the occurrences one observation of an Event yields.
const MaxBackfill = 1000

// Occurrences turns one observation of an Event into the occurrences not
// emitted before: one per new count. When several counts were missed (the
// bridge was down, or the watch relisted), each gets its own occurrence; the
// API only keeps the latest time, which the missed ones share.
func Occurrences(d *Dedup, ev *eventsv1.Event, observed time.Time, opts convert.Options) ([]convert.Occurrence, error) {
	if ev == nil {
		return nil, fmt.Errorf("nil event")
	}
	from, to := newCounts(d, string(ev.UID), convert.EventCount(ev))
	if from > to {
		return nil, nil
	}
	out := make([]convert.Occurrence, 0, to-from+1)
	for n := from; n <= to; n++ {
		o, err := convert.FromEvent(ev, n, observed, opts)
		if err != nil {
			return nil, fmt.Errorf("event %s/%s: %w", ev.Namespace, ev.Name, err)
		}
		out = append(out, o)
	}
	return out, nil
}

// newCounts records that the Event uid now has count and returns the counts
// to emit (from..to inclusive; from > to when none): those not emitted
// before, at most MaxBackfill of them.
func newCounts(d *Dedup, uid string, count int32) (from, to int32) {
	from, to = d.Next(uid, count)
	if from <= to && to-from >= MaxBackfill {
		// An Event first seen with a huge count (a long-running repeat
		// before the bridge started, or a bogus count) yields its latest
		// MaxBackfill occurrences; older counts are history, not news.
		from = to - MaxBackfill + 1
	}
	return from, to
}
