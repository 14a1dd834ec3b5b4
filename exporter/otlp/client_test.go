package otlp

import (
	"strings"
	"testing"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/certs"
)

// TestResolveSettings checks how Config, the OTEL_EXPORTER_OTLP_* variables
// and the defaults combine (the OpenTelemetry specification's rules for
// OTLP/gRPC, with explicitly configured fields winning).
func TestResolveSettings(t *testing.T) {
	pki := certs.New(t, "")
	tests := []struct {
		name    string
		cfg     Config
		env     map[string]string
		signal  string
		want    exporterSettings
		wantTLS bool   // a custom TLS config (CA or client cert)
		wantErr string // substring; "" means no error
	}{
		{name: "defaults", want: exporterSettings{endpoint: DefaultEndpoint, timeout: DefaultTimeout}},
		{
			name: "generic environment",
			env: map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4317", "OTEL_EXPORTER_OTLP_HEADERS": "a=1, B=x%20y",
				"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
			},
			want: exporterSettings{endpoint: "collector:4317", headers: map[string]string{"a": "1", "b": "x y"},
				compression: "gzip", timeout: 2500 * time.Millisecond},
		},
		{
			name:   "signal variables win over generic ones",
			signal: "TRACES",
			env: map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT": "https://generic:4317", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318",
				"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://logs:1", "OTEL_EXPORTER_OTLP_HEADERS": "g=1",
				"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "t=2",
			},
			want: exporterSettings{endpoint: "traces:4318", insecure: true, headers: map[string]string{"t": "2"}, timeout: DefaultTimeout},
		},
		{
			name: "http scheme means plaintext; no port means 4317",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://collector"},
			want: exporterSettings{endpoint: "collector:4317", insecure: true, timeout: DefaultTimeout},
		},
		{
			name: "INSECURE variable",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"},
			want: exporterSettings{endpoint: "collector:4317", insecure: true, timeout: DefaultTimeout},
		},
		{
			name: "an explicit endpoint is never downgraded by the environment",
			cfg:  Config{Endpoint: "secure:4317"},
			env:  map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4317"},
			want: exporterSettings{endpoint: "secure:4317", timeout: DefaultTimeout},
		},
		{
			name: "fields win; headers replace rather than merge",
			cfg:  Config{Endpoint: "c:1", Insecure: true, Compression: "none", Timeout: time.Second, Headers: map[string]string{"X-A": "v"}},
			env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "e=1", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
				"OTEL_EXPORTER_OTLP_TIMEOUT": "5"},
			want: exporterSettings{endpoint: "c:1", insecure: true, compression: "none", timeout: time.Second, headers: map[string]string{"x-a": "v"}},
		},
		{
			name:    "CA and client certificate from the environment",
			env:     map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": pki.CAFile, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": pki.ClientCertFile, "OTEL_EXPORTER_OTLP_CLIENT_KEY": pki.ClientKeyFile},
			want:    exporterSettings{endpoint: DefaultEndpoint, timeout: DefaultTimeout},
			wantTLS: true,
		},
		{
			name:    "CAFile replaces the environment's certificates",
			cfg:     Config{CAFile: pki.CAFile},
			env:     map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": "/does/not/exist"},
			want:    exporterSettings{endpoint: DefaultEndpoint, timeout: DefaultTimeout},
			wantTLS: true,
		},
		{name: "bad endpoint scheme", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "grpc://x:1"}, wantErr: "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{name: "bad endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "no-port"}, wantErr: "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"},
		{name: "bad insecure", env: map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "yes please"}, wantErr: "OTEL_EXPORTER_OTLP_INSECURE"},
		{name: "bad compression", env: map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, wantErr: "OTEL_EXPORTER_OTLP_COMPRESSION"},
		{name: "bad timeout", env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, wantErr: "OTEL_EXPORTER_OTLP_TIMEOUT"},
		{name: "bad header", env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, wantErr: "OTEL_EXPORTER_OTLP_HEADERS"},
		{name: "missing CA file", env: map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": "/does/not/exist"}, wantErr: "OTEL_EXPORTER_OTLP_CERTIFICATE"},
		{name: "client cert without key", env: map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": pki.ClientCertFile}, wantErr: "CLIENT_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signal := tt.signal
			if signal == "" {
				signal = "LOGS"
			}
			got, err := resolveSettings(tt.cfg, signal, func(k string) (string, bool) {
				v, ok := tt.env[k]
				return v, ok
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got.tls != nil) != tt.wantTLS {
				t.Errorf("custom TLS config = %v, want %v", got.tls != nil, tt.wantTLS)
			}
			got.tls = nil
			if got.endpoint != tt.want.endpoint || got.insecure != tt.want.insecure || got.compression != tt.want.compression ||
				got.timeout != tt.want.timeout || !equalHeaders(got.headers, tt.want.headers) {
				t.Errorf("settings = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestResolveSettingsHidesSecrets: a malformed header variable is reported
// without its value.
func TestResolveSettingsHidesSecrets(t *testing.T) {
	_, err := resolveSettings(Config{}, "LOGS", func(k string) (string, bool) {
		if k == "OTEL_EXPORTER_OTLP_HEADERS" {
			return "authorization=Bearer%zzsecret-token", true
		}
		return "", false
	})
	if err == nil || strings.Contains(err.Error(), "secret-token") {
		t.Fatalf("err = %v: want an error that does not show the value", err)
	}
}

func equalHeaders(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
