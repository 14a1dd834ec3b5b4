package otlp

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// This file encodes OTLP export requests directly into reused buffers, in
// place of the SDK exporters' transform (SDK record/span → OTLP message
// structs → proto.Marshal), which costs about a hundred allocations per
// item. The output is the data the SDK path produces, item for item (see
// encode_test.go, which compares the two):
//
//   - logs: an sdklog.LoggerProvider with WithAllowKeyDuplication (as in
//     LogSink), the record's span context from the context with TraceFlags
//     sampled (as the daemon's pipeline sets it), then otlploggrpc;
//   - traces: the tracetest.SpanStub TraceSink builds for a causality.Span
//     (base resource with service.name replaced), then otlptracegrpc.
//
// One difference on purpose: strings that are not valid UTF-8 are written
// with U+FFFD for the invalid bytes (strings.ToValidUTF8). The SDK sends
// them as they are, and the receiver rejects the whole request.

// Field numbers of the OTLP messages (opentelemetry-proto v1.x).
const (
	// ExportLogsServiceRequest.resource_logs, ExportTraceServiceRequest.resource_spans.
	fieldRequestResources protowire.Number = 1

	// ResourceLogs, ResourceSpans.
	fieldResource        protowire.Number = 1
	fieldResourceScopes  protowire.Number = 2
	fieldResourceSchema  protowire.Number = 3
	fieldResourceAttrs   protowire.Number = 1 // Resource.attributes
	fieldScopeScope      protowire.Number = 1 // ScopeLogs, ScopeSpans
	fieldScopeItems      protowire.Number = 2 // log_records, spans
	fieldScopeSchema     protowire.Number = 3
	fieldScopeName       protowire.Number = 1 // InstrumentationScope
	fieldScopeVersion    protowire.Number = 2
	fieldScopeAttributes protowire.Number = 3

	// KeyValue.
	fieldKey   protowire.Number = 1
	fieldValue protowire.Number = 2
	// AnyValue (a oneof: the member is present whatever its value).
	fieldAnyString protowire.Number = 1
	fieldAnyBool   protowire.Number = 2
	fieldAnyInt    protowire.Number = 3
	fieldAnyDouble protowire.Number = 4
	fieldAnyArray  protowire.Number = 5
	fieldAnyKVList protowire.Number = 6
	fieldAnyBytes  protowire.Number = 7
	// ArrayValue.values, KeyValueList.values.
	fieldListValues protowire.Number = 1

	// LogRecord.
	fieldLogTime         protowire.Number = 1
	fieldLogSeverity     protowire.Number = 2
	fieldLogSeverityText protowire.Number = 3
	fieldLogBody         protowire.Number = 5
	fieldLogAttributes   protowire.Number = 6
	fieldLogDropped      protowire.Number = 7
	fieldLogFlags        protowire.Number = 8
	fieldLogTraceID      protowire.Number = 9
	fieldLogSpanID       protowire.Number = 10
	fieldLogObserved     protowire.Number = 11
	fieldLogEventName    protowire.Number = 12

	// Span.
	fieldSpanTraceID    protowire.Number = 1
	fieldSpanID         protowire.Number = 2
	fieldSpanParentID   protowire.Number = 4
	fieldSpanName       protowire.Number = 5
	fieldSpanKind       protowire.Number = 6
	fieldSpanStart      protowire.Number = 7
	fieldSpanEnd        protowire.Number = 8
	fieldSpanAttributes protowire.Number = 9
	fieldSpanLinks      protowire.Number = 13
	fieldSpanStatus     protowire.Number = 15
	fieldSpanFlags      protowire.Number = 16
	// Span.Link.
	fieldLinkTraceID    protowire.Number = 1
	fieldLinkSpanID     protowire.Number = 2
	fieldLinkAttributes protowire.Number = 4
	fieldLinkFlags      protowire.Number = 6
	// Status.
	fieldStatusMessage protowire.Number = 2
	fieldStatusCode    protowire.Number = 3
)

const (
	spanKindInternal = 1 // Span.SpanKind SPAN_KIND_INTERNAL
	statusCodeError  = 2 // Status.StatusCode STATUS_CODE_ERROR
	// SpanFlags: otlptracegrpc always says whether the parent (for a link:
	// the linked span) is remote.
	flagHasIsRemote = 0x100
	flagIsRemote    = 0x200
)

// The SDK's log record attribute limits (go.opentelemetry.io/otel/sdk/log):
// the same defaults and environment variables, read when an encoder is made
// (the SDK reads them when the LoggerProvider is made).
const (
	envLogAttrCountLimit       = "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT"
	envLogAttrValueLengthLimit = "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT"
	defaultLogAttrCountLimit   = 128
	defaultLogAttrDepthLimit   = 64
)

// envLimit is the integer in environment variable key, or def when it is
// unset or not an integer (the SDK reports the latter and uses def too).
func envLimit(key string, def int) int {
	if v := os.Getenv(key); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

// ---------------------------------------------------------------------------
// Logs

// logEntry is one queued log record and the span it belongs to: either an
// occurrence, encoded as the record convert.LogRecord makes of it (without
// building that record), or a record.
type logEntry struct {
	occ     *convert.Occurrence
	rec     *log.Record
	traceID trace.TraceID // zero: not linked
	spanID  trace.SpanID
}

// logsEncoder builds OTLP ExportLogsServiceRequest protobuf bytes for one
// resource and scope. It is not safe for concurrent use.
type logsEncoder struct {
	// Pre-encoded parts of the request around the records.
	resource    []byte // ResourceLogs.resource; empty for a resource without attributes
	resSchema   []byte // ResourceLogs.schema_url
	scope       []byte // ScopeLogs.scope; empty for the zero scope
	scopeSchema []byte // ScopeLogs.schema_url

	countLimit int         // attributes per record; <0: no limit
	limits     valueLimits // of attribute values

	buf   []byte
	attrs convert.LogAttrs // of the occurrence being encoded
}

// newLogsEncoder returns an encoder for records of resource res (nil: the
// SDK default, resource.Default()) and scope, with the SDK's attribute
// limits (OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT, default 128, and
// OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT, default none, from the
// environment now; nested values deeper than 64 become empty).
func newLogsEncoder(res *resource.Resource, scope instrumentation.Scope) *logsEncoder {
	if res == nil {
		res = resource.Default()
	}
	e := &logsEncoder{
		countLimit: envLimit(envLogAttrCountLimit, defaultLogAttrCountLimit),
		limits: valueLimits{
			depth:  defaultLogAttrDepthLimit,
			length: envLimit(envLogAttrValueLengthLimit, -1),
		},
	}
	if res.Len() > 0 {
		e.resource = appendResource(nil, res, "", false)
	}
	e.resSchema = appendStringField(nil, fieldResourceSchema, res.SchemaURL())
	if scope != (instrumentation.Scope{}) {
		// LoggerProvider.Logger drops scope attributes with an empty key
		// and limits the depth of their values.
		e.scope = appendScope(nil, scope, true, valueLimits{depth: defaultLogAttrDepthLimit, length: -1})
		e.scopeSchema = appendStringField(nil, fieldScopeSchema, scope.SchemaURL)
	}
	return e
}

// encode returns the serialized request for entries. The returned slice is
// owned by the encoder and valid until the next encode call. No entries
// give an empty request (the SDK exporter sends nothing then).
//
// A record without observed timestamp gets the current time, as the SDK
// gives it when the record is emitted.
func (e *logsEncoder) encode(entries []logEntry) []byte {
	if len(entries) == 0 {
		return e.buf[:0]
	}
	// The records go after room for the longest possible header (the
	// ResourceLogs and ScopeLogs keys, lengths and pre-encoded parts);
	// the header is then written right before the records, so nothing
	// moves.
	room := 2*(1+binaryMaxVarint32) + len(e.resource) + len(e.scope)
	if cap(e.buf) < room {
		e.buf = make([]byte, 0, room+64<<10)
	}
	b := e.buf[:room] // what is left of room before the header is never sent
	for i := range entries {
		b = e.appendRecord(b, &entries[i])
	}
	b = append(b, e.scopeSchema...)
	scopeLen := len(e.scope) + len(b) - room
	b = append(b, e.resSchema...)
	resLen := len(e.resource) + 1 + protowire.SizeVarint(uint64(scopeLen)) + scopeLen + len(e.resSchema)
	header := 1 + protowire.SizeVarint(uint64(resLen)) + len(e.resource) +
		1 + protowire.SizeVarint(uint64(scopeLen)) + len(e.scope)
	start := room - header
	h := b[start:start]
	h = appendTag(h, fieldRequestResources, wireBytes)
	h = appendVarint(h, uint64(resLen))
	h = append(h, e.resource...)
	h = appendTag(h, fieldResourceScopes, wireBytes)
	h = appendVarint(h, uint64(scopeLen))
	h = append(h, e.scope...)
	if len(h) != header {
		panic("otlp: log request header size mismatch")
	}
	e.buf = b
	return b[start:]
}

// binaryMaxVarint32 is the longest varint of a length.
const binaryMaxVarint32 = 5

// The attributes sdklog derives from a record's error.
const (
	exceptionMessageKey = semconv.ExceptionMessageKey
	exceptionTypeKey    = semconv.ExceptionTypeKey
)

// appendRecord appends ent as a ScopeLogs.log_records field.
func (e *logsEncoder) appendRecord(b []byte, ent *logEntry) []byte {
	if ent.occ != nil {
		return e.appendOccurrence(b, ent)
	}
	rec := ent.rec
	b, start := openField(b, fieldScopeItems, 2)
	b = appendFixed64Field(b, fieldLogTime, timeUnixNano(rec.Timestamp()))
	b = appendVarintField(b, fieldLogSeverity, severityNumber(rec.Severity()))
	b = appendStringField(b, fieldLogSeverityText, rec.SeverityText())
	// The SDK neither limits nor checks the body.
	b = appendAnyValue(b, fieldLogBody, rec.Body(), noValueLimits)

	// Attributes as sdklog.Logger.Emit adds them to its record: those with
	// an empty key are dropped silently, those over the count limit are
	// counted as dropped; no deduplication (WithAllowKeyDuplication).
	kept, dropped := 0, 0
	hasMessage, hasType := false, false
	rec.WalkAttributes(func(kv attribute.KeyValue) bool {
		switch kv.Key {
		case exceptionMessageKey:
			hasMessage = true
		case exceptionTypeKey:
			hasType = true
		}
		if !kv.Valid() {
			return true
		}
		if e.countLimit >= 0 && kept >= e.countLimit {
			dropped++
			return true
		}
		kept++
		b = appendKeyValue(b, fieldLogAttributes, string(kv.Key), kv.Value, e.limits)
		return true
	})
	if err := rec.Err(); err != nil && (!hasMessage || !hasType) {
		b, dropped = e.appendException(b, err, kept, dropped, hasMessage, hasType)
	}
	b = appendVarintField(b, fieldLogDropped, uint64(clampUint32(dropped)))
	// The pipeline puts a span context in the Emit context only when both
	// IDs are valid; the SDK takes IDs and flags (sampled) from there.
	if ent.traceID.IsValid() && ent.spanID.IsValid() {
		b = appendFixed32Field(b, fieldLogFlags, uint32(trace.FlagsSampled))
		b = appendBytesField(b, fieldLogTraceID, ent.traceID[:])
		b = appendBytesField(b, fieldLogSpanID, ent.spanID[:])
	}
	observed := rec.ObservedTimestamp()
	if observed.IsZero() {
		observed = time.Now()
	}
	b = appendFixed64Field(b, fieldLogObserved, timeUnixNano(observed))
	b = appendStringField(b, fieldLogEventName, rec.EventName())
	return closeField(b, start, 2)
}

// appendOccurrence appends the record convert.LogRecord makes of ent.occ
// exactly as appendRecord encodes that record, reading its fields from the
// occurrence (convert.LogSeverity, convert.LogAttrs) instead: no record is
// built, no attribute copied. Such a record has no error, and none of its
// attribute keys is empty or an exception.* one.
func (e *logsEncoder) appendOccurrence(b []byte, ent *logEntry) []byte {
	o := ent.occ
	b, start := openField(b, fieldScopeItems, 2)
	b = appendFixed64Field(b, fieldLogTime, timeUnixNano(o.Time))
	b = appendVarintField(b, fieldLogSeverity, severityNumber(convert.LogSeverity(o.Type)))
	b = appendStringField(b, fieldLogSeverityText, o.Type)
	b = appendAnyValue(b, fieldLogBody, attribute.StringValue(o.Note), noValueLimits)
	kept, dropped := 0, 0
	for _, kv := range e.attrs.Of(o) {
		if e.countLimit >= 0 && kept >= e.countLimit {
			dropped++
			continue
		}
		kept++
		b = appendKeyValue(b, fieldLogAttributes, string(kv.Key), kv.Value, e.limits)
	}
	b = appendVarintField(b, fieldLogDropped, uint64(clampUint32(dropped)))
	if ent.traceID.IsValid() && ent.spanID.IsValid() {
		b = appendFixed32Field(b, fieldLogFlags, uint32(trace.FlagsSampled))
		b = appendBytesField(b, fieldLogTraceID, ent.traceID[:])
		b = appendBytesField(b, fieldLogSpanID, ent.spanID[:])
	}
	observed := o.Observed
	if observed.IsZero() {
		observed = time.Now() // as appendRecord (EmitOccurrence never queues one)
	}
	b = appendFixed64Field(b, fieldLogObserved, timeUnixNano(observed))
	b = appendStringField(b, fieldLogEventName, convert.EventName)
	return closeField(b, start, 2)
}

// appendException adds the exception.message and exception.type attributes
// the SDK derives from a record's error when the record has not got them,
// within the count limit (an attribute that does not fit is counted as
// dropped, as the SDK does, the type even when it would be empty).
func (e *logsEncoder) appendException(b []byte, err error, kept, dropped int, hasMessage, hasType bool) ([]byte, int) {
	limited := e.countLimit >= 0
	remaining := e.countLimit - kept
	n := 0
	if !hasMessage {
		if msg := err.Error(); msg != "" {
			if limited && remaining <= n {
				dropped++
				if !hasType {
					dropped++
				}
				return b, dropped
			}
			b = appendKeyValue(b, fieldLogAttributes, string(exceptionMessageKey), attribute.StringValue(msg), e.limits)
			n++
		}
	}
	if !hasType {
		if limited && remaining <= n {
			return b, dropped + 1
		}
		if t := errorType(err); t != "" {
			b = appendKeyValue(b, fieldLogAttributes, string(exceptionTypeKey), attribute.StringValue(t), e.limits)
		}
	}
	return b, dropped
}

// errorType is the exception.type of err as sdklog derives it: its
// ErrorType() if it has one, else the package-qualified name of its type,
// looking through fmt.Errorf("...%w...") wrappers.
func errorType(err error) string {
	if et, ok := err.(interface{ ErrorType() string }); ok {
		if s := et.ErrorType(); s != "" {
			return s
		}
	}
	for reflect.TypeOf(err) == fmtWrapErrorType {
		u := errors.Unwrap(err)
		if u == nil {
			break
		}
		err = u
	}
	t := reflect.TypeOf(err)
	if t == nil {
		return ""
	}
	if pkg, name := t.PkgPath(), t.Name(); pkg != "" && name != "" {
		return pkg + "." + name
	}
	return t.String()
}

var fmtWrapErrorType = reflect.TypeOf(fmt.Errorf("wrapped: %w", errors.New("err")))

// severityNumber is the OTLP SeverityNumber of s: the same numbers for the
// defined severities, UNSPECIFIED (0) for anything else.
func severityNumber(s log.Severity) uint64 {
	if s < log.SeverityTrace1 || s > log.SeverityFatal4 {
		return 0
	}
	return uint64(s)
}

// timeUnixNano is t in nanoseconds since the Unix epoch, 0 for times before
// it (and the zero time), as both SDK transforms compute it.
func timeUnixNano(t time.Time) uint64 {
	return uint64(max(0, t.UnixNano()))
}

func clampUint32(v int) uint32 {
	return uint32(min(max(v, 0), 1<<32-1))
}

// ---------------------------------------------------------------------------
// Traces

// tracesEncoder builds OTLP ExportTraceServiceRequest bytes: each span under
// the base resource with service.name replaced by its Service (the base as
// is for ""), one ResourceSpans per distinct resource, in the order the
// resources first appear, with one ScopeSpans holding the resource's spans
// in input order. It is not safe for concurrent use.
type tracesEncoder struct {
	base *resource.Resource
	// baseService is the base's service.name when it is a string: spans of
	// that service have the base resource itself.
	baseService    string
	hasBaseService bool

	resSchema   []byte // ResourceSpans.schema_url (the base's: service.name comes schemaless)
	scope       []byte // ScopeSpans.scope; empty for the zero scope
	scopeSchema []byte // ScopeSpans.schema_url

	// Pre-encoded ResourceSpans.resource per service, at most
	// maxEncodedResources of them; the base's is baseEntry.
	baseEntry *resourceEntry
	resources map[string]*resourceEntry

	// Per encode call.
	batch    uint64         // number of the call, for resourceEntry.batch
	groups   []spanGroup    // one per resource, in order of appearance
	extra    map[string]int // group of a service beyond the cache
	extraRes []byte         // resources of those groups
	spans    []byte         // the spans encoded, in input order
	bounds   []int          // span i is spans[bounds[i]:bounds[i+1]]
	next     []int          // next span of the same group, -1 for the last
	buf      []byte
	attrs    causality.EventAttrs // of the span being encoded
}

// maxEncodedResources bounds tracesEncoder's per-service resource cache.
// Services are a small set (the reporting components of a cluster); should a
// cluster produce more, the extra ones get their resource encoded once per
// request instead.
const maxEncodedResources = 256

// resourceEntry is a pre-encoded resource and its group in the current call.
type resourceEntry struct {
	field []byte // ResourceSpans.resource
	batch uint64 // call in which group is valid
	group int
}

// spanGroup is one ResourceSpans of the request being encoded.
type spanGroup struct {
	resource       []byte // cached resource; nil: extraRes[resOff:resEnd]
	resOff, resEnd int
	first, last    int // spans, linked by next
	size           int // bytes of its spans
}

// newTracesEncoder returns an encoder for spans of base (nil: the SDK
// default, resource.Default()) with service.name set per span, and scope.
func newTracesEncoder(base *resource.Resource, scope instrumentation.Scope) *tracesEncoder {
	if base == nil {
		base = resource.Default()
	}
	e := &tracesEncoder{
		base:      base,
		resSchema: appendStringField(nil, fieldResourceSchema, base.SchemaURL()),
		resources: map[string]*resourceEntry{},
		extra:     map[string]int{},
	}
	if v, ok := base.Set().Value(semconv.ServiceNameKey); ok && v.Type() == attribute.STRING {
		e.baseService, e.hasBaseService = v.AsString(), true
	}
	e.baseEntry = &resourceEntry{field: appendResource(nil, base, "", false)}
	// tracetest.SpanStub.Snapshot, which TraceSink uses, replaces a scope
	// without name, version and schema URL by the (zero) instrumentation
	// library, attributes and all.
	if scope.Name == "" && scope.Version == "" && scope.SchemaURL == "" {
		scope = instrumentation.Scope{}
	}
	if scope != (instrumentation.Scope{}) {
		e.scope = appendScope(nil, scope, false, noValueLimits)
	}
	e.scopeSchema = appendStringField(nil, fieldScopeSchema, scope.SchemaURL)
	return e
}

// encode returns the serialized request for spans. The returned slice is
// owned by the encoder and valid until the next encode call. No spans give
// an empty request (the SDK exporter sends nothing then).
func (e *tracesEncoder) encode(spans []causality.Span) []byte {
	if len(spans) == 0 {
		return e.buf[:0]
	}
	e.batch++
	e.groups = e.groups[:0]
	if len(e.extra) > 0 {
		clear(e.extra)
	}
	e.extraRes = e.extraRes[:0]
	e.spans = e.spans[:0]
	e.bounds = append(e.bounds[:0], 0)
	e.next = e.next[:0]
	for i := range spans {
		sp := &spans[i]
		g := &e.groups[e.group(sp.Service)]
		e.spans = appendSpan(e.spans, sp, &e.attrs)
		e.bounds = append(e.bounds, len(e.spans))
		e.next = append(e.next, -1)
		if g.first < 0 {
			g.first = i
		} else {
			e.next[g.last] = i
		}
		g.last = i
		g.size += e.bounds[i+1] - e.bounds[i]
	}

	b := e.buf[:0]
	for gi := range e.groups {
		g := &e.groups[gi]
		res := g.resource
		if res == nil {
			res = e.extraRes[g.resOff:g.resEnd]
		}
		scopeLen := len(e.scope) + g.size + len(e.scopeSchema)
		resLen := len(res) + 1 + protowire.SizeVarint(uint64(scopeLen)) + scopeLen + len(e.resSchema)
		b = appendTag(b, fieldRequestResources, wireBytes)
		b = appendVarint(b, uint64(resLen))
		b = append(b, res...)
		b = appendTag(b, fieldResourceScopes, wireBytes)
		b = appendVarint(b, uint64(scopeLen))
		b = append(b, e.scope...)
		for i := g.first; i >= 0; i = e.next[i] {
			b = append(b, e.spans[e.bounds[i]:e.bounds[i+1]]...)
		}
		b = append(b, e.scopeSchema...)
		b = append(b, e.resSchema...)
	}
	e.buf = b
	return b
}

// group returns the index in e.groups of the group for service's resource,
// adding the group (and caching the resource) on first use.
func (e *tracesEncoder) group(service string) int {
	if e.hasBaseService && service == e.baseService {
		service = "" // the same resource as the base
	}
	ent := e.baseEntry
	if service != "" {
		ent = e.resources[service]
		if ent == nil && len(e.resources) < maxEncodedResources {
			ent = &resourceEntry{field: appendResource(nil, e.base, service, true)}
			e.resources[strings.Clone(service)] = ent
		}
	}
	if ent != nil {
		if ent.batch != e.batch {
			ent.batch = e.batch
			ent.group = e.addGroup(spanGroup{resource: ent.field})
		}
		return ent.group
	}
	// More services than the cache holds: encode the resource once per call.
	if g, ok := e.extra[service]; ok {
		return g
	}
	off := len(e.extraRes)
	e.extraRes = appendResource(e.extraRes, e.base, service, true)
	g := e.addGroup(spanGroup{resOff: off, resEnd: len(e.extraRes)})
	e.extra[service] = g
	return g
}

func (e *tracesEncoder) addGroup(g spanGroup) int {
	g.first, g.last = -1, -1
	e.groups = append(e.groups, g)
	return len(e.groups) - 1
}

// appendSpan appends sp as a ScopeSpans.spans field, as TraceSink's snapshot
// and otlptracegrpc make it; attrs holds its attributes meanwhile.
func appendSpan(b []byte, sp *causality.Span, attrs *causality.EventAttrs) []byte {
	b, start := openField(b, fieldScopeItems, 2)
	b = appendBytesField(b, fieldSpanTraceID, sp.TraceID[:])
	b = appendBytesField(b, fieldSpanID, sp.SpanID[:])
	flags := uint32(trace.FlagsSampled) | flagHasIsRemote
	if sp.Parent.IsValid() {
		b = appendBytesField(b, fieldSpanParentID, sp.Parent[:])
		if sp.Remote {
			flags |= flagIsRemote
		}
	}
	b = appendStringField(b, fieldSpanName, sp.Name)
	b = appendVarintField(b, fieldSpanKind, spanKindInternal)
	b = appendFixed64Field(b, fieldSpanStart, timeUnixNano(sp.Start))
	b = appendFixed64Field(b, fieldSpanEnd, timeUnixNano(sp.End))
	for _, kv := range attrs.Of(sp) {
		b = appendKeyValue(b, fieldSpanAttributes, string(kv.Key), kv.Value, noValueLimits)
	}
	for i := range sp.Links {
		l := &sp.Links[i]
		var ls int
		b, ls = openField(b, fieldSpanLinks, 1)
		b = appendBytesField(b, fieldLinkTraceID, l.TraceID[:])
		b = appendBytesField(b, fieldLinkSpanID, l.SpanID[:])
		for _, kv := range l.Attributes {
			b = appendKeyValue(b, fieldLinkAttributes, string(kv.Key), kv.Value, noValueLimits)
		}
		// A link's span context is never remote.
		b = appendFixed32Field(b, fieldLinkFlags, uint32(trace.FlagsSampled)|flagHasIsRemote)
		b = closeField(b, ls, 1)
	}
	// The status is always there, empty when unset.
	if sp.Error {
		var ss int
		b, ss = openField(b, fieldSpanStatus, 1)
		b = appendStringField(b, fieldStatusMessage, sp.StatusMessage)
		b = appendVarintField(b, fieldStatusCode, statusCodeError)
		b = closeField(b, ss, 1)
	} else {
		b = appendTag(b, fieldSpanStatus, wireBytes)
		b = append(b, 0)
	}
	b = appendFixed32Field(b, fieldSpanFlags, flags)
	return closeField(b, start, 2)
}

// ---------------------------------------------------------------------------
// Resources, scopes and attributes

// appendResource appends a ResourceLogs/ResourceSpans.resource field with the
// attributes of res, in its (key) order; with setService, service.name is
// service, as resource.Merge(res, service.name=service) has it.
func appendResource(b []byte, res *resource.Resource, service string, setService bool) []byte {
	b, start := openField(b, fieldResource, 2)
	key := string(semconv.ServiceNameKey)
	pending := setService
	for it := res.Iter(); it.Next(); {
		kv := it.Attribute()
		if pending && string(kv.Key) >= key {
			b = appendKeyValue(b, fieldResourceAttrs, key, attribute.StringValue(service), noValueLimits)
			pending = false
			if string(kv.Key) == key {
				continue
			}
		}
		b = appendKeyValue(b, fieldResourceAttrs, string(kv.Key), kv.Value, noValueLimits)
	}
	if pending {
		b = appendKeyValue(b, fieldResourceAttrs, key, attribute.StringValue(service), noValueLimits)
	}
	return closeField(b, start, 2)
}

// appendScope appends a ScopeLogs/ScopeSpans.scope field for scope. With
// validOnly, attributes with an empty key are left out.
func appendScope(b []byte, scope instrumentation.Scope, validOnly bool, lim valueLimits) []byte {
	b, start := openField(b, fieldScopeScope, 1)
	b = appendStringField(b, fieldScopeName, scope.Name)
	b = appendStringField(b, fieldScopeVersion, scope.Version)
	for it := scope.Attributes.Iter(); it.Next(); {
		kv := it.Attribute()
		if validOnly && !kv.Valid() {
			continue
		}
		b = appendKeyValue(b, fieldScopeAttributes, string(kv.Key), kv.Value, lim)
	}
	return closeField(b, start, 1)
}

// valueLimits are the SDK's limits on log record attribute values.
type valueLimits struct {
	// depth is how many more levels of collections (slices, byte slices,
	// maps) a value may have; a collection beyond it becomes an empty
	// value. <0: no limit.
	depth int
	// length is the most characters of a string and bytes of a byte slice,
	// also inside slices and maps (truncate). <0: no limit.
	length int
}

var noValueLimits = valueLimits{depth: -1, length: -1}

// appendKeyValue appends field num with the KeyValue key: v.
func appendKeyValue(b []byte, num protowire.Number, key string, v attribute.Value, lim valueLimits) []byte {
	if v.Type() == attribute.STRING {
		// The common case, sized in advance: nothing moves.
		s := truncate(lim.length, v.AsString())
		n, valid := validLen(s)
		anyLen := 1 + protowire.SizeVarint(uint64(n)) + n
		kvLen := 1 + protowire.SizeVarint(uint64(anyLen)) + anyLen
		kn, kvalid := 0, true
		if key != "" {
			kn, kvalid = validLen(key)
			kvLen += 1 + protowire.SizeVarint(uint64(kn)) + kn
		}
		b = appendTag(b, num, wireBytes)
		b = appendVarint(b, uint64(kvLen))
		if key != "" {
			b = appendSized(b, fieldKey, key, kn, kvalid)
		}
		return appendStringValue(b, fieldValue, s, n, valid)
	}
	b, start := openField(b, num, 1)
	b = appendStringField(b, fieldKey, key)
	b = appendAnyValue(b, fieldValue, v, lim)
	return closeField(b, start, 1)
}

// appendStringValue appends field num with an AnyValue holding the string s;
// n and valid are validLen(s).
func appendStringValue(b []byte, num protowire.Number, s string, n int, valid bool) []byte {
	b = appendTag(b, num, wireBytes)
	b = appendVarint(b, uint64(1+protowire.SizeVarint(uint64(n))+n))
	return appendSized(b, fieldAnyString, s, n, valid)
}

// appendAnyValue appends field num with the AnyValue of v, as the SDK
// transforms encode it.
func appendAnyValue(b []byte, num protowire.Number, v attribute.Value, lim valueLimits) []byte {
	typ := v.Type()
	if lim.depth == 0 && isCollection(typ) {
		typ = attribute.EMPTY
	}
	if typ == attribute.STRING {
		s := truncate(lim.length, v.AsString())
		n, valid := validLen(s)
		return appendStringValue(b, num, s, n, valid)
	}
	inner := lim
	if inner.depth > 0 {
		inner.depth--
	}
	b, start := openField(b, num, 1)
	switch typ {
	case attribute.EMPTY:
	case attribute.BOOL:
		b = appendTag(b, fieldAnyBool, wireVarint)
		b = appendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = appendTag(b, fieldAnyInt, wireVarint)
		b = appendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = appendTag(b, fieldAnyDouble, wireFixed64)
		b = protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.BYTESLICE:
		s := v.AsString() // the bytes, without copying them
		if lim.length >= 0 && len(s) > lim.length {
			s = s[:lim.length]
		}
		b = appendTag(b, fieldAnyBytes, wireBytes)
		b = appendVarint(b, uint64(len(s)))
		b = append(b, s...)
	case attribute.BOOLSLICE:
		var as int
		b, as = openField(b, fieldAnyArray, 1)
		for _, x := range v.AsBoolSlice() {
			b = append(b, tag(fieldListValues, wireBytes), 2, tag(fieldAnyBool, wireVarint), byte(protowire.EncodeBool(x)))
		}
		b = closeField(b, as, 1)
	case attribute.INT64SLICE:
		var as int
		b, as = openField(b, fieldAnyArray, 1)
		for _, x := range v.AsInt64Slice() {
			b = append(b, tag(fieldListValues, wireBytes), byte(1+protowire.SizeVarint(uint64(x))), tag(fieldAnyInt, wireVarint))
			b = appendVarint(b, uint64(x))
		}
		b = closeField(b, as, 1)
	case attribute.FLOAT64SLICE:
		var as int
		b, as = openField(b, fieldAnyArray, 1)
		for _, x := range v.AsFloat64Slice() {
			b = append(b, tag(fieldListValues, wireBytes), 9, tag(fieldAnyDouble, wireFixed64))
			b = protowire.AppendFixed64(b, math.Float64bits(x))
		}
		b = closeField(b, as, 1)
	case attribute.STRINGSLICE:
		var as int
		b, as = openField(b, fieldAnyArray, 1)
		for _, x := range v.AsStringSlice() {
			x = truncate(lim.length, x)
			n, valid := validLen(x)
			b = appendStringValue(b, fieldListValues, x, n, valid)
		}
		b = closeField(b, as, 1)
	case attribute.SLICE:
		var as int
		b, as = openField(b, fieldAnyArray, 1)
		for _, x := range v.AsSlice() {
			b = appendAnyValue(b, fieldListValues, x, inner)
		}
		b = closeField(b, as, 1)
	case attribute.MAP:
		var ms int
		b, ms = openField(b, fieldAnyKVList, 1)
		for _, kv := range v.AsMap() {
			b = appendKeyValue(b, fieldListValues, string(kv.Key), kv.Value, inner)
		}
		b = closeField(b, ms, 1)
	default:
		b = appendString(b, fieldAnyString, "INVALID")
	}
	return closeField(b, start, 1)
}

// isCollection tells the value types the SDK's depth limit applies to.
func isCollection(t attribute.Type) bool {
	switch t {
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE,
		attribute.STRINGSLICE, attribute.BYTESLICE, attribute.SLICE, attribute.MAP:
		return true
	}
	return false
}

// truncate cuts s to limit characters the way the SDK's log attribute value
// length limit does: s is unchanged when limit < 0 or it has at most limit
// bytes; otherwise the result is its first limit characters, and when s is
// not valid UTF-8, the invalid bytes are dropped (not counted) first.
func truncate(limit int, s string) string {
	if limit < 0 || len(s) <= limit {
		return s
	}
	count := 0
	for i, c := range s {
		if c == utf8.RuneError {
			if limit == 0 {
				return ""
			}
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return truncateInvalid(limit, s, i, count)
			}
		}
		count++
		if count > limit {
			return s[:i]
		}
	}
	return s
}

// truncateInvalid continues truncate from the first invalid byte of s, at i,
// with count characters before it.
func truncateInvalid(limit int, s string, i, count int) string {
	var sb strings.Builder
	sb.Grow(len(s) - 1)
	sb.WriteString(s[:i])
	for i < len(s) && count < limit {
		_, size := utf8.DecodeRuneInString(s[i:])
		if size == 1 && s[i] >= utf8.RuneSelf {
			i++
			continue
		}
		sb.WriteString(s[i : i+size])
		i += size
		count++
	}
	return sb.String()
}
