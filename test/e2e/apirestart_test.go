package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/cluster"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

// The API server restarts while events flow: the bridge re-watches, loses
// and doubles nothing, and counts the restart in
// kube_otel_bridge_watch_restarts_total.
//
// It runs on a mini cluster of its own, so that the restart cannot disturb
// the tests on the shared one, and not in parallel (non-parallel tests run
// before the parallel ones start), so that the restart is not slowed down by
// their load on the CPUs.
func TestDeliveryAPIServerRestart(t *testing.T) {
	needCluster(t)
	ctx := ctxFor(t, 3*time.Minute)
	c := ownCluster(ctx, t)
	client := c.Client
	ns := c.NewNamespace(t)
	state := c.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	b := startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: ns, Args: deliveryArgs(state, "--kubeconfig", c.Kubeconfig)})
	maddr := b.metricsAddr(ctx)
	if v, ok, err := metricValue(ctx, maddr, "kube_otel_bridge_watch_restarts_total"); err != nil || !ok || v != 0 {
		t.Errorf("kube_otel_bridge_watch_restarts_total before the restart: %v (present %v, err %v), want 0", v, ok, err)
	}

	createDeployment(ctx, t, client, ns, "web", 2)
	s := startStream(ctx, client, ns, "ev", 100*time.Millisecond)
	defer s.stop()
	time.Sleep(3 * time.Second)
	restart := time.Now()
	if err := c.Restart(cluster.APIServer, false); err != nil {
		t.Fatalf("restart the API server: %v", err)
	}
	if err := c.WaitAPIServer(ctx); err != nil {
		t.Fatalf("API server after the restart: %v", err)
	}
	t.Logf("API server restarted and ready in %s", time.Since(restart).Round(time.Millisecond))
	time.Sleep(4 * time.Second)
	s.stop()
	t.Logf("stream: %s", s)
	if b.exited() {
		t.Fatalf("the bridge exited at the API server restart: %v", b.err)
	}

	d, evs := waitDelivered(ctx, t, client, ns, rcv, "after the API server restart")
	s.checkAgainst(t, evs)
	t.Logf("tally: %s", d)
	if d.Duplicates > 0 {
		t.Errorf("doubled occurrences across the API server restart: %s", d)
	}

	var restarts float64
	var last error
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err := wait.PollUntilContextCancel(pctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		v, ok, err := metricValue(ctx, maddr, "kube_otel_bridge_watch_restarts_total")
		if err != nil {
			if ctx.Err() == nil {
				last = err
			}
			return false, nil
		}
		restarts, last = v, nil
		if !ok {
			last = errors.New("no kube_otel_bridge_watch_restarts_total sample")
		}
		return ok && restarts >= 1, nil
	})
	t.Logf("kube_otel_bridge_watch_restarts_total = %v after the API server restart", restarts)
	if err != nil {
		t.Errorf("kube_otel_bridge_watch_restarts_total = %v (last error %v), want >= 1 after the API server restart", restarts, last)
	}
}

// ownCluster starts a mini cluster of one node for the test alone (one
// whose API server it restarts, say), stopped at cleanup.
func ownCluster(ctx context.Context, t *testing.T) *cluster.Cluster {
	t.Helper()
	start := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{Nodes: 1})
	if err != nil {
		t.Fatalf("own mini cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop own mini cluster: %v", err)
		}
	})
	t.Logf("own mini cluster ready in %s", time.Since(start).Round(time.Millisecond))
	return c
}
