package otlpreceiver

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/certs"
)

func strKV(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func logsRequest(service string, bodies ...string) *collogspb.ExportLogsServiceRequest {
	var recs []*logspb.LogRecord
	for _, b := range bodies {
		recs = append(recs, &logspb.LogRecord{
			Body:       &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: b}},
			Attributes: []*commonpb.KeyValue{strKV("k8s.event.reason", "Pulled")},
		})
	}
	return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource:  &resourcepb.Resource{Attributes: []*commonpb.KeyValue{strKV("service.name", service)}},
		ScopeLogs: []*logspb.ScopeLogs{{Scope: &commonpb.InstrumentationScope{Name: "test"}, LogRecords: recs}},
	}}}
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestLogsAndMetadata(t *testing.T) {
	r := NewStarted(t, Options{})
	ctx := ctxT(t)
	c := collogspb.NewLogsServiceClient(dial(t, r.Addr(), nil))

	octx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer s3cret", "x-tenant", "a")
	if _, err := c.Export(octx, logsRequest("kubelet", "one", "two"), grpc.UseCompressor(gzip.Name)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Export(ctx, logsRequest("default-scheduler", "three")); err != nil {
		t.Fatal(err)
	}
	logs, err := r.WaitLogs(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 3 {
		t.Fatalf("got %d logs", len(logs))
	}
	want := []struct{ body, service string }{{"one", "kubelet"}, {"two", "kubelet"}, {"three", "default-scheduler"}}
	for i, w := range want {
		if got := logs[i].Record.GetBody().GetStringValue(); got != w.body {
			t.Errorf("log %d body = %q, want %q", i, got, w.body)
		}
		if got, _ := logs[i].ResourceAttr("service.name"); got != w.service {
			t.Errorf("log %d service.name = %q, want %q", i, got, w.service)
		}
		if got, _ := logs[i].Attr("k8s.event.reason"); got != "Pulled" {
			t.Errorf("log %d reason = %q", i, got)
		}
		if logs[i].Scope.GetName() != "test" {
			t.Errorf("log %d scope = %v", i, logs[i].Scope)
		}
	}

	reqs := r.Requests()
	if len(reqs) != 2 {
		t.Fatalf("got %d requests", len(reqs))
	}
	if reqs[0].Compression != "gzip" || reqs[1].Compression != "" {
		t.Errorf("compression = %q, %q; want gzip, none", reqs[0].Compression, reqs[1].Compression)
	}
	if reqs[0].Header("authorization") != "Bearer s3cret" || reqs[0].Header("x-tenant") != "a" {
		t.Errorf("headers = %v", reqs[0].Metadata)
	}
	if reqs[1].Header("authorization") != "" {
		t.Errorf("second request carries authorization")
	}
	if reqs[0].Signal != SignalLogs || reqs[0].Items != 2 || reqs[0].Code != codes.OK {
		t.Errorf("request = %+v", reqs[0])
	}
	if !strings.HasSuffix(reqs[0].FullMethod, "LogsService/Export") {
		t.Errorf("method = %q", reqs[0].FullMethod)
	}
	if reqs[0].Bytes == 0 || reqs[0].WireBytes == 0 {
		t.Errorf("sizes not recorded: %+v", reqs[0])
	}
}

func TestSpans(t *testing.T) {
	r := NewStarted(t, Options{})
	ctx := ctxT(t)
	c := coltracepb.NewTraceServiceClient(dial(t, r.Addr(), nil))
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{strKV("service.name", "deployment-controller")}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{
			{Name: "Deployment web", Attributes: []*commonpb.KeyValue{strKV("k8s.deployment.name", "web")}},
			{Name: "Deployment.ScalingReplicaSet"},
		}}},
	}}}
	if _, err := c.Export(ctx, req); err != nil {
		t.Fatal(err)
	}
	spans, err := r.WaitSpans(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if spans[0].Span.GetName() != "Deployment web" || spans[1].Span.GetName() != "Deployment.ScalingReplicaSet" {
		t.Errorf("spans = %v, %v", spans[0].Span.GetName(), spans[1].Span.GetName())
	}
	if v, _ := spans[0].Attr("k8s.deployment.name"); v != "web" {
		t.Errorf("attr = %q", v)
	}
	if v, _ := spans[1].ResourceAttr("service.name"); v != "deployment-controller" {
		t.Errorf("service.name = %q", v)
	}
	if got := r.Requests()[0].Signal; got != SignalTraces {
		t.Errorf("signal = %q", got)
	}
	if len(r.Logs()) != 0 {
		t.Error("spans stored as logs")
	}
}

func TestFailNextAndPartialSuccess(t *testing.T) {
	r := NewStarted(t, Options{})
	ctx := ctxT(t)
	c := collogspb.NewLogsServiceClient(dial(t, r.Addr(), nil))

	r.FailNext(2, codes.Unavailable)
	for i := range 2 {
		_, err := c.Export(ctx, logsRequest("s", "x"))
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("attempt %d: err = %v, want Unavailable", i, err)
		}
	}
	if _, err := c.Export(ctx, logsRequest("s", "ok")); err != nil {
		t.Fatal(err)
	}

	r.PartialSuccessNext(1, "too old")
	resp, err := c.Export(ctx, logsRequest("s", "old1", "old2"))
	if err != nil {
		t.Fatal(err)
	}
	if ps := resp.GetPartialSuccess(); ps.GetRejectedLogRecords() != 2 || ps.GetErrorMessage() != "too old" {
		t.Errorf("partial success = %v", ps)
	}

	logs := r.Logs()
	if len(logs) != 1 || logs[0].Record.GetBody().GetStringValue() != "ok" {
		t.Fatalf("stored %d logs: %v", len(logs), logs)
	}
	reqs := r.Requests()
	if len(reqs) != 4 || reqs[0].Code != codes.Unavailable || reqs[1].Code != codes.Unavailable ||
		reqs[2].Code != codes.OK || reqs[3].Rejected != 2 {
		t.Errorf("requests = %+v", reqs)
	}

	r.Reset()
	if len(r.Logs()) != 0 || len(r.Requests()) != 0 {
		t.Error("Reset kept data")
	}
}

func TestStopStartSameAddress(t *testing.T) {
	r := New(Options{})
	if r.Addr() != "" {
		t.Fatal("address before Start")
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
	addr := r.Addr()
	ctx := ctxT(t)
	c := collogspb.NewLogsServiceClient(dial(t, addr, nil))
	if _, err := c.Export(ctx, logsRequest("s", "before")); err != nil {
		t.Fatal(err)
	}

	r.Stop()
	r.Stop() // idempotent
	if r.Running() {
		t.Fatal("running after Stop")
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err := c.Export(short, logsRequest("s", "during"))
	cancel()
	if err == nil {
		t.Fatal("export succeeded while stopped")
	}
	// While stopped, the port refuses connections.
	if runtime.GOOS == "linux" {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Error("a connection to the stopped receiver was accepted")
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial the stopped receiver: %v, want connection refused", err)
		}
	}

	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if r.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", r.Addr(), addr)
	}
	// The client reconnects to the same address (WaitForReady rides out
	// the reconnect backoff).
	if _, err := c.Export(ctx, logsRequest("s", "after"), grpc.WaitForReady(true)); err != nil {
		t.Fatal(err)
	}
	logs := r.Logs()
	if len(logs) != 2 || logs[1].Record.GetBody().GetStringValue() != "after" {
		t.Fatalf("logs = %v", logs)
	}
}

func TestWaitTimesOut(t *testing.T) {
	r := NewStarted(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	logs, err := r.WaitLogs(ctx, 1)
	if !errors.Is(err, context.DeadlineExceeded) || len(logs) != 0 {
		t.Fatalf("WaitLogs = %v, %v", logs, err)
	}
}

func TestDelay(t *testing.T) {
	r := NewStarted(t, Options{})
	r.SetDelay(2 * time.Second)
	c := collogspb.NewLogsServiceClient(dial(t, r.Addr(), nil))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.Export(ctx, logsRequest("s", "slow")); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
}

func TestMutualTLS(t *testing.T) {
	pki := certs.New(t, "")
	r := NewStarted(t, Options{TLS: pki.ServerTLSConfig(true)})
	ctx := ctxT(t)

	c := collogspb.NewLogsServiceClient(dial(t, r.Addr(), credentials.NewTLS(pki.ClientTLSConfig(true))))
	if _, err := c.Export(ctx, logsRequest("s", "mtls")); err != nil {
		t.Fatal(err)
	}
	if got := r.Requests()[0].ClientCommonName; got != pki.Client.CommonName {
		t.Errorf("client CN = %q, want %q", got, pki.Client.CommonName)
	}

	noCert := collogspb.NewLogsServiceClient(dial(t, r.Addr(), credentials.NewTLS(pki.ClientTLSConfig(false))))
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := noCert.Export(short, logsRequest("s", "nocert")); err == nil {
		t.Fatal("client without certificate accepted")
	}
	plain := collogspb.NewLogsServiceClient(dial(t, r.Addr(), nil))
	if _, err := plain.Export(short, logsRequest("s", "plain")); err == nil {
		t.Fatal("plaintext client accepted")
	}
	if n := len(r.Logs()); n != 1 {
		t.Fatalf("stored %d logs, want 1", n)
	}
}

// Close lets the port go.
func TestCloseLetsThePortGo(t *testing.T) {
	r := New(Options{})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	r.Close()
	l, err := net.Listen("tcp", r.Addr())
	if err != nil {
		t.Fatalf("port still held after Close: %v", err)
	}
	l.Close()
}

// While stopped, the port is held against listeners on ports the kernel
// picks (other tests' receivers). Without connections there is no
// TIME_WAIT to keep the kernel from handing it out: without the hold, the
// 60,000 tries get it about five times (seen here), so this test misses
// a lost hold less than once in a hundred runs.
func TestStoppedReceiverKeepsItsPort(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the port is held on Linux only")
	}
	r := New(Options{})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.Stop()
	addr := r.Addr()
	for range 60000 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		got := l.Addr().String()
		l.Close()
		if got == addr {
			t.Fatal("another listener got the stopped receiver's port")
		}
	}
	if err := r.Start(); err != nil {
		t.Fatalf("Start after the hold: %v", err)
	}
}
