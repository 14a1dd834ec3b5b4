package otlp

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// ScopeName is the instrumentation scope of log records sent by a LogSink and
// of spans sent by a TraceSink: the module path.
const ScopeName = "github.com/kube-otel-bridge/kube-otel-bridge"

// LogSink delivers log records to an Exporter with at-least-once
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
//
// Batches are encoded straight into OTLP protobuf (encode.go): no SDK
// record, no intermediate OTLP message, nothing allocated per record.
type LogSink struct {
	p   *pipeline[logEntry]
	exp Exporter
	enc *logsEncoder // used only by the pipeline's worker
}

var logSignal = signal{name: "log", item: "log record", items: "log records", countKey: "records"}

// NewLogSink starts a sink exporting through exp. Records get resource res
// (nil: the SDK default resource, which reads OTEL_RESOURCE_ATTRIBUTES and
// OTEL_SERVICE_NAME) and the scope ScopeName. The sink owns exp and shuts it
// down in Shutdown. cfg supplies QueueSize, BatchSize and BatchTimeout (zero
// values get the defaults).
func NewLogSink(exp Exporter, res *resource.Resource, cfg Config, logger *slog.Logger) *LogSink {
	if logger == nil {
		logger = slog.Default()
	}
	s := &LogSink{exp: exp, enc: newLogsEncoder(res, instrumentation.Scope{Name: ScopeName})}
	describe := func(e logEntry) []any {
		if e.occ != nil {
			return []any{"timestamp", e.occ.Time, "event_name", convert.EventName, "event", e.occ.EventName, "count", e.occ.Count}
		}
		return []any{"timestamp", e.rec.Timestamp(), "event_name", e.rec.EventName()}
	}
	s.p = newPipeline(logSignal, s.export, exp.Shutdown, describe, cfg, logger)
	return s
}

// export encodes and sends one batch (called by the pipeline's worker only,
// so the encoder's buffer is not shared).
func (s *LogSink) export(ctx context.Context, batch []logEntry) error {
	err := exportSplit(ctx, s.exp, batch, s.enc.encode)
	if err != nil {
		// A failed call may leave gRPC's transport holding the request
		// for a moment (a timed-out stream's queued data): encode the
		// retry into a new buffer rather than over it.
		s.enc.buf = nil
	}
	return err
}

// Emit queues rec for export and arranges for ack (may be nil) to be called
// once the collector accepted it. ack is called from the sink's goroutine, in
// emission order; it must be quick and must not call Emit.
//
// Emit blocks while the queue is full and then returns ctx's error if ctx
// ends first, or ErrSinkClosed if Shutdown starts. A nil error means the
// record is queued. The record is linked to the span in ctx, if any
// (trace.ContextWithSpanContext); EmitLinked takes the IDs directly.
// Attribute keys are not deduplicated: rec must not repeat a key
// (convert.LogRecord never does).
func (s *LogSink) Emit(ctx context.Context, rec log.Record, ack func()) error {
	sc := trace.SpanContextFromContext(ctx)
	return s.EmitLinked(ctx, rec, sc.TraceID(), sc.SpanID(), ack)
}

// EmitLinked is Emit with the record linked to span spanID of trace traceID
// (zero IDs: not linked).
func (s *LogSink) EmitLinked(ctx context.Context, rec log.Record, traceID trace.TraceID, spanID trace.SpanID, ack func()) error {
	if !traceID.IsValid() || !spanID.IsValid() {
		traceID, spanID = trace.TraceID{}, trace.SpanID{}
	}
	if rec.ObservedTimestamp().IsZero() {
		rec.SetObservedTimestamp(time.Now()) // as the SDK's logger does on Emit
	}
	return s.p.emit(ctx, logEntry{rec: &rec, traceID: traceID, spanID: spanID}, ack)
}

// EmitOccurrence is EmitLinked with convert.LogRecord(o) linked to o's event
// span (o.TraceID, o.SpanID), without building the record: it is encoded
// straight from o when its batch is exported, so o must not change until
// ack is called (the daemon's occurrences never change once handed on).
func (s *LogSink) EmitOccurrence(ctx context.Context, o *convert.Occurrence, ack func()) error {
	if o.Observed.IsZero() {
		// The observed time is set at Emit (see EmitLinked), never later.
		return s.EmitLinked(ctx, convert.LogRecord(o), o.TraceID, o.SpanID, ack)
	}
	e := logEntry{occ: o, traceID: o.TraceID, spanID: o.SpanID}
	if !e.traceID.IsValid() || !e.spanID.IsValid() {
		e.traceID, e.spanID = trace.TraceID{}, trace.SpanID{}
	}
	return s.p.emit(ctx, e, ack)
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

// MaxRequestBytes bounds an encoded export request: a batch whose encoding
// is larger is sent in halves. gRPC servers (and so collectors) refuse
// messages above 4 MiB by default, and that refusal (ResourceExhausted)
// would otherwise be retried forever.
const MaxRequestBytes = 4<<20 - 64<<10

// exportSplit encodes batch and sends it, in halves (recursively) while the
// encoding exceeds MaxRequestBytes. If a later half fails after an earlier
// one was accepted, the whole batch is retried: at-least-once.
func exportSplit[T any](ctx context.Context, exp Exporter, batch []T, encode func([]T) []byte) error {
	req := encode(batch)
	if len(req) > MaxRequestBytes && len(batch) > 1 {
		h := len(batch) / 2
		if err := exportSplit(ctx, exp, batch[:h], encode); err != nil && !partialSuccessOnly(err) {
			return err
		}
		return exportSplit(ctx, exp, batch[h:], encode)
	}
	return exp.Export(ctx, req)
}
