package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/otlp"
	"github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

// alertsFile is the one source of the bridge's alerting rules; rendered by
// the Helm chart, and as a PrometheusRule for kustomize in promRuleFile.
const (
	alertsFile   = "../../deploy/helm/kube-otel-bridge/files/alerts.yaml"
	promRuleFile = "../../deploy/monitoring/prometheusrule.yaml"
)

// Labels a scrape adds (Prometheus Operator's ServiceMonitor, or the
// kubernetes_sd relabelling most setups use); alerts may name them.
var scrapeLabels = []string{"namespace", "pod", "job", "instance", "service", "container"}

// exportedMetrics gathers every metric the bridge serves, with its labels.
func exportedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	c := newStatsCollector()
	c.source = func() (watch.SourceStats, bool) {
		return watch.SourceStats{Delivery: watch.Histogram{Cumulative: map[float64]uint64{1: 0}}}, true
	}
	c.engine = func() causality.Stats { return causality.Stats{} }
	c.outputs["otlp-logs"] = func() otlp.Stats { return otlp.Stats{} }
	c.sinks["dingtalk/oncall"] = func() SinkStats { return SinkStats{} }
	c.objects = func() int { return 0 }
	c.setCheckpoint(1, 1, 1, time.Now())
	c.setLeading("ns/kube-otel-bridge", true)
	mfs, err := newRegistry(c).Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, mf := range mfs {
		var names []string
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(names, l.GetName()) {
					names = append(names, l.GetName())
				}
			}
		}
		out[mf.GetName()] = names
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			out[mf.GetName()+"_bucket"] = append(slices.Clone(names), "le")
			out[mf.GetName()+"_sum"] = names
			out[mf.GetName()+"_count"] = names
		}
	}
	return out
}

var labelRef = regexp.MustCompile(`\$labels\.([A-Za-z_][A-Za-z0-9_]*)`)

// TestAlertRules checks the alerting rules as promtool would (the file
// parses, every expression and template is valid) and against the bridge:
// each names only metrics it exports, and each annotation only labels those
// metrics (or the scrape) carry.
func TestAlertRules(t *testing.T) {
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.Parse(data, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("%s: %v", alertsFile, errs)
	}
	metrics := exportedMetrics(t)
	alerts := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			expr, err := p.ParseExpr(r.Expr)
			if err != nil {
				t.Errorf("%s: %v", r.Alert, err)
				continue
			}
			allowed := slices.Clone(scrapeLabels)
			for _, sel := range parser.ExtractSelectors(expr) {
				for _, m := range sel {
					if m.Name != labels.MetricName {
						continue
					}
					ls, ok := metrics[m.Value]
					if !ok {
						t.Errorf("%s: the bridge exports no metric %s", r.Alert, m.Value)
					}
					allowed = append(allowed, ls...)
				}
			}
			if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
				t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: wants a summary and a description", r.Alert)
			}
			for _, a := range r.Annotations {
				for _, ref := range labelRef.FindAllStringSubmatch(a, -1) {
					if !slices.Contains(allowed, ref[1]) {
						t.Errorf("%s: an annotation names $labels.%s, which its series do not carry", r.Alert, ref[1])
					}
				}
			}
		}
	}
	if alerts < 5 {
		t.Errorf("%d alerts in %s", alerts, alertsFile)
	}
}

// TestPrometheusRuleMatchesAlerts: deploy/monitoring's PrometheusRule (for
// kustomize) holds exactly the chart's rules. -update rewrites it.
func TestPrometheusRuleMatchesAlerts(t *testing.T) {
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []any `json:"groups"`
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	spec, err := yaml.Marshal(rules)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString("# Generated from deploy/helm/kube-otel-bridge/files/alerts.yaml by\n")
	b.WriteString("# go test ./cmd/kube-otel-bridge -run TestPrometheusRuleMatchesAlerts -update\n")
	b.WriteString("# Needs the Prometheus Operator's CRD: kubectl apply -f deploy/monitoring/\n")
	b.WriteString("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n")
	b.WriteString("  name: kube-otel-bridge\n  namespace: kube-otel-bridge\n")
	b.WriteString("  labels:\n    app.kubernetes.io/name: kube-otel-bridge\nspec:\n")
	for _, line := range strings.SplitAfter(strings.TrimRight(string(spec), "\n"), "\n") {
		b.WriteString("  " + line)
	}
	b.WriteString("\n")
	if *update {
		if err := os.MkdirAll(filepath.Dir(promRuleFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(promRuleFile, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(promRuleFile)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(got, b.Bytes()) {
		t.Errorf("%s differs from %s: run go test ./cmd/kube-otel-bridge -run TestPrometheusRuleMatchesAlerts -update", promRuleFile, alertsFile)
	}
}
