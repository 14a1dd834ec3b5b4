package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/filter"
)

// Defaults applied to zero Config fields.
const (
	DefaultClientID           = "kube-otel-bridge"
	DefaultCompression        = "snappy"
	DefaultMaxBufferedRecords = 10000
	DefaultProduceTimeout     = 10 * time.Second
)

// SASL mechanisms.
const (
	MechanismPlain       = "PLAIN"
	MechanismScramSHA256 = "SCRAM-SHA-256"
	MechanismScramSHA512 = "SCRAM-SHA-512"
)

// Config is one Kafka side-sink as written in the configuration file
// (sinks.kafka[]). Secrets are only ever read from files.
type Config struct {
	// Name identifies the sink in logs and metrics (default: the topic).
	Name string `json:"name,omitempty"`
	// Brokers are the seed brokers as host:port.
	Brokers []string `json:"brokers"`
	// Topic receives the records. It must exist: the sink never creates
	// topics (records wait, and Emit eventually blocks, until it does).
	Topic string `json:"topic"`
	// Filter selects the occurrences sent (default: Warnings only).
	Filter filter.Config `json:"filter,omitempty"`
	// SASL, when set, authenticates every connection.
	SASL *SASLConfig `json:"sasl,omitempty"`
	// TLS, when set (even empty: `tls: {}`), encrypts every connection.
	// Without CAFile the system roots verify the brokers.
	TLS *TLSConfig `json:"tls,omitempty"`
	// Compression is none, gzip, snappy, lz4 or zstd (default snappy).
	Compression string `json:"compression,omitempty"`
	// ClientID is the Kafka client.id (default "kube-otel-bridge").
	ClientID string `json:"clientID,omitempty"`
	// MaxBufferedRecords bounds the records emitted but not yet acknowledged
	// by the brokers; Emit blocks while it is reached (default 10000).
	MaxBufferedRecords int `json:"maxBufferedRecords,omitempty"`
	// ProduceTimeout is how long a broker may take to answer one produce
	// request, as a Go duration such as "10s" (default 10s). It is not a
	// delivery deadline: a record is retried until it is delivered.
	ProduceTimeout string `json:"produceTimeout,omitempty"`
}

// SASLConfig authenticates with a user name and a password read from a file
// (e.g. a mounted Secret). The file is read again at every authentication,
// so a rotated password is picked up on the next connection; one trailing
// newline is ignored.
type SASLConfig struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism    string `json:"mechanism"`
	Username     string `json:"username"`
	PasswordFile string `json:"passwordFile"`
}

// TLSConfig configures TLS to the brokers. The client certificate and key are
// read again at every handshake, so rotated files are picked up on the next
// connection.
type TLSConfig struct {
	// CAFile is a PEM bundle of CAs to verify the brokers with (default:
	// the system roots).
	CAFile string `json:"caFile,omitempty"`
	// CertFile and KeyFile are a PEM client certificate and key (mutual TLS).
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	// InsecureSkipVerify disables verification of the brokers' certificates.
	// For tests only.
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
	// ServerName overrides the name the brokers' certificates are verified
	// against (default: the host being dialed).
	ServerName string `json:"serverName,omitempty"`
}

// Validate reports every problem of the configuration, each naming its field.
// It also checks that the files it references are readable: the password file
// is not empty, the CA file holds certificates and the client certificate
// matches its key.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if len(c.Brokers) == 0 {
		add("brokers: at least one broker (host:port) is required")
	}
	for i, b := range c.Brokers {
		if err := validateHostPort(b); err != nil {
			add("brokers[%d]: %w", i, err)
		}
	}
	if err := validateTopic(c.Topic); err != nil {
		add("topic: %w", err)
	}
	if err := c.Filter.Validate(); err != nil {
		add("filter: %w", err)
	}
	if _, err := compressionCodec(c.Compression); err != nil {
		add("compression: %w", err)
	}
	if c.MaxBufferedRecords < 0 {
		add("maxBufferedRecords: must not be negative, got %d", c.MaxBufferedRecords)
	}
	if _, err := c.produceTimeout(); err != nil {
		add("produceTimeout: %w", err)
	}
	if strings.ContainsAny(c.ClientID, "\x00\r\n") {
		add("clientID: must not contain control characters")
	}
	if s := c.SASL; s != nil {
		switch strings.ToUpper(s.Mechanism) {
		case MechanismPlain, MechanismScramSHA256, MechanismScramSHA512:
		case "":
			add("sasl.mechanism: required (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
		default:
			add("sasl.mechanism: unknown mechanism %q (want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", s.Mechanism)
		}
		if strings.TrimSpace(s.Username) == "" {
			add("sasl.username: required")
		}
		if s.PasswordFile == "" {
			add("sasl.passwordFile: required")
		} else if _, err := readSecret(s.PasswordFile); err != nil {
			add("sasl.passwordFile: %w", err)
		}
	}
	if t := c.TLS; t != nil {
		if t.CAFile != "" {
			if _, err := loadCAPool(t.CAFile); err != nil {
				add("tls.caFile: %w", err)
			}
		}
		switch {
		case t.CertFile != "" && t.KeyFile == "":
			add("tls.keyFile: required when tls.certFile is set")
		case t.KeyFile != "" && t.CertFile == "":
			add("tls.certFile: required when tls.keyFile is set")
		case t.CertFile != "":
			if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
				add("tls.certFile/tls.keyFile: %w", err)
			}
		}
	}
	return errors.Join(errs...)
}

func validateHostPort(hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return fmt.Errorf("%q must be host:port: %w", hp, err)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", hp)
	}
	if strings.ContainsAny(host, "/?#@ ") {
		return fmt.Errorf("%q: invalid host %q", hp, host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: invalid port %q", hp, port)
	}
	return nil
}

// validateTopic applies Kafka's rules for topic names.
func validateTopic(t string) error {
	switch {
	case t == "":
		return errors.New("required")
	case t == "." || t == "..":
		return fmt.Errorf("%q is not a valid topic name", t)
	case len(t) > 249:
		return fmt.Errorf("longer than 249 characters")
	}
	for _, r := range t {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return fmt.Errorf("%q: invalid character %q (allowed: letters, digits, '.', '_', '-')", t, r)
		}
	}
	return nil
}

func compressionCodec(name string) (kgo.CompressionCodec, error) {
	switch strings.ToLower(name) {
	case "":
		return compressionCodec(DefaultCompression)
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("unknown compression %q (want none, gzip, snappy, lz4 or zstd)", name)
}

func (c Config) produceTimeout() (time.Duration, error) {
	if c.ProduceTimeout == "" {
		return DefaultProduceTimeout, nil
	}
	d, err := time.ParseDuration(c.ProduceTimeout)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("want a positive duration such as \"10s\", got %q", c.ProduceTimeout)
	}
	if d < 100*time.Millisecond {
		return 0, fmt.Errorf("%s is too short (minimum 100ms)", d)
	}
	if d > time.Duration(math.MaxInt32)*time.Millisecond {
		return 0, fmt.Errorf("%s is too long", d)
	}
	return d, nil
}

func (c Config) maxBuffered() int {
	if c.MaxBufferedRecords <= 0 {
		return DefaultMaxBufferedRecords
	}
	return c.MaxBufferedRecords
}

func (c Config) displayName() string {
	if c.Name != "" {
		return c.Name
	}
	return c.Topic
}

// readSecret reads a secret file. One trailing newline (LF or CRLF), as
// editors and `kubectl create secret --from-file` leave, is not part of it.
// Errors never contain the content.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

func loadCAPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %s", path)
	}
	return pool, nil
}

// clientOpts translates the (validated) configuration into franz-go options.
func (c Config) clientOpts() ([]kgo.Opt, error) {
	codec, err := compressionCodec(c.Compression)
	if err != nil {
		return nil, fmt.Errorf("compression: %w", err)
	}
	timeout, err := c.produceTimeout()
	if err != nil {
		return nil, fmt.Errorf("produceTimeout: %w", err)
	}
	clientID := c.ClientID
	if clientID == "" {
		clientID = DefaultClientID
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(clientID),
		// acks=all; the producer is idempotent (the franz-go default, never
		// disabled here), so the retries below cannot duplicate records
		// within a producer session nor reorder them within a partition.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(codec),
		kgo.MaxBufferedRecords(c.maxBuffered()),
		kgo.ProduceRequestTimeout(timeout),
		// Retry forever and never expire a record: the API server keeps
		// Events for an hour, and an outage of any length must only stall
		// the pipeline (backpressure), never lose a record.
		kgo.RecordRetries(math.MaxInt),
		kgo.RecordDeliveryTimeout(0),
		// A missing topic is an operator error that can be fixed without
		// restarting the bridge: keep waiting for it.
		kgo.UnknownTopicRetries(-1),
	}
	if c.TLS != nil {
		tc, err := c.TLS.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if c.SASL != nil {
		m, err := c.SASL.mechanism()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func (t *TLSConfig) config() (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, for tests
	}
	if t.CAFile != "" {
		pool, err := loadCAPool(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.caFile: %w", err)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			return nil, fmt.Errorf("tls.certFile/tls.keyFile: %w", err)
		}
		certFile, keyFile := t.CertFile, t.KeyFile
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("kafka: loading client certificate: %w", err)
			}
			return &cert, nil
		}
	}
	return tc, nil
}

func (s *SASLConfig) mechanism() (sasl.Mechanism, error) {
	user, file := s.Username, s.PasswordFile
	password := func() (string, error) {
		p, err := readSecret(file)
		if err != nil {
			return "", fmt.Errorf("kafka: sasl.passwordFile: %w", err)
		}
		return p, nil
	}
	switch strings.ToUpper(s.Mechanism) {
	case MechanismPlain:
		return plain.Plain(func(context.Context) (plain.Auth, error) {
			p, err := password()
			return plain.Auth{User: user, Pass: p}, err
		}), nil
	case MechanismScramSHA256:
		return scram.Sha256(func(context.Context) (scram.Auth, error) {
			p, err := password()
			return scram.Auth{User: user, Pass: p}, err
		}), nil
	case MechanismScramSHA512:
		return scram.Sha512(func(context.Context) (scram.Auth, error) {
			p, err := password()
			return scram.Auth{User: user, Pass: p}, err
		}), nil
	}
	return nil, fmt.Errorf("sasl.mechanism: unknown mechanism %q", s.Mechanism)
}
