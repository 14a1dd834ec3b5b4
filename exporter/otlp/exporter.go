package otlp

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
)

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

// NewLogExporter returns an OTLP/gRPC log exporter for cfg. Only the fields
// that are set become options; everything else comes from the
// OTEL_EXPORTER_OTLP_LOGS_* / OTEL_EXPORTER_OTLP_* environment variables or
// the SDK defaults. When Endpoint is set, Insecure alone decides between TLS
// and plaintext; when it is empty, the environment's endpoint (whose http://
// scheme means plaintext) and INSECURE variables apply unless Insecure is
// true.
//
// The exporter makes exactly one attempt per Export call (its own retry is
// disabled); LogSink owns retrying. Used with anything else (e.g. the SDK's
// BatchProcessor) a failed export is dropped.
func NewLogExporter(ctx context.Context, cfg Config) (sdklog.Exporter, error) {
	opts, err := exporterOptions(cfg, grpcOptions[otlploggrpc.Option]{
		noRetry:     func() otlploggrpc.Option { return otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}) },
		dial:        otlploggrpc.WithDialOption,
		endpoint:    otlploggrpc.WithEndpoint,
		endpointURL: otlploggrpc.WithEndpointURL,
		insecure:    otlploggrpc.WithInsecure,
		tls:         otlploggrpc.WithTLSCredentials,
		headers:     otlploggrpc.WithHeaders,
		compressor:  otlploggrpc.WithCompressor,
		timeout:     otlploggrpc.WithTimeout,
	})
	if err != nil {
		return nil, err
	}
	return otlploggrpc.New(ctx, opts...)
}

// grpcOptions are one OTLP/gRPC exporter's option constructors, so that the
// log and trace exporters are configured by one piece of code.
type grpcOptions[O any] struct {
	noRetry     func() O
	dial        func(...grpc.DialOption) O
	endpoint    func(string) O
	endpointURL func(string) O
	insecure    func() O
	tls         func(credentials.TransportCredentials) O
	headers     func(map[string]string) O
	compressor  func(string) O
	timeout     func(time.Duration) O
}

// exporterOptions turns cfg into exporter options: only the fields that are
// set, so that the environment applies to the others.
func exporterOptions[O any](cfg Config, b grpcOptions[O]) ([]O, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	headers, err := cfg.expandedHeaders()
	if err != nil {
		return nil, err
	}
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	opts := []O{b.noRetry(), b.dial(dialOptions...)}
	switch {
	case cfg.Endpoint != "" && cfg.Insecure:
		opts = append(opts, b.endpoint(cfg.Endpoint), b.insecure())
	case cfg.Endpoint != "":
		// The https URL pins TLS: an explicitly configured endpoint must not
		// silently become plaintext because of OTEL_EXPORTER_OTLP_INSECURE or
		// the scheme of an OTEL_EXPORTER_OTLP_*ENDPOINT variable.
		opts = append(opts, b.endpointURL("https://"+cfg.Endpoint))
	case cfg.Insecure:
		opts = append(opts, b.insecure())
	}
	if tlsCfg != nil {
		opts = append(opts, b.tls(credentials.NewTLS(tlsCfg)))
	}
	if headers != nil {
		opts = append(opts, b.headers(headers))
	}
	if cfg.Compression != "" {
		opts = append(opts, b.compressor(cfg.Compression))
	}
	if cfg.Timeout > 0 {
		opts = append(opts, b.timeout(cfg.Timeout))
	}
	return opts, nil
}

// NewTraceExporter is NewLogExporter for spans (environment variables
// OTEL_EXPORTER_OTLP_TRACES_* / OTEL_EXPORTER_OTLP_*). Like the log exporter
// it makes one attempt per ExportSpans call: the caller owns retrying
// (TraceSink). The connection is not established until the first export.
func NewTraceExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	opts, err := exporterOptions(cfg, grpcOptions[otlptracegrpc.Option]{
		noRetry:     func() otlptracegrpc.Option { return otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}) },
		dial:        otlptracegrpc.WithDialOption,
		endpoint:    otlptracegrpc.WithEndpoint,
		endpointURL: otlptracegrpc.WithEndpointURL,
		insecure:    otlptracegrpc.WithInsecure,
		tls:         otlptracegrpc.WithTLSCredentials,
		headers:     otlptracegrpc.WithHeaders,
		compressor:  otlptracegrpc.WithCompressor,
		timeout:     otlptracegrpc.WithTimeout,
	})
	if err != nil {
		return nil, err
	}
	return otlptracegrpc.New(ctx, opts...)
}
