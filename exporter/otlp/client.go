package otlp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // registers the "gzip" compressor
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// Defaults of the exporter where neither Config nor the environment says
// otherwise (the OpenTelemetry specification's defaults for OTLP/gRPC).
const (
	DefaultEndpoint = "localhost:4317"
	DefaultTimeout  = 10 * time.Second
)

// Exporter sends encoded OTLP export requests of one signal to a collector
// over gRPC: the transport under LogSink and TraceSink, which encode their
// batches themselves (encode.go) instead of going through SDK records, so
// that the hot path allocates nothing per item.
//
// Export makes exactly one attempt; the sinks own retrying.
type Exporter interface {
	// Export sends one serialized ExportLogsServiceRequest or
	// ExportTraceServiceRequest. request may be reused by the caller once
	// Export returned. A collector's partial success is returned as a
	// *PartialSuccessError; other failures as gRPC status errors.
	Export(ctx context.Context, request []byte) error
	// Shutdown closes the connection.
	Shutdown(ctx context.Context) error
}

// PartialSuccessError is a collector's answer that it took the request but
// refused some of its items (OTLP partial_success). Resending would not
// change its decision.
type PartialSuccessError struct {
	Signal   string // "log", "trace"
	Rejected int64
	Message  string
}

func (e *PartialSuccessError) Error() string {
	return fmt.Sprintf("OTLP partial success: %s (%d %s items rejected)", e.Message, e.Rejected, e.Signal)
}

// otlpSignal is what distinguishes the log and the trace exporter.
type otlpSignal struct {
	name   string // "log", "trace"
	env    string // OTEL_EXPORTER_OTLP_<env>_*
	method string // the collector service's Export method
	// partial decodes the response and returns its partial success.
	newResponse func() (proto.Message, func() (int64, string))
}

var (
	logsSignal = otlpSignal{
		name: "log", env: "LOGS", method: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
		newResponse: func() (proto.Message, func() (int64, string)) {
			r := &collogspb.ExportLogsServiceResponse{}
			return r, func() (int64, string) {
				return r.GetPartialSuccess().GetRejectedLogRecords(), r.GetPartialSuccess().GetErrorMessage()
			}
		},
	}
	tracesSignal = otlpSignal{
		name: "trace", env: "TRACES", method: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
		newResponse: func() (proto.Message, func() (int64, string)) {
			r := &coltracepb.ExportTraceServiceResponse{}
			return r, func() (int64, string) {
				return r.GetPartialSuccess().GetRejectedSpans(), r.GetPartialSuccess().GetErrorMessage()
			}
		},
	}
)

// NewLogExporter returns an OTLP/gRPC exporter for log requests configured
// by cfg. Fields that are not set fall back to the OTEL_EXPORTER_OTLP_LOGS_*
// then OTEL_EXPORTER_OTLP_* environment variables, then to the defaults
// (localhost:4317, TLS with the system roots, no compression, 10s). When
// Endpoint is set, Insecure alone decides between TLS and plaintext: the
// environment cannot downgrade an explicitly configured endpoint. When it is
// empty, the environment's endpoint (an http:// scheme means plaintext) and
// INSECURE variable apply unless Insecure is true.
//
// The connection is established lazily, on the first export.
func NewLogExporter(_ context.Context, cfg Config) (Exporter, error) {
	return newGRPCExporter(cfg, logsSignal)
}

// NewTraceExporter is NewLogExporter for trace requests (environment
// variables OTEL_EXPORTER_OTLP_TRACES_* / OTEL_EXPORTER_OTLP_*).
func NewTraceExporter(_ context.Context, cfg Config) (Exporter, error) {
	return newGRPCExporter(cfg, tracesSignal)
}

// dialOptions tune the gRPC connection for an exporter whose caller retries
// forever (LogSink, TraceSink):
//
//   - Reconnect backoff capped at 1s instead of gRPC's default 120s: with the
//     default, a connection that was down for a while can stay in backoff for
//     up to two minutes after the collector is back. A connection attempt per
//     second to a collector that is down costs nothing.
//   - WaitForReady: an export issued while the connection is down waits for
//     it (up to the per-attempt Timeout) instead of failing at once, so it
//     goes out as soon as the collector is reachable again rather than at
//     the next retry of the caller. The error after a timeout still carries
//     the last connection error.
var dialOptions = []grpc.DialOption{
	grpc.WithConnectParams(grpc.ConnectParams{
		Backoff: backoff.Config{
			BaseDelay:  100 * time.Millisecond,
			Multiplier: 1.6,
			Jitter:     0.2,
			MaxDelay:   time.Second,
		},
		MinConnectTimeout: 20 * time.Second,
	}),
	grpc.WithDefaultCallOptions(grpc.WaitForReady(true)),
}

// grpcExporter is the Exporter over a grpc.ClientConn.
type grpcExporter struct {
	sig      otlpSignal
	conn     *grpc.ClientConn
	md       metadata.MD
	timeout  time.Duration
	callOpts []grpc.CallOption

	closeOnce sync.Once
	closeErr  error
}

// exporterSettings is Config resolved against the environment.
type exporterSettings struct {
	endpoint    string
	insecure    bool
	tls         *tls.Config
	headers     map[string]string
	compression string
	timeout     time.Duration
}

func newGRPCExporter(cfg Config, sig otlpSignal) (*grpcExporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, err := resolveSettings(cfg, sig.env, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if !s.insecure {
		tc := s.tls
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		creds = credentials.NewTLS(tc)
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithUserAgent("kube-otel-bridge/" + moduleVersion()),
	}, dialOptions...)
	opts = append(opts, cfg.DialOptions...)
	conn, err := grpc.NewClient(s.endpoint, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp: %s exporter for %s: %w", sig.name, s.endpoint, err)
	}
	e := &grpcExporter{sig: sig, conn: conn, timeout: s.timeout}
	if len(s.headers) > 0 {
		e.md = metadata.New(s.headers)
	}
	e.callOpts = []grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}
	if s.compression == "gzip" {
		e.callOpts = append(e.callOpts, grpc.UseCompressor("gzip"))
	}
	return e, nil
}

// Export sends request with the configured headers, compression and timeout.
func (e *grpcExporter) Export(ctx context.Context, request []byte) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	if e.md != nil {
		ctx = metadata.NewOutgoingContext(ctx, e.md)
	}
	resp, partial := e.sig.newResponse()
	if err := e.conn.Invoke(ctx, e.sig.method, rawRequest(request), resp, e.callOpts...); err != nil {
		return err
	}
	if n, msg := partial(); n != 0 || msg != "" {
		return &PartialSuccessError{Signal: e.sig.name, Rejected: n, Message: msg}
	}
	return nil
}

// Shutdown closes the connection; an export in progress fails.
func (e *grpcExporter) Shutdown(context.Context) error {
	e.closeOnce.Do(func() { e.closeErr = e.conn.Close() })
	return e.closeErr
}

// rawRequest is an already serialized export request.
type rawRequest []byte

// rawCodec sends rawRequests as they are and decodes responses with the
// protobuf runtime. Its name is gRPC's default ("proto"), so requests carry
// the same content type as any OTLP exporter's.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	r, ok := v.(rawRequest)
	if !ok {
		return nil, fmt.Errorf("otlp: cannot send %T as a raw request", v)
	}
	// SliceBuffer does not return r to a pool when gRPC frees it.
	return mem.BufferSlice{mem.SliceBuffer(r)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("otlp: cannot decode a response into %T", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

// resolveSettings applies the environment (OTEL_EXPORTER_OTLP_<signal>_*
// before OTEL_EXPORTER_OTLP_*) and the defaults to the fields of cfg that are
// not set. Errors name the variable but never include a header value.
func resolveSettings(cfg Config, signal string, lookup func(string) (string, bool)) (exporterSettings, error) {
	env := func(name string) (string, string, bool) {
		for _, v := range []string{"OTEL_EXPORTER_OTLP_" + signal + "_" + name, "OTEL_EXPORTER_OTLP_" + name} {
			if val, ok := lookup(v); ok && strings.TrimSpace(val) != "" {
				return v, strings.TrimSpace(val), true
			}
		}
		return "", "", false
	}
	s := exporterSettings{endpoint: cfg.Endpoint, insecure: cfg.Insecure, compression: cfg.Compression, timeout: cfg.Timeout}

	if cfg.Endpoint == "" && !cfg.Insecure {
		if v, val, ok := env("INSECURE"); ok {
			b, err := strconv.ParseBool(val)
			if err != nil {
				return s, fmt.Errorf("otlp: %s: %q is not a boolean", v, val)
			}
			s.insecure = b
		}
	}
	if cfg.Endpoint == "" {
		s.endpoint = DefaultEndpoint
		if v, val, ok := env("ENDPOINT"); ok {
			host, plaintext, err := parseEnvEndpoint(val)
			if err != nil {
				return s, fmt.Errorf("otlp: %s: %w", v, err)
			}
			s.endpoint = host
			if plaintext && !cfg.Insecure {
				s.insecure = true
			}
		}
	}

	var err error
	if s.tls, err = cfg.tlsConfig(); err != nil {
		return s, err
	}
	if s.tls == nil && !s.insecure {
		if s.tls, err = envTLS(env); err != nil {
			return s, err
		}
	}

	if cfg.Headers != nil {
		if s.headers, err = cfg.expandedHeaders(); err != nil {
			return s, err
		}
	} else if v, val, ok := env("HEADERS"); ok {
		if s.headers, err = parseEnvHeaders(val); err != nil {
			return s, fmt.Errorf("otlp: %s: %w", v, err)
		}
	}

	if s.compression == "" {
		if v, val, ok := env("COMPRESSION"); ok {
			switch val {
			case "gzip", "none":
				s.compression = val
			default:
				return s, fmt.Errorf("otlp: %s: unknown compression %q (want gzip or none)", v, val)
			}
		}
	}

	if s.timeout == 0 {
		s.timeout = DefaultTimeout
		if v, val, ok := env("TIMEOUT"); ok {
			ms, err := strconv.ParseInt(val, 10, 64)
			if err != nil || ms <= 0 {
				return s, fmt.Errorf("otlp: %s: %q is not a positive number of milliseconds", v, val)
			}
			s.timeout = time.Duration(ms) * time.Millisecond
		}
	}
	return s, nil
}

// parseEnvEndpoint reads an OTEL_EXPORTER_OTLP_*ENDPOINT value: a URL whose
// scheme selects TLS (https) or plaintext (http), or a bare host:port. For
// gRPC the path is not used.
func parseEnvEndpoint(val string) (hostport string, plaintext bool, err error) {
	if !strings.Contains(val, "://") {
		if err := validateEndpoint(val); err != nil {
			return "", false, err
		}
		return val, false, nil
	}
	u, err := url.Parse(val)
	if err != nil {
		return "", false, fmt.Errorf("invalid URL %q: %w", val, err)
	}
	switch u.Scheme {
	case "http":
		plaintext = true
	case "https":
	default:
		return "", false, fmt.Errorf("%q: unsupported scheme %q (want http or https)", val, u.Scheme)
	}
	host := u.Host
	if u.Port() == "" {
		host += ":4317"
	}
	if err := validateEndpoint(host); err != nil {
		return "", false, err
	}
	return host, plaintext, nil
}

// parseEnvHeaders reads an OTEL_EXPORTER_OTLP_*HEADERS value: comma-separated
// key=value pairs with URL-encoded values (the W3C Baggage format without
// properties). Errors never include a value.
func parseEnvHeaders(val string) (map[string]string, error) {
	out := map[string]string{}
	for _, pair := range strings.Split(val, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		key := strings.ToLower(strings.TrimSpace(k))
		if !ok || !validHeaderKey(key) {
			return nil, fmt.Errorf("invalid header %q (want key=value)", strings.TrimSpace(k))
		}
		dec, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("header %q: value is not URL-encoded correctly", key)
		}
		out[key] = dec
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// envTLS builds the TLS configuration from the *CERTIFICATE, *CLIENT_CERTIFICATE
// and *CLIENT_KEY variables, or returns nil when none is set.
func envTLS(env func(string) (string, string, bool)) (*tls.Config, error) {
	caVar, ca, hasCA := env("CERTIFICATE")
	certVar, cert, hasCert := env("CLIENT_CERTIFICATE")
	keyVar, key, hasKey := env("CLIENT_KEY")
	if !hasCA && !hasCert && !hasKey {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if hasCA {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("otlp: %s: %w", caVar, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("otlp: %s: no PEM certificate in %s", caVar, ca)
		}
		cfg.RootCAs = pool
	}
	switch {
	case hasCert && hasKey:
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("otlp: %s/%s: %w", certVar, keyVar, err)
		}
		cfg.Certificates = []tls.Certificate{c}
	case hasCert:
		return nil, errors.New("otlp: " + certVar + " is set without a CLIENT_KEY")
	case hasKey:
		return nil, errors.New("otlp: " + keyVar + " is set without a CLIENT_CERTIFICATE")
	}
	return cfg, nil
}
