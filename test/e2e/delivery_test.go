package e2e

// Delivery guarantees (DESIGN.md, "Delivery guarantees"): across a SIGTERM
// restart, a kill -9, events created while the bridge is down and a long
// collector outage, every occurrence (k8s.event.uid, k8s.event.count)
// arrives, and exactly once where the design promises it.

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

// restartMidStream runs a stream of events (one operation per 100ms, plus a
// Deployment's events) through a bridge, stops it mid-stream with stop,
// keeps the stream going for 3s while no bridge runs, starts a second bridge
// with the same --state-namespace and returns the final tally once every
// occurrence arrived.
func restartMidStream(t *testing.T, stop func(*bridge, *otlpreceiver.Receiver)) delivery {
	ctx := ctxFor(t, 2*time.Minute)
	ns := shared.NewNamespace(t)
	state := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	opts := bridgeOpts{Namespaces: ns, Args: deliveryArgs(state)}

	first := startBridge(t, rcv.Addr(), opts)
	createDeployment(ctx, t, shared.Client, ns, "web", 2)
	s := startStream(ctx, shared.Client, ns, "ev", 100*time.Millisecond)
	defer s.stop()
	time.Sleep(3 * time.Second)
	// The checkpoint's metrics: written (its size, well under a ConfigMap's
	// 1 MiB) and recent.
	maddr := first.metricsAddr(ctx)
	if v, ok, err := metricValue(ctx, maddr, "kube_otel_bridge_checkpoint_bytes"); err != nil || !ok || v <= 0 || v > 1<<20 {
		t.Errorf("kube_otel_bridge_checkpoint_bytes = %v (present %v, %v), want the size of a saved checkpoint", v, ok, err)
	}
	if v, ok, err := metricValue(ctx, maddr, "kube_otel_bridge_checkpoint_age_seconds"); err != nil || !ok || v > 5 {
		t.Errorf("kube_otel_bridge_checkpoint_age_seconds = %v (present %v, %v), want a checkpoint of the last seconds", v, ok, err)
	}

	stop(first, rcv)
	down := time.Now()
	atStop := s.occurrences()
	recsAtStop := len(rcv.Logs())
	time.Sleep(3 * time.Second)
	atRestart := s.occurrences()
	second := startBridge(t, rcv.Addr(), opts)
	t.Logf("no bridge for %s (%s until the second watched); %d records had arrived; the stream made %d occurrences meanwhile",
		3*time.Second, time.Since(down).Round(time.Millisecond), recsAtStop, atRestart-atStop)
	if atRestart-atStop < 10 {
		t.Errorf("only %d occurrences while no bridge ran: the test did not exercise the down time (%s)", atRestart-atStop, s)
	}
	if !strings.Contains(second.out.String(), "resuming from checkpoint") {
		t.Errorf("the second bridge did not log \"resuming from checkpoint\"")
	}
	time.Sleep(3 * time.Second)
	s.stop()
	t.Logf("stream: %s", s)

	d, evs := waitDelivered(ctx, t, shared.Client, ns, rcv, "after the restart")
	s.checkAgainst(t, evs)
	t.Logf("tally: %s", d)
	if d.Missing > 0 || d.Unexpected > 0 {
		t.Errorf("lost occurrences: %s", d)
	}
	return d
}

// SIGTERM mid-stream, 3s without a bridge, restart: every occurrence exactly
// once, including those of the down time.
func TestDeliverySIGTERMRestart(t *testing.T) {
	needCluster(t)
	t.Parallel()
	d := restartMidStream(t, func(b *bridge, rcv *otlpreceiver.Receiver) {
		if code := b.Stop(); code != 0 {
			t.Errorf("bridge exited %d after SIGTERM, want 0", code)
		}
		t.Logf("first bridge exited after SIGTERM in %s", b.stopTook.Round(time.Millisecond))
		if !strings.Contains(b.out.String(), "flushing queued records") {
			t.Errorf("the first bridge did not log its flush")
		}
	})
	if d.Duplicates != 0 {
		t.Errorf("%d occurrences doubled across a SIGTERM restart, want 0: %s", d.Duplicates, d)
	}
}

// kill -9 mid-stream, restart: nothing lost; what the last checkpoint did not
// cover (at most a checkpoint interval's worth, in flight) may come twice.
func TestDeliveryKill9Restart(t *testing.T) {
	needCluster(t)
	t.Parallel()
	const maxDuplicates = 512
	d := restartMidStream(t, func(b *bridge, rcv *otlpreceiver.Receiver) {
		// Right after the collector answered an export: the acks of that
		// batch are not in a saved checkpoint yet (saved every 500ms), the
		// worst moment for duplicates.
		n := len(logRequests(rcv))
		deadline := time.Now().Add(5 * time.Second)
		for len(logRequests(rcv)) == n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		b.kill()
		reqs := logRequests(rcv)
		t.Logf("first bridge killed (SIGKILL) %s after a log export of %d records was answered", time.Since(reqs[len(reqs)-1].Time).Round(time.Millisecond), reqs[len(reqs)-1].Items)
	})
	t.Logf("duplicates after kill -9: %d of %d occurrences", d.Duplicates, d.Occurrences)
	if d.Duplicates > maxDuplicates {
		t.Errorf("%d duplicates after kill -9, want at most %d (one batch): %s", d.Duplicates, maxDuplicates, d)
	}
}

// Events created (and an existing Event's count raised 1→3) while no bridge
// runs are emitted by the next one, and nothing the first one emitted comes
// again.
func TestDeliveryEventsWhileDown(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	ns := shared.NewNamespace(t)
	state := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	opts := bridgeOpts{Namespaces: ns, Args: deliveryArgs(state)}

	first := startBridge(t, rcv.Addr(), opts)
	var old []*corev1.Event
	for i := range 5 {
		old = append(old, createEvent(ctx, t, ns, fmt.Sprintf("old-%d", i), corev1.EventTypeNormal, "E2EBeforeStop"))
	}
	for _, e := range old {
		waitUIDCounts(ctx, t, rcv, string(e.UID), 1)
	}
	if code := first.Stop(); code != 0 {
		t.Fatalf("first bridge exited %d after SIGTERM", code)
	}
	cm, err := shared.Client.CoreV1().ConfigMaps(state).Get(ctx, "kube-otel-bridge-checkpoint", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no checkpoint ConfigMap after the first bridge: %v", err)
	}
	if len(cm.BinaryData["checkpoint"]) == 0 {
		t.Errorf("checkpoint ConfigMap %s/%s has no binaryData.checkpoint: %v", state, cm.Name, cm.BinaryData)
	}
	mark := len(rcv.Logs())

	// While down: 10 new Events, and old-0 from count 1 to 3.
	want := map[occKey]bool{}
	for i := range 10 {
		e := createEvent(ctx, t, ns, fmt.Sprintf("new-%d", i), corev1.EventTypeNormal, "E2EWhileDown")
		want[occKey{string(e.UID), 1}] = true
	}
	patch := fmt.Sprintf(`{"count":3,"lastTimestamp":%q}`, time.Now().UTC().Format(time.RFC3339))
	if _, err := shared.Client.CoreV1().Events(ns).Patch(ctx, old[0].Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	want[occKey{string(old[0].UID), 2}] = true
	want[occKey{string(old[0].UID), 3}] = true
	time.Sleep(time.Second)

	second := startBridge(t, rcv.Addr(), opts)
	if !strings.Contains(second.out.String(), "resuming from checkpoint") {
		t.Errorf("the second bridge did not log \"resuming from checkpoint\"")
	}
	d, _ := waitDelivered(ctx, t, shared.Client, ns, rcv, "after the restart")
	t.Logf("tally: %s", d)
	if d.Duplicates > 0 {
		t.Errorf("doubled occurrences: %s", d)
	}
	var got, extra, lacking []string
	seen := map[occKey]bool{}
	for _, r := range rcv.Logs()[mark:] {
		k := occKey{attr(r, "k8s.event.uid"), count(r)}
		got = append(got, fmt.Sprintf("%s#%d", attr(r, "k8s.event.name"), k.count))
		if !want[k] || seen[k] {
			extra = append(extra, fmt.Sprintf("%s#%d", attr(r, "k8s.event.name"), k.count))
		}
		seen[k] = true
	}
	for k := range want {
		if !seen[k] {
			lacking = append(lacking, fmt.Sprintf("%s#%d", k.uid, k.count))
		}
	}
	sort.Strings(got)
	t.Logf("the second bridge emitted %d records: %v", len(got), got)
	if len(extra) > 0 || len(lacking) > 0 {
		t.Errorf("the second bridge emitted %v beyond the new occurrences and lacks %v", extra, lacking)
	}
}

// The collector is down for 60s while events keep coming (one operation per
// 200ms): the bridge holds them (backpressure, retries) and delivers every
// one when it is back. Duplicates are allowed (an export cut off by the
// outage may have been stored) but counted.
func TestDeliveryCollectorDown60s(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 3*time.Minute)
	ns := shared.NewNamespace(t)
	state := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	b := startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: ns, Args: deliveryArgs(state)})
	maddr := b.metricsAddr(ctx)

	s := startStream(ctx, shared.Client, ns, "ev", 200*time.Millisecond)
	defer s.stop()
	time.Sleep(3 * time.Second)
	const outage = 60 * time.Second
	rcv.Stop()
	down := time.Now()
	before := len(rcv.Logs())
	atDown := s.occurrences()
	time.Sleep(outage / 2)
	if b.exited() {
		t.Fatalf("the bridge exited during the outage: %v", b.err)
	}
	if v, ok, err := metricValue(ctx, maddr, `kube_otel_bridge_queue_depth{output="otlp-logs"}`); err != nil || !ok {
		t.Errorf("queue depth during the outage: %v (present %v)", err, ok)
	} else {
		t.Logf("log queue depth %v halfway through the outage", v)
	}
	time.Sleep(time.Until(down.Add(outage)))
	if err := rcv.Start(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	during := s.occurrences() - atDown
	t.Logf("receiver down for %s; %d records before; %d occurrences during the outage", up.Sub(down).Round(time.Millisecond), before, during)
	if during < 100 {
		t.Errorf("only %d occurrences during the outage (%s)", during, s)
	}
	time.Sleep(3 * time.Second)
	s.stop()
	t.Logf("stream: %s", s)

	d, evs := waitDelivered(ctx, t, shared.Client, ns, rcv, "after the outage")
	s.checkAgainst(t, evs)
	t.Logf("tally: %s", d)
	t.Logf("duplicates after a 60s collector outage: %d of %d occurrences", d.Duplicates, d.Occurrences)
	if b.exited() {
		t.Fatalf("the bridge exited: %v", b.err)
	}
	if v, ok, err := metricValue(ctx, maddr, `kube_otel_bridge_export_errors_total{output="otlp-logs"}`); err != nil || !ok || v == 0 {
		t.Errorf("export errors after the outage: %v (present %v, err %v), want > 0", v, ok, err)
	}
	if v, _, _ := metricValue(ctx, maddr, `kube_otel_bridge_occurrences_failed_total`); v != 0 {
		t.Errorf("kube_otel_bridge_occurrences_failed_total %v, want 0", v)
	}
	reqs := rcv.Requests()
	reqs = slices.DeleteFunc(reqs, func(r otlpreceiver.Request) bool { return r.Time.Before(up) })
	if len(reqs) > 0 {
		t.Logf("first export request %s after the receiver came back", reqs[0].Time.Sub(up).Round(time.Millisecond))
	}
}

// logRequests returns the log export requests the receiver answered.
func logRequests(rcv *otlpreceiver.Receiver) []otlpreceiver.Request {
	return slices.DeleteFunc(rcv.Requests(), func(r otlpreceiver.Request) bool { return r.Signal != otlpreceiver.SignalLogs })
}
