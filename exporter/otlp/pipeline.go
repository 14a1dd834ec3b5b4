package otlp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Retry backoff of the sinks: exponential from minRetryBackoff, doubling,
// capped at maxRetryBackoff, with ±20% jitter. A collector's RetryInfo may ask
// for a longer wait, honored up to maxThrottle.
const (
	minRetryBackoff = 100 * time.Millisecond
	maxRetryBackoff = 5 * time.Second
	maxThrottle     = time.Minute
	// warnEvery limits "still failing" warnings while retrying.
	warnEvery = 30 * time.Second
)

// ErrSinkClosed is returned by Emit (of a LogSink or a TraceSink) after
// Shutdown started.
var ErrSinkClosed = errors.New("otlp: sink is shut down")

// Stats are the counters of a LogSink or a TraceSink. An item is a log record
// or a span.
type Stats struct {
	// Exported is the number of items the collector accepted (and that
	// were acknowledged); ExportedBatches the number of successful export
	// requests.
	Exported, ExportedBatches uint64
	// FailedAttempts counts export requests that failed (every retry counts).
	FailedAttempts uint64
	// Rejected counts items the collector refused permanently
	// (InvalidArgument): they are acknowledged but not delivered.
	Rejected uint64
	// ConsecutiveFailures is the number of failed attempts of the batch
	// currently being exported (0 when the last attempt succeeded).
	ConsecutiveFailures uint64
	// QueueDepth is the number of items emitted but not yet acknowledged,
	// including the batch being exported; QueueCapacity is its maximum.
	QueueDepth, QueueCapacity int
}

// signal names what a pipeline carries, for its log messages and errors.
type signal struct {
	name     string // "log", "trace": "OTLP log export failed"
	item     string // "log record", "span": "rejected a log record"
	items    string // "log records", "spans": "rejected some log records"
	countKey string // "records", "spans": log attribute key and shutdown error
}

// pipeline is the delivery machinery shared by LogSink and TraceSink: a
// bounded queue of items of type T with their acks, cut into batches by one
// worker goroutine and handed to export, retried until accepted, then
// acknowledged in order. See LogSink for the guarantees.
type pipeline[T any] struct {
	sig          signal
	export       func(context.Context, []T) error
	shutdownExp  func(context.Context) error // shuts the exporter down
	describe     func(T) []any               // log attributes of a rejected item
	log          *slog.Logger
	batchSize    int
	batchTimeout time.Duration
	batchMinAge  time.Duration

	slots   chan struct{} // one token per unacknowledged item
	closing chan struct{} // closed when Shutdown starts
	wake    chan struct{} // nudges the worker (capacity 1)
	done    chan struct{} // closed when the worker returned

	abortCtx context.Context // canceled to abandon in-flight exports
	abort    context.CancelFunc

	mu       sync.Mutex
	closed   bool
	queue    []queued[T]
	seq      uint64        // sequence number of the last enqueued item
	taken    uint64        // sequence number of the last item handed to the worker
	acked    uint64        // sequence number of the last acknowledged item
	flushTo  uint64        // export eagerly up to this sequence number
	progress chan struct{} // closed and replaced whenever acked advances

	shutdownOnce sync.Once
	shutdownErr  error

	exported, batches, failed, rejected, consecutive atomic.Uint64

	// Buffers of the worker goroutine (run, deliver), reused per batch.
	batchBuf []queued[T]
	itemsBuf []T
}

type queued[T any] struct {
	item T
	ack  func()
	seq  uint64
	at   time.Time
}

// newPipeline starts a pipeline exporting with export. shutdownExp is called once
// at the end of shutdown to release the exporter; describe returns slog
// attributes identifying an item in the log line about its rejection. cfg
// supplies QueueSize, BatchSize and BatchTimeout (zero values get the
// defaults); logger must not be nil.
func newPipeline[T any](sig signal, export func(context.Context, []T) error, shutdownExp func(context.Context) error,
	describe func(T) []any, cfg Config, logger *slog.Logger) *pipeline[T] {
	cfg = cfg.withDefaults()
	p := &pipeline[T]{
		sig:          sig,
		export:       export,
		shutdownExp:  shutdownExp,
		describe:     describe,
		log:          logger,
		batchSize:    cfg.BatchSize,
		batchTimeout: cfg.BatchTimeout,
		batchMinAge:  cfg.BatchMinAge,
		slots:        make(chan struct{}, cfg.QueueSize),
		closing:      make(chan struct{}),
		wake:         make(chan struct{}, 1),
		done:         make(chan struct{}),
		progress:     make(chan struct{}),
	}
	p.abortCtx, p.abort = context.WithCancel(context.Background())
	go p.run()
	return p
}

// acquire takes a queue slot for one item, blocking while the queue is full.
// It returns ctx's error if ctx ends first, or ErrSinkClosed if Shutdown
// starts. After a nil error the caller must either enqueue an item or
// release the slot.
func (p *pipeline[T]) acquire(ctx context.Context) error {
	select {
	case <-p.closing:
		return ErrSinkClosed
	default:
	}
	select {
	case p.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-p.closing:
		return ErrSinkClosed
	}
}

// release gives back a slot taken by acquire for an item that was not
// enqueued.
func (p *pipeline[T]) release() { <-p.slots }

// enqueue queues item, for which acquire took a slot. It reports false, and
// queues nothing, when Shutdown started: the worker may be gone.
func (p *pipeline[T]) enqueue(item T, ack func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.seq++
	now := time.Now()
	p.queue = append(p.queue, queued[T]{item: item, ack: ack, seq: p.seq, at: now})
	switch {
	case len(p.queue) >= p.batchSize || len(p.queue) == 1:
		p.signal()
	case p.flushTo <= p.taken && now.Sub(p.queue[0].at) >= p.batchMinAge:
		// Old enough: export now, while the process is awake anyway
		// (see Config.BatchMinAge), everything queued so far.
		p.flushTo = p.seq
		p.signal()
	}
	return true
}

// emit is acquire and enqueue: the whole of Emit for a sink that needs no
// work in between.
func (p *pipeline[T]) emit(ctx context.Context, item T, ack func()) error {
	if err := p.acquire(ctx); err != nil {
		return err
	}
	if !p.enqueue(item, ack) {
		p.release()
		return ErrSinkClosed
	}
	return nil
}

func (p *pipeline[T]) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// forceFlush implements the sinks' ForceFlush.
func (p *pipeline[T]) forceFlush(ctx context.Context) error {
	p.mu.Lock()
	target := p.seq
	p.flushTo = max(p.flushTo, target)
	p.mu.Unlock()
	p.signal()
	for {
		p.mu.Lock()
		acked, progress := p.acked, p.progress
		p.mu.Unlock()
		if acked >= target {
			return nil
		}
		select {
		case <-progress:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
			return ErrSinkClosed
		}
	}
}

// shutdown implements the sinks' Shutdown.
func (p *pipeline[T]) shutdown(ctx context.Context) error {
	p.shutdownOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		close(p.closing)
		p.signal()

		var err error
		select {
		case <-p.done:
		case <-ctx.Done():
			p.abort()
			<-p.done
			p.mu.Lock()
			n := p.seq - p.acked
			p.mu.Unlock()
			if n > 0 {
				err = fmt.Errorf("otlp: %s sink shut down with %d %s not delivered: %w",
					p.sig.name, n, p.sig.countKey, context.Cause(ctx))
			}
		}
		p.abort()
		// The exporter closes its connection even when the context has
		// ended; give it a moment of its own so a late Shutdown still does.
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if e := p.shutdownExp(ectx); e != nil {
			err = errors.Join(err, fmt.Errorf("otlp: exporter shutdown: %w", e))
		}
		p.shutdownErr = err
	})
	return p.shutdownErr
}

// stats implements the sinks' Stats.
func (p *pipeline[T]) stats() Stats {
	return Stats{
		Exported:            p.exported.Load(),
		ExportedBatches:     p.batches.Load(),
		FailedAttempts:      p.failed.Load(),
		Rejected:            p.rejected.Load(),
		ConsecutiveFailures: p.consecutive.Load(),
		QueueDepth:          len(p.slots),
		QueueCapacity:       cap(p.slots),
	}
}

// run is the worker: it cuts batches and exports them one at a time, in order.
func (p *pipeline[T]) run() {
	defer close(p.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		p.mu.Lock()
		for !p.readyLocked() {
			if len(p.queue) == 0 && p.closed {
				p.mu.Unlock()
				return
			}
			var deadline <-chan time.Time
			if len(p.queue) > 0 {
				timer.Reset(time.Until(p.queue[0].at.Add(p.batchTimeout)))
				deadline = timer.C
			}
			p.mu.Unlock()
			select {
			case <-p.wake:
			case <-deadline:
			case <-p.abortCtx.Done():
				return
			}
			timer.Stop()
			p.mu.Lock()
		}
		n := min(len(p.queue), p.batchSize)
		// The worker's own buffer: a batch is done with (acknowledged or
		// abandoned) before the next one is cut.
		batch := append(p.batchBuf[:0], p.queue[:n]...)
		p.batchBuf = batch
		// Shift instead of reslicing so the backing array does not grow
		// without bound.
		rest := copy(p.queue, p.queue[n:])
		clear(p.queue[rest:])
		p.queue = p.queue[:rest]
		p.taken = batch[n-1].seq
		p.mu.Unlock()

		ok := p.deliver(batch)
		clear(batch) // keep no items alive until the next batch
		clear(p.itemsBuf)
		if !ok {
			return // aborted by Shutdown
		}
	}
}

// readyLocked reports whether a batch should be exported now.
func (p *pipeline[T]) readyLocked() bool {
	n := len(p.queue)
	switch {
	case n == 0:
		return false
	case n >= p.batchSize, p.closed, p.flushTo > p.taken:
		return true
	}
	return !time.Now().Before(p.queue[0].at.Add(p.batchTimeout))
}

// deliver exports batch, retrying until it is accepted. It returns false
// when the pipeline was aborted before that.
func (p *pipeline[T]) deliver(batch []queued[T]) bool {
	// Reused: when a batch is split, each half is delivered after the
	// previous call stopped using the buffer.
	items := p.itemsBuf[:0]
	for i := range batch {
		items = append(items, batch[i].item)
	}
	p.itemsBuf = items
	var (
		attempt    int
		firstFail  time.Time
		lastWarned time.Time
	)
	for {
		err := p.export(p.abortCtx, items)
		if err == nil || partialSuccessOnly(err) {
			if err != nil {
				// The collector took the request and decided about each
				// item; resending would not change that.
				p.log.Warn("OTLP collector rejected some "+p.sig.items, p.sig.countKey, len(batch), "error", err)
			}
			if attempt > 0 {
				p.log.Info("OTLP "+p.sig.name+" export recovered", "attempts", attempt+1, "after", time.Since(firstFail).Round(time.Millisecond))
			}
			p.consecutive.Store(0)
			p.batches.Add(1)
			p.exported.Add(uint64(len(batch)))
			p.complete(batch)
			return true
		}

		if p.abortCtx.Err() != nil {
			return false // abandoned by Shutdown: not delivered, not acknowledged
		}
		p.failed.Add(1)
		p.consecutive.Add(1)
		if permanent(err) {
			p.consecutive.Store(0)
			if len(batch) > 1 {
				// Find the offending item(s): export each half on its own.
				h := len(batch) / 2
				return p.deliver(batch[:h]) && p.deliver(batch[h:])
			}
			p.log.Error("OTLP collector permanently rejected a "+p.sig.item+"; dropping it",
				append([]any{"error", err}, p.describe(batch[0].item)...)...)
			p.rejected.Add(1)
			p.complete(batch)
			return true
		}

		delay := backoffDelay(attempt, err)
		now := time.Now()
		if attempt == 0 {
			firstFail = now
		}
		if now.Sub(lastWarned) >= warnEvery {
			lastWarned = now
			p.log.Warn("OTLP "+p.sig.name+" export failed; retrying until the collector accepts it",
				p.sig.countKey, len(batch), "attempt", attempt+1, "failing_for", now.Sub(firstFail).Round(time.Millisecond),
				"next_retry_in", delay.Round(time.Millisecond), "error", err)
		} else {
			p.log.Debug("OTLP "+p.sig.name+" export failed", p.sig.countKey, len(batch), "attempt", attempt+1, "error", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-p.abortCtx.Done():
			t.Stop()
			return false
		}
		attempt++
	}
}

// complete acknowledges batch and frees its queue slots.
func (p *pipeline[T]) complete(batch []queued[T]) {
	for _, q := range batch {
		if q.ack != nil {
			q.ack()
		}
		<-p.slots
	}
	p.mu.Lock()
	p.acked = batch[len(batch)-1].seq
	close(p.progress)
	p.progress = make(chan struct{})
	p.mu.Unlock()
}

// backoffDelay is the wait before retry number attempt+1.
func backoffDelay(attempt int, err error) time.Duration {
	d := maxRetryBackoff
	if attempt < 16 {
		d = min(minRetryBackoff<<attempt, maxRetryBackoff)
	}
	// ±20% jitter so that many bridges do not retry in lockstep.
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	if t := throttle(err); t > d {
		d = min(t, maxThrottle)
	}
	return d
}

// throttle returns the delay a collector asked for with RetryInfo, if any.
func throttle(err error) time.Duration {
	st, ok := status.FromError(err)
	if !ok {
		return 0
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// permanent reports whether err means that this data can never be accepted,
// so that retrying it is pointless. Everything else (Unavailable, deadlines,
// ResourceExhausted, but also Unauthenticated, PermissionDenied or
// Unimplemented, which an operator can fix on either side) is retried.
func permanent(err error) bool {
	if st, ok := status.FromError(err); ok {
		return st.Code() == codes.InvalidArgument
	}
	// The exporter refuses to send a request above its size limit.
	return strings.Contains(err.Error(), "request message too large")
}

// partialSuccessOnly reports whether err is (or wraps only) OTLP partial
// success errors: the collector accepted the request but refused some items.
func partialSuccessOnly(err error) bool {
	if errs, ok := err.(interface{ Unwrap() []error }); ok {
		list := errs.Unwrap()
		if len(list) == 0 {
			return false
		}
		for _, e := range list {
			if !partialSuccessOnly(e) {
				return false
			}
		}
		return true
	}
	var ps *PartialSuccessError
	return errors.As(err, &ps)
}
