package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/otlp"
	"github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMetricsAndHealth(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newStatsCollector()
	c.source = func() (watch.SourceStats, bool) {
		return watch.SourceStats{Received: 7, Occurrences: 5, WatchErrors: 1, Lists: 2}, true
	}
	c.engine = func() causality.Stats {
		return causality.Stats{OpenEpisodes: 3, EpisodesClosed: map[string]uint64{causality.CloseIdle: 2}}
	}
	c.outputs["otlp-logs"] = func() otlp.Stats { return otlp.Stats{Exported: 5, QueueDepth: 1, QueueCapacity: 2048} }
	c.objects = func() int { return 42 }
	h := &health{}
	h.setReady(false, "caches not synced")
	addr, err := serveMetrics(ctx, "127.0.0.1:0", newRegistry(c), h, true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "caches not synced") {
		t.Errorf("/readyz before sync: %d %q", code, body)
	}
	h.setReady(true, "")
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz after sync: %d", code)
	}
	_, body := get(t, base+"/metrics")
	for _, want := range []string{
		"kube_otel_bridge_events_received_total 7",
		"kube_otel_bridge_occurrences_total 5",
		"kube_otel_bridge_watch_restarts_total 1",
		"kube_otel_bridge_events_lists_total 2",
		"kube_otel_bridge_open_episodes 3",
		`kube_otel_bridge_episodes_closed_total{reason="idle"} 2`,
		`kube_otel_bridge_exported_total{output="otlp-logs"} 5`,
		`kube_otel_bridge_dropped_total{output="otlp-logs"} 0`,
		`kube_otel_bridge_queue_depth{output="otlp-logs"} 1`,
		"kube_otel_bridge_cached_objects 42",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != 200 {
		t.Errorf("pprof %d", code)
	}
}
