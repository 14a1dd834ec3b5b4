package watch

import (
	"sync/atomic"
	"time"
)

// deliveryBuckets are the upper bounds, in seconds, of the delivery-time
// histogram: from the watch handing an Event update to the bridge until
// every output acknowledged its occurrence. Under 1 s is the normal case
// (the read delay plus the batch timeout); minutes mean a collector outage
// or backpressure.
// An array, not a slice: nothing can change it, and its length sizes the
// counters.
var deliveryBuckets = [...]float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// latency is a fixed-bucket histogram updated with atomics: the acks that
// observe it run on the outputs' goroutines.
type latency struct {
	counts [len(deliveryBuckets) + 1]atomic.Uint64 // per bucket (not cumulative); the last is +Inf
	sumNs  atomic.Int64
}

func (l *latency) observe(d time.Duration) {
	if d < 0 {
		d = 0 // a clock step back
	}
	s := d.Seconds()
	i := 0
	for i < len(deliveryBuckets) && s > deliveryBuckets[i] {
		i++
	}
	l.counts[i].Add(1)
	l.sumNs.Add(int64(d))
}

// Histogram is a snapshot of a latency histogram in Prometheus' terms.
type Histogram struct {
	// Cumulative counts by upper bound (deliveryBuckets), Count and Sum
	// (seconds) over all observations.
	Cumulative map[float64]uint64
	Count      uint64
	Sum        float64
}

func (l *latency) snapshot() Histogram {
	h := Histogram{Cumulative: make(map[float64]uint64, len(deliveryBuckets))}
	for i, ub := range deliveryBuckets {
		h.Count += l.counts[i].Load()
		h.Cumulative[ub] = h.Count
	}
	h.Count += l.counts[len(deliveryBuckets)].Load()
	h.Sum = time.Duration(l.sumNs.Load()).Seconds()
	return h
}
