package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
	"github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

// pipeline joins the stages after watch: the causality engine assigns each
// occurrence its trace and span, then spans and the log record go out. The
// engine is single-threaded; the mutex serializes the watch worker, the
// ticker and root deletions seen by the object cache.
type pipeline struct {
	objects  *watch.ObjectCache
	mu       sync.Mutex
	engine   *causality.Engine
	emitSpan func(ctx context.Context, s causality.Span, ack func()) error
	emitLog  func(ctx context.Context, o *convert.Occurrence, ack func()) error
	// side are the alert sinks (DingTalk, Kafka); each filters for itself.
	side []sideSink
	acks sync.Pool // of *ackJoin
}

// sideSink is an alert output that takes occurrences with their trace IDs.
type sideSink interface {
	Emit(ctx context.Context, o *convert.Occurrence, ack func()) error
}

// occurrence runs one occurrence through the engine and emits its outputs:
// first the spans that are ready, then the alerts and the log record linked
// to its span. When every output has acknowledged the occurrence (its own
// event span, its log record, each side-sink), the watch's done callback
// runs, and the checkpoint may move past it.
func (p *pipeline) occurrence(ctx context.Context, o *convert.Occurrence) error {
	in := causality.Input{Occ: o, Now: o.Observed}
	if n := len(o.Chain); n > 0 && o.Chain[n-1].UID != "" {
		if gen, tp, ok := p.objects.Root(o.Chain[n-1].UID); ok {
			in.RootGeneration, in.RootTraceparent = gen, tp
		}
	}
	p.mu.Lock()
	res := p.engine.Observe(in)
	p.mu.Unlock()
	o.TraceID, o.SpanID = res.TraceID, res.SpanID

	join := p.join(watch.DoneFromContext(ctx)) // held until every output has been handed the occurrence
	ack := join.ack
	for i := range res.Spans {
		s := res.Spans[i]
		a := noAck
		if s.Kind == causality.KindEvent && s.SpanID == res.SpanID {
			join.left.Add(1)
			a = ack
		}
		if p.emitSpan != nil {
			if err := p.emitSpan(ctx, s, a); err != nil {
				return err
			}
		} else {
			a()
		}
	}
	for _, s := range p.side {
		join.left.Add(1)
		if err := s.Emit(ctx, o, ack); err != nil {
			return err
		}
	}
	if p.emitLog != nil {
		join.left.Add(1)
		if err := p.emitLog(ctx, o, ack); err != nil {
			return err
		}
	}
	ack()
	return nil
}

func noAck() {}

// ackJoin runs done once every output it was handed to has acked. Joins
// are pooled because there is one per occurrence: a closure over a counter
// was two allocations each. Each ack runs exactly once per left.Add(1) (the
// sinks' contract), on any goroutine; the last one returns the join.
type ackJoin struct {
	left atomic.Int32
	done func()
	ack  func() // release, bound once: handing it out does not allocate
	pool *sync.Pool
}

// join takes a join from the pool holding one count (the caller's: it
// acks after handing the occurrence to every output).
func (p *pipeline) join(done func()) *ackJoin {
	j, _ := p.acks.Get().(*ackJoin)
	if j == nil {
		j = &ackJoin{pool: &p.acks}
		j.ack = j.release
	}
	j.done = done
	j.left.Store(1)
	return j
}

func (j *ackJoin) release() {
	if j.left.Add(-1) != 0 {
		return
	}
	done := j.done
	j.done = nil
	j.pool.Put(j) // from here on another occurrence may hold j
	done()
}

func (p *pipeline) spans(ctx context.Context, spans []causality.Span) error {
	if p.emitSpan == nil {
		return nil
	}
	for i := range spans {
		if err := p.emitSpan(ctx, spans[i], noAck); err != nil {
			return err
		}
	}
	return nil
}

// advance closes idle and overlong episodes at now.
func (p *pipeline) advance(ctx context.Context, now time.Time) error {
	p.mu.Lock()
	spans := p.engine.Advance(now)
	p.mu.Unlock()
	return p.spans(ctx, spans)
}

// deleted closes the episode of a deleted root object.
func (p *pipeline) deleted(ctx context.Context, o *watch.Object) error {
	if o.Deleted.IsZero() {
		return nil
	}
	p.mu.Lock()
	spans := p.engine.RootDeleted(o.UID, o.Deleted)
	p.mu.Unlock()
	return p.spans(ctx, spans)
}

// flush closes every episode (shutdown, end of replay).
func (p *pipeline) flush(ctx context.Context) error {
	p.mu.Lock()
	spans := p.engine.Flush()
	p.mu.Unlock()
	return p.spans(ctx, spans)
}

// stats reads the engine's counters under the lock.
func (p *pipeline) stats() causality.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.engine.Stats()
}
