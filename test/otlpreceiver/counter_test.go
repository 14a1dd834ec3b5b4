package otlpreceiver

import (
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func TestCounter(t *testing.T) {
	c := NewStartedCounter(t, func(r LogRecordWithResource) string {
		if s, _ := r.ResourceAttr("service.name"); s != "kubelet" {
			return ""
		}
		return r.Record.GetBody().GetStringValue()
	})
	ctx := ctxT(t)
	conn := dial(t, c.Addr(), nil)
	logs := collogspb.NewLogsServiceClient(conn)
	for _, req := range []*collogspb.ExportLogsServiceRequest{
		logsRequest("kubelet", "a", "b"),
		logsRequest("kubelet", "a", "b"), // resent whole
		logsRequest("kubelet", "b", "c"), // b again among new records
		logsRequest("scheduler", "a"),    // not keyed
		logsRequest("kubelet", "d", "d"), // twice in one request
	} {
		if _, err := logs.Export(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := coltracepb.NewTraceServiceClient(conn).Export(ctx, &coltracepb.ExportTraceServiceRequest{
		ResourceSpans: []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{Name: "x"}, {Name: "y"}}}}}},
	}); err != nil {
		t.Fatal(err)
	}
	got := c.Totals()
	want := CounterTotals{Logs: 9, Spans: 2, LogRequests: 5, SpanRequests: 1, Keys: 4, ResentRequests: 1, DuplicatesResent: 2, DuplicatesFresh: 2}
	if got != want {
		t.Errorf("totals %+v, want %+v", got, want)
	}
	counts := map[string]int{}
	c.EachKey(func(k string, n int) { counts[k] = n })
	for k, n := range map[string]int{"a": 2, "b": 3, "c": 1, "d": 2} {
		if counts[k] != n || c.Count(k) != n {
			t.Errorf("count of %s: %d (Count %d), want %d", k, counts[k], c.Count(k), n)
		}
	}
}
