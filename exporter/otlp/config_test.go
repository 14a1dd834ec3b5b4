package otlp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists.pem")
	if err := os.WriteFile(existing, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	env := func(name string) (string, bool) {
		if name == "TOKEN" {
			return "s3cret-token", true
		}
		return "", false
	}
	tests := []struct {
		name  string
		cfg   Config
		field string // "" = valid
	}{
		{"zero", Config{}, ""},
		{"full", Config{
			Endpoint: "collector.monitoring.svc:4317", CAFile: existing, ClientCertFile: existing, ClientKeyFile: existing,
			Headers: map[string]string{"Authorization": "Bearer ${TOKEN}"}, Compression: "gzip", Timeout: time.Second,
			QueueSize: 100, BatchSize: 10, BatchTimeout: time.Second, LookupEnv: env,
		}, ""},
		{"ipv6", Config{Endpoint: "[::1]:4317"}, ""},
		{"none", Config{Compression: "none"}, ""},
		{"batch without queue", Config{BatchSize: 5000}, ""},
		{"scheme", Config{Endpoint: "http://collector:4317"}, "Endpoint"},
		{"https scheme", Config{Endpoint: "https://collector:4317"}, "Endpoint"},
		{"no port", Config{Endpoint: "collector"}, "Endpoint"},
		{"bad port", Config{Endpoint: "collector:http"}, "Endpoint"},
		{"port range", Config{Endpoint: "collector:70000"}, "Endpoint"},
		{"no host", Config{Endpoint: ":4317"}, "Endpoint"},
		{"path", Config{Endpoint: "collector:4317/v1/logs"}, "Endpoint"},
		{"cert without key", Config{ClientCertFile: existing}, "ClientKeyFile"},
		{"key without cert", Config{ClientKeyFile: existing}, "ClientCertFile"},
		{"insecure with CA", Config{Insecure: true, CAFile: existing}, "CAFile"},
		{"insecure with client cert", Config{Insecure: true, ClientCertFile: existing, ClientKeyFile: existing}, "ClientCertFile"},
		{"missing CA", Config{CAFile: missing}, "CAFile"},
		{"missing key", Config{ClientCertFile: existing, ClientKeyFile: missing}, "ClientKeyFile"},
		{"compression", Config{Compression: "zstd"}, "Compression"},
		{"timeout", Config{Timeout: -time.Second}, "Timeout"},
		{"queue", Config{QueueSize: -1}, "QueueSize"},
		{"batch", Config{BatchSize: -1}, "BatchSize"},
		{"batch > queue", Config{QueueSize: 10, BatchSize: 11}, "BatchSize"},
		{"batch timeout", Config{BatchTimeout: -time.Millisecond}, "BatchTimeout"},
		{"header name", Config{Headers: map[string]string{"bad header": "x"}}, "Headers"},
		{"reserved header", Config{Headers: map[string]string{"grpc-timeout": "1S"}}, "Headers"},
		{"duplicate header", Config{Headers: map[string]string{"X-A": "1", "x-a": "2"}}, "Headers"},
		{"unset variable", Config{Headers: map[string]string{"authorization": "Bearer ${NOPE}"}, LookupEnv: env}, "Headers"},
		{"newline in value", Config{Headers: map[string]string{"x-a": "a\nb"}}, "Headers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one naming %s", tt.field)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("error %q does not name %s", err, tt.field)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error %q leaks a header value", err)
			}
		})
	}
}

func TestExpandedHeaders(t *testing.T) {
	env := map[string]string{"TOKEN": "s3cret", "TENANT": "team-a"}
	cfg := Config{
		Headers: map[string]string{
			"Authorization": "Bearer ${TOKEN}",
			"X-Scope-OrgID": "$TENANT",
			"x-literal":     "cost: $$5",
			"x-plain":       "plain",
		},
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	}
	got, err := cfg.expandedHeaders()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"authorization": "Bearer s3cret",
		"x-scope-orgid": "team-a",
		"x-literal":     "cost: $5",
		"x-plain":       "plain",
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}

	// Set but empty is allowed (the variable exists).
	cfg = Config{Headers: map[string]string{"x-a": "${EMPTY}"}, LookupEnv: func(string) (string, bool) { return "", true }}
	if _, err := cfg.expandedHeaders(); err != nil {
		t.Fatal(err)
	}
	// The real environment is the default.
	t.Setenv("KOB_TEST_HEADER", "from-env")
	got, err = Config{Headers: map[string]string{"x-a": "${KOB_TEST_HEADER}"}}.expandedHeaders()
	if err != nil || got["x-a"] != "from-env" {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestWithDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.QueueSize != DefaultQueueSize || c.BatchSize != DefaultBatchSize || c.BatchTimeout != DefaultBatchTimeout {
		t.Errorf("defaults = %+v", c)
	}
	c = Config{QueueSize: 10}.withDefaults()
	if c.BatchSize != 10 {
		t.Errorf("batch size = %d, want it capped at the queue size", c.BatchSize)
	}
}
