// Package otlpreceiver is a real OTLP/gRPC receiver for tests: a grpc.Server
// implementing the collector LogsService and TraceService that stores what it
// receives, records how each request arrived (metadata, compression, client
// certificate) and can be told to fail or to go away and come back on the
// same address, to simulate a collector outage.
package otlpreceiver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
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
	_ "google.golang.org/grpc/encoding/gzip" // accept gzip compressed requests
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// Signal names used in Request.Signal.
const (
	SignalLogs   = "logs"
	SignalTraces = "traces"
)

// Options configures a Receiver.
type Options struct {
	// TLS, when set, is the server TLS configuration. Set ClientAuth to
	// tls.RequireAndVerifyClientCert (and ClientCAs) for mutual TLS.
	TLS *tls.Config
	// Addr is the address to listen on the first time; default
	// "127.0.0.1:0". Later Starts reuse the address actually bound.
	Addr string
}

// LogRecordWithResource is one received log record with the resource and
// scope it was sent under.
type LogRecordWithResource struct {
	Resource          *resourcepb.Resource
	ResourceSchemaURL string
	Scope             *commonpb.InstrumentationScope
	ScopeSchemaURL    string
	Record            *logspb.LogRecord
}

// ResourceAttr returns the string form of resource attribute key.
func (l LogRecordWithResource) ResourceAttr(key string) (string, bool) {
	return AttrString(l.Resource.GetAttributes(), key)
}

// Attr returns the string form of log record attribute key.
func (l LogRecordWithResource) Attr(key string) (string, bool) {
	return AttrString(l.Record.GetAttributes(), key)
}

// SpanWithResource is one received span with the resource and scope it was
// sent under.
type SpanWithResource struct {
	Resource          *resourcepb.Resource
	ResourceSchemaURL string
	Scope             *commonpb.InstrumentationScope
	ScopeSchemaURL    string
	Span              *tracepb.Span
}

// ResourceAttr returns the string form of resource attribute key.
func (s SpanWithResource) ResourceAttr(key string) (string, bool) {
	return AttrString(s.Resource.GetAttributes(), key)
}

// Attr returns the string form of span attribute key.
func (s SpanWithResource) Attr(key string) (string, bool) {
	return AttrString(s.Span.GetAttributes(), key)
}

// Request describes one Export call as it arrived.
type Request struct {
	// Signal is SignalLogs or SignalTraces; FullMethod the gRPC method.
	Signal     string
	FullMethod string
	// Metadata holds the request headers (user headers, user-agent, ...).
	Metadata metadata.MD
	// Compression is the grpc-encoding of the request ("" or "gzip").
	Compression string
	// WireBytes is the size of the message as received (compressed);
	// Bytes its size after decompression.
	WireBytes, Bytes int
	// Items is the number of log records or spans in the request.
	Items int
	// ClientCommonName is the subject CN of the TLS client certificate, if
	// any.
	ClientCommonName string
	// Code is the status the receiver answered with (codes.OK unless a
	// failure was injected with FailNext).
	Code codes.Code
	// Rejected is the number of items refused with a partial success
	// (PartialSuccessNext); those items are not stored.
	Rejected int64
	// Time is when the request was handled.
	Time time.Time
}

// Header returns the first value of metadata key (lower case), or "".
func (r Request) Header(key string) string {
	if v := r.Metadata.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Receiver is an OTLP/gRPC logs and traces receiver.
type Receiver struct {
	opts Options

	lifeMu sync.Mutex // serializes Start and Stop
	held   io.Closer  // the port, bound but not listening, while stopped
	srv    *grpc.Server
	served chan struct{} // closed when Serve of srv returned
	addr   string

	mu         sync.Mutex
	logs       []LogRecordWithResource
	spans      []SpanWithResource
	requests   []Request
	failN      int
	failCode   codes.Code
	partialN   int
	partialMsg string
	delay      time.Duration
	changed    chan struct{} // closed and replaced whenever data arrives
}

// New returns a receiver that is not listening yet; call Start.
func New(opts Options) *Receiver {
	return &Receiver{opts: opts, changed: make(chan struct{})}
}

// NewStarted returns a started receiver that is stopped when the test ends.
func NewStarted(t testing.TB, opts Options) *Receiver {
	t.Helper()
	r := New(opts)
	if err := r.Start(); err != nil {
		t.Fatalf("otlpreceiver: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// Start listens and serves. The first Start binds Options.Addr (default
// 127.0.0.1 on a free port); every later Start after Stop binds the same
// address again, so clients reconnect to it after a simulated outage.
func (r *Receiver) Start() error {
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	if r.srv != nil {
		return errors.New("otlpreceiver: already started")
	}
	addr := r.addr
	if addr == "" {
		addr = r.opts.Addr
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if r.held != nil {
		_ = r.held.Close()
		r.held = nil
	}
	lis, err := listen(addr)
	if err != nil {
		return err
	}
	r.addr = lis.Addr().String()

	var sopts []grpc.ServerOption
	if r.opts.TLS != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(r.opts.TLS)))
	}
	sopts = append(sopts, grpc.StatsHandler(statsHandler{}))
	srv := grpc.NewServer(sopts...)
	collogspb.RegisterLogsServiceServer(srv, logsService{r: r})
	coltracepb.RegisterTraceServiceServer(srv, traceService{r: r})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	r.srv, r.served = srv, served
	return nil
}

// listen binds addr, retrying for a few seconds while the port is still
// held (e.g. by a previous incarnation being torn down).
func listen(addr string) (net.Listener, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		lis, err := net.Listen("tcp", addr)
		if err == nil {
			return lis, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return nil, fmt.Errorf("otlpreceiver: listen %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Addr returns host:port the receiver listens (or listened) on; "" before
// the first Start.
func (r *Receiver) Addr() string {
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	return r.addr
}

// Stop closes the listener and all connections at once, failing in-flight
// requests, like a collector that crashed. Stored data is kept. Stop on a
// stopped receiver does nothing.
//
// Until the next Start the port stays bound without listening (holdPort):
// connections to it are refused, as by a host whose collector is down, but
// no other listener can take the port meanwhile. Tests run in parallel,
// each with receivers on ports the kernel picked; a port let go for an
// outage was once given to another test's receiver, whose bridge then
// exported into the wrong test, and this Start failed to bind.
func (r *Receiver) Stop() {
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	if r.srv == nil {
		return
	}
	r.srv.Stop()
	<-r.served
	r.srv, r.served = nil, nil
	if h, err := holdPort(r.addr); err == nil {
		r.held = h
	}
}

// Close stops the receiver for good and lets its port go.
func (r *Receiver) Close() {
	r.Stop()
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	if r.held != nil {
		_ = r.held.Close()
		r.held = nil
	}
}

// Running reports whether the receiver is started.
func (r *Receiver) Running() bool {
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	return r.srv != nil
}

// FailNext makes the next n Export calls (logs or traces) fail with code;
// their data is not stored. n <= 0 cancels pending failures.
func (r *Receiver) FailNext(n int, code codes.Code) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failN, r.failCode = max(n, 0), code
}

// PartialSuccessNext makes the next n Export calls answer OK with a partial
// success rejecting every item with message msg; their data is not stored.
func (r *Receiver) PartialSuccessNext(n int, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.partialN, r.partialMsg = max(n, 0), msg
}

// SetDelay makes every Export wait d before answering (a slow collector).
// The wait ends early when the client gives up.
func (r *Receiver) SetDelay(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delay = d
}

// Reset forgets everything received and all pending fault injections.
func (r *Receiver) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs, r.spans, r.requests = nil, nil, nil
	r.failN, r.partialN, r.delay = 0, 0, 0
	r.notifyLocked()
}

// Logs returns a copy of all log records stored so far, in arrival order.
func (r *Receiver) Logs() []LogRecordWithResource {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.logs)
}

// Spans returns a copy of all spans stored so far, in arrival order.
func (r *Receiver) Spans() []SpanWithResource {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

// Requests returns all Export calls handled so far (including failed ones),
// in arrival order.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.requests)
}

// WaitLogs waits until at least n log records are stored and returns them
// all, or returns what is there with ctx's error.
func (r *Receiver) WaitLogs(ctx context.Context, n int) ([]LogRecordWithResource, error) {
	err := r.wait(ctx, func() bool { return len(r.logs) >= n })
	return r.Logs(), err
}

// WaitSpans waits until at least n spans are stored and returns them all,
// or returns what is there with ctx's error.
func (r *Receiver) WaitSpans(ctx context.Context, n int) ([]SpanWithResource, error) {
	err := r.wait(ctx, func() bool { return len(r.spans) >= n })
	return r.Spans(), err
}

// WaitRequests waits until at least n Export calls were handled.
func (r *Receiver) WaitRequests(ctx context.Context, n int) ([]Request, error) {
	err := r.wait(ctx, func() bool { return len(r.requests) >= n })
	return r.Requests(), err
}

func (r *Receiver) wait(ctx context.Context, done func() bool) error {
	for {
		r.mu.Lock()
		ok, ch := done(), r.changed
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("otlpreceiver: %w", context.Cause(ctx))
		}
	}
}

func (r *Receiver) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// handle records the request and decides the answer: an injected error, a
// partial success rejecting everything, or acceptance (store is then called
// under the lock).
func (r *Receiver) handle(ctx context.Context, signal string, items int, store func()) (rejected int64, msg string, err error) {
	r.mu.Lock()
	delay := r.delay
	r.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, "", status.FromContextError(ctx.Err()).Err()
		}
	}

	req := Request{Signal: signal, Items: items, Code: codes.OK, Time: time.Now()}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		req.Metadata = md.Copy()
	}
	if m, ok := grpc.Method(ctx); ok {
		req.FullMethod = m
	}
	if ri, ok := ctx.Value(rpcInfoKey{}).(*rpcInfo); ok {
		req.Compression, req.WireBytes, req.Bytes = ri.compression, ri.wireBytes, ri.bytes
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			req.ClientCommonName = ti.State.PeerCertificates[0].Subject.CommonName
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.notifyLocked()
	switch {
	case r.failN > 0:
		r.failN--
		req.Code = r.failCode
		r.requests = append(r.requests, req)
		return 0, "", status.Errorf(r.failCode, "otlpreceiver: injected failure (%s)", r.failCode)
	case r.partialN > 0:
		r.partialN--
		req.Rejected = int64(items)
		r.requests = append(r.requests, req)
		return int64(items), r.partialMsg, nil
	}
	r.requests = append(r.requests, req)
	store()
	return 0, "", nil
}

type logsService struct {
	collogspb.UnimplementedLogsServiceServer
	r *Receiver
}

func (s logsService) Export(ctx context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	items := 0
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			items += len(sl.GetLogRecords())
		}
	}
	rejected, msg, err := s.r.handle(ctx, SignalLogs, items, func() {
		for _, rl := range req.GetResourceLogs() {
			for _, sl := range rl.GetScopeLogs() {
				for _, lr := range sl.GetLogRecords() {
					s.r.logs = append(s.r.logs, LogRecordWithResource{
						Resource:          rl.GetResource(),
						ResourceSchemaURL: rl.GetSchemaUrl(),
						Scope:             sl.GetScope(),
						ScopeSchemaURL:    sl.GetSchemaUrl(),
						Record:            lr,
					})
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	resp := &collogspb.ExportLogsServiceResponse{}
	if rejected > 0 || msg != "" {
		resp.PartialSuccess = &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: rejected, ErrorMessage: msg}
	}
	return resp, nil
}

type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *Receiver
}

func (s traceService) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	items := 0
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			items += len(ss.GetSpans())
		}
	}
	rejected, msg, err := s.r.handle(ctx, SignalTraces, items, func() {
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					s.r.spans = append(s.r.spans, SpanWithResource{
						Resource:          rs.GetResource(),
						ResourceSchemaURL: rs.GetSchemaUrl(),
						Scope:             ss.GetScope(),
						ScopeSchemaURL:    ss.GetSchemaUrl(),
						Span:              sp,
					})
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	resp := &coltracepb.ExportTraceServiceResponse{}
	if rejected > 0 || msg != "" {
		resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: rejected, ErrorMessage: msg}
	}
	return resp, nil
}

// statsHandler captures per-RPC transport details that are not visible in
// the handler: the request compression and payload sizes.
type statsHandler struct{}

type rpcInfoKey struct{}

type rpcInfo struct {
	compression      string
	wireBytes, bytes int
}

func (statsHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, rpcInfoKey{}, &rpcInfo{})
}

func (statsHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	ri, ok := ctx.Value(rpcInfoKey{}).(*rpcInfo)
	if !ok {
		return
	}
	// InHeader and InPayload are reported on the handler's goroutine before
	// the handler reads ri, so no locking is needed.
	switch s := s.(type) {
	case *stats.InHeader:
		ri.compression = s.Compression
	case *stats.InPayload:
		ri.wireBytes, ri.bytes = s.CompressedLength, s.Length
	}
}

func (statsHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (statsHandler) HandleConn(context.Context, stats.ConnStats) {}

// AttrString returns the value of key in kvs as a string (strings as is,
// other values in their protobuf text form).
func AttrString(kvs []*commonpb.KeyValue, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.GetKey() != key {
			continue
		}
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			return x.StringValue, true
		case *commonpb.AnyValue_IntValue:
			return fmt.Sprint(x.IntValue), true
		case *commonpb.AnyValue_BoolValue:
			return fmt.Sprint(x.BoolValue), true
		case *commonpb.AnyValue_DoubleValue:
			return fmt.Sprint(x.DoubleValue), true
		default:
			return v.String(), true
		}
	}
	return "", false
}
