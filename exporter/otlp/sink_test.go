package otlp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/certs"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

// TestMain fails the package if goroutines are left running after all tests
// (sinks not shut down, connections not closed).
func TestMain(m *testing.M) {
	base := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base+2 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > base+2 {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "leaked goroutines: %d at start, %d now\n%s\n", base, n, buf[:runtime.Stack(buf, true)])
			code = 1
		}
	}
	os.Exit(code)
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// ackLog records acknowledgements.
type ackLog struct {
	mu  sync.Mutex
	ids []int
}

func (a *ackLog) fn(id int) func() {
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.ids = append(a.ids, id)
	}
}

func (a *ackLog) get() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int(nil), a.ids...)
}

func (a *ackLog) waitN(t *testing.T, ctx context.Context, n int) []int {
	t.Helper()
	for {
		if ids := a.get(); len(ids) >= n {
			return ids
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %d acks: got %d", n, len(a.get()))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func record(i int) log.Record {
	var r log.Record
	r.SetEventName("k8s.event")
	r.SetTimestamp(time.Unix(1700000000, int64(i)))
	r.SetSeverity(log.SeverityInfo)
	r.SetSeverityText("Normal")
	r.SetBody(attribute.StringValue(fmt.Sprintf("event %d", i)))
	r.AddAttributes(attribute.String("k8s.event.reason", "Pulled"), attribute.Int("k8s.event.count", i))
	return r
}

var testResource = resource.NewSchemaless(
	attribute.String("service.name", "kube-otel-bridge"),
	attribute.String("k8s.cluster.name", "test"),
)

// newSink builds exporter and sink for cfg and shuts the sink down at the end
// of the test.
func newSink(t *testing.T, cfg Config) *LogSink {
	t.Helper()
	return startSink(t, cfg, NewLogExporter, NewLogSink)
}

func emitN(t *testing.T, ctx context.Context, s *LogSink, acks *ackLog, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Emit(ctx, record(i), acks.fn(i)); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
}

func bodies(logs []otlpreceiver.LogRecordWithResource) []string {
	out := make([]string, len(logs))
	for i, l := range logs {
		out[i] = l.Record.GetBody().GetStringValue()
	}
	return out
}

func checkAllOnce(t *testing.T, logs []otlpreceiver.LogRecordWithResource, n int) {
	t.Helper()
	seen := map[string]int{}
	for _, b := range bodies(logs) {
		seen[b]++
	}
	for i := range n {
		if c := seen[fmt.Sprintf("event %d", i)]; c != 1 {
			t.Errorf("event %d delivered %d times", i, c)
		}
	}
	if len(logs) != n {
		t.Errorf("received %d records, want %d", len(logs), n)
	}
}

func checkAcksInOrder(t *testing.T, ids []int, n int) {
	t.Helper()
	if len(ids) != n {
		t.Fatalf("%d acks, want %d", len(ids), n)
	}
	for i, id := range ids {
		if id != i {
			t.Fatalf("ack %d is for record %d; acks = %v", i, id, ids)
		}
	}
}

func TestSinkInsecure(t *testing.T) {
	r := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	ctx := testCtx(t, 20*time.Second)
	s := newSink(t, Config{Endpoint: r.Addr(), Insecure: true, BatchSize: 4, BatchTimeout: 50 * time.Millisecond})
	acks := &ackLog{}

	traceID := trace.TraceID{1, 2, 3}
	spanID := trace.SpanID{4, 5, 6}
	sctx := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled,
	}))
	if err := s.Emit(sctx, record(0), acks.fn(0)); err != nil {
		t.Fatal(err)
	}
	emitN(t, ctx, s, acks, 1, 10)

	logs, err := r.WaitLogs(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	checkAllOnce(t, logs, 10)
	checkAcksInOrder(t, acks.waitN(t, ctx, 10), 10)

	l := logs[0]
	if v, _ := l.ResourceAttr("service.name"); v != "kube-otel-bridge" {
		t.Errorf("service.name = %q", v)
	}
	if v, _ := l.ResourceAttr("k8s.cluster.name"); v != "test" {
		t.Errorf("k8s.cluster.name = %q", v)
	}
	if l.Scope.GetName() != ScopeName {
		t.Errorf("scope = %q", l.Scope.GetName())
	}
	rec := l.Record
	if rec.GetEventName() != "k8s.event" || rec.GetSeverityText() != "Normal" || rec.GetSeverityNumber() != 9 {
		t.Errorf("record = %v", rec)
	}
	if rec.GetTimeUnixNano() != uint64(time.Unix(1700000000, 0).UnixNano()) || rec.GetObservedTimeUnixNano() == 0 {
		t.Errorf("timestamps = %d, %d", rec.GetTimeUnixNano(), rec.GetObservedTimeUnixNano())
	}
	if v, _ := l.Attr("k8s.event.reason"); v != "Pulled" {
		t.Errorf("reason = %q", v)
	}
	if string(rec.GetTraceId()) != string(traceID[:]) || string(rec.GetSpanId()) != string(spanID[:]) {
		t.Errorf("trace/span id = %x/%x", rec.GetTraceId(), rec.GetSpanId())
	}
	if len(logs[1].Record.GetTraceId()) != 0 {
		t.Errorf("record without span context has trace id %x", logs[1].Record.GetTraceId())
	}

	// Batches: at most BatchSize records per request.
	for _, req := range r.Requests() {
		if req.Items > 4 {
			t.Errorf("request with %d records, batch size 4", req.Items)
		}
	}
	st := s.Stats()
	if st.Exported != 10 || st.FailedAttempts != 0 || st.QueueDepth != 0 || st.ExportedBatches < 3 {
		t.Errorf("stats = %+v", st)
	}
}

func TestSinkTLS(t *testing.T) {
	pki := certs.New(t, "")
	r := otlpreceiver.NewStarted(t, otlpreceiver.Options{TLS: pki.ServerTLSConfig(false)})
	ctx := testCtx(t, 20*time.Second)
	s := newSink(t, Config{Endpoint: r.Addr(), CAFile: pki.CAFile, BatchTimeout: 10 * time.Millisecond})
	acks := &ackLog{}
	emitN(t, ctx, s, acks, 0, 3)
	logs, err := r.WaitLogs(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	checkAllOnce(t, logs, 3)
	acks.waitN(t, ctx, 3)
	if cn := r.Requests()[0].ClientCommonName; cn != "" {
		t.Errorf("client presented a certificate (%q) without being configured to", cn)
	}

	// Without the CA the server certificate is not trusted (system roots).
	exp, err := NewLogExporter(ctx, Config{Endpoint: r.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Shutdown(ctx)
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := exp.Export(short, encodedLogs(t, "x")); err == nil {
		t.Fatal("export to a server with an untrusted certificate succeeded")
	}
}

func TestSinkMutualTLS(t *testing.T) {
	pki := certs.New(t, "")
	r := otlpreceiver.NewStarted(t, otlpreceiver.Options{TLS: pki.ServerTLSConfig(true)})
	ctx := testCtx(t, 20*time.Second)
	s := newSink(t, Config{
		Endpoint: r.Addr(), CAFile: pki.CAFile, ClientCertFile: pki.ClientCertFile, ClientKeyFile: pki.ClientKeyFile,
		BatchTimeout: 10 * time.Millisecond,
	})
	acks := &ackLog{}
	emitN(t, ctx, s, acks, 0, 3)
	if _, err := r.WaitLogs(ctx, 3); err != nil {
		t.Fatal(err)
	}
	acks.waitN(t, ctx, 3)
	if cn := r.Requests()[0].ClientCommonName; cn != pki.Client.CommonName {
		t.Errorf("client CN = %q, want %q", cn, pki.Client.CommonName)
	}

	// A client without certificate is refused.
	exp, err := NewLogExporter(ctx, Config{Endpoint: r.Addr(), CAFile: pki.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Shutdown(ctx)
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := exp.Export(short, encodedLogs(t, "no cert")); err == nil {
		t.Fatal("client without certificate was accepted")
	}
	if n := len(r.Logs()); n != 3 {
		t.Fatalf("receiver stored %d records, want 3", n)
	}
}

func TestSinkHeadersAndCompression(t *testing.T) {
	r := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	ctx := testCtx(t, 20*time.Second)
	env := map[string]string{"COLLECTOR_TOKEN": "s3cret"}
	s := newSink(t, Config{
		Endpoint: r.Addr(), Insecure: true, Compression: "gzip", BatchTimeout: 10 * time.Millisecond,
		Headers: map[string]string{
			"Authorization": "Bearer ${COLLECTOR_TOKEN}",
			"X-Scope-OrgID": "tenant-1",
		},
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	})
	acks := &ackLog{}
	emitN(t, ctx, s, acks, 0, 50)
	if _, err := r.WaitLogs(ctx, 50); err != nil {
		t.Fatal(err)
	}
	for _, req := range r.Requests() {
		if got := req.Header("authorization"); got != "Bearer s3cret" {
			t.Errorf("authorization = %q", got)
		}
		if got := req.Header("x-scope-orgid"); got != "tenant-1" {
			t.Errorf("x-scope-orgid = %q", got)
		}
		if req.Compression != "gzip" {
			t.Errorf("compression = %q, want gzip", req.Compression)
		}
		if req.WireBytes >= req.Bytes {
			t.Errorf("gzip did not shrink the request: %d wire bytes for %d bytes", req.WireBytes, req.Bytes)
		}
	}

	// And without compression.
	r2 := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	s2 := newSink(t, Config{Endpoint: r2.Addr(), Insecure: true, Compression: "none", BatchTimeout: 10 * time.Millisecond})
	emitN(t, ctx, s2, acks, 0, 1)
	reqs, err := r2.WaitRequests(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if reqs[0].Compression != "" || reqs[0].Header("authorization") != "" {
		t.Errorf("request = %+v", reqs[0])
	}
}

// TestSinkEnvironment checks that unset fields fall back to the standard
// OTEL_EXPORTER_OTLP_* variables and that set fields win.
func TestSinkEnvironment(t *testing.T) {
	r := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	ctx := testCtx(t, 20*time.Second)
	// http:// makes the SDK use plaintext, without Insecure.
	t.Setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://"+r.Addr())
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-from-env=env-value")
	t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")

	s := newSink(t, Config{BatchTimeout: 10 * time.Millisecond})
	acks := &ackLog{}
	emitN(t, ctx, s, acks, 0, 1)
	reqs, err := r.WaitRequests(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if reqs[0].Header("x-from-env") != "env-value" || reqs[0].Compression != "gzip" {
		t.Errorf("environment not applied: %+v", reqs[0])
	}

	// Set fields win over the environment; headers replace, not merge.
	r2 := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	s2 := newSink(t, Config{
		Endpoint: r2.Addr(), Insecure: true, Compression: "none", BatchTimeout: 10 * time.Millisecond,
		Headers: map[string]string{"x-from-flag": "flag-value"},
	})
	emitN(t, ctx, s2, acks, 1, 2)
	reqs, err = r2.WaitRequests(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if reqs[0].Header("x-from-flag") != "flag-value" || reqs[0].Header("x-from-env") != "" || reqs[0].Compression != "" {
		t.Errorf("config did not override the environment: %+v", reqs[0])
	}
	if len(r.Requests()) != 1 {
		t.Errorf("second sink sent to the environment's endpoint")
	}
}

// TestEnvironmentCannotDowngradeTLS: with Endpoint set and Insecure false,
// the environment's INSECURE or http:// endpoint must not switch to
// plaintext. (A CA from the environment or CAFile would force TLS anyway, so
// this uses the system roots against a plaintext receiver: the export must
// fail rather than go out in plaintext.)
func TestEnvironmentCannotDowngradeTLS(t *testing.T) {
	r := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	ctx := testCtx(t, 20*time.Second)
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://"+r.Addr())

	exp, err := NewLogExporter(ctx, Config{Endpoint: r.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Shutdown(ctx)
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := exp.Export(short, encodedLogs(t, "x")); err == nil {
		t.Fatal("export went out in plaintext")
	}
	if n := len(r.Requests()); n != 0 {
		t.Fatalf("plaintext receiver got %d requests", n)
	}

	// Without Endpoint the environment decides: plaintext to the same receiver.
	exp2, err := NewLogExporter(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer exp2.Shutdown(ctx)
	if err := exp2.Export(ctx, encodedLogs(t, "x")); err != nil {
		t.Fatal(err)
	}
	if n := len(r.Requests()); n != 1 {
		t.Fatalf("receiver got %d requests, want 1", n)
	}
}

// The delivery scenarios (TestSinkOutage, TestSinkBackpressure, ...) run for
// LogSink and TraceSink alike: see scenarios_test.go.

// encodedLogs is an encoded export request of one log record per body.
func encodedLogs(t testing.TB, bodies ...string) []byte {
	t.Helper()
	entries := make([]logEntry, len(bodies))
	for i, b := range bodies {
		entries[i].rec = new(log.Record)
		entries[i].rec.SetBody(attribute.StringValue(b))
	}
	return slices.Clone(newLogsEncoder(testResource, instrumentation.Scope{Name: ScopeName}).encode(entries))
}

// encodedSpans is an encoded export request of one span per name.
func encodedSpans(t testing.TB, names ...string) []byte {
	t.Helper()
	spans := make([]causality.Span, len(names))
	for i, n := range names {
		spans[i] = plainSpan(i + 1)
		spans[i].Name = n
	}
	return slices.Clone(newTracesEncoder(testResource, instrumentation.Scope{Name: ScopeName}).encode(spans))
}

func TestTraceExporter(t *testing.T) {
	r := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	ctx := testCtx(t, 20*time.Second)
	exp, err := NewTraceExporter(ctx, Config{
		Endpoint: r.Addr(), Insecure: true, Compression: "gzip",
		Headers: map[string]string{"authorization": "Bearer ${T}"},
		LookupEnv: func(k string) (string, bool) {
			return "tok", k == "T"
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Shutdown(ctx)
	if err := exp.Export(ctx, encodedSpans(t, "Deployment web")); err != nil {
		t.Fatal(err)
	}
	spans, err := r.WaitSpans(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if spans[0].Span.GetName() != "Deployment web" {
		t.Errorf("span = %v", spans[0].Span)
	}
	req := r.Requests()[0]
	if req.Compression != "gzip" || req.Header("authorization") != "Bearer tok" || req.Signal != otlpreceiver.SignalTraces {
		t.Errorf("request = %+v", req)
	}
	if ua := req.Header("user-agent"); !strings.HasPrefix(ua, "kube-otel-bridge/") {
		t.Errorf("user-agent = %q", ua)
	}

	// One attempt per export: a failure is returned, not retried inside.
	r.FailNext(1, codes.Unavailable)
	start := time.Now()
	if err := exp.Export(ctx, encodedSpans(t, "x")); status.Code(err) != codes.Unavailable {
		t.Fatalf("injected failure reported as %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("failed export took %v; the exporter seems to retry", d)
	}

	// A partial success comes back as a *PartialSuccessError.
	r.PartialSuccessNext(1, "too old")
	err = exp.Export(ctx, encodedSpans(t, "y"))
	var ps *PartialSuccessError
	if !errors.As(err, &ps) || ps.Message != "too old" || ps.Rejected != 1 || !partialSuccessOnly(err) {
		t.Fatalf("partial success reported as %#v", err)
	}
}

func TestNewExporterValidates(t *testing.T) {
	if _, err := NewLogExporter(context.Background(), Config{Compression: "lz4"}); err == nil || !strings.Contains(err.Error(), "Compression") {
		t.Fatalf("NewLogExporter = %v", err)
	}
	if _, err := NewTraceExporter(context.Background(), Config{Endpoint: "grpc://x:1"}); err == nil || !strings.Contains(err.Error(), "Endpoint") {
		t.Fatalf("NewTraceExporter = %v", err)
	}
	dir := t.TempDir()
	bad := dir + "/ca.pem"
	if err := os.WriteFile(bad, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewLogExporter(context.Background(), Config{CAFile: bad}); err == nil || !strings.Contains(err.Error(), "CAFile") {
		t.Fatalf("NewLogExporter with a bad CA = %v", err)
	}
}
