package otlp

import (
	"context"
	"errors"
	"log/slog"

	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
)

// ScopeName is the instrumentation scope of log records sent by a LogSink and
// of spans sent by a TraceSink: the module path.
const ScopeName = "github.com/kube-otel-bridge/kube-otel-bridge"

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
	p        *pipeline[sdklog.Record]
	provider *sdklog.LoggerProvider
	logger   log.Logger
}

// emitToken carries the ack from Emit through the SDK to the processor.
type emitToken struct {
	ack    func()
	queued bool
}

type tokenKey struct{}

var logSignal = signal{name: "log", item: "log record", items: "log records", countKey: "records"}

// NewLogSink starts a sink exporting through exp. Records get resource res
// (nil: the SDK default, which reads OTEL_RESOURCE_ATTRIBUTES) and the scope
// ScopeName. The sink owns exp and shuts it down in Shutdown. cfg supplies
// QueueSize, BatchSize and BatchTimeout (zero values get the defaults).
func NewLogSink(exp sdklog.Exporter, res *resource.Resource, cfg Config, logger *slog.Logger) *LogSink {
	if logger == nil {
		logger = slog.Default()
	}
	s := &LogSink{}
	opts := []sdklog.LoggerProviderOption{
		sdklog.WithProcessor(processor{s}),
		// The SDK otherwise deduplicates attribute keys by adding the
		// record's attributes one at a time, each against a map index of
		// those already added: about a third of the sink's CPU per record.
		// Records come from convert.LogRecord, whose keys are distinct by
		// construction (Emit's contract below).
		sdklog.WithAllowKeyDuplication(),
	}
	if res != nil {
		opts = append(opts, sdklog.WithResource(res))
	}
	s.provider = sdklog.NewLoggerProvider(opts...)
	s.logger = s.provider.Logger(ScopeName)
	shutdown := func(ctx context.Context) error {
		// Our processor does nothing on shutdown; this only releases the SDK.
		_ = s.provider.Shutdown(context.Background())
		return exp.Shutdown(ctx)
	}
	describe := func(r sdklog.Record) []any {
		return []any{"timestamp", r.Timestamp(), "event_name", r.EventName()}
	}
	s.p = newPipeline(logSignal, exp.Export, shutdown, describe, cfg, logger)
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
// there. Attribute keys are not deduplicated: rec must not repeat a key
// (convert.LogRecord never does).
func (s *LogSink) Emit(ctx context.Context, rec log.Record, ack func()) error {
	if err := s.p.acquire(ctx); err != nil {
		return err
	}
	tok := &emitToken{ack: ack}
	s.logger.Emit(context.WithValue(ctx, tokenKey{}, tok), rec)
	if !tok.queued {
		s.p.release()
		return ErrSinkClosed
	}
	return nil
}

// ForceFlush exports everything emitted before the call without waiting for
// batches to fill and waits until it is acknowledged, ctx ends, or the sink
// is shut down.
func (s *LogSink) ForceFlush(ctx context.Context) error { return s.p.forceFlush(ctx) }

// Shutdown stops accepting records (blocked and later Emits return
// ErrSinkClosed), exports everything queued, retrying as usual, and shuts
// the exporter down. If ctx ends first, the export in progress is abandoned
// and the error tells how many records were not delivered (nor
// acknowledged). Later calls return the first call's result.
func (s *LogSink) Shutdown(ctx context.Context) error { return s.p.shutdown(ctx) }

// Stats returns a snapshot of the sink's counters.
func (s *LogSink) Stats() Stats { return s.p.stats() }

// processor hands records from the SDK to the LogSink queue.
type processor struct{ s *LogSink }

func (processor) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }

func (p processor) OnEmit(ctx context.Context, r *sdklog.Record) error {
	tok, ok := ctx.Value(tokenKey{}).(*emitToken)
	if !ok {
		return errors.New("otlp: log record not emitted through LogSink.Emit")
	}
	// The SDK reuses r after OnEmit returns. Emit took the queue slot.
	tok.queued = p.s.p.enqueue(r.Clone(), tok.ack)
	return nil
}

func (processor) Shutdown(context.Context) error   { return nil }
func (processor) ForceFlush(context.Context) error { return nil }
