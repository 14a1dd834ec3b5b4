package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/sdk/resource"
	eventsv1 "k8s.io/api/events/v1"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/dingtalk"
	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/kafka"
	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/otlp"
	"github.com/kube-otel-bridge/kube-otel-bridge/kube"
	"github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

// The OTLP outputs' batch timeout. The exporter's own default is 200 ms; the
// bridge waits 400 ms, so exports ride on its bursts from 200 ms (BatchMinAge)
// and a storm is sent in about half as many requests. Side by side on the
// same Events that took ≈ 9 % less CPU (11 paired load runs over two stops)
// for a p99 lag of 240–346 ms instead of 125–215 (README, Performance). Past a few
// seconds a batch only delays delivery and holds the queue: hence the cap.
const (
	defaultBatchTimeout = 400 * time.Millisecond
	maxBatchTimeout     = 10 * time.Second
)

// headerFlag collects repeatable --otlp-header k=v flags.
type headerFlag map[string]string

func (h headerFlag) String() string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k) // values may be secrets: never print them
	}
	return strings.Join(keys, ",")
}

func (h headerFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("want key=value, got %q", k)
	}
	h[strings.TrimSpace(k)] = val
	return nil
}

// runOptions are the run command's settings.
type runOptions struct {
	kubeconfig         string
	clusterName        string
	serviceName        string
	namespaces         string
	excludeNS          string
	eventsAPI          string
	initialLookback    time.Duration
	tombstoneTTL       time.Duration
	ownerWait          time.Duration
	maxMessageBytes    int
	shutdownTimeout    time.Duration
	logLevel           string
	logFormat          string
	kubeQPS            float64
	kubeBurst          int
	eventsReadDelay    time.Duration
	otlp               otlp.Config
	episodes           causality.Config
	noTraces           bool
	noLogs             bool
	configFile         string
	config             *fileConfig
	metricsAddr        string
	pprof              bool
	pprofMemRate       int
	memoryLimit        string
	timerSlack         time.Duration
	leaderElect        bool
	stateNamespace     string
	leaseName          string
	shard              string
	noCheckpoint       bool
	checkpointInterval time.Duration
	checkpointEntries  int
}

func runFlags(o *runOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&o.configFile, "config", "", "YAML config file (cluster name, OTLP, DingTalk and Kafka sinks); flags override its OTLP settings")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&o.clusterName, "cluster-name", "", "k8s.cluster.name on every record and span")
	fs.StringVar(&o.serviceName, "service-name", "", "service.name of the bridge's resource (default $OTEL_SERVICE_NAME, else kube-otel-bridge)")
	fs.StringVar(&o.namespaces, "namespaces", "", "comma-separated namespaces to watch (default: all)")
	fs.StringVar(&o.excludeNS, "exclude-namespaces", "", "comma-separated namespaces to leave out")
	fs.StringVar(&o.eventsAPI, "events-api", "", "events.k8s.io/v1 or v1 (default: events.k8s.io/v1 where served, else core v1)")
	fs.DurationVar(&o.initialLookback, "initial-lookback", 0, "at start, also emit Events that happened up to this long ago")
	fs.DurationVar(&o.tombstoneTTL, "tombstone-ttl", 10*time.Minute, "how long deleted objects still resolve owner chains")
	fs.DurationVar(&o.ownerWait, "owner-wait", 2*time.Second, "how long an event may wait for its object (at the version the event names) to reach the cache")
	fs.IntVar(&o.maxMessageBytes, "max-message-bytes", convert.DefaultMaxMessageBytes, "longer event messages are truncated (marked k8s.event.message_truncated)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 20*time.Second, "on SIGTERM, how long to flush what is queued")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "json", "json or text")
	fs.Float64Var(&o.kubeQPS, "kube-api-qps", 20, "API server request rate limit (lists and watches only; there is no GET per event)")
	fs.IntVar(&o.kubeBurst, "kube-api-burst", 40, "API server request burst")
	fs.DurationVar(&o.eventsReadDelay, "events-read-delay", 100*time.Millisecond, "coalesce the Events watch's reads: after a read that emptied the socket, wait this long before the next (fewer wake-ups per event, up to this much more lag; 0: off, at most 1s)")
	fs.StringVar(&o.otlp.Endpoint, "otlp-endpoint", "", "OTLP/gRPC collector host:port (default $OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4317)")
	fs.BoolVar(&o.otlp.Insecure, "otlp-insecure", false, "plaintext gRPC to the collector (default: TLS)")
	fs.StringVar(&o.otlp.CAFile, "otlp-ca-file", "", "CA bundle that signs the collector's certificate")
	fs.StringVar(&o.otlp.ClientCertFile, "otlp-client-cert", "", "client certificate for mTLS")
	fs.StringVar(&o.otlp.ClientKeyFile, "otlp-client-key", "", "client key for mTLS")
	o.otlp.Headers = map[string]string{}
	fs.Var(headerFlag(o.otlp.Headers), "otlp-header", "gRPC header key=value sent to the collector, repeatable; ${ENV} in values is expanded (keep secrets in env)")
	fs.StringVar(&o.otlp.Compression, "otlp-compression", "", "gzip or none (default $OTEL_EXPORTER_OTLP_COMPRESSION, else none)")
	fs.DurationVar(&o.otlp.Timeout, "otlp-timeout", 10*time.Second, "timeout of one export request")
	fs.DurationVar(&o.otlp.BatchTimeout, "otlp-batch-timeout", defaultBatchTimeout, "longest a log record or span waits for its export batch to fill; exports ride on the bridge's own bursts from half of it (lower: less lag, more exports and CPU)")
	fs.IntVar(&o.otlp.BatchSize, "otlp-batch-size", otlp.DefaultBatchSize, "most log records or spans per export request")
	fs.IntVar(&o.otlp.QueueSize, "otlp-queue-size", otlp.DefaultQueueSize, "log records (and, apart, spans) held unacknowledged per output; when full, intake waits (backpressure, nothing dropped)")
	fs.DurationVar(&o.episodes.EpisodeIdle, "episode-idle", 2*time.Minute, "an episode (trace) closes after this long without occurrences")
	fs.DurationVar(&o.episodes.EpisodeMax, "episode-max", time.Hour, "an episode (trace) closes at this age")
	fs.IntVar(&o.episodes.MaxOpenEpisodes, "max-open-episodes", 10000, "open episodes held in memory; past it the least recently active is closed early")
	fs.BoolVar(&o.noTraces, "no-traces", false, "export logs only")
	fs.BoolVar(&o.noLogs, "no-logs", false, "export traces only")
	fs.StringVar(&o.metricsAddr, "metrics-addr", ":9090", "address for /metrics, /healthz and /readyz (empty: off)")
	fs.BoolVar(&o.pprof, "pprof", false, "also serve /debug/pprof/ on --metrics-addr")
	fs.IntVar(&o.pprofMemRate, "pprof-mem-rate", 0, "with --pprof: heap profiles sample one allocation per this many bytes (0: Go's default, 512 KiB; 4096 attributes a growth of a few MB, for some CPU)")
	fs.DurationVar(&o.timerSlack, "timer-slack", 5*time.Millisecond, "let the kernel delay the process's timed wake-ups by up to this much, to serve several with one (the Go runtime's sysmon polls every 20µs while the process is busy); applied on Linux by re-executing the binary once at start; 0: the kernel's default")
	fs.StringVar(&o.memoryLimit, "memory-limit", "", "soft limit of the Go runtime's memory, e.g. 48MiB (the GC works harder near it; not a cap); $GOMEMLIMIT wins; off: none")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "run several replicas: one active, elected with a Lease in --state-namespace")
	fs.StringVar(&o.stateNamespace, "state-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the bridge's Lease and checkpoint (default $POD_NAMESPACE)")
	fs.StringVar(&o.leaseName, "lease-name", "kube-otel-bridge", "name of the leader-election Lease (a shard appends -shard-I-of-N)")
	fs.BoolVar(&o.noCheckpoint, "no-checkpoint", false, "do not keep a checkpoint in --state-namespace (restarts then skip what happened while down)")
	fs.DurationVar(&o.checkpointInterval, "checkpoint-interval", 5*time.Second, "how often the checkpoint is written (at most)")
	fs.IntVar(&o.checkpointEntries, "checkpoint-max-events", watch.DefaultMaxEntries, "Events tracked individually in the checkpoint (a ConfigMap holds 1 MiB: ≈ 18 B each, 4 more for a repeater's name, and room for the open episodes; at most 50,000); past it the oldest may repeat after a crash")
	fs.StringVar(&o.shard, "shard", "", "I/N: take only the namespaces whose hash mod N is I (cluster-scoped objects go to shard 0)")
	return fs
}

func (o *runOptions) validate() error {
	if len(o.otlp.Headers) == 0 {
		o.otlp.Headers = nil
	}
	if err := o.otlp.Validate(); err != nil {
		return otlpFlagNames.Replace(err.Error())
	}
	// Zero would silently mean the exporter's defaults; say so instead.
	if o.otlp.BatchTimeout <= 0 || o.otlp.BatchTimeout > maxBatchTimeout {
		return fmt.Errorf("--otlp-batch-timeout (otlp.batchTimeout) %s: want more than 0 and at most %s", o.otlp.BatchTimeout, maxBatchTimeout)
	}
	if o.otlp.BatchSize <= 0 || o.otlp.QueueSize <= 0 {
		return fmt.Errorf("--otlp-batch-size (otlp.batchSize) %d and --otlp-queue-size (otlp.queueSize) %d: want positive numbers", o.otlp.BatchSize, o.otlp.QueueSize)
	}
	if err := (kube.Options{EventsReadDelay: o.eventsReadDelay}).Validate(); err != nil {
		return fmt.Errorf("--events-read-delay: %w", err)
	}
	if o.maxMessageBytes <= 0 {
		return fmt.Errorf("--max-message-bytes must be positive, got %d", o.maxMessageBytes)
	}
	for _, ns := range watch.SplitList(o.excludeNS) {
		if slices.Contains(watch.SplitList(o.namespaces), ns) {
			return fmt.Errorf("--exclude-namespaces: namespace %q is both included (--namespaces) and excluded", ns)
		}
	}
	if o.leaderElect && o.stateNamespace == "" {
		return errors.New("--leader-elect needs --state-namespace (or $POD_NAMESPACE)")
	}
	if _, _, err := parseShard(o.shard); err != nil {
		return err
	}
	if o.noTraces && o.noLogs {
		return errors.New("--no-traces and --no-logs leave nothing to export")
	}
	if o.episodes.MaxOpenEpisodes <= 0 {
		return fmt.Errorf("--max-open-episodes must be positive, got %d", o.episodes.MaxOpenEpisodes)
	}
	if err := o.episodes.Validate(); err != nil {
		return fmt.Errorf("--episode-idle/--episode-max: %w", err)
	}
	if o.checkpointInterval <= 0 {
		return fmt.Errorf("--checkpoint-interval must be positive, got %s", o.checkpointInterval)
	}
	if o.checkpointEntries <= 0 || o.checkpointEntries > watch.MaxEntries {
		// Past it the entries alone (≈ 18 B each) fill the ConfigMap.
		return fmt.Errorf("--checkpoint-max-events must be 1 to %d (a ConfigMap holds 1 MiB), got %d", watch.MaxEntries, o.checkpointEntries)
	}
	if o.shutdownTimeout <= 0 {
		return fmt.Errorf("--shutdown-timeout must be positive, got %s", o.shutdownTimeout)
	}
	if _, err := parseBytes(o.memoryLimit); err != nil {
		return fmt.Errorf("--memory-limit: %w", err)
	}
	if o.pprofMemRate < 0 || (o.pprofMemRate > 0 && !o.pprof) {
		return fmt.Errorf("--pprof-mem-rate %d: want 0 or, with --pprof, a positive number of bytes", o.pprofMemRate)
	}
	if o.timerSlack < 0 || o.timerSlack > time.Second {
		return fmt.Errorf("--timer-slack %s: want 0 (the kernel's default) to 1s", o.timerSlack)
	}
	return nil
}

func runCmd(ctx context.Context, args []string, stderr io.Writer) error {
	var o runOptions
	fs := runFlags(&o)
	fs.SetOutput(stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if o.configFile != "" {
		c, err := loadConfig(o.configFile)
		if err != nil {
			return err
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if err := c.apply(&o, set); err != nil {
			return fmt.Errorf("config %s: %w", o.configFile, err)
		}
		o.config = c
	}
	if err := o.validate(); err != nil {
		return err
	}
	log, err := newLogger(stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	// Before anything starts: it may execute the binary again.
	if err := applyTimerSlack(o.timerSlack); err != nil {
		log.Warn("timer slack not applied", "err", err)
	}
	if o.pprofMemRate > 0 {
		// Early: only allocations from here on are sampled at this rate.
		runtime.MemProfileRate = o.pprofMemRate
	}
	memLimit, _ := parseBytes(o.memoryLimit) // validated
	if l := applyMemoryLimit(memLimit, os.Getenv("GOMEMLIMIT")); l != math.MaxInt64 {
		log.Debug("Go memory limit", "bytes", l)
	}
	kc, err := loadKube(o.kubeconfig, float32(o.kubeQPS), o.kubeBurst, kube.Options{EventsReadDelay: o.eventsReadDelay})
	if err != nil {
		return err
	}
	uid, err := clusterUID(ctx, kc)
	if err != nil {
		log.Warn("k8s.cluster.uid left out", "err", err)
	}
	res, err := bridgeResource(o.serviceName, o.clusterName, uid)
	if err != nil {
		return err
	}
	o.episodes.ClusterName = o.clusterName
	engine, err := causality.New(o.episodes)
	if err != nil {
		return err
	}
	stats := newStatsCollector()
	hl := &health{}
	hl.setReady(false, "caches not synced")
	if o.metricsAddr != "" {
		addr, err := serveMetrics(ctx, o.metricsAddr, newRegistry(stats), hl, o.pprof, log)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		log.Info("serving metrics", "addr", addr.String())
	}
	run := func(ctx context.Context) error {
		return runPipeline(ctx, &o, kc, res, engine, stats, hl, log)
	}
	if !o.leaderElect {
		return run(ctx)
	}
	return leaderElect(ctx, &o, kc, hl, stats, log, run)
}

// runPipeline watches and exports until ctx ends, then flushes.
func runPipeline(ctx context.Context, o *runOptions, kc *kube.Client, res *resource.Resource, engine *causality.Engine,
	stats *statsCollector, hl *health, log *slog.Logger) error {
	hl.setReady(false, "caches not synced")
	var sinks []sink
	p := &pipeline{engine: engine}
	if !o.noLogs {
		exp, err := otlp.NewLogExporter(ctx, o.otlp)
		if err != nil {
			return err
		}
		logs := otlp.NewLogSink(exp, res, o.otlp, log.With("output", "otlp-logs"))
		sinks = append(sinks, logs)
		stats.setOutput("otlp-logs", logs.Stats)
		p.emitLog = func(ctx context.Context, occ *convert.Occurrence, ack func()) error {
			return logs.EmitOccurrence(ctx, occ, ack)
		}
	}
	if o.config != nil {
		for _, c := range o.config.Sinks.DingTalk {
			d, err := dingtalk.New(c, o.clusterName, log.With("sink", "dingtalk/"+c.Name))
			if err != nil {
				return errors.Join(err, shutdown(sinks, o.shutdownTimeout))
			}
			sinks = append(sinks, d)
			p.side = append(p.side, d)
			stats.setSink("dingtalk/"+c.Name, func() SinkStats {
				s := d.Stats()
				return SinkStats{Delivered: s.Posted, Digests: s.Digests, Digested: s.Digested, Rejected: s.Rejected, Retries: s.Retries, Filtered: s.Filtered, QueueDepth: int(s.Pending)}
			})
		}
		for _, c := range o.config.Sinks.Kafka {
			k, err := kafka.New(c, o.clusterName, log.With("sink", "kafka/"+c.Name))
			if err != nil {
				return errors.Join(err, shutdown(sinks, o.shutdownTimeout))
			}
			sinks = append(sinks, k)
			p.side = append(p.side, k)
			stats.setSink("kafka/"+c.Name, func() SinkStats {
				s := k.Stats()
				return SinkStats{Delivered: s.Produced, Rejected: s.Rejected, Retries: s.FailedAttempts, Filtered: s.FilteredOut, QueueDepth: s.Buffered}
			})
		}
	}
	if !o.noTraces {
		exp, err := otlp.NewTraceExporter(ctx, o.otlp)
		if err != nil {
			return errors.Join(err, shutdown(sinks, o.shutdownTimeout))
		}
		traces := otlp.NewTraceSink(exp, res, o.otlp, log.With("output", "otlp-traces"))
		sinks = append(sinks, traces)
		stats.setOutput("otlp-traces", traces.Stats)
		p.emitSpan = func(ctx context.Context, s causality.Span, ack func()) error {
			return traces.Emit(ctx, s, ack)
		}
	}

	// The checkpoint (in --state-namespace) says what every output has
	// acknowledged, so a restart emits what happened meanwhile and nothing twice.
	var store *watch.ConfigMapStore
	var resume *watch.Checkpoint
	if o.stateNamespace != "" && !o.noCheckpoint {
		store = &watch.ConfigMapStore{Client: kc, Namespace: o.stateNamespace, Name: checkpointName(o)}
		cp, err := store.Load(ctx)
		if err != nil {
			return errors.Join(err, shutdown(sinks, o.shutdownTimeout))
		}
		if store.NamesErr != nil {
			log.Warn("checkpoint names dropped: Events created again while the bridge was down may repeat earlier counts", "err", store.NamesErr)
		}
		if cp != nil {
			if n, err := restoreEngine(engine, cp.Extra); err != nil {
				log.Warn("episodes in the checkpoint unreadable; traces start afresh", "err", err)
			} else if n > 0 {
				log.Info("continuing open episodes", "episodes", n)
			}
			log.Info("resuming from checkpoint", "configmap", o.stateNamespace+"/"+store.Name, "watermark", cp.Watermark, "events", len(cp.Done), "saved", cp.Saved)
		}
		resume = cp
	} else {
		log.Warn("no checkpoint: a restart emits only what happens after it (set --state-namespace)")
	}
	// Without a checkpoint nothing would read (or prune, see Snapshot) the
	// tracker's entry per Event: none is kept.
	var tracker *watch.Tracker
	if store != nil {
		tracker = watch.NewTracker(resume, o.checkpointEntries)
	}

	// Reading stops on SIGTERM (ctx); the sinks then flush with their own deadline.
	objects, err := watch.NewObjectCache(watch.CacheOptions{
		TombstoneTTL: o.tombstoneTTL, Namespaces: watch.SplitList(o.namespaces), Logger: log,
		OnDelete: func(obj *watch.Object) {
			if err := p.deleted(ctx, obj); err != nil && ctx.Err() == nil {
				log.Error("closing the episode of a deleted object", "err", err)
			}
		},
	})
	if err != nil {
		return errors.Join(err, shutdown(sinks, o.shutdownTimeout))
	}
	p.objects = objects
	stats.setPipeline(nil, p.stats, objects.Len)
	handler := func(ctx context.Context, _ *eventsv1.Event, occ *convert.Occurrence) error {
		return p.occurrence(ctx, occ)
	}
	src, err := watch.NewEventSource(kc, objects, handler, watch.SourceOptions{
		Namespaces:        watch.SplitList(o.namespaces),
		ExcludeNamespaces: watch.SplitList(o.excludeNS),
		API:               o.eventsAPI,
		InitialLookback:   o.initialLookback,
		OwnerWait:         o.ownerWait,
		Convert:           convert.Options{MaxMessageBytes: o.maxMessageBytes},
		Logger:            log,
		Accept:            shardFilter(o.shard),
		Tracker:           tracker,
		Resume:            resume,
	})
	if err != nil {
		return errors.Join(err, shutdown(sinks, o.shutdownTimeout))
	}
	stats.setPipeline(func() (watch.SourceStats, bool) { return src.Stats(), true }, nil, nil)
	// The caches sync with the GC working harder (see syncGCPercent).
	restoreGC := lowGCWhileSyncing()
	synced, err := func() (bool, error) {
		defer restoreGC()
		if err := objects.Start(ctx, kc.MetadataFor(objects.Watches())); err != nil {
			return false, err
		}
		if !objects.WaitForSync(ctx) {
			// Refused by RBAC (Err says so), or stopped before the caches synced.
			return false, objects.Err()
		}
		if err := src.Start(ctx); err != nil {
			return false, err
		}
		return src.WaitForSync(ctx), nil
	}()
	if !synced {
		return errors.Join(err, shutdown(sinks, o.shutdownTimeout))
	}
	hl.setReady(true, "")
	log.Info("watching events", "api", src.API(), "objects", objects.Len(), "cluster", o.clusterName, "version", version)
	go func() {
		// Episodes close on the wall clock when idle or too old.
		t := time.NewTicker(time.Second)
		defer t.Stop()
		lastForget := time.Now()
		var evicted uint64
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				if err := p.advance(ctx, now); err != nil && ctx.Err() == nil {
					log.Error("closing idle episodes", "err", err)
				}
				if st := p.stats(); st.EvictedEpisodes > evicted {
					log.Warn("--max-open-episodes reached: the least recently active episodes were closed early",
						"closed", st.EvictedEpisodes-evicted, "open", st.OpenEpisodes, "limit", o.episodes.MaxOpenEpisodes)
					evicted = st.EvictedEpisodes
				}
				if now.Sub(lastForget) > 10*time.Minute {
					// Bound the per-root episode marks (their keys carry the day).
					p.mu.Lock()
					engine.ForgetBefore(now.Add(-markHorizon))
					p.mu.Unlock()
					lastForget = now
				}
			}
		}
	}()
	var cpr *checkpointer
	if store != nil {
		cpr = newCheckpointer(store, tracker, engine, &p.mu, log, func(cp *watch.Checkpoint) {
			stats.setCheckpoint(cp.Watermark, len(cp.Done), store.Size(), cp.Saved)
		})
	}
	if store != nil {
		go func() {
			// A bounded rate: one write per interval at most.
			t := time.NewTicker(o.checkpointInterval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if err := cpr.save(ctx, nil, false); err != nil && ctx.Err() == nil {
						log.Error("checkpoint not saved", "err", err)
					}
				}
			}
		}()
	}
	src.Run(ctx)
	hl.setReady(false, "shutting down")
	log.Info("stopping: closing open episodes and flushing queued records", "timeout", o.shutdownTimeout)
	// One deadline for all of the shutdown.
	fctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	// With a checkpoint, open episodes are carried over to the next process
	// (same trace IDs continue; their object spans go out once, when they
	// close); without one, or past the size budget, they close here so that
	// every exported event span has its parents exported too.
	var open []byte
	var flushErr error
	if store != nil {
		var spans []causality.Span
		// The budget the periodic saves found to fit the ConfigMap.
		budget := cpr.openBudget()
		p.mu.Lock()
		open, spans, flushErr = engine.SaveOpen(budget)
		p.mu.Unlock()
		flushErr = errors.Join(flushErr, p.spans(fctx, spans))
	}
	flushErr = errors.Join(flushErr, p.flush(fctx))
	err = errors.Join(flushErr, shutdownCtx(fctx, sinks))
	if err != nil {
		// Not everything was delivered: do not carry episodes whose spans
		// may be missing; the next process re-reads what was not acked.
		open = nil
	}
	if cpr == nil {
		return err
	}
	if errors.Is(context.Cause(ctx), kube.ErrLeaseLost) {
		// Another replica may lead and save already: a last save here
		// would overwrite its newer checkpoint with this one's.
		log.Warn("not saving a final checkpoint: the leader Lease was lost")
		return err
	}
	if cerr := cpr.save(fctx, open, true); cerr != nil {
		err = errors.Join(err, fmt.Errorf("final checkpoint: %w", cerr))
	} else {
		log.Info("final checkpoint saved", "configmap", o.stateNamespace+"/"+store.Name, "open_episodes_carried", len(open) > 0)
	}
	return err
}

// snapshotEpisodesBudget bounds the open episodes carried in a checkpoint,
// marksBudget the episode marks (≈ 3,500 roots): JSON before compression,
// at most; checkpointFit scales both down to what fits the ConfigMap's
// 1 MiB beside the Event entries.
const (
	snapshotEpisodesBudget = 1 << 20
	marksBudget            = 512 << 10
)

// engineState is the causality engine's part of the checkpoint.
type engineState struct {
	// Marks is SaveState's JSON; checkpoints before it was plain JSON hold
	// it compressed, as a base64 string.
	Marks json.RawMessage `json:"marks,omitempty"`
	Open  json.RawMessage `json:"open,omitempty"`
}

// appendJSON appends what json.Marshal makes of s, without scanning and
// copying its parts again (the engine made them valid JSON): ≈ 1 % of the
// bridge's CPU under load did only that.
func (s engineState) appendJSON(b []byte) []byte {
	b = append(b, '{')
	if len(s.Marks) > 0 {
		b = append(b, `"marks":`...)
		b = append(b, s.Marks...)
	}
	if len(s.Open) > 0 {
		if len(s.Marks) > 0 {
			b = append(b, ',')
		}
		b = append(b, `"open":`...)
		b = append(b, s.Open...)
	}
	return append(b, '}')
}

// restoreEngine loads the engine's part of a checkpoint and returns how many
// open episodes continue.
func restoreEngine(engine *causality.Engine, extra []byte) (int, error) {
	if len(extra) == 0 {
		return 0, nil
	}
	var st engineState
	if err := json.Unmarshal(extra, &st); err != nil {
		return 0, err
	}
	marks := []byte(st.Marks)
	if len(marks) > 0 && marks[0] == '"' {
		if err := json.Unmarshal(st.Marks, &marks); err != nil {
			return 0, err
		}
	}
	if err := engine.RestoreState(marks); err != nil {
		return 0, err
	}
	if err := engine.RestoreOpen(st.Open); err != nil {
		return 0, err
	}
	return engine.Stats().OpenEpisodes, nil
}

// markHorizon is how long the engine remembers a root's last episode (for
// the link to it and its sequence) after it closed.
const markHorizon = 24 * time.Hour

func checkpointName(o *runOptions) string {
	name := o.leaseName + "-checkpoint"
	if o.shard != "" {
		i, n, _ := parseShard(o.shard)
		name = fmt.Sprintf("%s-shard-%d-of-%d", name, i, n)
	}
	return name
}

// sink is an output that flushes on shutdown.
type sink interface {
	Shutdown(ctx context.Context) error
}

func shutdown(sinks []sink, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return shutdownCtx(ctx, sinks)
}

func shutdownCtx(ctx context.Context, sinks []sink) error {
	var errs []error
	for _, s := range sinks {
		if err := s.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flush: %w", err))
		}
	}
	return errors.Join(errs...)
}

// otlpFlagNames turns otlp.Config field names in errors into the flags (and
// config file keys) a user sets.
var otlpFlagNames = replacer(
	"Endpoint", "--otlp-endpoint (otlp.endpoint)",
	"ClientCertFile", "--otlp-client-cert (otlp.clientCert)",
	"ClientKeyFile", "--otlp-client-key (otlp.clientKey)",
	"CAFile", "--otlp-ca-file (otlp.caFile)",
	"Compression", "--otlp-compression (otlp.compression)",
	"Headers", "--otlp-header (otlp.headers)",
	"BatchTimeout", "--otlp-batch-timeout (otlp.batchTimeout)",
	"BatchSize", "--otlp-batch-size (otlp.batchSize)",
	"QueueSize", "--otlp-queue-size (otlp.queueSize)",
	"Timeout", "--otlp-timeout (otlp.timeout)",
	"Insecure", "--otlp-insecure (otlp.insecure)",
)

type errReplacer struct{ r *strings.Replacer }

func replacer(pairs ...string) errReplacer { return errReplacer{strings.NewReplacer(pairs...)} }

func (e errReplacer) Replace(msg string) error { return errors.New(e.r.Replace(msg)) }

// bridgeResource is the OTLP resource of the bridge's records: the standard
// OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME, overridden by the flags.
func bridgeResource(serviceName, clusterName, clusterUID string) (*resource.Resource, error) {
	if serviceName == "" {
		serviceName = os.Getenv("OTEL_SERVICE_NAME")
	}
	ours := resource.NewSchemaless(convert.Resource(serviceName, clusterName, clusterUID)...)
	res, err := resource.Merge(resource.Environment(), ours)
	if err != nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	return resource.Merge(resource.Default(), res)
}
