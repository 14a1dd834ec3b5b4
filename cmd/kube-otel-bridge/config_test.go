package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const sampleConfig = `
# ${NOT_EXPANDED_IN_COMMENTS}
clusterName: prod-a
otlp: {endpoint: "collector:4317", insecure: false, compression: gzip, timeout: 5s, batchTimeout: 250ms, batchSize: 300, queueSize: 900}
sinks:
  dingtalk:
  - name: oncall
    webhook: "https://oapi.dingtalk.com/robot/send?access_token=${DINGTALK_TOKEN}"
    secretFile: SECRET_FILE
    traceURL: "https://jaeger.example.com/trace/{trace_id}"
    msgType: markdown
    atMobiles: ["13800000000"]
    ratePerMinute: 20
    filter: {minLevel: Warning, excludeNamespaces: [kube-system], kinds: [Pod], reasons: ["BackOff|Failed.*"], minCount: 1}
  kafka:
  - name: warnings
    brokers: ["kafka-0:9092"]
    topic: k8s-warnings
    filter: {minLevel: Warning}
    sasl: {mechanism: SCRAM-SHA-512, username: bridge, passwordFile: PASSWORD_FILE}
    compression: zstd
`

func sample(t *testing.T, mutate func(string) string) (string, []byte) {
	dir := t.TempDir()
	secret := writeFile(t, dir, "dingtalk-secret", "SECtopsecret\n")
	password := writeFile(t, dir, "kafka-password", "hunter2\n")
	c := strings.NewReplacer("SECRET_FILE", secret, "PASSWORD_FILE", password).Replace(sampleConfig)
	if mutate != nil {
		c = mutate(c)
	}
	return dir, []byte(c)
}

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestConfigLoadsTheIssueExample(t *testing.T) {
	_, data := sample(t, nil)
	c, err := parseConfig("c.yaml", data, env(map[string]string{"DINGTALK_TOKEN": "tok123"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClusterName != "prod-a" || len(c.Sinks.DingTalk) != 1 || len(c.Sinks.Kafka) != 1 {
		t.Fatalf("parsed %+v", c)
	}
	if !strings.HasSuffix(c.Sinks.DingTalk[0].Webhook, "access_token=tok123") {
		t.Errorf("webhook not expanded: %s", c.Sinks.DingTalk[0].Webhook)
	}
	var o runOptions
	fs := runFlags(&o)
	if err := fs.Parse([]string{"--otlp-endpoint", "other:4317", "--otlp-queue-size", "1000"}); err != nil {
		t.Fatal(err)
	}
	if err := c.apply(&o, map[string]bool{"otlp-endpoint": true, "otlp-queue-size": true}); err != nil {
		t.Fatal(err)
	}
	if o.otlp.Endpoint != "other:4317" || o.otlp.QueueSize != 1000 {
		t.Errorf("flags must override the file: endpoint %q, queue size %d", o.otlp.Endpoint, o.otlp.QueueSize)
	}
	if o.otlp.Compression != "gzip" || o.otlp.Timeout != 5*time.Second || o.clusterName != "prod-a" {
		t.Errorf("file values not applied: %+v", o.otlp)
	}
	if o.otlp.BatchTimeout != 250*time.Millisecond || o.otlp.BatchSize != 300 {
		t.Errorf("file's batching not applied: timeout %s, size %d", o.otlp.BatchTimeout, o.otlp.BatchSize)
	}
	if err := o.validate(); err != nil {
		t.Errorf("options from the file: %v", err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(string) string
		want   string
	}{
		{"unknown field", func(c string) string { return c + "bogus: 1\n" }, "bogus"},
		{"invalid regex", func(c string) string { return strings.Replace(c, `"BackOff|Failed.*"`, `"Back(Off"`, 1) }, "reasons[0]"},
		{"missing secret file", func(c string) string {
			return strings.Replace(c, "secretFile: /", "secretFile: /nonexistent/", 1)
		}, "secretFile"},
		{"bad webhook", func(c string) string {
			return strings.Replace(c, "https://oapi.dingtalk.com/robot/send", "ftp://x", 1)
		}, "webhook"},
		{"bad timeout", func(c string) string { return strings.Replace(c, "timeout: 5s", "timeout: soon", 1) }, "otlp.timeout"},
		{"bad batch timeout", func(c string) string { return strings.Replace(c, "batchTimeout: 250ms", "batchTimeout: 0s", 1) }, "otlp.batchTimeout"},
		{"bad batch size", func(c string) string { return strings.Replace(c, "batchSize: 300", "batchSize: -1", 1) }, "otlp.batchSize"},
		{"bad queue size", func(c string) string { return strings.Replace(c, "queueSize: 900", "queueSize: many", 1) }, "queueSize"},
		{"unset variable", func(c string) string { return strings.Replace(c, "k8s-warnings", "${KAFKA_TOPIC}", 1) }, "KAFKA_TOPIC"},
		{"bad kafka compression", func(c string) string { return strings.Replace(c, "compression: zstd", "compression: brotli", 1) }, "compression"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, data := sample(t, tc.mutate)
			_, err := parseConfig("c.yaml", data, env(map[string]string{"DINGTALK_TOKEN": "tok123"}))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
			for _, secret := range []string{"tok123", "SECtopsecret", "hunter2"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks a secret: %v", err)
				}
			}
		})
	}
}

// FuzzParseConfig: any config file is either refused with an error or
// parsed into settings that validate and apply; never a panic, and an error
// never carries a secret's value.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(sampleConfig))
	f.Add([]byte("otlp: {batchTimeout: 1ms, batchSize: 3, queueSize: 2}\n"))
	f.Add([]byte("sinks: {kafka: [{name: a, brokers: [x], topic: t}]}\n"))
	f.Add([]byte("clusterName: ${DINGTALK_TOKEN}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lookup := env(map[string]string{"DINGTALK_TOKEN": "tok-secret-123"})
		c, err := parseConfig("c.yaml", data, lookup)
		if err != nil {
			if strings.Contains(err.Error(), "tok-secret-123") {
				t.Fatalf("error leaks a secret: %v", err)
			}
			return
		}
		var o runOptions
		if err := runFlags(&o).Parse(nil); err != nil {
			t.Fatal(err)
		}
		if err := c.apply(&o, map[string]bool{}); err != nil {
			t.Fatalf("a validated config does not apply: %v", err)
		}
	})
}
