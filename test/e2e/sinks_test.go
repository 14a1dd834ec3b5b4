package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/certs"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/dingtalkserver"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/scenarios"
)

// An unschedulable pod's FailedScheduling warning reaches DingTalk (a
// protocol test server over TLS, checking signatures) and Kafka (kfake) with
// the trace ID of its span at the OTLP receiver.
func TestWarningReachesSinksWithItsTraceID(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	ns := shared.NewNamespace(t)
	dir := t.TempDir()
	pki := certs.New(t, dir)

	ding := dingtalkserver.New(dingtalkserver.Config{Token: "e2e-token", Secret: "SECe2e-secret", TLS: pki.ServerTLSConfig(false)})
	t.Cleanup(ding.Close)
	secretFile := filepath.Join(dir, "dingtalk-secret")
	if err := os.WriteFile(secretFile, []byte("SECe2e-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "k8s-warnings"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close)

	config := fmt.Sprintf(`
sinks:
  dingtalk:
  - name: oncall
    webhook: "%s?access_token=${E2E_DINGTALK_TOKEN}"
    secretFile: %s
    caFile: %s
    traceURL: "https://jaeger.example.com/trace/{trace_id}"
    atMobiles: ["13800000000"]
    filter: {minLevel: Warning, namespaces: [%s], reasons: ["Failed.*"]}
  kafka:
  - name: warnings
    brokers: [%q]
    topic: k8s-warnings
    compression: zstd
    filter: {minLevel: Warning}
`, ding.URL(), secretFile, pki.CAFile, ns, kafka.ListenAddrs()[0])
	configFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	recv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	b := startBridge(t, recv.Addr(), bridgeOpts{Namespaces: ns, Args: []string{"--config", configFile, "--episode-idle", "2s"},
		Env: []string{"E2E_DINGTALK_TOKEN=e2e-token"}})

	if err := scenarios.Unschedulable(ctx, shared.Client, ns); err != nil {
		t.Fatal(err)
	}
	// The span at the receiver.
	var traceID string
	deadline := time.Now().Add(time.Minute)
	for traceID == "" && time.Now().Before(deadline) {
		for _, s := range recv.Spans() {
			if s.Span.Name == "Pod.FailedScheduling" {
				traceID = hex.EncodeToString(s.Span.TraceId)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if traceID == "" {
		t.Fatal("no Pod.FailedScheduling span at the receiver")
	}
	// DingTalk: signed post accepted, naming the pod, linking the trace.
	msgs := ding.WaitMessages(1, time.Minute)
	if len(msgs) == 0 {
		t.Fatalf("no DingTalk message; requests: %+v", ding.Requests())
	}
	m := msgs[0]
	if !strings.Contains(m.Text, "FailedScheduling") || !strings.Contains(m.Text, "huge") || !strings.Contains(m.Text, "jaeger.example.com/trace/"+traceID) {
		t.Errorf("DingTalk message lacks the reason, the pod or the trace link %s:\n%s", traceID, m.Text)
	}
	if !strings.Contains(m.Text, "@13800000000") {
		t.Errorf("DingTalk message lacks the @-mention:\n%s", m.Text)
	}
	// Kafka: the record, keyed by the pod's UID, with the same trace ID.
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafka.ListenAddrs()...), kgo.ConsumeTopics("k8s-warnings"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var rec struct {
		Reason  string `json:"reason"`
		TraceID string `json:"trace_id"`
		SpanID  string `json:"span_id"`
		Object  struct {
			UID  string `json:"uid"`
			Name string `json:"name"`
		} `json:"involvedObject"`
		Cluster string `json:"cluster"`
	}
	var key string
	for rec.Reason != "FailedScheduling" {
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		fetches := cl.PollFetches(fctx)
		cancel()
		if fctx.Err() != nil && fetches.NumRecords() == 0 {
			t.Fatal("no FailedScheduling record in Kafka")
		}
		fetches.EachRecord(func(r *kgo.Record) {
			var v = rec
			if err := json.Unmarshal(r.Value, &v); err == nil && v.Reason == "FailedScheduling" {
				rec, key = v, string(r.Key)
			}
		})
	}
	if rec.TraceID != traceID {
		t.Errorf("Kafka trace_id %s, span's trace %s", rec.TraceID, traceID)
	}
	if rec.Object.Name != "huge" || key != rec.Object.UID || key == "" {
		t.Errorf("Kafka record key %q, object %+v: want keyed by the pod's UID", key, rec.Object)
	}
	if rec.Cluster != "e2e" {
		t.Errorf("Kafka record cluster %q", rec.Cluster)
	}
	_ = b
}
