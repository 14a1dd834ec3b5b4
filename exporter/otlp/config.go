// Package otlp is kube-otel-bridge's OTLP/gRPC output: exporters for logs and
// traces configured from flags (with the standard OTEL_EXPORTER_OTLP_*
// environment variables as fallback), and LogSink and TraceSink, which
// deliver log records and spans with per-item acknowledgements, bounded
// queues and backpressure.
package otlp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
)

// Defaults applied by LogSink and TraceSink to zero Config fields.
const (
	DefaultQueueSize    = 2048
	DefaultBatchSize    = 512
	DefaultBatchTimeout = 200 * time.Millisecond
)

// Config configures the OTLP/gRPC connection and the LogSink or TraceSink.
//
// Zero values mean "not set": the exporter then falls back to the standard
// OpenTelemetry environment variables (OTEL_EXPORTER_OTLP_LOGS_* before
// OTEL_EXPORTER_OTLP_*, or *_TRACES_* for traces) and to the SDK defaults.
// A field that is set always wins over the corresponding variable.
type Config struct {
	// Endpoint is the collector as host:port, without a scheme. Empty:
	// OTEL_EXPORTER_OTLP_[LOGS_]ENDPOINT, else localhost:4317.
	Endpoint string
	// Insecure disables TLS. When Endpoint is set, false means TLS. When
	// Endpoint is empty, false defers to the environment: an http:// scheme
	// in OTEL_EXPORTER_OTLP_[LOGS_]ENDPOINT or
	// OTEL_EXPORTER_OTLP_[LOGS_]INSECURE=true select plaintext.
	Insecure bool
	// CAFile is a PEM bundle of CAs to verify the collector with (default:
	// the system roots). ClientCertFile and ClientKeyFile are a PEM
	// certificate and key for mutual TLS. Setting any of them replaces the
	// OTEL_EXPORTER_OTLP_*CERTIFICATE / *CLIENT_* variables as a whole.
	CAFile, ClientCertFile, ClientKeyFile string
	// Headers are sent with every request (e.g. authorization). Values may
	// reference environment variables as ${VAR} or $VAR; use $$ for a
	// literal $. Values are secrets: they are never logged or put in errors.
	// When set, they replace OTEL_EXPORTER_OTLP_[LOGS_]HEADERS (no merge).
	Headers map[string]string
	// Compression is "gzip", "none" or "" (environment, else none).
	Compression string
	// Timeout bounds one export attempt, including waiting for the
	// connection to be ready (default: environment, else 10s).
	Timeout time.Duration

	// QueueSize is the maximum number of log records or spans a sink holds
	// that are not yet acknowledged, including the batch being exported.
	// Emit blocks when it is reached. Default DefaultQueueSize.
	QueueSize int
	// BatchSize is the maximum number of records or spans per export request.
	// Default DefaultBatchSize (at most QueueSize).
	BatchSize int
	// BatchTimeout is how long a record or span may wait for its batch to
	// fill up.
	// Default DefaultBatchTimeout.
	BatchTimeout time.Duration
	// BatchMinAge: once the oldest queued item is this old, the next Emit
	// sends the batch. The export then rides on the activity that brought
	// the new item (the bridge handles events in bursts, one per coalesced
	// read) instead of waking the idle process up at BatchTimeout for the
	// request and again for its answer. Default: half of BatchTimeout; at
	// most BatchTimeout.
	BatchMinAge time.Duration

	// LookupEnv resolves ${VAR} references in Headers; nil means
	// os.LookupEnv. Meant for tests.
	LookupEnv func(string) (string, bool) `json:"-" yaml:"-"`
	// DialOptions are added to the exporter's gRPC dial options (after its
	// own), e.g. an interceptor or a dialer. Meant for tests and embedding.
	DialOptions []grpc.DialOption `json:"-" yaml:"-"`
}

// Validate reports the first problem with the configuration, naming the
// offending field. It also checks that referenced files are readable and that
// header values reference only environment variables that are set.
func (c Config) Validate() error {
	if c.Endpoint != "" {
		if err := validateEndpoint(c.Endpoint); err != nil {
			return fmt.Errorf("otlp: Endpoint: %w", err)
		}
	}
	if c.Insecure && c.CAFile != "" {
		return errors.New("otlp: CAFile: cannot be used with Insecure")
	}
	if c.Insecure && (c.ClientCertFile != "" || c.ClientKeyFile != "") {
		return errors.New("otlp: ClientCertFile: client certificates cannot be used with Insecure")
	}
	if c.ClientCertFile != "" && c.ClientKeyFile == "" {
		return errors.New("otlp: ClientKeyFile: required when ClientCertFile is set")
	}
	if c.ClientKeyFile != "" && c.ClientCertFile == "" {
		return errors.New("otlp: ClientCertFile: required when ClientKeyFile is set")
	}
	for _, f := range []struct{ name, path string }{
		{"CAFile", c.CAFile}, {"ClientCertFile", c.ClientCertFile}, {"ClientKeyFile", c.ClientKeyFile},
	} {
		if f.path == "" {
			continue
		}
		fh, err := os.Open(f.path)
		if err != nil {
			return fmt.Errorf("otlp: %s: %w", f.name, err)
		}
		fh.Close()
	}
	if _, err := c.expandedHeaders(); err != nil {
		return err
	}
	switch c.Compression {
	case "", "none", "gzip":
	default:
		return fmt.Errorf("otlp: Compression: unknown compression %q (want gzip or none)", c.Compression)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("otlp: Timeout: must not be negative, got %s", c.Timeout)
	}
	if c.QueueSize < 0 {
		return fmt.Errorf("otlp: QueueSize: must not be negative, got %d", c.QueueSize)
	}
	if c.BatchSize < 0 {
		return fmt.Errorf("otlp: BatchSize: must not be negative, got %d", c.BatchSize)
	}
	if c.QueueSize > 0 && c.BatchSize > c.QueueSize {
		return fmt.Errorf("otlp: BatchSize: %d is larger than QueueSize %d", c.BatchSize, c.QueueSize)
	}
	if c.BatchTimeout < 0 {
		return fmt.Errorf("otlp: BatchTimeout: must not be negative, got %s", c.BatchTimeout)
	}
	if c.BatchMinAge < 0 {
		return fmt.Errorf("otlp: BatchMinAge: must not be negative, got %s", c.BatchMinAge)
	}
	return nil
}

func validateEndpoint(ep string) error {
	if strings.Contains(ep, "://") {
		return fmt.Errorf("%q must be host:port without a scheme (use Insecure for plaintext)", ep)
	}
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return fmt.Errorf("%q must be host:port: %w", ep, err)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", ep)
	}
	if strings.ContainsAny(host, "/?#@ ") {
		return fmt.Errorf("%q: invalid host %q", ep, host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: invalid port %q", ep, port)
	}
	return nil
}

// withDefaults fills the sink sizes.
func (c Config) withDefaults() Config {
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	c.BatchSize = min(c.BatchSize, c.QueueSize)
	if c.BatchTimeout <= 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.BatchMinAge <= 0 {
		c.BatchMinAge = c.BatchTimeout / 2
	}
	c.BatchMinAge = min(c.BatchMinAge, c.BatchTimeout)
	return c
}

// expandedHeaders returns Headers with keys lower-cased (as gRPC metadata
// requires) and ${VAR} references in values expanded. Errors name the header
// and the variable but never include a value.
func (c Config) expandedHeaders() (map[string]string, error) {
	if len(c.Headers) == 0 {
		return nil, nil
	}
	lookup := c.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	keys := make([]string, 0, len(c.Headers))
	for k := range c.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic error reporting
	out := make(map[string]string, len(c.Headers))
	for _, k := range keys {
		key := strings.ToLower(strings.TrimSpace(k))
		if !validHeaderKey(key) {
			return nil, fmt.Errorf("otlp: Headers: invalid header name %q", k)
		}
		if strings.HasPrefix(key, "grpc-") || strings.HasPrefix(key, ":") {
			return nil, fmt.Errorf("otlp: Headers: header name %q is reserved by gRPC", k)
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("otlp: Headers: header %q given twice (names are case-insensitive)", k)
		}
		var missing []string
		val := os.Expand(c.Headers[k], func(name string) string {
			if name == "$" { // "$$" is a literal dollar sign
				return "$"
			}
			v, ok := lookup(name)
			if !ok {
				missing = append(missing, name)
			}
			return v
		})
		if len(missing) > 0 {
			return nil, fmt.Errorf("otlp: Headers[%q]: references unset environment variable(s) %s", key, strings.Join(missing, ", "))
		}
		if !strings.HasSuffix(key, "-bin") {
			for i := 0; i < len(val); i++ {
				if val[i] < 0x20 || val[i] > 0x7e {
					return nil, fmt.Errorf("otlp: Headers[%q]: value contains a non-printable or non-ASCII character", key)
				}
			}
		}
		out[key] = val
	}
	return out, nil
}

func validHeaderKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// tlsConfig returns the client TLS configuration described by the TLS file
// fields, or nil when none is set (the environment or the system roots then
// apply).
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.CAFile == "" && c.ClientCertFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("otlp: CAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("otlp: CAFile: no PEM certificate in %s", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if c.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.ClientCertFile, c.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("otlp: ClientCertFile/ClientKeyFile: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
