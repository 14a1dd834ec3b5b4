package otlp

import (
	"context"
	"log/slog"
	"runtime/debug"

	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
)

// TraceSink delivers the spans of the causality engine to an Exporter, with
// the same semantics as LogSink: bounded queue and backpressure, batches of
// up to BatchSize at the latest after BatchTimeout, retries with capped
// backoff until the collector accepts a batch, then acks in emission order (a
// span rejected as invalid is logged, counted in Stats.Rejected and
// acknowledged).
//
// Each span is sent under the base resource with service.name set to
// causality.Span.Service, and the scope ScopeName. Batches are encoded
// straight into OTLP protobuf (encode.go).
type TraceSink struct {
	p   *pipeline[causality.Span]
	exp Exporter
	enc *tracesEncoder // used only by the pipeline's worker
}

var traceSignal = signal{name: "trace", item: "span", items: "spans", countKey: "spans"}

// NewTraceSink starts a sink exporting through exp, which it owns and shuts
// down in Shutdown. base is the resource of every span (nil: the SDK default
// resource, which reads OTEL_RESOURCE_ATTRIBUTES); each span's Service
// replaces its service.name. cfg supplies QueueSize, BatchSize and
// BatchTimeout (zero values get the defaults).
func NewTraceSink(exp Exporter, base *resource.Resource, cfg Config, logger *slog.Logger) *TraceSink {
	if logger == nil {
		logger = slog.Default()
	}
	s := &TraceSink{
		exp: exp,
		enc: newTracesEncoder(base, instrumentation.Scope{Name: ScopeName, Version: moduleVersion()}),
	}
	describe := func(sp causality.Span) []any {
		return []any{"trace_id", sp.TraceID, "span_id", sp.SpanID, "name", sp.Name}
	}
	s.p = newPipeline(traceSignal, s.export, exp.Shutdown, describe, cfg, logger)
	return s
}

// export encodes and sends one batch (called by the pipeline's worker only).
func (s *TraceSink) export(ctx context.Context, batch []causality.Span) error {
	err := exportSplit(ctx, s.exp, batch, s.enc.encode)
	if err != nil {
		s.enc.buf = nil // as LogSink.export
	}
	return err
}

// Emit queues span for export and arranges for ack (may be nil) to be called
// once the collector accepted it. ack is called from the sink's goroutine, in
// emission order; it must be quick and must not call Emit.
//
// Emit blocks while the queue is full and then returns ctx's error if ctx
// ends first, or ErrSinkClosed if Shutdown starts. A nil error means the span
// is queued. The sink keeps span's attribute and link slices until the span
// is acknowledged: the caller must not modify them after Emit (the
// causality engine never does; it builds new slices per span).
func (s *TraceSink) Emit(ctx context.Context, span causality.Span, ack func()) error {
	return s.p.emit(ctx, span, ack)
}

// ForceFlush exports everything emitted before the call without waiting for
// batches to fill and waits until it is acknowledged, ctx ends, or the sink
// is shut down.
func (s *TraceSink) ForceFlush(ctx context.Context) error { return s.p.forceFlush(ctx) }

// Shutdown stops accepting spans (blocked and later Emits return
// ErrSinkClosed), exports everything queued, retrying as usual, and shuts
// the exporter down. If ctx ends first, the export in progress is abandoned
// and the error tells how many spans were not delivered (nor acknowledged).
// Later calls return the first call's result.
func (s *TraceSink) Shutdown(ctx context.Context) error { return s.p.shutdown(ctx) }

// Stats returns a snapshot of the sink's counters.
func (s *TraceSink) Stats() Stats { return s.p.stats() }

// moduleVersion is the version of this module in the running binary, for
// the instrumentation scope: "" in a development build.
func moduleVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, m := range append([]*debug.Module{&bi.Main}, bi.Deps...) {
		if m.Path != ScopeName {
			continue
		}
		if m.Version == "(devel)" {
			return ""
		}
		return m.Version
	}
	return ""
}
