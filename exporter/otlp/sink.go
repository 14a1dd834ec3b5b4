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

	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ScopeName is the instrumentation scope of log records sent by a LogSink.
const ScopeName = "github.com/kube-otel-bridge/kube-otel-bridge"

// Retry backoff of LogSink: exponential from minRetryBackoff, doubling, capped
// at maxRetryBackoff, with ±20% jitter. A collector's RetryInfo may ask for a
// longer wait, honored up to maxThrottle.
const (
	minRetryBackoff = 100 * time.Millisecond
	maxRetryBackoff = 5 * time.Second
	maxThrottle     = time.Minute
	// warnEvery limits "still failing" warnings while retrying.
	warnEvery = 30 * time.Second
)

// ErrSinkClosed is returned by Emit after Shutdown started.
var ErrSinkClosed = errors.New("otlp: log sink is shut down")

// Stats are LogSink counters.
type Stats struct {
	// Exported is the number of records the collector accepted (and that
	// were acknowledged); ExportedBatches the number of successful export
	// requests.
	Exported, ExportedBatches uint64
	// FailedAttempts counts export requests that failed (every retry counts).
	FailedAttempts uint64
	// Rejected counts records the collector refused permanently
	// (InvalidArgument): they are acknowledged but not delivered.
	Rejected uint64
	// ConsecutiveFailures is the number of failed attempts of the batch
	// currently being exported (0 when the last attempt succeeded).
	ConsecutiveFailures uint64
	// QueueDepth is the number of records emitted but not yet acknowledged,
	// including the batch being exported; QueueCapacity is its maximum.
	QueueDepth, QueueCapacity int
}

// LogSink delivers log records to an sdklog.Exporter with at-least-once
// semantics:
//
//   - Emit blocks while QueueSize records are unacknowledged (backpressure);
//     nothing is ever dropped for lack of room.
//   - Records are exported in order, in batches of up to BatchSize, at the
//     latest BatchTimeout after the oldest one was emitted.
//   - A failed batch is retried with capped exponential backoff until it is
//     accepted or the sink is shut down; there is no retry limit.
//   - ack is called for a record once the collector accepted its batch (a
//     partial success counts as accepted). A record the collector rejects as
//     invalid (InvalidArgument, after narrowing the batch down to that one
//     record) is logged, counted in Stats.Rejected and acknowledged too:
//     retrying it can never succeed and would stall the pipeline.
//   - A timed-out attempt may have reached the collector, so retries can
//     deliver duplicates.
type LogSink struct {
	exp          sdklog.Exporter
	provider     *sdklog.LoggerProvider
	logger       log.Logger
	log          *slog.Logger
	batchSize    int
	batchTimeout time.Duration

	slots   chan struct{} // one token per unacknowledged record
	closing chan struct{} // closed when Shutdown starts
	wake    chan struct{} // nudges the worker (capacity 1)
	done    chan struct{} // closed when the worker returned

	abortCtx context.Context // canceled to abandon in-flight exports
	abort    context.CancelFunc

	mu       sync.Mutex
	closed   bool
	queue    []queued
	seq      uint64        // sequence number of the last enqueued record
	taken    uint64        // sequence number of the last record handed to the worker
	acked    uint64        // sequence number of the last acknowledged record
	flushTo  uint64        // export eagerly up to this sequence number
	progress chan struct{} // closed and replaced whenever acked advances

	shutdownOnce sync.Once
	shutdownErr  error

	exported, batches, failed, rejected, consecutive atomic.Uint64
}

type queued struct {
	rec sdklog.Record
	ack func()
	seq uint64
	at  time.Time
}

// emitToken carries the ack from Emit through the SDK to the processor.
type emitToken struct {
	ack    func()
	queued bool
}

type tokenKey struct{}

// NewLogSink starts a sink exporting through exp. Records get resource res
// (nil: the SDK default, which reads OTEL_RESOURCE_ATTRIBUTES) and the scope
// ScopeName. The sink owns exp and shuts it down in Shutdown. cfg supplies
// QueueSize, BatchSize and BatchTimeout (zero values get the defaults).
func NewLogSink(exp sdklog.Exporter, res *resource.Resource, cfg Config, logger *slog.Logger) *LogSink {
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.Default()
	}
	s := &LogSink{
		exp:          exp,
		log:          logger,
		batchSize:    cfg.BatchSize,
		batchTimeout: cfg.BatchTimeout,
		slots:        make(chan struct{}, cfg.QueueSize),
		closing:      make(chan struct{}),
		wake:         make(chan struct{}, 1),
		done:         make(chan struct{}),
		progress:     make(chan struct{}),
	}
	s.abortCtx, s.abort = context.WithCancel(context.Background())
	opts := []sdklog.LoggerProviderOption{sdklog.WithProcessor(processor{s})}
	if res != nil {
		opts = append(opts, sdklog.WithResource(res))
	}
	s.provider = sdklog.NewLoggerProvider(opts...)
	s.logger = s.provider.Logger(ScopeName)
	go s.run()
	return s
}

// Emit queues rec for export and arranges for ack (may be nil) to be called
// once the collector accepted it. ack is called from the sink's goroutine, in
// emission order; it must be quick and must not call Emit.
//
// Emit blocks while the queue is full and then returns ctx's error if ctx
// ends first, or ErrSinkClosed if Shutdown starts. A nil error means the
// record is queued. To link the record to a span, put the span context in
// ctx (trace.ContextWithSpanContext): the SDK takes trace and span ID from
// there.
func (s *LogSink) Emit(ctx context.Context, rec log.Record, ack func()) error {
	select {
	case <-s.closing:
		return ErrSinkClosed
	default:
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return ErrSinkClosed
	}
	tok := &emitToken{ack: ack}
	s.logger.Emit(context.WithValue(ctx, tokenKey{}, tok), rec)
	if !tok.queued {
		<-s.slots
		return ErrSinkClosed
	}
	return nil
}

// enqueue is called by the processor, synchronously within Emit.
func (s *LogSink) enqueue(rec sdklog.Record, tok *emitToken) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return // the worker may be gone; Emit reports ErrSinkClosed
	}
	s.seq++
	s.queue = append(s.queue, queued{rec: rec, ack: tok.ack, seq: s.seq, at: time.Now()})
	tok.queued = true
	if len(s.queue) >= s.batchSize || len(s.queue) == 1 {
		s.signal()
	}
}

func (s *LogSink) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// ForceFlush exports everything emitted before the call without waiting for
// batches to fill and waits until it is acknowledged, ctx ends, or the sink
// is shut down.
func (s *LogSink) ForceFlush(ctx context.Context) error {
	s.mu.Lock()
	target := s.seq
	s.flushTo = max(s.flushTo, target)
	s.mu.Unlock()
	s.signal()
	for {
		s.mu.Lock()
		acked, progress := s.acked, s.progress
		s.mu.Unlock()
		if acked >= target {
			return nil
		}
		select {
		case <-progress:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return ErrSinkClosed
		}
	}
}

// Shutdown stops accepting records (blocked and later Emits return
// ErrSinkClosed), exports everything queued, retrying as usual, and shuts
// the exporter down. If ctx ends first, the export in progress is abandoned
// and the error tells how many records were not delivered (nor
// acknowledged). Later calls return the first call's result.
func (s *LogSink) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.closing)
		s.signal()

		var err error
		select {
		case <-s.done:
		case <-ctx.Done():
			s.abort()
			<-s.done
			s.mu.Lock()
			n := s.seq - s.acked
			s.mu.Unlock()
			if n > 0 {
				err = fmt.Errorf("otlp: log sink shut down with %d records not delivered: %w", n, context.Cause(ctx))
			}
		}
		s.abort()
		// Our processor does nothing on shutdown; this only releases the SDK.
		_ = s.provider.Shutdown(context.Background())
		// The exporter closes its connection even when the context has
		// ended; give it a moment of its own so a late Shutdown still does.
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if e := s.exp.Shutdown(ectx); e != nil {
			err = errors.Join(err, fmt.Errorf("otlp: exporter shutdown: %w", e))
		}
		s.shutdownErr = err
	})
	return s.shutdownErr
}

// Stats returns a snapshot of the sink's counters.
func (s *LogSink) Stats() Stats {
	return Stats{
		Exported:            s.exported.Load(),
		ExportedBatches:     s.batches.Load(),
		FailedAttempts:      s.failed.Load(),
		Rejected:            s.rejected.Load(),
		ConsecutiveFailures: s.consecutive.Load(),
		QueueDepth:          len(s.slots),
		QueueCapacity:       cap(s.slots),
	}
}

// run is the worker: it cuts batches and exports them one at a time, in order.
func (s *LogSink) run() {
	defer close(s.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		s.mu.Lock()
		for !s.readyLocked() {
			if len(s.queue) == 0 && s.closed {
				s.mu.Unlock()
				return
			}
			var deadline <-chan time.Time
			if len(s.queue) > 0 {
				timer.Reset(time.Until(s.queue[0].at.Add(s.batchTimeout)))
				deadline = timer.C
			}
			s.mu.Unlock()
			select {
			case <-s.wake:
			case <-deadline:
			case <-s.abortCtx.Done():
				return
			}
			timer.Stop()
			s.mu.Lock()
		}
		n := min(len(s.queue), s.batchSize)
		batch := make([]queued, n)
		copy(batch, s.queue)
		// Shift instead of reslicing so the backing array does not grow
		// without bound.
		rest := copy(s.queue, s.queue[n:])
		clear(s.queue[rest:])
		s.queue = s.queue[:rest]
		s.taken = batch[n-1].seq
		s.mu.Unlock()

		if !s.export(batch) {
			return // aborted by Shutdown
		}
	}
}

// readyLocked reports whether a batch should be exported now.
func (s *LogSink) readyLocked() bool {
	n := len(s.queue)
	switch {
	case n == 0:
		return false
	case n >= s.batchSize, s.closed, s.flushTo > s.taken:
		return true
	}
	return !time.Now().Before(s.queue[0].at.Add(s.batchTimeout))
}

// export delivers batch, retrying until it is accepted. It returns false
// when the sink was aborted before that.
func (s *LogSink) export(batch []queued) bool {
	recs := make([]sdklog.Record, len(batch))
	for i := range batch {
		recs[i] = batch[i].rec
	}
	var (
		attempt    int
		firstFail  time.Time
		lastWarned time.Time
	)
	for {
		err := s.exp.Export(s.abortCtx, recs)
		if err == nil || partialSuccessOnly(err) {
			if err != nil {
				// The collector took the request and decided about each
				// record; resending would not change that.
				s.log.Warn("OTLP collector rejected some log records", "records", len(batch), "error", err)
			}
			if attempt > 0 {
				s.log.Info("OTLP log export recovered", "attempts", attempt+1, "after", time.Since(firstFail).Round(time.Millisecond))
			}
			s.consecutive.Store(0)
			s.batches.Add(1)
			s.exported.Add(uint64(len(batch)))
			s.complete(batch)
			return true
		}

		if s.abortCtx.Err() != nil {
			return false // abandoned by Shutdown: not delivered, not acknowledged
		}
		s.failed.Add(1)
		s.consecutive.Add(1)
		if permanent(err) {
			s.consecutive.Store(0)
			if len(batch) > 1 {
				// Find the offending record(s): export each half on its own.
				h := len(batch) / 2
				return s.export(batch[:h]) && s.export(batch[h:])
			}
			s.log.Error("OTLP collector permanently rejected a log record; dropping it", "error", err,
				"timestamp", batch[0].rec.Timestamp(), "event_name", batch[0].rec.EventName())
			s.rejected.Add(1)
			s.complete(batch)
			return true
		}

		delay := backoffDelay(attempt, err)
		now := time.Now()
		if attempt == 0 {
			firstFail = now
		}
		if now.Sub(lastWarned) >= warnEvery {
			lastWarned = now
			s.log.Warn("OTLP log export failed; retrying until the collector accepts it",
				"records", len(batch), "attempt", attempt+1, "failing_for", now.Sub(firstFail).Round(time.Millisecond),
				"next_retry_in", delay.Round(time.Millisecond), "error", err)
		} else {
			s.log.Debug("OTLP log export failed", "records", len(batch), "attempt", attempt+1, "error", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.abortCtx.Done():
			t.Stop()
			return false
		}
		attempt++
	}
}

// complete acknowledges batch and frees its queue slots.
func (s *LogSink) complete(batch []queued) {
	for _, q := range batch {
		if q.ack != nil {
			q.ack()
		}
		<-s.slots
	}
	s.mu.Lock()
	s.acked = batch[len(batch)-1].seq
	close(s.progress)
	s.progress = make(chan struct{})
	s.mu.Unlock()
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

// partialSuccessOnly reports whether err consists only of OTLP partial
// success errors, which the exporter returns when the collector accepted the
// request but refused some records. The exporter's error type is internal, so
// it is recognized by its message.
func partialSuccessOnly(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		if len(errs) == 0 {
			return false
		}
		for _, e := range errs {
			if !partialSuccessOnly(e) {
				return false
			}
		}
		return true
	}
	return strings.HasPrefix(err.Error(), "OTLP partial success")
}

// processor hands records from the SDK to the LogSink queue.
type processor struct{ s *LogSink }

func (processor) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }

func (p processor) OnEmit(ctx context.Context, r *sdklog.Record) error {
	tok, ok := ctx.Value(tokenKey{}).(*emitToken)
	if !ok {
		return errors.New("otlp: log record not emitted through LogSink.Emit")
	}
	// The SDK reuses r after OnEmit returns.
	p.s.enqueue(r.Clone(), tok)
	return nil
}

func (processor) Shutdown(context.Context) error   { return nil }
func (processor) ForceFlush(context.Context) error { return nil }
