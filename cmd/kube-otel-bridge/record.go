package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	eventsv1 "k8s.io/api/events/v1"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
	"github.com/kube-otel-bridge/kube-otel-bridge/kube"
	"github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

func recordCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("record", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "recording file to write (JSON lines); - for stdout")
	duration := fs.Duration("duration", 0, "stop after this long (default: until interrupted)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)")
	clusterName := fs.String("cluster-name", "", "cluster name written in the recording's header")
	namespaces := fs.String("namespaces", "", "comma-separated namespaces to record (default: all)")
	exclude := fs.String("exclude-namespaces", "", "comma-separated namespaces to leave out")
	lookback := fs.Duration("initial-lookback", 0, "also record Events that happened up to this long before the start")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(stderr, "record: --out is required")
		return errUsage
	}
	if *duration < 0 {
		return fmt.Errorf("--duration must not be negative, got %s", *duration)
	}
	log, err := newLogger(stderr, *logLevel, "text")
	if err != nil {
		return err
	}
	kc, err := loadKube(*kubeconfig, 20, 40, kube.Options{})
	if err != nil {
		return err
	}
	w := stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	rec, err := watch.NewRecorder(w, time.Now(), *clusterName)
	if err != nil {
		return err
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	objects, err := watch.NewObjectCache(watch.CacheOptions{
		Namespaces: watch.SplitList(*namespaces), Logger: log,
		// Changes (new generation, deletion) of objects already recorded.
		OnChange: func(o *watch.Object) {
			if rec.Known(o.UID) {
				_ = rec.Object(time.Now(), o)
			}
		},
	})
	if err != nil {
		return err
	}
	lastRV := map[string]string{}
	events := 0
	handler := func(_ context.Context, ev *eventsv1.Event, occ *convert.Occurrence) error {
		now := time.Now()
		for _, r := range occ.Chain {
			if o, ok := objects.Get(r.UID); ok {
				if err := rec.Object(now, o); err != nil {
					return err
				}
			}
		}
		if lastRV[string(ev.UID)] == ev.ResourceVersion {
			return nil // several occurrences from one update: write it once
		}
		lastRV[string(ev.UID)] = ev.ResourceVersion
		events++
		return rec.Event(now, ev)
	}
	src, err := watch.NewEventSource(kc, objects, handler, watch.SourceOptions{
		Namespaces: watch.SplitList(*namespaces), ExcludeNamespaces: watch.SplitList(*exclude),
		InitialLookback: *lookback, Logger: log,
	})
	if err != nil {
		return err
	}
	if err := objects.Start(ctx, kc.MetadataFor(objects.Watches())); err != nil {
		return err
	}
	if !objects.WaitForSync(ctx) {
		if err := objects.Err(); err != nil {
			return err
		}
		return errors.New("object caches did not sync")
	}
	if err := src.Start(ctx); err != nil {
		return err
	}
	if !src.WaitForSync(ctx) {
		return errors.New("event informer did not sync")
	}
	log.Info("recording", "out", *out, "duration", *duration)
	src.Run(ctx)
	if err := rec.Flush(); err != nil {
		return err
	}
	log.Info("recording done", "event updates", events)
	return nil
}
