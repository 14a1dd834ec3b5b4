package otlp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/yaml"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/racebuild"
	"github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

// The reference for the encoders is the SDK path as the sinks use it today
// (sink.go, trace_sink.go, cmd/kube-otel-bridge/pipeline.go): sdkLogsRequest
// and sdkTracesRequest below rebuild it from SDK parts only, so that these
// tests keep checking the same thing when the sinks stop using the SDK.

// ---------------------------------------------------------------------------
// The SDK reference.

// captureConn is a gRPC client connection that never connects: a client
// interceptor keeps each export request message and answers OK.
type captureConn struct {
	conn *grpc.ClientConn
	mu   sync.Mutex
	reqs []any
}

func newCaptureConn(tb testing.TB) *captureConn {
	tb.Helper()
	c := &captureConn{}
	intercept := func(_ context.Context, _ string, req, _ any, _ *grpc.ClientConn, _ grpc.UnaryInvoker, _ ...grpc.CallOption) error {
		c.mu.Lock()
		c.reqs = append(c.reqs, req)
		c.mu.Unlock()
		return nil
	}
	conn, err := grpc.NewClient("passthrough:///otlp.capture.invalid",
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUnaryInterceptor(intercept))
	if err != nil {
		tb.Fatal(err)
	}
	c.conn = conn
	tb.Cleanup(func() { conn.Close() })
	return c
}

// take returns the requests captured since the last call.
func (c *captureConn) take() []any {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.reqs
	c.reqs = nil
	return r
}

// recordCollector is an sdklog processor keeping copies of the records.
type recordCollector struct{ recs []sdklog.Record }

func (p *recordCollector) OnEmit(_ context.Context, r *sdklog.Record) error {
	p.recs = append(p.recs, r.Clone())
	return nil
}
func (*recordCollector) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (*recordCollector) Shutdown(context.Context) error                         { return nil }
func (*recordCollector) ForceFlush(context.Context) error                       { return nil }

// sdkLogsRequest is what the SDK path sends for entries: a LoggerProvider
// configured like LogSink's (resource res, WithAllowKeyDuplication), a
// logger for scope, each record emitted with its span context in the
// context as the daemon's pipeline puts it there (sampled, only when valid),
// then otlploggrpc. nil when the exporter sends nothing.
// entryRecord is the record of e: its own, or the one convert.LogRecord
// makes of its occurrence.
func entryRecord(e logEntry) log.Record {
	if e.occ != nil {
		return convert.LogRecord(e.occ)
	}
	return *e.rec
}

func sdkLogsRequest(tb testing.TB, res *resource.Resource, scope instrumentation.Scope, entries []logEntry) *collogspb.ExportLogsServiceRequest {
	tb.Helper()
	ctx := context.Background()
	collect := &recordCollector{}
	opts := []sdklog.LoggerProviderOption{sdklog.WithProcessor(collect), sdklog.WithAllowKeyDuplication()}
	if res != nil {
		opts = append(opts, sdklog.WithResource(res))
	}
	provider := sdklog.NewLoggerProvider(opts...)
	defer provider.Shutdown(ctx)
	logger := provider.Logger(scope.Name, log.WithInstrumentationVersion(scope.Version),
		log.WithSchemaURL(scope.SchemaURL), log.WithInstrumentationAttributeSet(scope.Attributes))
	for i := range entries {
		ectx := ctx
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: entries[i].traceID, SpanID: entries[i].spanID, TraceFlags: trace.FlagsSampled})
		if sc.IsValid() {
			ectx = trace.ContextWithSpanContext(ctx, sc)
		}
		logger.Emit(ectx, entryRecord(entries[i]))
	}
	cc := newCaptureConn(tb)
	exp, err := otlploggrpc.New(ctx, otlploggrpc.WithGRPCConn(cc.conn), otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}))
	if err != nil {
		tb.Fatal(err)
	}
	defer exp.Shutdown(ctx)
	if err := exp.Export(ctx, collect.recs); err != nil {
		tb.Fatal(err)
	}
	reqs := cc.take()
	switch len(reqs) {
	case 0:
		return nil
	case 1:
		return reqs[0].(*collogspb.ExportLogsServiceRequest)
	}
	tb.Fatalf("SDK log exporter sent %d requests for one batch", len(reqs))
	return nil
}

// sdkTraceSpans converts spans the way TraceSink did with the SDK
// (trace_sink.go: snapshot and resource): a tracetest.SpanStub per span
// under base with service.name replaced by Service.
type sdkTraceSpans struct {
	base      *resource.Resource
	scope     instrumentation.Scope
	resources map[string]*resource.Resource
}

func (s *sdkTraceSpans) snapshot(span causality.Span) sdktrace.ReadOnlySpan {
	stub := tracetest.SpanStub{
		Name: span.Name,
		SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: span.TraceID, SpanID: span.SpanID, TraceFlags: trace.FlagsSampled,
		}),
		SpanKind:             trace.SpanKindInternal,
		StartTime:            span.Start,
		EndTime:              span.End,
		Attributes:           slices.Clone(span.AllAttributes()),
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
	for _, l := range span.Links {
		stub.Links = append(stub.Links, sdktrace.Link{
			SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: l.TraceID, SpanID: l.SpanID, TraceFlags: trace.FlagsSampled}),
			Attributes:  slices.Clone(l.Attributes),
		})
	}
	return stub.Snapshot()
}

func (s *sdkTraceSpans) resource(service string) *resource.Resource {
	if service == "" {
		return s.base
	}
	if r, ok := s.resources[service]; ok {
		return r
	}
	r, err := resource.Merge(s.base, resource.NewSchemaless(semconv.ServiceName(service)))
	if err != nil {
		panic(err)
	}
	if len(s.resources) < 256 { // the SDK path's cache bound before the direct encoder
		s.resources[service] = r
	}
	return r
}

// sdkTracesRequest is what the SDK path sends for spans: TraceSink's
// conversion, then otlptracegrpc. nil when the exporter sends nothing.
func sdkTracesRequest(tb testing.TB, base *resource.Resource, scope instrumentation.Scope, spans []causality.Span) *coltracepb.ExportTraceServiceRequest {
	tb.Helper()
	if base == nil {
		base = resource.Default()
	}
	conv := &sdkTraceSpans{base: base, scope: scope, resources: map[string]*resource.Resource{}}
	ro := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, sp := range spans {
		ro[i] = conv.snapshot(sp)
	}
	ctx := context.Background()
	cc := newCaptureConn(tb)
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithGRPCConn(cc.conn), otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
	if err != nil {
		tb.Fatal(err)
	}
	defer exp.Shutdown(ctx)
	if err := exp.ExportSpans(ctx, ro); err != nil {
		tb.Fatal(err)
	}
	reqs := cc.take()
	switch len(reqs) {
	case 0:
		return nil
	case 1:
		return reqs[0].(*coltracepb.ExportTraceServiceRequest)
	}
	tb.Fatalf("SDK trace exporter sent %d requests for one batch", len(reqs))
	return nil
}

// sanitize replaces invalid UTF-8 in every string of m as the encoders do
// (the SDK leaves it, and its request could not even be marshalled).
func sanitize(m protoreflect.Message) {
	type set struct {
		fd protoreflect.FieldDescriptor
		s  string
	}
	var sets []set
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				switch fd.Kind() {
				case protoreflect.MessageKind:
					sanitize(l.Get(i).Message())
				case protoreflect.StringKind:
					l.Set(i, protoreflect.ValueOfString(strings.ToValidUTF8(l.Get(i).String(), "\uFFFD")))
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			sanitize(v.Message())
		case fd.Kind() == protoreflect.StringKind:
			sets = append(sets, set{fd, strings.ToValidUTF8(v.String(), "\uFFFD")})
		}
		return true
	})
	for _, s := range sets {
		m.Set(s.fd, protoreflect.ValueOfString(s.s))
	}
}

// ---------------------------------------------------------------------------
// Comparison.

// checkLogs encodes entries with a new encoder and with the SDK path and
// compares the requests.
func checkLogs(t *testing.T, res *resource.Resource, scope instrumentation.Scope, entries []logEntry) {
	t.Helper()
	checkLogsWith(t, newLogsEncoder(res, scope), res, scope, entries)
}

// checkLogsWith is checkLogs with an encoder that may have been used before.
func checkLogsWith(t *testing.T, enc *logsEncoder, res *resource.Resource, scope instrumentation.Scope, entries []logEntry) {
	t.Helper()
	before := time.Now()
	want := sdkLogsRequest(t, res, scope, entries)
	data := enc.encode(entries)
	after := time.Now()
	got := &collogspb.ExportLogsServiceRequest{}
	if err := proto.Unmarshal(data, got); err != nil {
		t.Fatalf("our request does not unmarshal: %v", err)
	}
	if want == nil {
		if len(data) != 0 {
			t.Fatalf("the SDK sends nothing, we encoded %d bytes", len(data))
		}
		return
	}
	sanitize(want.ProtoReflect())
	// A record without observed time gets the time of Emit in the SDK and
	// of encode here.
	for i := range entries {
		if r := entryRecord(entries[i]); !r.ObservedTimestamp().IsZero() {
			continue
		}
		for _, req := range []*collogspb.ExportLogsServiceRequest{want, got} {
			recs := req.GetResourceLogs()[0].GetScopeLogs()[0].GetLogRecords()
			if len(recs) != len(entries) {
				t.Fatalf("%d records for %d entries", len(recs), len(entries))
			}
			ts := recs[i].ObservedTimeUnixNano
			if ts < uint64(before.UnixNano()) || ts > uint64(after.UnixNano()) {
				t.Errorf("record %d: observed time %d outside [%d, %d]", i, ts, before.UnixNano(), after.UnixNano())
			}
			recs[i].ObservedTimeUnixNano = 0
		}
	}
	if !proto.Equal(want, got) {
		t.Fatalf("request differs from the SDK's\n%s", logsDiff(want, got))
	}
}

// logsDiff shows the first difference between two log requests.
func logsDiff(want, got *collogspb.ExportLogsServiceRequest) string {
	wr, gr := want.GetResourceLogs(), got.GetResourceLogs()
	if len(wr) != 1 || len(gr) != 1 || len(wr[0].GetScopeLogs()) != 1 || len(gr[0].GetScopeLogs()) != 1 {
		return textDiff(want, got)
	}
	wl, gl := wr[0].GetScopeLogs()[0].GetLogRecords(), gr[0].GetScopeLogs()[0].GetLogRecords()
	for i := range min(len(wl), len(gl)) {
		if !proto.Equal(wl[i], gl[i]) {
			return fmt.Sprintf("record %d:\n%s", i, textDiff(wl[i], gl[i]))
		}
	}
	if len(wl) != len(gl) {
		return fmt.Sprintf("%d records, want %d", len(gl), len(wl))
	}
	// The records are equal: resource or scope.
	w, g := proto.Clone(wr[0]).(*logspb.ResourceLogs), proto.Clone(gr[0]).(*logspb.ResourceLogs)
	w.ScopeLogs[0].LogRecords, g.ScopeLogs[0].LogRecords = nil, nil
	return textDiff(w, g)
}

func textDiff(want, got proto.Message) string {
	const max = 6000
	w, g := prototext.Format(want), prototext.Format(got)
	if len(w) > max {
		w = w[:max] + "…"
	}
	if len(g) > max {
		g = g[:max] + "…"
	}
	return "--- want (SDK)\n" + w + "\n--- got\n" + g
}

// checkTraces encodes spans with a new encoder and with the SDK path and
// compares the requests, ResourceSpans in any order.
func checkTraces(t *testing.T, base *resource.Resource, scope instrumentation.Scope, spans []causality.Span) {
	t.Helper()
	checkTracesWith(t, newTracesEncoder(base, scope), base, scope, spans)
}

// checkTracesWith is checkTraces with an encoder that may have been used
// before.
func checkTracesWith(t *testing.T, enc *tracesEncoder, base *resource.Resource, scope instrumentation.Scope, spans []causality.Span) {
	t.Helper()
	want := sdkTracesRequest(t, base, scope, spans)
	data := enc.encode(spans)
	got := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(data, got); err != nil {
		t.Fatalf("our request does not unmarshal: %v", err)
	}
	if want == nil {
		if len(data) != 0 {
			t.Fatalf("the SDK sends nothing, we encoded %d bytes", len(data))
		}
		return
	}
	sanitize(want.ProtoReflect())
	// Our groups come in order of first appearance; the SDK's from a map.
	sortResourceSpans(t, want)
	sortResourceSpans(t, got)
	if !proto.Equal(want, got) {
		t.Fatalf("request differs from the SDK's\n%s", tracesDiff(want, got))
	}
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sortResourceSpans(t testing.TB, req *coltracepb.ExportTraceServiceRequest) {
	slices.SortStableFunc(req.ResourceSpans, func(a, b *tracepb.ResourceSpans) int {
		return bytes.Compare(mustMarshal(t, a), mustMarshal(t, b))
	})
}

func tracesDiff(want, got *coltracepb.ExportTraceServiceRequest) string {
	if len(want.ResourceSpans) != len(got.ResourceSpans) {
		return fmt.Sprintf("%d ResourceSpans, want %d\n%s", len(got.ResourceSpans), len(want.ResourceSpans), textDiff(want, got))
	}
	for i := range want.ResourceSpans {
		w, g := want.ResourceSpans[i], got.ResourceSpans[i]
		if proto.Equal(w, g) {
			continue
		}
		if len(w.ScopeSpans) == 1 && len(g.ScopeSpans) == 1 {
			ws, gs := w.ScopeSpans[0].Spans, g.ScopeSpans[0].Spans
			for j := range min(len(ws), len(gs)) {
				if !proto.Equal(ws[j], gs[j]) {
					return fmt.Sprintf("ResourceSpans %d, span %d:\n%s", i, j, textDiff(ws[j], gs[j]))
				}
			}
		}
		return textDiff(w, g)
	}
	return textDiff(want, got)
}

// ---------------------------------------------------------------------------
// Inputs.

var (
	encTime  = time.Date(2026, 11, 23, 16, 0, 0, 123456789, time.UTC)
	encTrace = trace.TraceID{0x4b, 0x6f, 0x62, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}
	encSpan  = trace.SpanID{0x53, 0x70, 1, 2, 3, 4, 5, 6}
	encSpan2 = trace.SpanID{0x53, 0x70, 9, 9, 9, 9, 9, 9}
)

// encResource is a resource like the daemon's (bridgeResource).
func encResource() *resource.Resource {
	return resource.NewSchemaless(convert.Resource("kube-otel-bridge", "test-cluster", "2b9c3f4e-8a51-4c1d-9d7e-0f6b2a1c3d4e")...)
}

// encScopes are the scopes the tests try: the sinks' and the unusual ones.
func encScopes() map[string]instrumentation.Scope {
	return map[string]instrumentation.Scope{
		"sink":  {Name: ScopeName},
		"zero":  {},
		"full":  {Name: ScopeName, Version: "v1.2.3", SchemaURL: "https://opentelemetry.io/schemas/1.26.0", Attributes: attribute.NewSet(attribute.String("a", "b"), attribute.Int64("n", -3), attribute.StringSlice("s", []string{"x", ""}))},
		"attrs": {Attributes: attribute.NewSet(attribute.Bool("only", true))},
		"bad":   {Name: "bad\xffscope", Version: "v\xc3", SchemaURL: "https://x/\xfe", Attributes: attribute.NewSet(attribute.String("", "empty key"), attribute.String("k\xff", "v\xff"))},
	}
}

// encResources are the resources the tests try.
func encResources() map[string]*resource.Resource {
	schema, err := resource.New(context.Background(), resource.WithSchemaURL("https://opentelemetry.io/schemas/1.26.0"),
		resource.WithAttributes(attribute.String("service.name", "svc"), attribute.String("zzz", "last"), attribute.String("aaa", "first")))
	if err != nil {
		panic(err)
	}
	return map[string]*resource.Resource{
		"bridge":    encResource(),
		"default":   nil,
		"empty":     resource.Empty(),
		"schema":    schema,
		"noservice": resource.NewSchemaless(attribute.String("k8s.cluster.name", "c"), attribute.String("zone", "z")),
		"intsvc":    resource.NewSchemaless(attribute.Int("service.name", 7), attribute.Bool("x", true)),
		"invalid":   resource.NewSchemaless(attribute.String("service.name", "bad\xff"), attribute.String("k\xc3", "\xffv")),
	}
}

// everyValue has a value of every attribute type, with edge values.
func everyValue() []attribute.KeyValue {
	deepSlice := attribute.IntValue(1)
	deepMap := attribute.StringValue("leaf")
	for i := range 70 {
		deepSlice = attribute.SliceValue(deepSlice, attribute.ByteSliceValue([]byte{byte(i)}))
		deepMap = attribute.MapValue(attribute.KeyValue{Key: "k", Value: deepMap}, attribute.StringSlice("ss", []string{"a"}))
	}
	return []attribute.KeyValue{
		attribute.Bool("bool.true", true),
		attribute.Bool("bool.false", false),
		attribute.Int64("int.zero", 0),
		attribute.Int64("int.neg", -1),
		attribute.Int64("int.min", math.MinInt64),
		attribute.Int64("int.max", math.MaxInt64),
		attribute.Int("int.small", 127),
		attribute.Float64("float.zero", 0),
		attribute.Float64("float.negzero", math.Copysign(0, -1)),
		attribute.Float64("float.nan", math.NaN()),
		attribute.Float64("float.inf", math.Inf(1)),
		attribute.Float64("float.-inf", math.Inf(-1)),
		attribute.Float64("float.pi", math.Pi),
		attribute.String("string.empty", ""),
		attribute.String("string", "value"),
		attribute.String("string.long", strings.Repeat("long é ", 300)),
		attribute.BoolSlice("bools", []bool{true, false, true}),
		attribute.BoolSlice("bools.empty", []bool{}),
		attribute.BoolSlice("bools.nil", nil),
		attribute.Int64Slice("ints", []int64{0, -1, math.MinInt64, math.MaxInt64, 300}),
		attribute.Int64Slice("ints.empty", nil),
		attribute.Float64Slice("floats", []float64{0, math.NaN(), math.Inf(-1), -2.5}),
		attribute.Float64Slice("floats.empty", []float64{}),
		attribute.StringSlice("strings", []string{"", "a", strings.Repeat("b", 200)}),
		attribute.StringSlice("strings.empty", []string{}),
		attribute.ByteSlice("bytes", []byte{0, 1, 0xff}),
		attribute.ByteSlice("bytes.empty", []byte{}),
		attribute.ByteSlice("bytes.nil", nil),
		attribute.Slice("slice", attribute.IntValue(1), attribute.StringValue("two"), attribute.Value{},
			attribute.SliceValue(attribute.BoolValue(true)), attribute.MapValue(attribute.Float64("f", 1.5)),
			attribute.Int64SliceValue([]int64{5}), attribute.ByteSliceValue([]byte("b"))),
		attribute.Slice("slice.empty"),
		attribute.Map("map", attribute.String("z", "last"), attribute.Int("a", 1), attribute.String("a", "dup"),
			attribute.Slice("nested", attribute.StringValue("x")), attribute.KeyValue{Key: "", Value: attribute.StringValue("empty key")},
			attribute.KeyValue{Key: "empty"}),
		attribute.Map("map.empty"),
		{Key: "slice.deep", Value: deepSlice},
		{Key: "map.deep", Value: deepMap},
		{Key: "empty.value"}, // EMPTY
		{Key: "", Value: attribute.StringValue("empty key")},
		attribute.String("dup", "1"),
		attribute.String("dup", "2"),
		attribute.Int("k8s.event.count", 3),
	}
}

// invalidValues has invalid UTF-8 wherever an attribute has a string.
func invalidValues() []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("bad.value", "a\xffb\xc3\x28c\xe2\x82"),
		attribute.String("bad\xfekey", "ok"),
		attribute.String("\xff", "\xff\xfe\xfd"),
		attribute.String("long.bad", strings.Repeat("x\xff", 100)),
		attribute.StringSlice("bad.slice", []string{"\xff", "ok", "\xc0\xaf"}),
		attribute.Slice("bad.nested", attribute.StringValue("\xed\xa0\x80"), attribute.MapValue(attribute.String("k\xff", "v\xff"))),
		attribute.Map("bad.map", attribute.String("\xf0\x9f", "\xf0\x9f\x98")),
		attribute.ByteSlice("bytes.are.bytes", []byte{0xff, 0xfe}),
	}
}

// typedError has an ErrorType; wrapped and plain errors derive the type
// from Go's type names.
type typedError struct{ msg string }

func (e typedError) Error() string     { return e.msg }
func (e typedError) ErrorType() string { return "custom.Type" }

type namedError struct{}

func (*namedError) Error() string { return "named" }

// edgeRecords are hand-made records covering what convert.LogRecord never
// produces.
func edgeRecords() []logEntry {
	var out []logEntry
	add := func(trace trace.TraceID, span trace.SpanID, f func(r *log.Record)) {
		var r log.Record
		f(&r)
		out = append(out, logEntry{rec: &r, traceID: trace, spanID: span})
	}
	// Nothing set at all (zero times: observed becomes "now").
	add(trace.TraceID{}, trace.SpanID{}, func(r *log.Record) {})
	add(encTrace, encSpan, func(r *log.Record) {
		r.SetTimestamp(encTime)
		r.SetObservedTimestamp(encTime.Add(time.Millisecond))
		r.SetSeverity(log.SeverityWarn)
		r.SetSeverityText("Warning")
		r.SetEventName("k8s.event")
		r.SetBody(attribute.StringValue("body"))
		r.AddAttributes(everyValue()...)
	})
	// Linked only half: the pipeline does not link it.
	add(encTrace, trace.SpanID{}, func(r *log.Record) { r.SetObservedTimestamp(encTime) })
	add(trace.TraceID{}, encSpan, func(r *log.Record) { r.SetObservedTimestamp(encTime) })
	// Times before 1970 and after 2262, severities out of range.
	for i, sev := range []log.Severity{-1, 0, 1, 9, 13, 17, 21, 24, 25, 1000} {
		add(encTrace, encSpan2, func(r *log.Record) {
			r.SetSeverity(sev)
			r.SetTimestamp(time.Unix(-int64(i)*1e9-1, 0))
			r.SetObservedTimestamp(time.Date(2300+i, 1, 1, 0, 0, 0, 0, time.UTC))
		})
	}
	// Bodies of every type.
	for _, kv := range everyValue() {
		add(encTrace, encSpan, func(r *log.Record) {
			r.SetObservedTimestamp(encTime)
			r.SetBody(kv.Value)
		})
	}
	// Few attributes (the API record keeps 5 inline), many (over the SDK's
	// default count limit of 128).
	for _, n := range []int{1, 5, 6, 128, 129, 300} {
		add(encTrace, encSpan, func(r *log.Record) {
			r.SetObservedTimestamp(encTime)
			for i := range n {
				r.AddAttributes(attribute.Int("a"+strconv.Itoa(i), i))
			}
			r.AddAttributes(attribute.String("", "invalid, not counted"))
		})
	}
	// Errors: exception attributes derived unless present.
	errs := []error{
		errors.New("plain"),
		fmt.Errorf("wrapped: %w", fmt.Errorf("twice: %w", &namedError{})),
		fmt.Errorf("wrapped nil: %w", nil),
		typedError{"typed"},
		typedError{""},
		&namedError{},
		errors.Join(errors.New("a"), errors.New("b")),
	}
	for i, err := range errs {
		add(encTrace, encSpan, func(r *log.Record) {
			r.SetObservedTimestamp(encTime)
			r.SetErr(err)
			switch i % 3 {
			case 1:
				r.AddAttributes(attribute.String(string(semconv.ExceptionMessageKey), "given"))
			case 2:
				r.AddAttributes(attribute.Int(string(semconv.ExceptionTypeKey), 4))
			}
		})
	}
	add(encTrace, encSpan, func(r *log.Record) {
		r.SetObservedTimestamp(encTime)
		r.SetErr(errors.New("both given"))
		r.AddAttributes(attribute.String(string(semconv.ExceptionTypeKey), "t"), attribute.String(string(semconv.ExceptionMessageKey), "m"))
	})
	// Invalid UTF-8 everywhere.
	add(encTrace, encSpan, func(r *log.Record) {
		r.SetObservedTimestamp(encTime)
		r.SetSeverityText("Warn\xffing")
		r.SetEventName("k8s.\xc3event")
		r.SetBody(attribute.StringValue("note \xff\xfe end \xe2\x82"))
		r.AddAttributes(invalidValues()...)
		r.SetErr(errors.New("err \xff"))
	})
	add(encTrace, encSpan, func(r *log.Record) {
		r.SetObservedTimestamp(encTime)
		r.SetBody(attribute.MapValue(invalidValues()...))
	})
	return out
}

// edgeSpans are hand-made spans covering what the engine rarely produces.
func edgeSpans() []causality.Span {
	link := causality.Link{TraceID: encTrace, SpanID: encSpan2, Attributes: []attribute.KeyValue{attribute.String("link.kind", "previous_episode")}}
	out := []causality.Span{
		{}, // all zero
		{TraceID: encTrace, SpanID: encSpan, Name: "Deployment web", Start: encTime, End: encTime.Add(time.Second), Service: "kube-otel-bridge", Kind: causality.KindRoot},
		{TraceID: encTrace, SpanID: encSpan2, Parent: encSpan, Name: "Pod.Pulled", Start: encTime, End: encTime, Service: "kubelet",
			Attributes: everyValue(), Kind: causality.KindEvent},
		{TraceID: encTrace, SpanID: encSpan2, Parent: encSpan, Remote: true, Name: "remote parent", Service: "kubelet"},
		{TraceID: encTrace, SpanID: encSpan2, Remote: true, Name: "remote without parent", Service: "default-scheduler"},
		{TraceID: encTrace, SpanID: encSpan, Name: "warning", Error: true, StatusMessage: "Back-off restarting failed container", Service: "kubelet"},
		{TraceID: encTrace, SpanID: encSpan, Name: "warning, no message", Error: true, Service: "kubelet"},
		{TraceID: encTrace, SpanID: encSpan, Name: "message, no error", StatusMessage: "ignored", Service: ""},
		{TraceID: encTrace, SpanID: encSpan, Name: "links", Links: []causality.Link{link, {TraceID: encTrace, SpanID: encSpan}, {}}, Service: "node-controller"},
		{TraceID: encTrace, SpanID: encSpan, Name: "link with every value", Links: []causality.Link{{TraceID: encTrace, SpanID: encSpan2, Attributes: everyValue()}}},
		{TraceID: encTrace, SpanID: encSpan, Name: "old", Start: time.Unix(-5, 0), End: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), Service: "svc"},
		{TraceID: encTrace, SpanID: encSpan, Name: "", Service: "svc"},
		{TraceID: encTrace, SpanID: encSpan, Name: strings.Repeat("long name ", 2000), Service: "svc",
			Attributes: []attribute.KeyValue{attribute.String("note", strings.Repeat("x", 70000))}},
		// Invalid UTF-8 everywhere.
		{TraceID: encTrace, SpanID: encSpan, Parent: encSpan2, Name: "bad \xff name", Error: true, StatusMessage: "bad \xfe status",
			Service: "bad\xffservice", Attributes: invalidValues(),
			Links: []causality.Link{{TraceID: encTrace, SpanID: encSpan2, Attributes: invalidValues()}}},
		{TraceID: encTrace, SpanID: encSpan, Name: "other bad service", Service: "bad\xfeservice"},
		{TraceID: encTrace, SpanID: encSpan, Name: "service.name of the test resources", Service: "svc"},
		{TraceID: encTrace, SpanID: encSpan, Name: "bridge again", Service: "kube-otel-bridge"},
		{TraceID: encTrace, SpanID: encSpan, Name: "no service"},
	}
	// Event spans: attributes from the occurrence, then their own; one with
	// a chain longer than causality.EventAttrs holds.
	for i, o := range edgeOccurrences() {
		sp := causality.Span{TraceID: encTrace, SpanID: encSpan, Name: "event", Service: "kubelet", Kind: causality.KindEvent, Event: o}
		if i%2 == 1 {
			sp.Attributes = []attribute.KeyValue{attribute.String("own", "after the event's")}
		}
		out = append(out, sp)
	}
	long := edgeOccurrences()[0]
	for i := range 30 {
		long.Chain = append(long.Chain, convert.Ref{Kind: "Pod", Name: fmt.Sprintf("p-%d", i), UID: fmt.Sprintf("u-%d", i)})
	}
	out = append(out, causality.Span{TraceID: encTrace, SpanID: encSpan, Name: "long chain", Kind: causality.KindEvent, Event: long,
		Attributes: everyValue()})
	return out
}

// replayRecording runs a recording through the watch and causality stages
// like the daemon's replay command (cmd/kube-otel-bridge/replay.go) and
// returns the log entries (records linked to their event spans) and the
// spans. Root objects get a traceparent annotation when withTraceparent,
// so their episodes have remote parents.
func replayRecording(tb testing.TB, path string, withTraceparent bool) ([]logEntry, []causality.Span) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	entries, err := watch.ReadRecording(f)
	if err != nil {
		tb.Fatal(err)
	}
	var now time.Time
	objects, err := watch.NewObjectCache(watch.CacheOptions{Now: func() time.Time { return now }})
	if err != nil {
		tb.Fatal(err)
	}
	engine, err := causality.New(causality.Config{ClusterName: "test"})
	if err != nil {
		tb.Fatal(err)
	}
	dedup := watch.NewDedup()
	var logs []logEntry
	var spans []causality.Span
	for _, e := range entries {
		now = e.At
		spans = append(spans, engine.Advance(now)...)
		switch {
		case e.Object != nil && !e.Object.Deleted.IsZero():
			if _, ok := objects.Get(e.Object.UID); !ok {
				objects.Upsert(e.Object)
			}
			objects.MarkDeleted(e.Object.UID, e.Object.Deleted)
			spans = append(spans, engine.RootDeleted(e.Object.UID, e.Object.Deleted)...)
		case e.Object != nil:
			o := *e.Object
			if withTraceparent && len(o.Owners) == 0 {
				o.Traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
			}
			objects.Upsert(&o)
		case e.Event != nil:
			batch, err := watch.Occurrences(dedup, e.Event, e.At, convert.Options{})
			if err != nil {
				tb.Fatal(err)
			}
			for i := range batch {
				o := &batch[i]
				o.Chain, _ = objects.Chain(o.Chain)
				in := causality.Input{Occ: o, Now: o.Observed}
				if n := len(o.Chain); n > 0 && o.Chain[n-1].UID != "" {
					if root, ok := objects.Get(o.Chain[n-1].UID); ok {
						in.RootGeneration, in.RootTraceparent = root.Generation, root.Traceparent
					}
				}
				res := engine.Observe(in)
				o.TraceID, o.SpanID = res.TraceID, res.SpanID
				spans = append(spans, res.Spans...)
				logs = append(logs, logEntry{occ: o, traceID: o.TraceID, spanID: o.SpanID})
			}
		}
	}
	spans = append(spans, engine.Flush()...)
	return logs, spans
}

func recordingPaths(tb testing.TB) []string {
	paths, err := filepath.Glob("../../examples/recordings/*.jsonl")
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no recordings: %v", err)
	}
	return paths
}

// goldenRecords converts the convert package's golden input Events (with
// their test annotations: owner chain, raw bytes) to log records.
func goldenRecords(t *testing.T) []logEntry {
	t.Helper()
	paths, err := filepath.Glob("../../convert/testdata/events/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no convert inputs: %v", err)
	}
	var out []logEntry
	for i, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var ev eventsv1.Event
		if err := yaml.Unmarshal(data, &ev); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		var chain []convert.Ref
		for k, v := range ev.Annotations {
			switch k {
			case "testdata.convert/chain":
				if err := json.Unmarshal([]byte(v), &chain); err != nil {
					t.Fatalf("%s: %v", p, err)
				}
			case "testdata.convert/note-repeat-bytes":
				n, _ := strconv.Atoi(v)
				ev.Note = strings.Repeat(ev.Note, n/max(len(ev.Note), 1)+1)[:n]
			case "testdata.convert/note-base64", "testdata.convert/reason-base64":
				b, err := base64.StdEncoding.DecodeString(v)
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				if strings.HasSuffix(k, "note-base64") {
					ev.Note = string(b)
				} else {
					ev.Reason = string(b)
				}
			}
		}
		o, err := convert.FromEvent(&ev, convert.EventCount(&ev), encTime, convert.Options{})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		o.Chain = append(o.Chain, chain...)
		r := convert.LogRecord(&o)
		e := logEntry{rec: &r}
		if i%2 == 0 {
			e.traceID, e.spanID = encTrace, trace.SpanID{byte(i + 1)}
		}
		out = append(out, e)
	}
	return out
}

// ---------------------------------------------------------------------------
// Equivalence with the SDK.

func TestLogsEncoderMatchesSDK(t *testing.T) {
	bridge := encResource()
	sinkScope := instrumentation.Scope{Name: ScopeName}
	t.Run("recordings", func(t *testing.T) {
		for _, p := range recordingPaths(t) {
			t.Run(filepath.Base(p), func(t *testing.T) {
				entries, _ := replayRecording(t, p, false)
				if len(entries) == 0 {
					t.Skip("empty recording")
				}
				// One encoder for all batches: reuse must not leak state.
				enc := newLogsEncoder(bridge, sinkScope)
				for len(entries) > 0 {
					n := min(len(entries), 37)
					checkLogsWith(t, enc, bridge, sinkScope, entries[:n])
					entries = entries[n:]
				}
			})
		}
	})
	t.Run("goldens", func(t *testing.T) {
		checkLogs(t, bridge, sinkScope, goldenRecords(t))
	})
	t.Run("edge", func(t *testing.T) {
		enc := newLogsEncoder(bridge, sinkScope)
		edge := edgeRecords()
		checkLogsWith(t, enc, bridge, sinkScope, edge)
		for i := range edge {
			checkLogsWith(t, enc, bridge, sinkScope, edge[i:i+1])
		}
	})
	t.Run("empty", func(t *testing.T) {
		checkLogs(t, bridge, sinkScope, nil)
		checkLogs(t, bridge, sinkScope, []logEntry{})
	})
	for name, res := range encResources() {
		t.Run("resource="+name, func(t *testing.T) {
			checkLogs(t, res, sinkScope, edgeRecords()[:3])
		})
	}
	for name, scope := range encScopes() {
		t.Run("scope="+name, func(t *testing.T) {
			checkLogs(t, bridge, scope, edgeRecords()[:3])
		})
	}
}

// TestLogsEncoderLimits: the SDK's attribute count and value length limits
// from the environment apply the same way.
func TestLogsEncoderLimits(t *testing.T) {
	entries := edgeRecords()
	var r log.Record
	r.SetObservedTimestamp(encTime)
	r.AddAttributes(
		attribute.String("ascii", "abcdefgh"),
		attribute.String("short", "abc"),
		attribute.String("multibyte", "ééééééé"),
		attribute.String("invalid.long", "a\xffbcd\xfeefgh"),
		attribute.String("invalid.short", "\xff\xfe"),
		attribute.String("replacement", "\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD"),
		attribute.StringSlice("slice", []string{"abcdefgh", "ab", "\xffabcdef"}),
		attribute.ByteSlice("bytes", []byte("abcdefgh")),
		attribute.ByteSlice("bytes.5", []byte("abcde")),
		attribute.String("string.5", "abcde"),
		attribute.Slice("nested", attribute.StringValue("abcdefgh"), attribute.MapValue(attribute.String("key-not-cut", "abcdefgh"))),
	)
	r.SetBody(attribute.StringValue("the body is not limited"))
	r.SetErr(errors.New("an error message longer than the limit"))
	entries = append(entries, logEntry{rec: &r, traceID: encTrace, spanID: encSpan})
	for _, c := range []struct{ count, length string }{
		{"3", "4"}, {"", "4"}, {"0", "0"}, {"1", "1"}, {"-1", "-1"}, {"", "6"}, {"2", ""}, {"junk", "junk"},
	} {
		t.Run(fmt.Sprintf("count=%q,length=%q", c.count, c.length), func(t *testing.T) {
			t.Setenv(envLogAttrCountLimit, c.count)
			t.Setenv(envLogAttrValueLengthLimit, c.length)
			checkLogs(t, encResource(), instrumentation.Scope{Name: ScopeName}, entries)
		})
	}
}

// edgeOccurrences are occurrences that exercise every branch of
// convert.LogAttrs: truncated notes, times taken from the observed time, no
// regarding object, a Node in the chain, invalid UTF-8, empty fields, a
// start time in another zone and with nanoseconds.
func edgeOccurrences() []*convert.Occurrence {
	pod := convert.Ref{Kind: "Pod", APIVersion: "v1", Namespace: "shop", Name: "web-1", UID: "uid-pod", ResourceVersion: "7", FieldPath: "spec.containers{web}"}
	rs := convert.Ref{Kind: "ReplicaSet", APIVersion: "apps/v1", Namespace: "shop", Name: "web", UID: "uid-rs"}
	node := convert.Ref{Kind: "Node", APIVersion: "v1", Name: "node-1", UID: "uid-node"}
	base := func() *convert.Occurrence {
		return &convert.Occurrence{EventUID: "ev-uid", EventName: "web-1.1", Namespace: "shop", Count: 3, Type: "Warning",
			Reason: "BackOff", Action: "Restart", Note: "Back-off restarting", Time: encTime, FirstTime: encTime.Add(-time.Minute),
			Observed: encTime.Add(time.Second), Regarding: pod, ReportingController: "kubelet", ReportingInstance: "node-1",
			SourceHost: "node-1", Chain: []convert.Ref{pod, rs}, TraceID: encTrace, SpanID: encSpan}
	}
	var out []*convert.Occurrence
	add := func(f func(o *convert.Occurrence)) {
		o := base()
		f(o)
		out = append(out, o)
	}
	add(func(*convert.Occurrence) {})
	add(func(o *convert.Occurrence) { o.NoteTruncated, o.NoteOriginalBytes = true, 1<<20 })
	add(func(o *convert.Occurrence) { o.TimeFromObserved, o.Time = true, o.Observed })
	add(func(o *convert.Occurrence) { o.Regarding, o.Chain = convert.Ref{}, nil })
	add(func(o *convert.Occurrence) { o.Regarding, o.Chain = node, []convert.Ref{node} })
	add(func(o *convert.Occurrence) { o.Chain = nil })
	add(func(o *convert.Occurrence) { o.Chain = append(o.Chain, node) })
	add(func(o *convert.Occurrence) {
		o.Reason, o.Note, o.Regarding.Name, o.Type = "a\xffb", "\xfe\xff", "web\xc3", "Normal\xe2"
	})
	add(func(o *convert.Occurrence) {
		*o = convert.Occurrence{Observed: encTime} // everything empty
	})
	add(func(o *convert.Occurrence) {
		o.FirstTime = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 3600))
		o.Count, o.Type = 0, "Custom"
	})
	add(func(o *convert.Occurrence) { o.TraceID, o.SpanID = [16]byte{}, [8]byte{} })
	return out
}

// TestLogsOccurrenceMatchesRecord: an occurrence queued as such
// (EmitOccurrence) encodes to the very bytes of the record
// convert.LogRecord makes of it, for every recording and edge case, also
// under the SDK's attribute limits; the record path is compared with the
// SDK in TestLogsEncoderMatchesSDK and TestLogsEncoderLimits.
func TestLogsOccurrenceMatchesRecord(t *testing.T) {
	occs := edgeOccurrences()
	for _, p := range recordingPaths(t) {
		logs, _ := replayRecording(t, p, false)
		for _, e := range logs {
			occs = append(occs, e.occ)
		}
	}
	for _, c := range []struct{ count, length string }{{"", ""}, {"3", "4"}, {"0", "0"}, {"20", "-1"}} {
		t.Run(fmt.Sprintf("count=%q,length=%q", c.count, c.length), func(t *testing.T) {
			t.Setenv(envLogAttrCountLimit, c.count)
			t.Setenv(envLogAttrValueLengthLimit, c.length)
			byOcc := newLogsEncoder(encResource(), instrumentation.Scope{Name: ScopeName})
			byRec := newLogsEncoder(encResource(), instrumentation.Scope{Name: ScopeName})
			for i, o := range occs {
				r := convert.LogRecord(o)
				ids := logEntry{traceID: o.TraceID, spanID: o.SpanID}
				if !ids.traceID.IsValid() || !ids.spanID.IsValid() {
					ids = logEntry{}
				}
				want := slices.Clone(byRec.encode([]logEntry{{rec: &r, traceID: ids.traceID, spanID: ids.spanID}}))
				got := byOcc.encode([]logEntry{{occ: o, traceID: ids.traceID, spanID: ids.spanID}})
				if !bytes.Equal(got, want) {
					var wm, gm collogspb.ExportLogsServiceRequest
					_ = proto.Unmarshal(want, &wm)
					_ = proto.Unmarshal(got, &gm)
					t.Fatalf("occurrence %d (%s/%d): encoding differs from its record's\n%s", i, o.EventUID, o.Count, logsDiff(&wm, &gm))
				}
			}
		})
	}
}

func TestTracesEncoderMatchesSDK(t *testing.T) {
	bridge := encResource()
	sinkScope := instrumentation.Scope{Name: ScopeName, Version: "v0.9.0"}
	t.Run("recordings", func(t *testing.T) {
		for _, p := range recordingPaths(t) {
			for _, tp := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/traceparent=%v", filepath.Base(p), tp), func(t *testing.T) {
					_, spans := replayRecording(t, p, tp)
					if len(spans) == 0 {
						t.Skip("empty recording")
					}
					enc := newTracesEncoder(bridge, sinkScope)
					checkTracesWith(t, enc, bridge, sinkScope, spans)
					for len(spans) > 0 {
						n := min(len(spans), 23)
						checkTracesWith(t, enc, bridge, sinkScope, spans[:n])
						spans = spans[n:]
					}
				})
			}
		}
	})
	t.Run("edge", func(t *testing.T) {
		enc := newTracesEncoder(bridge, sinkScope)
		edge := edgeSpans()
		checkTracesWith(t, enc, bridge, sinkScope, edge)
		for i := range edge {
			checkTracesWith(t, enc, bridge, sinkScope, edge[i:i+1])
		}
		checkTracesWith(t, enc, bridge, sinkScope, append(slices.Clone(edge), edge...))
	})
	t.Run("empty", func(t *testing.T) {
		checkTraces(t, bridge, sinkScope, nil)
	})
	for name, res := range encResources() {
		t.Run("resource="+name, func(t *testing.T) {
			checkTraces(t, res, sinkScope, edgeSpans())
		})
	}
	for name, scope := range encScopes() {
		t.Run("scope="+name, func(t *testing.T) {
			checkTraces(t, bridge, scope, edgeSpans()[:4])
		})
	}
	// More services than the resource cache holds, over several batches.
	t.Run("many-services", func(t *testing.T) {
		enc := newTracesEncoder(bridge, sinkScope)
		var spans []causality.Span
		for i := range maxEncodedResources + 60 {
			sp := edgeSpans()[1]
			sp.Service = fmt.Sprintf("svc-%03d", i%(maxEncodedResources+30))
			sp.Name = strconv.Itoa(i)
			spans = append(spans, sp)
		}
		for range 3 {
			checkTracesWith(t, enc, bridge, sinkScope, spans)
			slices.Reverse(spans)
		}
		if len(enc.resources) != maxEncodedResources {
			t.Errorf("%d cached resources, want the bound %d", len(enc.resources), maxEncodedResources)
		}
	})
}

// ---------------------------------------------------------------------------
// Invalid UTF-8.

// TestEncodeInvalidUTF8: invalid strings come out as valid UTF-8 with
// U+FFFD in place of the invalid bytes, so the request unmarshals.
func TestEncodeInvalidUTF8(t *testing.T) {
	const bad = "a\xffb\xfe\xfdc"
	const fixed = "a\uFFFDb\uFFFDc"
	res := resource.NewWithAttributes("https://s/\xff", attribute.String("k.\xff", bad), attribute.String("service.name", bad))
	scope := instrumentation.Scope{Name: bad, Version: bad, SchemaURL: bad, Attributes: attribute.NewSet(attribute.String(bad, bad))}
	// Every string of the request except the fixed ones, which are counted.
	check := func(what string, m proto.Message, wantFixed int, want ...string) {
		t.Helper()
		var got []string
		n := 0
		for _, s := range allStrings(m.ProtoReflect()) {
			if s == fixed {
				n++
			} else {
				got = append(got, s)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if n != wantFixed || !slices.Equal(got, want) {
			t.Errorf("%s: %d fixed strings, want %d; other strings %q, want %q", what, n, wantFixed, got, want)
		}
	}

	var r log.Record
	r.SetSeverityText(bad)
	r.SetEventName(bad)
	r.SetBody(attribute.StringValue(bad))
	r.AddAttributes(attribute.String(bad, bad), attribute.StringSlice("s", []string{bad}), attribute.Map("m", attribute.String(bad, bad)))
	data := newLogsEncoder(res, scope).encode([]logEntry{{rec: &r, traceID: encTrace, spanID: encSpan}})
	var logs collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(data, &logs); err != nil {
		t.Fatalf("logs: %v", err)
	}
	// Resource: 2 values; scope: name, version, attribute key and value,
	// schema URL; record: severity text, event name, body, attributes
	// 2 + 1 + 2.
	check("logs", &logs, 15, "k.\uFFFD", "service.name", "https://s/\uFFFD", "s", "m")

	sp := causality.Span{TraceID: encTrace, SpanID: encSpan, Name: bad, Error: true, StatusMessage: bad, Service: bad,
		Attributes: []attribute.KeyValue{attribute.String(bad, bad)},
		Links:      []causality.Link{{TraceID: encTrace, SpanID: encSpan2, Attributes: []attribute.KeyValue{attribute.String(bad, bad)}}}}
	data = newTracesEncoder(res, scope).encode([]causality.Span{sp})
	var traces coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &traces); err != nil {
		t.Fatalf("traces: %v", err)
	}
	// Resource: 2 values (one the service); scope 5; span name, status
	// message, attribute key and value, link attribute key and value.
	check("traces", &traces, 13, "k.\uFFFD", "service.name", "https://s/\uFFFD")
}

// allStrings returns every string field value in m, recursively.
func allStrings(m protoreflect.Message) []string {
	var out []string
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				switch fd.Kind() {
				case protoreflect.MessageKind:
					out = append(out, allStrings(l.Get(i).Message())...)
				case protoreflect.StringKind:
					out = append(out, l.Get(i).String())
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			out = append(out, allStrings(v.Message())...)
		case fd.Kind() == protoreflect.StringKind:
			out = append(out, v.String())
		}
		return true
	})
	return out
}

// TestValidUTF8Helpers: appendValidUTF8 and validUTF8Len are
// strings.ToValidUTF8 on awkward inputs.
func TestValidUTF8Helpers(t *testing.T) {
	for _, s := range []string{"", "abc", "\xff", "\xff\xff", "a\xffb", "\xed\xa0\x80", "\xf4\x90\x80\x80", "é\xc3", "\xe2\x82\xac\xe2\x82",
		"\uFFFD\xff\uFFFD", "\xc0\xaf", "\x80\x80\x80abc", strings.Repeat("\xf0\x9f", 50)} {
		want := strings.ToValidUTF8(s, "\uFFFD")
		if got := string(appendValidUTF8(nil, s)); got != want {
			t.Errorf("appendValidUTF8(%q) = %q, want %q", s, got, want)
		}
		if got := validUTF8Len(s); got != len(want) {
			t.Errorf("validUTF8Len(%q) = %d, want %d", s, got, len(want))
		}
	}
}

// ---------------------------------------------------------------------------
// Fuzzing.

// FuzzEncode feeds arbitrary strings and numbers into a record and a span:
// the requests must always unmarshal, carry the values, sanitized, and be
// what the SDK path sends (sanitized too).
func FuzzEncode(f *testing.F) {
	f.Add("k8s.event.reason", "Pulled", "kubelet", int64(3), 1.5, true, int64(1700000000000000000))
	f.Add("", "", "", int64(0), 0.0, false, int64(0))
	f.Add("\xff", "a\xffb\xc3", "svc\xfe", int64(-1), math.NaN(), true, int64(-1))
	f.Add(strings.Repeat("k", 200), strings.Repeat("v\xe2\x82", 100), "kube-otel-bridge", int64(math.MinInt64), math.Inf(-1), false, int64(math.MaxInt64))
	logs := newLogsEncoder(encResource(), instrumentation.Scope{Name: ScopeName})
	traces := newTracesEncoder(encResource(), instrumentation.Scope{Name: ScopeName})
	f.Fuzz(func(t *testing.T, key, val, service string, n int64, x float64, flag bool, ts int64) {
		clean := func(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
		attrs := []attribute.KeyValue{
			attribute.String("s."+key, val),
			attribute.Int64("i", n),
			attribute.Float64("f", x),
			attribute.Bool("b", flag),
			attribute.StringSlice("ss", []string{key, val}),
			attribute.Map("m", attribute.String("k", val), attribute.Int64("n", n)),
		}
		when := time.Unix(0, ts)

		var r log.Record
		r.SetTimestamp(when)
		r.SetObservedTimestamp(encTime)
		r.SetSeverity(log.Severity(n))
		r.SetSeverityText(val)
		r.SetEventName(key)
		r.SetBody(attribute.StringValue(val))
		r.AddAttributes(attrs...)
		var lreq collogspb.ExportLogsServiceRequest
		if err := proto.Unmarshal(logs.encode([]logEntry{{rec: &r, traceID: encTrace, spanID: encSpan}, {rec: &r}}), &lreq); err != nil {
			t.Fatalf("logs: %v", err)
		}
		recs := lreq.GetResourceLogs()[0].GetScopeLogs()[0].GetLogRecords()
		if len(recs) != 2 {
			t.Fatalf("%d records", len(recs))
		}
		lr := recs[0]
		if lr.GetBody().GetStringValue() != clean(val) || lr.GetSeverityText() != clean(val) || lr.GetEventName() != clean(key) ||
			lr.GetTimeUnixNano() != uint64(max(ts, 0)) || !bytes.Equal(lr.GetTraceId(), encTrace[:]) || lr.GetFlags() != 1 ||
			len(recs[1].GetTraceId()) != 0 || recs[1].GetFlags() != 0 {
			t.Fatalf("record: %v", lr)
		}
		checkFuzzAttrs(t, lr.GetAttributes(), key, val, n, x, flag)

		// An occurrence encodes as its record does.
		o := &convert.Occurrence{Reason: key, Note: val, Type: val, EventName: service, EventUID: key, Count: int32(n), Time: when,
			FirstTime: when, Observed: encTime, TimeFromObserved: flag, NoteTruncated: flag, NoteOriginalBytes: int(n),
			Regarding: convert.Ref{Kind: key, Name: val, UID: service, Namespace: key}, SourceHost: service,
			Chain: []convert.Ref{{Kind: "Pod", Name: val, UID: key}, {Kind: service, Name: key}, {Kind: "Node", APIVersion: val, Name: service}}}
		or := convert.LogRecord(o)
		want := slices.Clone(logs.encode([]logEntry{{rec: &or, traceID: encTrace, spanID: encSpan}, {rec: &or}}))
		if got := logs.encode([]logEntry{{occ: o, traceID: encTrace, spanID: encSpan}, {occ: o}}); !bytes.Equal(got, want) {
			t.Fatalf("occurrence %+v: encoding differs from its record's", o)
		}

		sp := causality.Span{TraceID: encTrace, SpanID: encSpan, Parent: encSpan2, Remote: flag, Name: key, Start: when, End: when,
			Error: true, StatusMessage: val, Service: service, Attributes: attrs,
			Links: []causality.Link{{TraceID: encTrace, SpanID: encSpan2, Attributes: attrs}}}
		var treq coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(traces.encode([]causality.Span{sp, {Service: key}}), &treq); err != nil {
			t.Fatalf("traces: %v", err)
		}
		rs := treq.GetResourceSpans()
		if service == key || (service == "kube-otel-bridge" && key == "") || (key == "kube-otel-bridge" && service == "") {
			if len(rs) != 1 {
				t.Fatalf("%d ResourceSpans for one resource", len(rs))
			}
		} else if len(rs) != 2 {
			t.Fatalf("%d ResourceSpans for two resources", len(rs))
		}
		wantService := clean(service)
		if service == "" {
			wantService = "kube-otel-bridge"
		}
		gotService := ""
		for _, kv := range rs[0].GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				gotService = kv.GetValue().GetStringValue()
			}
		}
		if gotService != wantService {
			t.Fatalf("service.name %q, want %q", gotService, wantService)
		}
		s := rs[0].GetScopeSpans()[0].GetSpans()[0]
		wantFlags := uint32(0x101)
		if flag {
			wantFlags = 0x301
		}
		if s.GetName() != clean(key) || s.GetStatus().GetMessage() != clean(val) || s.GetStatus().GetCode() != 2 || s.GetFlags() != wantFlags ||
			s.GetStartTimeUnixNano() != uint64(max(ts, 0)) || len(s.GetLinks()) != 1 {
			t.Fatalf("span: %v", s)
		}
		checkFuzzAttrs(t, s.GetAttributes(), key, val, n, x, flag)
		checkFuzzAttrs(t, s.GetLinks()[0].GetAttributes(), key, val, n, x, flag)

		scope := instrumentation.Scope{Name: ScopeName}
		checkLogs(t, encResource(), scope, []logEntry{{rec: &r, traceID: encTrace, spanID: encSpan}, {rec: &r}})
		checkTraces(t, encResource(), scope, []causality.Span{sp, {Service: key}})
	})
}

func checkFuzzAttrs(t *testing.T, got []*commonpb.KeyValue, key, val string, n int64, x float64, flag bool) {
	t.Helper()
	clean := func(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
	if len(got) != 6 {
		t.Fatalf("%d attributes, want 6", len(got))
	}
	ss := got[4].GetValue().GetArrayValue().GetValues()
	m := got[5].GetValue().GetKvlistValue().GetValues()
	gotX := got[2].GetValue().GetDoubleValue()
	if got[0].GetKey() != clean("s."+key) || got[0].GetValue().GetStringValue() != clean(val) ||
		got[1].GetValue().GetIntValue() != n ||
		!(gotX == x || math.IsNaN(x) && math.IsNaN(gotX)) || got[3].GetValue().GetBoolValue() != flag ||
		len(ss) != 2 || ss[0].GetStringValue() != clean(key) || ss[1].GetStringValue() != clean(val) ||
		len(m) != 2 || m[0].GetValue().GetStringValue() != clean(val) || m[1].GetValue().GetIntValue() != n {
		t.Fatalf("attributes: %v", got)
	}
}

// ---------------------------------------------------------------------------
// Allocations and speed.

// encBatch is a batch as the sinks send it: typical records and spans from
// a recording, repeated to n.
func encBatch(tb testing.TB, n int) ([]logEntry, []causality.Span) {
	logs, spans := replayRecording(tb, "../../examples/recordings/rollout.jsonl", false)
	if len(logs) == 0 || len(spans) == 0 {
		tb.Fatal("rollout recording gave nothing")
	}
	var lb []logEntry
	var sb []causality.Span
	for i := 0; i < n; i++ {
		lb = append(lb, logs[i%len(logs)])
		sb = append(sb, spans[i%len(spans)])
	}
	return lb, sb
}

// TestEncodersDoNotAllocate: after the first batch, encoding a batch of
// records or spans allocates nothing.
func TestEncodersDoNotAllocate(t *testing.T) {
	racebuild.SkipAllocs(t)
	logs, spans := encBatch(t, 512)
	le := newLogsEncoder(encResource(), instrumentation.Scope{Name: ScopeName})
	te := newTracesEncoder(encResource(), instrumentation.Scope{Name: ScopeName})
	le.encode(logs)
	te.encode(spans)
	if n := testing.AllocsPerRun(20, func() { le.encode(logs) }); n != 0 {
		t.Errorf("logs: %v allocations per batch", n)
	}
	if n := testing.AllocsPerRun(20, func() { te.encode(spans) }); n != 0 {
		t.Errorf("traces: %v allocations per batch", n)
	}
}

const encBenchBatch = 512

// BenchmarkLogsEncoder: one op is one batch of 512 records from the rollout
// recording; ns/record is the cost per record. sdk is the path it replaces
// (SDK records exported by otlploggrpc, marshalled by gRPC's codec).
func BenchmarkLogsEncoder(b *testing.B) {
	logs, _ := encBatch(b, encBenchBatch)
	b.Run("direct", func(b *testing.B) {
		enc := newLogsEncoder(encResource(), instrumentation.Scope{Name: ScopeName})
		size := len(enc.encode(logs))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			enc.encode(logs)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*encBenchBatch), "ns/record")
		b.ReportMetric(float64(size)/encBenchBatch, "B/record")
	})
	b.Run("sdk", func(b *testing.B) {
		ctx := context.Background()
		collect := &recordCollector{}
		provider := sdklog.NewLoggerProvider(sdklog.WithProcessor(collect), sdklog.WithAllowKeyDuplication(), sdklog.WithResource(encResource()))
		logger := provider.Logger(ScopeName)
		for i := range logs {
			logger.Emit(trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: logs[i].traceID, SpanID: logs[i].spanID, TraceFlags: trace.FlagsSampled})), entryRecord(logs[i]))
		}
		exp, err := otlploggrpc.New(ctx, otlploggrpc.WithGRPCConn(marshalConn(b)), otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if err := exp.Export(ctx, collect.recs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*encBenchBatch), "ns/record")
	})
}

// BenchmarkTracesEncoder: one op is one batch of 512 spans from the rollout
// recording (several services); sdk is TraceSink's SDK snapshot plus
// otlptracegrpc with gRPC's codec.
func BenchmarkTracesEncoder(b *testing.B) {
	_, spans := encBatch(b, encBenchBatch)
	scope := instrumentation.Scope{Name: ScopeName}
	b.Run("direct", func(b *testing.B) {
		enc := newTracesEncoder(encResource(), scope)
		size := len(enc.encode(spans))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			enc.encode(spans)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*encBenchBatch), "ns/span")
		b.ReportMetric(float64(size)/encBenchBatch, "B/span")
	})
	b.Run("sdk", func(b *testing.B) {
		ctx := context.Background()
		conv := &sdkTraceSpans{base: encResource(), scope: scope, resources: map[string]*resource.Resource{}}
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithGRPCConn(marshalConn(b)), otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
		if err != nil {
			b.Fatal(err)
		}
		ro := make([]sdktrace.ReadOnlySpan, len(spans))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			for i := range spans {
				ro[i] = conv.snapshot(spans[i])
			}
			if err := exp.ExportSpans(ctx, ro); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*encBenchBatch), "ns/span")
	})
}

// marshalConn is a connection whose interceptor marshals each request with
// gRPC's proto codec (the bytes the transport would send) and answers OK.
func marshalConn(b *testing.B) *grpc.ClientConn {
	codec := encoding.GetCodecV2(grpcproto.Name)
	intercept := func(_ context.Context, _ string, req, _ any, _ *grpc.ClientConn, _ grpc.UnaryInvoker, _ ...grpc.CallOption) error {
		data, err := codec.Marshal(req)
		if err != nil {
			return err
		}
		data.Free()
		return nil
	}
	conn, err := grpc.NewClient("passthrough:///otlp.bench.invalid",
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUnaryInterceptor(intercept))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return conn
}
