package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
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
		return watch.SourceStats{Received: 7, Occurrences: 5, Waited: 8, Unresolved: 3, Behind: 4, WatchErrors: 1, Lists: 2,
			Delivery: watch.Histogram{Cumulative: map[float64]uint64{0.5: 3, 1: 4}, Count: 5, Sum: 2.5}}, true
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
		"kube_otel_bridge_occurrences_waited_total 8",
		"kube_otel_bridge_occurrences_without_owners_total 3",
		"kube_otel_bridge_occurrences_object_behind_total 4",
		"kube_otel_bridge_watch_restarts_total 1",
		"kube_otel_bridge_events_lists_total 2",
		"kube_otel_bridge_open_episodes 3",
		`kube_otel_bridge_episodes_closed_total{reason="idle"} 2`,
		`kube_otel_bridge_exported_total{output="otlp-logs"} 5`,
		`kube_otel_bridge_dropped_total{output="otlp-logs"} 0`,
		`kube_otel_bridge_queue_depth{output="otlp-logs"} 1`,
		"kube_otel_bridge_cached_objects 42",
		`kube_otel_bridge_delivery_seconds_bucket{le="0.5"} 3`,
		`kube_otel_bridge_delivery_seconds_bucket{le="+Inf"} 5`,
		"kube_otel_bridge_delivery_seconds_sum 2.5",
		"go_goroutines",
		"go_memstats_heap_inuse_bytes",
		"go_gc_heap_live_bytes",
		"go_gc_heap_goal_bytes",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != 200 {
		t.Errorf("pprof %d", code)
	}
}

// The components are wired while /metrics is served (at start, and when a
// follower becomes leader): a scrape meanwhile must see each whole or not at
// all (go test -race reports the unguarded map write this once was).
func TestStatsWiredWhileScraped(t *testing.T) {
	c := newStatsCollector()
	reg := newRegistry(c)
	done := make(chan struct{})
	scraped := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-done:
				scraped <- n
				return
			default:
			}
			if _, err := reg.Gather(); err != nil {
				t.Error(err)
			}
			n++
		}
	}()
	for i := range 200 {
		name := "dingtalk/s" + strconv.Itoa(i)
		c.setSink(name, func() SinkStats { return SinkStats{Delivered: 1} })
		c.setOutput("otlp-"+strconv.Itoa(i), func() otlp.Stats { return otlp.Stats{Exported: 2} })
		c.setPipeline(func() (watch.SourceStats, bool) { return watch.SourceStats{Received: 3}, true },
			func() causality.Stats { return causality.Stats{} }, func() int { return i })
		c.setLeading("ns/lease", i%2 == 0)
		runtime.Gosched()
	}
	close(done)
	if n := <-scraped; n == 0 {
		t.Fatal("no scrape ran")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, mf := range mfs {
		got[mf.GetName()] = len(mf.GetMetric())
	}
	if got["kube_otel_bridge_sink_delivered_total"] != 200 || got["kube_otel_bridge_exported_total"] != 200 {
		t.Errorf("sinks %d, outputs %d, want 200 each", got["kube_otel_bridge_sink_delivered_total"], got["kube_otel_bridge_exported_total"])
	}
	if got["kube_otel_bridge_leader"] != 1 {
		t.Errorf("%d leader samples, want 1 (with leader election)", got["kube_otel_bridge_leader"])
	}
}

// kube_otel_bridge_leader is there only with leader election, 1 while
// leading.
func TestLeaderMetric(t *testing.T) {
	c := newStatsCollector()
	value := func() (float64, bool) {
		mfs, err := newRegistry(c).Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "kube_otel_bridge_leader" {
				m := mf.GetMetric()[0]
				if l := m.GetLabel(); len(l) != 1 || l[0].GetName() != "lease" || l[0].GetValue() != "ns/bridge" {
					t.Errorf("labels %v, want lease=ns/bridge", l)
				}
				return m.GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	if _, ok := value(); ok {
		t.Error("leader metric without leader election")
	}
	c.setLeading("ns/bridge", false)
	if v, ok := value(); !ok || v != 0 {
		t.Errorf("standing by: %v %v, want 0", v, ok)
	}
	c.setLeading("ns/bridge", true)
	if v, ok := value(); !ok || v != 1 {
		t.Errorf("leading: %v %v, want 1", v, ok)
	}
}
