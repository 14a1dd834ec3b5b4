package otlp

import (
	"context"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"

	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
)

// maxCachedResources bounds TraceSink's per-service resource cache. Services
// are a small set (the reporting components of a cluster); should a cluster
// produce more, the extra ones are merged per span instead of cached.
const maxCachedResources = 256

// TraceSink delivers the spans of the causality engine to an
// sdktrace.SpanExporter, with the same semantics as LogSink: bounded queue
// and backpressure, batches of up to BatchSize at the latest after
// BatchTimeout, retries with capped backoff until the collector accepts a
// batch, then acks in emission order (a span rejected as invalid is logged,
// counted in Stats.Rejected and acknowledged).
//
// Each span is sent under the base resource with service.name set to
// causality.Span.Service, and the scope ScopeName.
type TraceSink struct {
	p     *pipeline[sdktrace.ReadOnlySpan]
	base  *resource.Resource
	scope instrumentation.Scope

	mu        sync.Mutex
	resources map[string]*resource.Resource // by Service
}

var traceSignal = signal{name: "trace", item: "span", items: "spans", countKey: "spans"}

// NewTraceSink starts a sink exporting through exp, which it owns and shuts
// down in Shutdown. base is the resource of every span (nil: the SDK default,
// which reads OTEL_RESOURCE_ATTRIBUTES); each span's Service replaces its
// service.name. cfg supplies QueueSize, BatchSize and BatchTimeout (zero
// values get the defaults).
func NewTraceSink(exp sdktrace.SpanExporter, base *resource.Resource, cfg Config, logger *slog.Logger) *TraceSink {
	if logger == nil {
		logger = slog.Default()
	}
	if base == nil {
		base = resource.Default()
	}
	s := &TraceSink{
		base:      base,
		scope:     instrumentation.Scope{Name: ScopeName, Version: moduleVersion()},
		resources: map[string]*resource.Resource{},
	}
	describe := func(sp sdktrace.ReadOnlySpan) []any {
		return []any{"trace_id", sp.SpanContext().TraceID(), "span_id", sp.SpanContext().SpanID(), "name", sp.Name()}
	}
	s.p = newPipeline(traceSignal, exp.ExportSpans, exp.Shutdown, describe, cfg, logger)
	return s
}

// Emit queues span for export and arranges for ack (may be nil) to be called
// once the collector accepted it. ack is called from the sink's goroutine, in
// emission order; it must be quick and must not call Emit.
//
// Emit blocks while the queue is full and then returns ctx's error if ctx
// ends first, or ErrSinkClosed if Shutdown starts. A nil error means the span
// is queued. The sink keeps copies of span's attribute slices, so the caller
// may reuse them.
func (s *TraceSink) Emit(ctx context.Context, span causality.Span, ack func()) error {
	return s.p.emit(ctx, s.snapshot(span), ack)
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

// snapshot converts span to the SDK's read-only form.
func (s *TraceSink) snapshot(span causality.Span) sdktrace.ReadOnlySpan {
	stub := tracetest.SpanStub{
		Name: span.Name,
		SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: span.TraceID, SpanID: span.SpanID, TraceFlags: trace.FlagsSampled,
		}),
		SpanKind:             trace.SpanKindInternal,
		StartTime:            span.Start,
		EndTime:              span.End,
		Attributes:           slices.Clone(span.Attributes),
		Resource:             s.resource(span.Service),
		InstrumentationScope: s.scope,
	}
	if span.Parent.IsValid() {
		stub.Parent = trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: span.TraceID, SpanID: span.Parent, TraceFlags: trace.FlagsSampled, Remote: span.Remote,
		})
	}
	if span.Error {
		stub.Status = sdktrace.Status{Code: otelcodes.Error, Description: span.StatusMessage}
	}
	if len(span.Links) > 0 {
		stub.Links = make([]sdktrace.Link, len(span.Links))
		for i, l := range span.Links {
			stub.Links[i] = sdktrace.Link{
				SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
					TraceID: l.TraceID, SpanID: l.SpanID, TraceFlags: trace.FlagsSampled,
				}),
				Attributes: slices.Clone(l.Attributes),
			}
		}
	}
	return stub.Snapshot()
}

// resource returns the base resource with service.name set to service
// (unchanged for ""), one shared instance per service so the exporter groups
// the spans of a service under one resource without merging per span.
func (s *TraceSink) resource(service string) *resource.Resource {
	if service == "" {
		return s.base
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.resources[service]; ok {
		return r
	}
	// The schemaless service resource cannot conflict with base's schema
	// URL, so Merge does not fail.
	r, _ := resource.Merge(s.base, resource.NewSchemaless(semconv.ServiceName(service)))
	if len(s.resources) < maxCachedResources {
		s.resources[service] = r
	}
	return r
}

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
