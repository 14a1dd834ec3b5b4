// Package causality assembles Kubernetes event occurrences into span trees:
// one trace per episode of a root object (see DESIGN.md, "Trace model"). It
// is pure logic: no network, no wall clock (times come with the input), so
// every tree can be reproduced from a recording.
package causality

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// SpanKind says what a span stands for.
type SpanKind uint8

const (
	// KindEvent is one occurrence of an Event.
	KindEvent SpanKind = iota + 1
	// KindObject is an object taking part in an episode.
	KindObject
	// KindRoot is the episode's root object.
	KindRoot
)

func (k SpanKind) String() string {
	switch k {
	case KindEvent:
		return "event"
	case KindObject:
		return "object"
	case KindRoot:
		return "root"
	}
	return "unknown"
}

// Link is a span link: to the previous episode of the same root, or from an
// evicted pod's event to its node's episode.
type Link struct {
	TraceID    trace.TraceID
	SpanID     trace.SpanID
	Attributes []attribute.KeyValue
}

// Span is one finished span, ready for export. The exporter turns it into an
// OTLP span with a resource whose service.name is Service.
type Span struct {
	TraceID trace.TraceID
	SpanID  trace.SpanID
	Parent  trace.SpanID // zero for a root without a traceparent
	// Remote is true when Parent comes from a W3C traceparent annotation.
	Remote     bool
	Name       string
	Kind       SpanKind
	Start, End time.Time
	// Error marks a Warning (status Error with StatusMessage).
	Error         bool
	StatusMessage string
	// Service is the reporting component (kubelet, default-scheduler, …) for
	// event spans, the bridge for object and root spans; a bounded set.
	Service    string
	Attributes []attribute.KeyValue
	Links      []Link
	// Seq is the engine's arrival order: ties in time are shown in it.
	Seq uint64
}
