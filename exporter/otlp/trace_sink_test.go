package otlp

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

var (
	testTraceID = trace.TraceID{0xaa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	prevTraceID = trace.TraceID{0xbb, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	testStart   = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
)

// sid returns the span ID of test span i.
func sid(i int) trace.SpanID {
	var s trace.SpanID
	binary.BigEndian.PutUint64(s[:], uint64(0xcc00000000000000)+uint64(i))
	return s
}

// sidIndex is the inverse of sid.
func sidIndex(b []byte) int {
	return int(binary.BigEndian.Uint64(b) - 0xcc00000000000000)
}

// plainSpan is event span i under span 0.
func plainSpan(i int) causality.Span {
	return causality.Span{
		TraceID: testTraceID, SpanID: sid(i), Parent: sid(0),
		Name: "Pod.Pulled", Kind: causality.KindEvent,
		Start: testStart.Add(time.Duration(i) * time.Second), End: testStart.Add(time.Duration(i)*time.Second + time.Millisecond),
		Service:    "kubelet",
		Attributes: []attribute.KeyValue{attribute.Int("k8s.event.count", i)},
	}
}

func checkReceivedSpan(t *testing.T, got otlpreceiver.SpanWithResource, want causality.Span) {
	t.Helper()
	sp := got.Span
	name := want.Name
	if string(sp.GetTraceId()) != string(want.TraceID[:]) || string(sp.GetSpanId()) != string(want.SpanID[:]) {
		t.Errorf("%s: ids = %x/%x, want %s/%s", name, sp.GetTraceId(), sp.GetSpanId(), want.TraceID, want.SpanID)
	}
	var wantParent []byte
	if want.Parent.IsValid() {
		wantParent = want.Parent[:]
	}
	if string(sp.GetParentSpanId()) != string(wantParent) {
		t.Errorf("%s: parent = %x, want %x", name, sp.GetParentSpanId(), wantParent)
	}
	if sp.GetName() != want.Name || sp.GetKind() != tracepb.Span_SPAN_KIND_INTERNAL {
		t.Errorf("%s: name/kind = %q/%v", name, sp.GetName(), sp.GetKind())
	}
	if sp.GetStartTimeUnixNano() != uint64(want.Start.UnixNano()) || sp.GetEndTimeUnixNano() != uint64(want.End.UnixNano()) {
		t.Errorf("%s: times = %d..%d, want %d..%d", name, sp.GetStartTimeUnixNano(), sp.GetEndTimeUnixNano(), want.Start.UnixNano(), want.End.UnixNano())
	}
	wantFlags := uint32(trace.FlagsSampled) | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	if want.Remote {
		wantFlags |= uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
	}
	if sp.GetFlags() != wantFlags {
		t.Errorf("%s: flags = %#x, want %#x", name, sp.GetFlags(), wantFlags)
	}
	wantCode, wantMsg := tracepb.Status_STATUS_CODE_UNSET, ""
	if want.Error {
		wantCode, wantMsg = tracepb.Status_STATUS_CODE_ERROR, want.StatusMessage
	}
	if sp.GetStatus().GetCode() != wantCode || sp.GetStatus().GetMessage() != wantMsg {
		t.Errorf("%s: status = %v %q, want %v %q", name, sp.GetStatus().GetCode(), sp.GetStatus().GetMessage(), wantCode, wantMsg)
	}
	checkAttrs(t, name+": attributes", sp.GetAttributes(), want.Attributes)
	if len(sp.GetLinks()) != len(want.Links) {
		t.Fatalf("%s: %d links, want %d", name, len(sp.GetLinks()), len(want.Links))
	}
	for i, l := range sp.GetLinks() {
		wl := want.Links[i]
		if string(l.GetTraceId()) != string(wl.TraceID[:]) || string(l.GetSpanId()) != string(wl.SpanID[:]) {
			t.Errorf("%s: link %d = %x/%x", name, i, l.GetTraceId(), l.GetSpanId())
		}
		checkAttrs(t, fmt.Sprintf("%s: link %d attributes", name, i), l.GetAttributes(), wl.Attributes)
	}
	if v, _ := got.ResourceAttr("service.name"); v != want.Service {
		t.Errorf("%s: service.name = %q, want %q", name, v, want.Service)
	}
	if v, _ := got.ResourceAttr("k8s.cluster.name"); v != "test" {
		t.Errorf("%s: k8s.cluster.name = %q (base resource lost)", name, v)
	}
	if got.Scope.GetName() != ScopeName || got.Scope.GetVersion() != moduleVersion() {
		t.Errorf("%s: scope = %q %q", name, got.Scope.GetName(), got.Scope.GetVersion())
	}
}

func checkAttrs(t *testing.T, what string, got []*commonpb.KeyValue, want []attribute.KeyValue) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d, want %d", what, len(got), len(want))
	}
	for _, kv := range want {
		if v, ok := otlpreceiver.AttrString(got, string(kv.Key)); !ok || v != kv.Value.Emit() {
			t.Errorf("%s: %s = %q (present %v), want %q", what, kv.Key, v, ok, kv.Value.Emit())
		}
	}
}

func TestTraceSinkDelivers(t *testing.T) {
	r := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	ctx := testCtx(t, 20*time.Second)
	s := startSink(t, Config{Endpoint: r.Addr(), Insecure: true, BatchSize: 4, BatchTimeout: 50 * time.Millisecond}, NewTraceExporter, NewTraceSink)
	u := traceHarness(r, s)

	remoteParent := trace.SpanID{0xdd, 1, 2, 3, 4, 5, 6, 7}
	spans := []causality.Span{
		{
			TraceID: testTraceID, SpanID: sid(0), Name: "Deployment web", Kind: causality.KindRoot,
			Start: testStart, End: testStart.Add(9 * time.Minute), Service: "kube-otel-bridge",
			Attributes: []attribute.KeyValue{
				attribute.String("k8s.deployment.name", "web"), attribute.String("k8s.namespace.name", "default"),
				attribute.Int64("k8s.deployment.generation", 3),
			},
			Links: []causality.Link{{
				TraceID: prevTraceID, SpanID: sid(100),
				Attributes: []attribute.KeyValue{attribute.String("k8s.episode.link", "previous")},
			}},
		},
		{
			TraceID: testTraceID, SpanID: sid(1), Parent: sid(0), Name: "Deployment.ScalingReplicaSet", Kind: causality.KindEvent,
			Start: testStart, End: testStart, Service: "deployment-controller",
			Attributes: []attribute.KeyValue{attribute.String("k8s.event.reason", "ScalingReplicaSet"), attribute.Bool("k8s.event.series", false)},
		},
		{
			TraceID: testTraceID, SpanID: sid(2), Parent: sid(1), Name: "Pod.Scheduled", Kind: causality.KindEvent,
			Start: testStart.Add(time.Second), End: testStart.Add(time.Second + 1500*time.Microsecond), Service: "default-scheduler",
			Attributes: []attribute.KeyValue{attribute.String("k8s.pod.name", "web-777-a"), attribute.String("k8s.node.name", "node-1")},
		},
		{
			TraceID: testTraceID, SpanID: sid(3), Parent: sid(2), Name: "Pod.BackOff", Kind: causality.KindEvent,
			Start: testStart.Add(time.Minute), End: testStart.Add(time.Minute), Service: "kubelet",
			Error: true, StatusMessage: "Back-off restarting failed container app in pod web-777-a",
			Attributes: []attribute.KeyValue{attribute.Int("k8s.event.count", 7)},
		},
		{
			// A non-warning with a message: status stays Unset, no message.
			TraceID: testTraceID, SpanID: sid(4), Parent: sid(2), Name: "Pod.Pulled", Kind: causality.KindEvent,
			Start: testStart.Add(2 * time.Second), End: testStart.Add(3 * time.Second), Service: "kubelet",
			StatusMessage: "Successfully pulled image",
		},
		{
			// Root of another trace whose parent comes from a traceparent.
			TraceID: prevTraceID, SpanID: sid(5), Parent: remoteParent, Remote: true, Name: "Job migrate", Kind: causality.KindRoot,
			Start: testStart, End: testStart.Add(time.Hour), Service: "kube-otel-bridge",
		},
	}
	for i, sp := range spans {
		if err := s.Emit(ctx, sp, u.ack(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The sink keeps the caller's attribute slices until the span is
	// acknowledged (no copy per span: the engine never reuses them).

	got, err := r.WaitSpans(ctx, len(spans))
	if err != nil {
		t.Fatal(err)
	}
	checkAcksInOrder(t, u.acks.waitN(t, ctx, len(spans)), len(spans))
	u.checkDelivered(t, 0, len(spans))
	for _, g := range got {
		checkReceivedSpan(t, g, spans[sidIndex(g.Span.GetSpanId())])
	}

	// Batches of at most BatchSize spans (at least 4 + 2), mixing services.
	for _, req := range r.Requests() {
		if req.Items > 4 || req.Signal != otlpreceiver.SignalTraces {
			t.Errorf("request = %+v", req)
		}
	}
	if st := s.Stats(); st.Exported != uint64(len(spans)) || st.ExportedBatches < 2 || st.FailedAttempts != 0 || st.QueueDepth != 0 {
		t.Errorf("stats = %+v", st)
	}
}

// TestTraceSinkDefaultResource: without a base resource the SDK default is
// used, with the span's service.name; a span without service keeps the
// default's.
func TestTraceSinkDefaultResource(t *testing.T) {
	def, _ := resource.Default().Set().Value("service.name")
	r := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	ctx := testCtx(t, 20*time.Second)
	exp, err := NewTraceExporter(ctx, Config{Endpoint: r.Addr(), Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	s := NewTraceSink(exp, nil, Config{BatchTimeout: 10 * time.Millisecond}, testLogger(t))
	defer s.Shutdown(context.Background())
	withService, without := plainSpan(1), plainSpan(2)
	withService.Service, without.Service = "kubelet", ""
	for _, sp := range []causality.Span{withService, without} {
		if err := s.Emit(ctx, sp, nil); err != nil {
			t.Fatal(err)
		}
	}
	got, err := r.WaitSpans(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range got {
		want := "kubelet"
		if sidIndex(g.Span.GetSpanId()) == 2 {
			want = def.AsString()
		}
		if v, _ := g.ResourceAttr("service.name"); v != want {
			t.Errorf("span %d: service.name = %q, want %q", sidIndex(g.Span.GetSpanId()), v, want)
		}
		if _, ok := g.ResourceAttr("telemetry.sdk.name"); !ok {
			t.Errorf("default resource missing: %v", g.Resource)
		}
	}
}
