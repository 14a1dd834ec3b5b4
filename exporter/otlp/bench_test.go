package otlp

import (
	"context"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// benchConfig makes the production exporter (NewLogExporter,
// NewTraceExporter) talk to no collector: a client interceptor takes each
// encoded export request, counts its bytes, keeps the last one and answers
// OK. So the benchmarks below run sink → encoder → gRPC exporter without
// HTTP/2, a socket or a receiver.
func benchConfig(wire *atomic.Int64, last *[]byte) Config {
	intercept := func(_ context.Context, _ string, req, _ any, _ *grpc.ClientConn, _ grpc.UnaryInvoker, _ ...grpc.CallOption) error {
		r := req.(rawRequest)
		wire.Add(int64(len(r)))
		*last = append((*last)[:0], r...)
		return nil
	}
	return Config{Endpoint: "otlp.bench.invalid:4317", Insecure: true, DialOptions: []grpc.DialOption{grpc.WithUnaryInterceptor(intercept)}}
}

func benchResource() *resource.Resource {
	return resource.NewSchemaless(convert.Resource("kube-otel-bridge", "bench", "2b9c3f4e-8a51-4c1d-9d7e-0f6b2a1c3d4e")...)
}

// benchOccurrence is a kubelet event about a pod of a Deployment, owner
// chain resolved and span assigned: a typical log record (24 attributes).
func benchOccurrence() *convert.Occurrence {
	at := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	pod := convert.Ref{Kind: "Pod", APIVersion: "v1", Namespace: "team-07", Name: "app-0007-7bc89f5d4-x2x9z",
		UID: "00000004-1111-4000-8000-000000000046", ResourceVersion: "48213", FieldPath: "spec.containers{app}"}
	return &convert.Occurrence{
		EventUID: "000000e0-0000-4000-8000-0000000002a1", EventName: "app-0007-7bc89f5d4-x2x9z.17f00000000002a1", Namespace: "team-07",
		Count: 1, Type: "Normal", Reason: "Pulled", Note: `Successfully pulled image "registry.example/app:2.0" in 512ms (512ms including waiting). Image size: 41235562 bytes.`,
		Time: at, FirstTime: at, Observed: at.Add(5 * time.Millisecond), Regarding: pod,
		ReportingController: "kubelet", ReportingInstance: "node-070", SourceHost: "node-070",
		Chain: []convert.Ref{pod,
			{Kind: "ReplicaSet", APIVersion: "apps/v1", Namespace: "team-07", Name: "app-0007-7bc89f5d4", UID: "00000002-1111-4000-8000-000000000007"},
			{Kind: "Deployment", APIVersion: "apps/v1", Namespace: "team-07", Name: "app-0007", UID: "00000001-1111-4000-8000-000000000007"}},
		TraceID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:  [8]byte{1, 2, 3, 4, 5, 6, 7, 8},
	}
}

// BenchmarkLogSink: one op is one occurrence's log record through the
// LogSink (queue, batching, ack), the direct OTLP encoder and the gRPC
// exporter up to the wire bytes, on one core (the sink's worker included).
// The run ends with ForceFlush, inside the timing. occurrence is the
// daemon's path (EmitOccurrence: the record encoded straight from the
// occurrence); record builds convert.LogRecord and emits it (EmitLinked).
func BenchmarkLogSink(b *testing.B) {
	b.Run("occurrence", func(b *testing.B) { benchLogSink(b, true) })
	b.Run("record", func(b *testing.B) { benchLogSink(b, false) })
}

func benchLogSink(b *testing.B, direct bool) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	var wire atomic.Int64
	var last []byte
	ctx := context.Background()
	cfg := benchConfig(&wire, &last)
	exp, err := NewLogExporter(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	s := NewLogSink(exp, benchResource(), cfg, slog.New(slog.DiscardHandler))
	defer s.Shutdown(ctx)
	o := benchOccurrence()
	var acked atomic.Int64
	ack := func() { acked.Add(1) }
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var err error
		if direct {
			err = s.EmitOccurrence(ctx, o, ack)
		} else {
			err = s.EmitLinked(ctx, convert.LogRecord(o), o.TraceID, o.SpanID, ack)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := s.ForceFlush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if acked.Load() != int64(b.N) || s.Stats().Exported != uint64(b.N) {
		b.Fatalf("acked %d, exported %d, want %d", acked.Load(), s.Stats().Exported, b.N)
	}
	var req collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(last, &req); err != nil || len(req.GetResourceLogs()[0].GetScopeLogs()[0].GetLogRecords()) == 0 {
		b.Fatalf("last request does not decode: %v", err)
	}
	b.ReportMetric(float64(wire.Load())/float64(b.N), "otlp-B/record")
}

// benchSpan is an event span as the causality engine makes it: its
// attributes derived from its occurrence (Span.Event); with attrs, as the
// same attributes in a slice instead.
func benchSpan(attrs bool) causality.Span {
	o := benchOccurrence()
	if !attrs {
		return causality.Span{
			TraceID: o.TraceID, SpanID: o.SpanID, Parent: trace.SpanID{9, 9, 9, 9, 9, 9, 9, 9},
			Name: "Pod.Pulled", Kind: causality.KindEvent, Start: o.Time, End: o.Time, Service: "kubelet", Event: o,
		}
	}
	return causality.Span{
		TraceID: o.TraceID, SpanID: o.SpanID, Parent: trace.SpanID{9, 9, 9, 9, 9, 9, 9, 9},
		Name: "Pod.Pulled", Kind: causality.KindEvent, Start: o.Time, End: o.Time, Service: "kubelet",
		Attributes: []attribute.KeyValue{
			attribute.String("k8s.event.reason", o.Reason), attribute.String("k8s.event.uid", o.EventUID),
			attribute.Int("k8s.event.count", 1), attribute.String("k8s.event.type", o.Type),
			attribute.String("k8s.event.note", o.Note), attribute.String("k8s.namespace.name", o.Namespace),
			attribute.String("k8s.object.kind", "Pod"), attribute.String("k8s.object.name", o.Regarding.Name),
			attribute.String("k8s.object.fieldpath", o.Regarding.FieldPath), attribute.String("k8s.pod.name", o.Regarding.Name),
			attribute.String("k8s.pod.uid", o.Regarding.UID), attribute.String("k8s.replicaset.name", o.Chain[1].Name),
			attribute.String("k8s.deployment.name", o.Chain[2].Name), attribute.String("k8s.node.name", o.SourceHost),
		},
	}
}

// BenchmarkTraceSink: one op is one span from TraceSink.Emit (queue,
// batching, ack) through the direct OTLP encoder (per-service resource) and
// the gRPC exporter up to the wire bytes, on one core, ForceFlush included.
// event is an event span as the engine makes it (attributes from its
// occurrence), attributes the same attributes in a slice.
func BenchmarkTraceSink(b *testing.B) {
	b.Run("event", func(b *testing.B) { benchTraceSink(b, benchSpan(false)) })
	b.Run("attributes", func(b *testing.B) { benchTraceSink(b, benchSpan(true)) })
}

func benchTraceSink(b *testing.B, span causality.Span) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	var wire atomic.Int64
	var last []byte
	ctx := context.Background()
	cfg := benchConfig(&wire, &last)
	exp, err := NewTraceExporter(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	s := NewTraceSink(exp, benchResource(), cfg, slog.New(slog.DiscardHandler))
	defer s.Shutdown(ctx)
	var acked atomic.Int64
	ack := func() { acked.Add(1) }
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Emit(ctx, span, ack); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.ForceFlush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if acked.Load() != int64(b.N) || s.Stats().Exported != uint64(b.N) {
		b.Fatalf("acked %d, exported %d, want %d", acked.Load(), s.Stats().Exported, b.N)
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(last, &req); err != nil || len(req.GetResourceSpans()[0].GetScopeSpans()[0].GetSpans()) == 0 {
		b.Fatalf("last request does not decode: %v", err)
	}
	b.ReportMetric(float64(wire.Load())/float64(b.N), "otlp-B/span")
}
