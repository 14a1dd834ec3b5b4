package kafka

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/filter"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/certs"
)

func TestConfigFromYAML(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "password", "s3cret\n")
	pki := certs.New(t, "")
	doc := `
name: alerts
brokers: [kafka-0.kafka:9093, "kafka-1.kafka:9093"]
topic: k8s.warnings
filter:
  namespaces: [shop]
  reasons: ["BackOff|Failed.*"]
sasl: {mechanism: SCRAM-SHA-512, username: bridge, passwordFile: ` + pw + `}
tls: {caFile: ` + pki.CAFile + `, certFile: ` + pki.ClientCertFile + `, keyFile: ` + pki.ClientKeyFile + `, serverName: kafka}
compression: zstd
clientID: bridge-eu
maxBufferedRecords: 500
produceTimeout: 30s
`
	var c Config
	if err := yaml.UnmarshalStrict([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.Name != "alerts" || len(c.Brokers) != 2 || c.Topic != "k8s.warnings" || c.SASL.Mechanism != "SCRAM-SHA-512" ||
		c.TLS.ServerName != "kafka" || c.TLS.InsecureSkipVerify || c.Compression != "zstd" || c.MaxBufferedRecords != 500 ||
		c.ProduceTimeout != "30s" || c.ClientID != "bridge-eu" || len(c.Filter.Reasons) != 1 {
		t.Errorf("parsed %+v", c)
	}
	if _, err := c.clientOpts(); err != nil {
		t.Errorf("clientOpts: %v", err)
	}
	if p, _ := readSecret(pw); p != "s3cret" {
		t.Error("the trailing newline of the password file must not be part of the password")
	}
}

func TestValidateNamesTheField(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "password", "s3cret")
	empty := writeFile(t, dir, "empty", "\n")
	notPEM := writeFile(t, dir, "ca.crt", "not a certificate")
	pki := certs.New(t, "")
	ok := func() Config { return Config{Brokers: []string{"127.0.0.1:9092"}, Topic: "t"} }

	if err := ok().Validate(); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no brokers", func(c *Config) { c.Brokers = nil }, "brokers: at least one"},
		{"no port", func(c *Config) { c.Brokers = []string{"127.0.0.1:9092", "kafka"} }, "brokers[1]"},
		{"bad port", func(c *Config) { c.Brokers = []string{"kafka:99999"} }, "brokers[0]"},
		{"no host", func(c *Config) { c.Brokers = []string{":9092"} }, "brokers[0]"},
		{"scheme", func(c *Config) { c.Brokers = []string{"tcp://kafka:9092"} }, "brokers[0]"},
		{"empty topic", func(c *Config) { c.Topic = "" }, "topic: required"},
		{"bad topic", func(c *Config) { c.Topic = "a/b" }, "topic:"},
		{"compression", func(c *Config) { c.Compression = "brotli" }, "compression: unknown compression"},
		{"buffer", func(c *Config) { c.MaxBufferedRecords = -1 }, "maxBufferedRecords"},
		{"timeout", func(c *Config) { c.ProduceTimeout = "10" }, "produceTimeout"},
		{"short timeout", func(c *Config) { c.ProduceTimeout = "1ms" }, "produceTimeout"},
		{"filter", func(c *Config) { c.Filter = filter.Config{Reasons: []string{"Back(Off"}} }, "filter: reasons[0]"},
		{"mechanism", func(c *Config) { c.SASL = &SASLConfig{Mechanism: "GSSAPI", Username: "u", PasswordFile: pw} }, "sasl.mechanism: unknown mechanism"},
		{"no mechanism", func(c *Config) { c.SASL = &SASLConfig{Username: "u", PasswordFile: pw} }, "sasl.mechanism: required"},
		{"no user", func(c *Config) { c.SASL = &SASLConfig{Mechanism: "PLAIN", PasswordFile: pw} }, "sasl.username"},
		{"no password file", func(c *Config) { c.SASL = &SASLConfig{Mechanism: "PLAIN", Username: "u"} }, "sasl.passwordFile: required"},
		{"missing password file", func(c *Config) {
			c.SASL = &SASLConfig{Mechanism: "SCRAM-SHA-256", Username: "u", PasswordFile: dir + "/nope"}
		}, "sasl.passwordFile"},
		{"empty password file", func(c *Config) {
			c.SASL = &SASLConfig{Mechanism: "SCRAM-SHA-256", Username: "u", PasswordFile: empty}
		}, "sasl.passwordFile: " + empty + " is empty"},
		{"cert without key", func(c *Config) { c.TLS = &TLSConfig{CertFile: pki.ClientCertFile} }, "tls.keyFile: required"},
		{"key without cert", func(c *Config) { c.TLS = &TLSConfig{KeyFile: pki.ClientKeyFile} }, "tls.certFile: required"},
		{"mismatched key", func(c *Config) { c.TLS = &TLSConfig{CertFile: pki.ClientCertFile, KeyFile: pki.ServerKeyFile} }, "tls.certFile/tls.keyFile"},
		{"unreadable CA", func(c *Config) { c.TLS = &TLSConfig{CAFile: dir + "/missing.crt"} }, "tls.caFile"},
		{"CA not PEM", func(c *Config) { c.TLS = &TLSConfig{CAFile: notPEM} }, "tls.caFile: no PEM certificate"},
	} {
		c := ok()
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}

	// Every problem is reported, not only the first.
	err := Config{Compression: "x"}.Validate()
	for _, want := range []string{"brokers", "topic", "compression"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestValidateNeverShowsThePassword(t *testing.T) {
	// A password file that is not a file at all must not leak anything.
	dir := t.TempDir()
	pw := writeFile(t, dir, "password", "hunter2-secret")
	c := Config{Brokers: []string{"kafka"}, Topic: "t", SASL: &SASLConfig{Mechanism: "nope", Username: "u", PasswordFile: pw}}
	err := c.Validate()
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %v", err)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	_, err := New(Config{Topic: "t"}, "c", nil)
	if err == nil || !strings.Contains(err.Error(), "brokers") {
		t.Errorf("New with no brokers: %v", err)
	}
}
