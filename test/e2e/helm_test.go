package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

const chartDir = "deploy/helm/kube-otel-bridge"

// helmCmd runs bin/helm (make cluster-bins builds it) in the repository,
// with its caches and config in the test's temporary directories.
func helmCmd(ctx context.Context, t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	env := []string{"HELM_CACHE_HOME=" + t.TempDir(), "HELM_CONFIG_HOME=" + t.TempDir(), "HELM_DATA_HOME=" + t.TempDir()}
	return runTool(ctx, t, "helm", env, nil, args...)
}

// The Helm chart, rendered by helm itself with several sets of values:
// every object passes the API server's validation (server-side dry run;
// the Prometheus Operator's kinds, whose CRDs the mini cluster lacks, are
// checked against the alert rules instead), and the bridge runs with the
// arguments, environment and config file the chart gives it.
func TestHelmChart(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 3*time.Minute)
	if out, err := helmCmd(ctx, t, "lint", chartDir); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("helm lint: %s", strings.TrimSpace(string(out)))
	}
	ns := shared.NewNamespace(t) // the release's namespace

	var defaults []manifest
	for _, tc := range []struct {
		name string
		set  []string
	}{
		{"defaults", []string{"otlp.batchTimeout=300ms", "otlp.queueSize=4096"}},
		{"one replica", []string{"replicaCount=1", "leaderElection.enabled=false"}},
		{"sharded and monitored", []string{"sharding.shards=2", "serviceMonitor.enabled=true", "prometheusRule.enabled=true"}},
		{"sinks", []string{
			`sinks.dingtalk[0].name=oncall`,
			`sinks.dingtalk[0].webhook=https://oapi.dingtalk.com/robot/send?access_token=${DINGTALK_TOKEN}`,
			`sinks.dingtalk[0].existingSecret=dingtalk-oncall`, `sinks.dingtalk[0].secretKey=secret`,
			`secretEnv[0].name=DINGTALK_TOKEN`, `secretEnv[0].existingSecret=dingtalk-oncall`, `secretEnv[0].key=access-token`,
			`sinks.kafka[0].name=events`, `sinks.kafka[0].brokers[0]=kafka-0:9093`, `sinks.kafka[0].topic=k8s-warnings`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", "kob", chartDir, "--namespace", ns}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			rendered, err := helmCmd(ctx, t, args...)
			if err != nil {
				t.Fatal(err)
			}
			docs := splitManifests(t, rendered)
			var apply [][]byte
			var kinds []string
			for _, m := range docs {
				kinds = append(kinds, m.Kind)
				switch m.Kind {
				case "PrometheusRule":
					checkRenderedRules(t, m.YAML)
				case "ServiceMonitor":
				default:
					apply = append(apply, m.YAML)
				}
			}
			t.Logf("renders %v", kinds)
			for _, want := range []string{"Deployment", "ConfigMap", "ServiceAccount", "ClusterRole", "Role"} {
				if !slices.Contains(kinds, want) {
					t.Errorf("no %s rendered", want)
				}
			}
			if enabled := slices.Contains(tc.set, "prometheusRule.enabled=true"); enabled != slices.Contains(kinds, "PrometheusRule") {
				t.Errorf("prometheusRule.enabled=%v, but PrometheusRule rendered: %v", enabled, !enabled)
			}
			out, err := kubectl(ctx, t, bytes.Join(apply, []byte("\n---\n")), "apply", "--dry-run=server", "-f", "-")
			if err != nil {
				t.Fatalf("server-side dry run: %v", err)
			}
			for _, m := range docs {
				if m.Kind != "PrometheusRule" && m.Kind != "ServiceMonitor" && !strings.Contains(string(out), m.Name) {
					t.Errorf("dry run did not mention %s/%s", m.Kind, m.Name)
				}
			}
			if tc.name == "defaults" {
				defaults = docs
			}
		})
	}
	if defaults == nil {
		t.Fatal("the default rendering failed")
	}

	// The bridge as the chart runs it: its arguments (but a metrics port of
	// its own), its plain environment, its config file.
	var dep appsv1.Deployment
	var cm corev1.ConfigMap
	for _, m := range defaults {
		switch m.Kind {
		case "Deployment":
			if err := yaml.UnmarshalStrict(m.YAML, &dep); err != nil {
				t.Fatal(err)
			}
		case "ConfigMap":
			if err := yaml.UnmarshalStrict(m.YAML, &cm); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(dep.Spec.Template.Spec.Containers) == 0 || cm.Data["config.yaml"] == "" {
		t.Fatalf("no container or no config.yaml in the default rendering")
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if !strings.Contains(cm.Data["config.yaml"], "batchTimeout: 300ms") {
		t.Errorf("otlp.batchTimeout not in the config file:\n%s", cm.Data["config.yaml"])
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, a := range c.Args {
		switch {
		case a == "run", strings.HasPrefix(a, "--metrics-addr"):
		case strings.HasPrefix(a, "--config="):
			args = append(args, "--config="+cfg)
		default:
			args = append(args, a)
		}
	}
	state := shared.NewNamespace(t)
	env := []string{"POD_NAMESPACE=" + state, "POD_NAME=kob-0"}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env = append(env, e.Name+"="+e.Value)
		}
	}
	t.Logf("bridge with the chart's args %v and env %v", args, env)
	evNS := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	b := startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: evNS, Args: args, Env: env})
	createDeployment(ctx, t, shared.Client, evNS, "web", 1)
	createEvent(ctx, t, evNS, "plain", corev1.EventTypeWarning, "E2EHelm")
	d, _ := waitDelivered(ctx, t, shared.Client, evNS, rcv, "with the chart's settings")
	t.Logf("tally: %s", d)
	if d.Duplicates > 0 {
		t.Errorf("duplicates: %s", d)
	}
	// Every occurrence's delivery was timed (acked by logs and traces).
	if addr := b.metricsAddr(ctx); addr == "" {
		t.Error("no metrics address logged")
	} else if v, ok, err := metricValue(ctx, addr, "kube_otel_bridge_delivery_seconds_count"); err != nil || !ok || int(v) < d.Occurrences {
		t.Errorf("kube_otel_bridge_delivery_seconds_count %v (present %v, %v), want at least %d", v, ok, err, d.Occurrences)
	}
	if !strings.Contains(b.out.String(), "became leader") {
		t.Errorf("the chart's default (2 replicas) runs with leader election; the bridge did not lead")
	}
	if code := b.Stop(); code != 0 {
		t.Errorf("bridge exited %d after SIGTERM", code)
	}
}

// checkRenderedRules: the chart's PrometheusRule holds the alerts of its
// files/alerts.yaml, each whole (helm's fromYaml/toYaml round trip).
func checkRenderedRules(t *testing.T, doc []byte) {
	t.Helper()
	type rules struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	var pr struct {
		Spec rules `json:"spec"`
	}
	if err := yaml.Unmarshal(doc, &pr); err != nil {
		t.Fatal(err)
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, chartDir, "files", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want rules
	if err := yaml.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	if len(want.Groups) == 0 || fmt.Sprint(pr.Spec) != fmt.Sprint(want) {
		t.Errorf("the PrometheusRule's groups differ from files/alerts.yaml:\n%+v\nwant\n%+v", pr.Spec, want)
	}
}
