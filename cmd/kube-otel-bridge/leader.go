package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	eventsv1 "k8s.io/api/events/v1"

	"github.com/kube-otel-bridge/kube-otel-bridge/kube"
)

// leaderElect runs run only while this replica holds the Lease. Followers are
// ready (their role is known) but idle. On SIGTERM the leader flushes and
// releases the Lease so a follower takes over at once; a leader that loses
// the Lease stops and exits with an error so the pod restarts as a follower.
func leaderElect(ctx context.Context, o *runOptions, kc *kube.Client, hl *health, stats *statsCollector, log *slog.Logger, run func(context.Context) error) error {
	id := os.Getenv("POD_NAME")
	if id == "" {
		host, _ := os.Hostname()
		id = host
	}
	id += "_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	name := o.leaseName
	if o.shard != "" {
		i, n, _ := parseShard(o.shard)
		name = fmt.Sprintf("%s-shard-%d-of-%d", name, i, n)
	}
	hl.setReady(false, "leader election: role not known yet")
	lease := o.stateNamespace + "/" + name
	stats.setLeading(lease, false)
	var runErr error
	led := false
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	le, err := kube.NewLeaderElector(kc, kube.LeaderConfig{
		Namespace:       o.stateNamespace,
		Name:            name,
		Identity:        id,
		LeaseDuration:   15 * time.Second,
		RenewDeadline:   10 * time.Second,
		RetryPeriod:     2 * time.Second,
		ReleaseOnCancel: true,
		Logger:          log,
		OnStartedLeading: func(ctx context.Context) {
			led = true
			log.Info("became leader", "lease", lease, "identity", id)
			stats.setLeading(lease, true)
			runErr = run(ctx)
			stats.setLeading(lease, false)
			cancel()
		},
		OnStoppedLeading: func() {
			cancel()
		},
		OnNewLeader: func(leader string) {
			if leader != id {
				log.Info("following", "leader", leader, "lease", lease)
				hl.setReady(true, "")
			}
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	le.Run(lctx)
	if runErr != nil {
		return runErr
	}
	if led && ctx.Err() == nil {
		return errors.New("lost the leader Lease; exiting so that this replica restarts as a follower")
	}
	return nil
}

// parseShard reads "I/N"; "" means no sharding (0 of 1).
func parseShard(s string) (int, int, error) {
	if s == "" {
		return 0, 1, nil
	}
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return 0, 0, fmt.Errorf("--shard: want I/N with 0 <= I < N, got %q", s)
	}
	return i, n, nil
}

// shardOf returns the shard that owns a namespace. Cluster-scoped objects
// (namespace "") belong to shard 0.
func shardOf(namespace string, n int) int {
	if namespace == "" || n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(namespace))
	return int(h.Sum32() % uint32(n))
}

// shardFilter keeps the Events of this shard: by the namespace of the object
// they are about (cluster-scoped objects such as Nodes: shard 0).
func shardFilter(shard string) func(*eventsv1.Event) bool {
	i, n, err := parseShard(shard)
	if err != nil || n <= 1 {
		return nil
	}
	return func(ev *eventsv1.Event) bool {
		ns := ev.Regarding.Namespace
		if ev.Regarding.Kind == "" {
			ns = ev.Namespace
		}
		return shardOf(ns, n) == i
	}
}
