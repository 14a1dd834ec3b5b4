package e2e

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

// The bridge keeps state only for Events that exist: kube_otel_bridge_
// events_tracked counts the Events created, and falls back once the API
// server deleted them (the TTL's work), so memory follows the live Events
// and not every Event ever seen.
func TestDeletedEventsAreForgotten(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	ns := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	b := startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: ns})
	maddr := b.metricsAddr(ctx)
	tracked := func() float64 {
		t.Helper()
		v, ok, err := metricValue(ctx, maddr, "kube_otel_bridge_events_tracked")
		if err != nil || !ok {
			t.Fatalf("kube_otel_bridge_events_tracked: present %v, %v", ok, err)
		}
		return v
	}
	waitFor := func(what string, cond func(float64) bool) float64 {
		t.Helper()
		var v float64
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if v = tracked(); cond(v) {
				return v
			}
		}
		t.Fatalf("kube_otel_bridge_events_tracked = %v, want %s", v, what)
		return v
	}
	base := tracked()
	const n = 40
	var evs []*corev1.Event
	for i := range n {
		evs = append(evs, createEvent(ctx, t, ns, fmt.Sprintf("tracked-%d", i), corev1.EventTypeNormal, "E2ETracked"))
	}
	waitUIDCounts(ctx, t, rcv, string(evs[n-1].UID), 1)
	waitFor(fmt.Sprintf("≥ %v with the %d Events created", base+n, n), func(v float64) bool { return v >= base+n })
	for _, ev := range evs {
		if err := shared.Client.CoreV1().Events(ns).Delete(ctx, ev.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(fmt.Sprintf("≤ %v once they are deleted", base), func(v float64) bool { return v <= base })
}
