package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/otlp"
	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/stdout"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
	"github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

func replayCmd(args []string, w, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	output := fs.String("output", "tree", "tree (a waterfall per trace), json (one span per line, deterministic) or otlp (send spans and logs to --otlp-endpoint)")
	var oc otlp.Config
	fs.StringVar(&oc.Endpoint, "otlp-endpoint", "", "with --output otlp: collector host:port (default $OTEL_EXPORTER_OTLP_ENDPOINT)")
	fs.BoolVar(&oc.Insecure, "otlp-insecure", false, "with --output otlp: plaintext gRPC")
	fs.StringVar(&oc.CAFile, "otlp-ca-file", "", "with --output otlp: CA of the collector")
	maxMsg := fs.Int("max-message-bytes", convert.DefaultMaxMessageBytes, "longer event messages are truncated")
	cluster := fs.String("cluster-name", "", "cluster name (part of every trace ID)")
	idle := fs.Duration("episode-idle", 2*time.Minute, "an episode closes after this long without occurrences")
	maxDur := fs.Duration("episode-max", time.Hour, "an episode closes at this age")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: kube-otel-bridge replay FILE [--output tree|json|otlp]")
		fs.PrintDefaults()
	}
	// The file may come before or after the flags.
	var file string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		file, args = args[0], args[1:]
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	}
	if file == "" {
		fs.Usage()
		return errUsage
	}
	if *output != "tree" && *output != "json" && *output != "otlp" {
		return fmt.Errorf("--output must be tree, json or otlp, got %q", *output)
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	entries, err := watch.ReadRecording(f)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	occs, spans, err := replay(entries, replayOptions{
		convert:   convert.Options{MaxMessageBytes: *maxMsg},
		causality: causality.Config{ClusterName: *cluster, EpisodeIdle: *idle, EpisodeMax: *maxDur},
	})
	if err != nil {
		return err
	}
	switch *output {
	case "json":
		return stdout.JSON(w, spans)
	case "otlp":
		return sendOTLP(oc, *cluster, occs, spans, w)
	}
	return stdout.Tree(w, spans)
}

// replayOptions configure a replay.
type replayOptions struct {
	convert   convert.Options
	causality causality.Config
}

// replay runs the same stages as the daemon (dedup, owner chains, causality)
// on a recording with a virtual clock: the times written in the recording.
// It returns the occurrences (with their trace and span IDs) and the spans.
func replay(entries []watch.Entry, opts replayOptions) ([]convert.Occurrence, []causality.Span, error) {
	var now time.Time
	objects, err := watch.NewObjectCache(watch.CacheOptions{Now: func() time.Time { return now }})
	if err != nil {
		return nil, nil, err
	}
	engine, err := causality.New(opts.causality)
	if err != nil {
		return nil, nil, err
	}
	var occs []convert.Occurrence
	var spans []causality.Span
	p := &pipeline{
		objects: objects,
		engine:  engine,
		emitSpan: func(_ context.Context, s causality.Span, ack func()) error {
			spans = append(spans, s)
			ack()
			return nil
		},
		emitLog: func(_ context.Context, o *convert.Occurrence, ack func()) error {
			occs = append(occs, *o)
			ack()
			return nil
		},
	}
	ctx := context.Background()
	dedup := watch.NewDedup()
	for _, e := range entries {
		now = e.At
		if err := p.advance(ctx, now); err != nil {
			return nil, nil, err
		}
		switch {
		case e.Object != nil && !e.Object.Deleted.IsZero():
			if _, ok := objects.Get(e.Object.UID); !ok {
				objects.Upsert(e.Object)
			}
			objects.MarkDeleted(e.Object.UID, e.Object.Deleted)
			if err := p.deleted(ctx, e.Object); err != nil {
				return nil, nil, err
			}
		case e.Object != nil:
			objects.Upsert(e.Object)
		case e.Event != nil:
			batch, err := watch.Occurrences(dedup, e.Event, e.At, opts.convert)
			if err != nil {
				return nil, nil, err
			}
			for i := range batch {
				batch[i].Chain, _ = objects.Chain(batch[i].Chain)
				if err := p.occurrence(ctx, &batch[i]); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	if err := p.flush(ctx); err != nil {
		return nil, nil, err
	}
	return occs, spans, nil
}

// sendOTLP exports a replay's log records and spans to a collector, with
// the same exporters as the daemon, and waits until they are delivered.
func sendOTLP(cfg otlp.Config, cluster string, occs []convert.Occurrence, spans []causality.Span, w io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return otlpFlagNames.Replace(err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := bridgeResource("", cluster, "")
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	lexp, err := otlp.NewLogExporter(ctx, cfg)
	if err != nil {
		return err
	}
	logs := otlp.NewLogSink(lexp, res, cfg, logger)
	texp, err := otlp.NewTraceExporter(ctx, cfg)
	if err != nil {
		return errors.Join(err, logs.Shutdown(ctx))
	}
	traces := otlp.NewTraceSink(texp, res, cfg, logger)
	for i := range spans {
		if err := traces.Emit(ctx, spans[i], func() {}); err != nil {
			return err
		}
	}
	for i := range occs {
		if err := logs.EmitOccurrence(ctx, &occs[i], func() {}); err != nil {
			return err
		}
	}
	if err := errors.Join(traces.Shutdown(ctx), logs.Shutdown(ctx)); err != nil {
		return err
	}
	fmt.Fprintf(w, "sent %d spans and %d log records\n", len(spans), len(occs))
	return nil
}
