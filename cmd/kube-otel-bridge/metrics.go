package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/otlp"
	"github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

const ns = "kube_otel_bridge"

// statsCollector reads the components' own counters at scrape time, so the
// hot path carries no metric calls and there is no global registry.
type statsCollector struct {
	// mu guards the components' read functions: they are wired while the
	// metrics are already served (at start, and when a follower becomes
	// leader), and a scrape may run meanwhile.
	mu      sync.Mutex
	source  func() (watch.SourceStats, bool)
	engine  func() causality.Stats
	outputs map[string]func() otlp.Stats // by output name: otlp-logs, otlp-traces, …
	sinks   map[string]func() SinkStats  // side-sinks by type/name
	objects func() int

	// lease names the leader-election Lease ("" : no leader election);
	// leading is whether this replica holds it.
	lease   atomic.Value
	leading atomic.Bool

	received, occurrences, held, waited, unresolved, behind, watchErrors, eventLists, failed *prometheus.Desc
	tracked, delivery                                                                        *prometheus.Desc
	openEpisodes, episodesOpened, episodesClosed, evicted, overLimit                         *prometheus.Desc
	exported, exportErrors, rejected, queueDepth, queueCapacity, dropped                     *prometheus.Desc
	sinkPosted, sinkDigests, sinkDigested, sinkRejected, sinkRetries, cached                 *prometheus.Desc
	cpWatermark, cpEvents, cpAge, cpBytes                                                    *prometheus.Desc
	leader                                                                                   *prometheus.Desc

	cpMu    sync.Mutex
	cpWM    uint64
	cpN     int
	cpSize  int
	cpSaved time.Time
}

// setOutput wires an OTLP output's counters, by output name.
func (c *statsCollector) setOutput(name string, f func() otlp.Stats) {
	c.mu.Lock()
	c.outputs[name] = f
	c.mu.Unlock()
}

// setSink wires a side-sink's counters, by type/name.
func (c *statsCollector) setSink(name string, f func() SinkStats) {
	c.mu.Lock()
	c.sinks[name] = f
	c.mu.Unlock()
}

// setPipeline wires the watch, the causality engine and the object cache;
// nil leaves a part as it is.
func (c *statsCollector) setPipeline(source func() (watch.SourceStats, bool), engine func() causality.Stats, objects func() int) {
	c.mu.Lock()
	if source != nil {
		c.source = source
	}
	if engine != nil {
		c.engine = engine
	}
	if objects != nil {
		c.objects = objects
	}
	c.mu.Unlock()
}

// setLeading records this replica's role for the Lease ns/name.
func (c *statsCollector) setLeading(lease string, leading bool) {
	c.lease.Store(lease)
	c.leading.Store(leading)
}

// setCheckpoint records the last saved checkpoint.
func (c *statsCollector) setCheckpoint(wm uint64, n, size int, saved time.Time) {
	c.cpMu.Lock()
	c.cpWM, c.cpN, c.cpSize, c.cpSaved = wm, n, size, saved
	c.cpMu.Unlock()
}

// SinkStats are the counters a side-sink reports.
type SinkStats struct {
	Delivered, Digests, Digested, Rejected, Retries, Filtered uint64
	QueueDepth                                                int
}

func newStatsCollector() *statsCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(ns+"_"+name, help, labels, nil)
	}
	return &statsCollector{
		outputs:        map[string]func() otlp.Stats{},
		sinks:          map[string]func() SinkStats{},
		received:       d("events_received_total", "Event objects added or updated as seen by the watch."),
		occurrences:    d("occurrences_total", "Event occurrences (one per new count) handed to the pipeline."),
		held:           d("occurrences_waiting", "Occurrences waiting for their object, or the version of it their Event names, to reach the cache."),
		waited:         d("occurrences_waited_total", "Occurrences that waited for their object, or the version of it their Event names, to reach the cache."),
		unresolved:     d("occurrences_without_owners_total", "Occurrences emitted without an owner chain (object never seen)."),
		behind:         d("occurrences_object_behind_total", "Occurrences emitted after the owner wait with their object as cached, older than the version their Event names (the object watch lagged)."),
		watchErrors:    d("watch_restarts_total", "Watch errors after which an informer re-listed or re-watched."),
		eventLists:     d("events_lists_total", "Lists of Events, page by page: the first, and one after every watch that broke for good (e.g. 410 Gone)."),
		failed:         d("occurrences_failed_total", "Occurrences an output refused (never expected)."),
		delivery:       d("delivery_seconds", "Time from the watch handing over an Event update until every output acknowledged its occurrence (owner wait, queues, batching, export, retries)."),
		tracked:        d("events_tracked", "Events the bridge keeps state for (those live in the API server): what its memory grows with."),
		openEpisodes:   d("open_episodes", "Episodes (traces) open now."),
		episodesOpened: d("episodes_opened_total", "Episodes opened."),
		episodesClosed: d("episodes_closed_total", "Episodes closed, by reason.", "reason"),
		evicted:        d("episodes_evicted_total", "Episodes closed early because --max-open-episodes was reached."),
		overLimit:      d("episode_objects_over_limit_total", "Objects attached to their root because an episode held too many."),
		exported:       d("exported_total", "Items accepted by the collector, by output (otlp-logs: records, otlp-traces: spans).", "output"),
		exportErrors:   d("export_errors_total", "Failed export attempts (retried), by output.", "output"),
		rejected:       d("export_rejected_total", "Items the collector rejected as invalid (dropped after splitting the batch), by output.", "output"),
		queueDepth:     d("queue_depth", "Items queued and not yet acknowledged, by output.", "output"),
		queueCapacity:  d("queue_capacity", "Queue capacity, by output.", "output"),
		dropped:        d("dropped_total", "Items dropped by the bridge: expected to stay 0 (backpressure instead).", "output"),
		sinkPosted:     d("sink_delivered_total", "Alerts delivered by a side-sink (posts or records).", "sink"),
		sinkDigests:    d("sink_digests_total", "Digest messages posted by a side-sink.", "sink"),
		sinkDigested:   d("sink_digested_total", "Alerts counted in a digest instead of posted alone.", "sink"),
		sinkRejected:   d("sink_rejected_total", "Alerts the side-sink's service rejected permanently.", "sink"),
		sinkRetries:    d("sink_retries_total", "Retried side-sink deliveries.", "sink"),
		cached:         d("cached_objects", "Objects and tombstones in the slim object cache."),
		cpWatermark:    d("checkpoint_watermark", "resourceVersion up to which every Event update is acknowledged by every output."),
		cpEvents:       d("checkpoint_events", "Events tracked individually in the checkpoint."),
		cpAge:          d("checkpoint_age_seconds", "Seconds since the checkpoint was last written (its lag)."),
		cpBytes:        d("checkpoint_bytes", "Size of the last checkpoint written (a ConfigMap holds 1 MiB; larger ones are written less often)."),
		leader:         d("leader", "1 while this replica holds the leader-election Lease and runs the pipeline, 0 while it stands by (only with --leader-elect).", "lease"),
	}
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	if l, _ := c.lease.Load().(string); l != "" {
		v := 0.0
		if c.leading.Load() {
			v = 1
		}
		gauge(c.leader, v, l)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.source != nil {
		if s, ok := c.source(); ok {
			counter(c.received, s.Received)
			counter(c.occurrences, s.Occurrences)
			gauge(c.held, float64(s.Held))
			counter(c.waited, s.Waited)
			counter(c.unresolved, s.Unresolved)
			counter(c.behind, s.Behind)
			counter(c.watchErrors, s.WatchErrors)
			counter(c.eventLists, s.Lists)
			counter(c.failed, s.Failed)
			gauge(c.tracked, float64(s.Tracked))
			if s.Delivery.Cumulative != nil {
				ch <- prometheus.MustNewConstHistogram(c.delivery, s.Delivery.Count, s.Delivery.Sum, s.Delivery.Cumulative)
			}
		}
	}
	if c.engine != nil {
		s := c.engine()
		gauge(c.openEpisodes, float64(s.OpenEpisodes))
		counter(c.episodesOpened, s.EpisodesOpened)
		for _, r := range []string{causality.CloseIdle, causality.CloseMax, causality.CloseDeleted, causality.CloseNewGeneration,
			causality.CloseNewRun, causality.CloseLimit, causality.CloseFlush} {
			counter(c.episodesClosed, s.EpisodesClosed[r], r)
		}
		counter(c.evicted, s.EvictedEpisodes)
		counter(c.overLimit, s.ObjectsOverLimit)
	}
	for name, f := range c.outputs {
		s := f()
		counter(c.exported, s.Exported, name)
		counter(c.exportErrors, s.FailedAttempts, name)
		counter(c.rejected, s.Rejected, name)
		gauge(c.queueDepth, float64(s.QueueDepth), name)
		gauge(c.queueCapacity, float64(s.QueueCapacity), name)
		counter(c.dropped, 0, name)
	}
	for name, f := range c.sinks {
		s := f()
		counter(c.sinkPosted, s.Delivered, name)
		counter(c.sinkDigests, s.Digests, name)
		counter(c.sinkDigested, s.Digested, name)
		counter(c.sinkRejected, s.Rejected, name)
		counter(c.sinkRetries, s.Retries, name)
		gauge(c.queueDepth, float64(s.QueueDepth), name)
	}
	if c.objects != nil {
		gauge(c.cached, float64(c.objects()))
	}
	c.cpMu.Lock()
	if !c.cpSaved.IsZero() {
		gauge(c.cpWatermark, float64(c.cpWM))
		gauge(c.cpEvents, float64(c.cpN))
		gauge(c.cpAge, time.Since(c.cpSaved).Seconds())
		gauge(c.cpBytes, float64(c.cpSize))
	}
	c.cpMu.Unlock()
}

// health is what /healthz and /readyz report.
type health struct {
	ready  atomic.Bool // caches synced and, with leader election, role known
	reason atomic.Value
}

func (h *health) setReady(ok bool, reason string) {
	h.ready.Store(ok)
	h.reason.Store(reason)
}

// serveMetrics serves /metrics, /healthz, /readyz (and /debug/pprof/ when
// pprof is true) until ctx ends.
func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, h *health, pprofOn bool, log *slog.Logger) (net.Addr, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !h.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			r, _ := h.reason.Load().(string)
			_, _ = w.Write([]byte("not ready: " + r + "\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if pprofOn {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	return l.Addr(), nil
}

// heapLiveRule adds go_gc_heap_live_bytes (the heap marked live by the last
// GC: what the bridge retains, without the garbage GOGC lets pile up between
// cycles, which go_memstats_heap_inuse_bytes counts too) and
// go_gc_heap_goal_bytes to the Go collector's default metrics: the ones to
// size memory requests and to tell a leak from the GC's sawtooth.
var heapLiveRule = collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/(live|goal):bytes$`)}

func newRegistry(c *statsCollector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c,
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(heapLiveRule)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
