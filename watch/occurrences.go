package watch

import (
	"fmt"
	"sync"
	"time"

	eventsv1 "k8s.io/api/events/v1"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// Dedup remembers, per Event UID, the highest count already emitted, so that
// each count becomes exactly one occurrence however often the Event object is
// updated, relisted or resent.
type Dedup struct {
	mu   sync.Mutex
	last map[string]int32
}

// NewDedup returns an empty Dedup.
func NewDedup() *Dedup { return &Dedup{last: map[string]int32{}} }

// Next records that the Event uid now has count and returns the range of
// counts not emitted before (from..to inclusive); from > to when none.
// A count below the last one (an Event recreated under the same UID cannot
// happen; a reporter resetting its count can) is ignored.
func (d *Dedup) Next(uid string, count int32) (from, to int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	last := d.last[uid]
	if count <= last {
		return last + 1, last
	}
	d.last[uid] = count
	return last + 1, count
}

// Baseline marks counts up to count as already emitted.
func (d *Dedup) Baseline(uid string, count int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if count > d.last[uid] {
		d.last[uid] = count
	}
}

// Forget drops the Event's state (when the API server deleted it).
func (d *Dedup) Forget(uid string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.last, uid)
}

// Len is the number of Events tracked.
func (d *Dedup) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.last)
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
