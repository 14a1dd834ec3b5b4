// Package causality assembles Kubernetes event occurrences into span trees:
// one trace per episode of a root object (see DESIGN.md, "Trace model"). It
// is pure logic: no network, no wall clock (times come with the input), so
// every tree can be reproduced from a recording.
package causality

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
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
	Service string
	// Attributes are the span's attributes, after those of Event.
	Attributes []attribute.KeyValue
	// Event is the occurrence of an event span. Its attributes (see
	// EventAttrs) are derived from it when they are needed, typically by an
	// encoder writing them straight to the wire, rather than kept in a
	// slice per span. It must not change once observed.
	Event *convert.Occurrence
	Links []Link
	// Seq is the engine's arrival order: ties in time are shown in it.
	Seq uint64
}

// EventAttrs holds the attributes of one span at a time (Of): an encoder
// keeps one and refills it per span, so that an event span's attributes
// cost no allocation. The zero value is ready to use.
type EventAttrs struct {
	kv [32]attribute.KeyValue
}

// Of returns all of s's attributes: its Event's, then Attributes. The slice
// is a's (valid until a is used again) unless s has more than fit.
func (a *EventAttrs) Of(s *Span) []attribute.KeyValue {
	if s.Event == nil {
		return s.Attributes
	}
	return append(eventAttributes(s.Event, a.kv[:0]), s.Attributes...)
}

// AllAttributes returns all of s's attributes (its Event's, then
// Attributes) in a slice of its own, exactly sized; s.Attributes itself
// when s has no Event.
func (s *Span) AllAttributes() []attribute.KeyValue {
	if s.Event == nil {
		return s.Attributes
	}
	n := eventAttrCount(s.Event) + len(s.Attributes)
	return append(eventAttributes(s.Event, make([]attribute.KeyValue, 0, n)), s.Attributes...)
}
