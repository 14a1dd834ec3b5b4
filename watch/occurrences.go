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
	events map[string]eventState // by UID
	gone   int                   // entries marked gone
}

// eventState is what the bridge keeps of one live Event.
type eventState struct {
	// uid is the entry's key, a string of the table's own: an entry is
	// updated with m[st.uid] = st, which keeps that key (an assignment
	// with another string equal to it would store that one instead, and a
	// decoded Event's strings share one allocation with its note).
	uid  string
	last int32 // the highest count emitted
	// gone: the API server deleted the Event; the worker drops the entry
	// (Forget) when it gets to the deletion, after any update still queued.
	gone bool
	// seen: a watch or list saw the Event (see); rv is the resourceVersion
	// it last saw (packRV), or 0 with rvText holding it.
	seen   bool
	rv     uint64
	rvText string
}

// NewDedup returns an empty Dedup.
func NewDedup() *Dedup { return &Dedup{events: map[string]eventState{}} }

// entry returns uid's entry, a new one (not stored yet) when there is none.
func (d *Dedup) entry(uid string) eventState {
	if st, ok := d.events[uid]; ok {
		return st
	}
	return eventState{uid: strings.Clone(uid)}
}

// Next records that the Event uid now has count and returns the range of
// counts not emitted before (from..to inclusive); from > to when none.
// A count below the last one (an Event recreated under the same UID cannot
// happen; a reporter resetting its count can) is ignored.
func (d *Dedup) Next(uid string, count int32) (from, to int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.entry(uid)
	last := st.last
	if count <= last {
		return last + 1, last
	}
	st.last = count
	d.events[st.uid] = st
	return last + 1, count
}

// Baseline marks counts up to count as already emitted.
func (d *Dedup) Baseline(uid string, count int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.entry(uid)
	if count > st.last {
		st.last = count
		d.events[st.uid] = st
	}
}

// Forget drops the Event's state (when the API server deleted it).
func (d *Dedup) Forget(uid string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if st, ok := d.events[uid]; ok {
		if st.gone {
			d.gone--
		}
		delete(d.events, uid)
	}
}

// Len is the number of Events tracked and not deleted.
func (d *Dedup) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.events) - d.gone
}

// see records that the watch saw the Event uid at resourceVersion rv. It
// returns the table's own copy of uid (for the Event to carry on, so that
// every map keys with it) and whether the Event is new or changed.
func (d *Dedup) see(uid, rv string) (own string, changed bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, had := d.events[uid]
	if !had {
		st = eventState{uid: strings.Clone(uid)}
	}
	if n, ok := packNumericRV(rv); ok {
		changed = !st.seen || st.rv != n || st.rvText != ""
		st.rv, st.rvText = n, ""
	} else if changed = !st.seen || st.rv != 0 || st.rvText != rv; changed {
		st.rv, st.rvText = 0, strings.Clone(rv)
	}
	if changed {
		st.seen = true
		d.events[st.uid] = st
	}
	return st.uid, changed
}

// markGone marks the Event uid deleted; the worker forgets it when it gets
// to the deletion (Forget).
func (d *Dedup) markGone(uid string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if st, ok := d.events[uid]; ok && !st.gone {
		st.gone = true
		d.gone++
		d.events[st.uid] = st
	}
}

// markGoneExcept marks deleted every Event a watch saw that is not in keep
// (keyed by the table's own UIDs) nor marked already, and returns their
// UIDs: a list ended without them.
func (d *Dedup) markGoneExcept(keep map[string]struct{}) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var gone []string
	for uid, st := range d.events {
		if _, ok := keep[uid]; ok || st.gone || !st.seen {
			continue
		}
		st.gone = true
		d.gone++
		d.events[uid] = st
		gone = append(gone, uid)
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
