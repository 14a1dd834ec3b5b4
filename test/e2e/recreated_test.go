package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/cluster"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

// An Event that client-go's event recorder creates again after the API
// server deleted it (its --event-ttl; here deleted by hand) comes back under
// a new UID with the count of the series so far plus one. The bridge emits
// that one new occurrence, not the whole series again: the earlier counts
// went out with the Event it replaces. (It did emit them all, up to 1,000,
// with their alerts, each time a repeating Event outlived its TTL: in the
// soak, every rollout trace got the 60-odd counts of its Deployment's
// aggregated ScalingReplicaSet Event again every 5 minutes.)
func TestRecreatedEventIsOneOccurrence(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	ns := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: ns})
	pod := createPod(ctx, t, ns, "target", nil)

	repeat := newRepeatRecorder(ctx, t, ns)
	recordAndWait := func(n int32) *corev1.Event { return repeat(pod, "E2ERepeat", n) }
	events := shared.Client.CoreV1().Events(ns)
	var first *corev1.Event
	for n := int32(1); n <= 3; n++ {
		first = recordAndWait(n)
	}
	waitUIDCounts(ctx, t, rcv, string(first.UID), 3)
	if err := events.Delete(ctx, first.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	again := recordAndWait(4)
	if again.UID == first.UID || again.Name != first.Name {
		t.Fatalf("the recorder did not create the Event again: uid %s (was %s), name %s (was %s)", again.UID, first.UID, again.Name, first.Name)
	}
	next := recordAndWait(5) // and it goes on counting that one
	if next.UID != again.UID {
		t.Fatalf("count 5 went to a new Event %s", next.UID)
	}

	want := []int{4, 5}
	waitRecords(ctx, t, rcv, "counts 4 and 5 of the Event created again", func(recs []rec) error {
		if got := counts(withUID(recs, string(again.UID))); !slices.Contains(got, 5) {
			return fmt.Errorf("counts %v so far", got)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // anything more would have come by now
	recs := rcv.Logs()
	if got := counts(withUID(recs, string(again.UID))); !slices.Equal(got, want) {
		t.Errorf("the Event created again with count 4 gave record counts %v, want %v (its earlier counts went out with %s)", got, want, first.UID)
	}
	if got := counts(withUID(recs, string(first.UID))); !slices.Equal(got, seq(3)) {
		t.Errorf("the first Event gave record counts %v, want 1..3", got)
	}
}

// newRepeatRecorder returns a function that records an Event about obj with
// the reason given through client-go's event recorder as every controller
// runs it (correlator, counts, PATCH, and a create when the PATCH finds no
// Event), and waits for the API server to hold that Event at count n; it
// returns the Event.
func newRepeatRecorder(ctx context.Context, t *testing.T, ns string) func(obj *corev1.Pod, reason string, n int32) *corev1.Event {
	return newRepeatRecorderOn(ctx, t, shared.Client, ns)
}

// newRepeatRecorderOn is newRepeatRecorder on the cluster of client.
func newRepeatRecorderOn(ctx context.Context, t *testing.T, client kubernetes.Interface, ns string) func(obj *corev1.Pod, reason string, n int32) *corev1.Event {
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events(ns)})
	t.Cleanup(b.Shutdown)
	recorder := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "e2e-recorder"})
	events := client.CoreV1().Events(ns)
	return func(obj *corev1.Pod, reason string, n int32) *corev1.Event {
		t.Helper()
		recorder.Event(obj, corev1.EventTypeWarning, reason, "the same failure again")
		var got *corev1.Event
		err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			l, err := events.List(ctx, metav1.ListOptions{FieldSelector: "reason=" + reason})
			if err != nil || len(l.Items) != 1 || l.Items[0].Count != n {
				return false, nil
			}
			got = &l.Items[0]
			return true, nil
		})
		if err != nil {
			t.Fatalf("the recorder's %s Event did not reach count %d: %v", reason, n, err)
		}
		return got
	}
}

// The recorder creates Events again while no bridge runs, after the API
// server deleted them (the TTL; here by hand): A, deleted while the first
// bridge ran, and B, deleted while none did. The next bridge, resuming from
// the checkpoint, emits only their new counts: the checkpoint keeps
// repeaters' names (and deleted repeaters for a while), and a new UID with
// a done name goes on from that name's count. A series new in the down
// time (C) is emitted whole. (Before, a restart emitted A's and B's whole
// series again, up to 1,000 counts each, with their alerts.)
func TestRecreatedWhileDownIsNotBackfilled(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 3*time.Minute)
	ns := shared.NewNamespace(t)
	state := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	opts := bridgeOpts{Namespaces: ns, Args: deliveryArgs(state)}
	first := startBridge(t, rcv.Addr(), opts)
	pod := createPod(ctx, t, ns, "target", nil)
	repeat := newRepeatRecorder(ctx, t, ns)
	events := shared.Client.CoreV1().Events(ns)

	var a1, b1 *corev1.Event
	for n := int32(1); n <= 3; n++ {
		a1 = repeat(pod, "E2ERepeatA", n)
	}
	for n := int32(1); n <= 2; n++ {
		b1 = repeat(pod, "E2ERepeatB", n)
	}
	// D: an Event of count 1 (no name kept for it) whose series began half
	// an hour ago, as a recorder's cache keeps it.
	series := time.Now().Add(-30 * time.Minute)
	d1 := createSeriesEvent(ctx, t, shared.Client, pod, "e2e-series-d", 1, series)
	waitUIDCounts(ctx, t, rcv, string(a1.UID), 3)
	waitUIDCounts(ctx, t, rcv, string(b1.UID), 2)
	waitUIDCounts(ctx, t, rcv, string(d1.UID), 1)
	if err := events.Delete(ctx, a1.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the deletion seen, a checkpoint saved (every 500ms)
	if code := first.Stop(); code != 0 {
		t.Fatalf("first bridge exited %d after SIGTERM", code)
	}

	// No bridge: B deleted; A and B created again with their next counts;
	// C, new, counted twice.
	if err := events.Delete(ctx, b1.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	a2 := repeat(pod, "E2ERepeatA", 4)
	b2 := repeat(pod, "E2ERepeatB", 3)
	if a2.UID == a1.UID || a2.Name != a1.Name || b2.UID == b1.UID || b2.Name != b1.Name {
		t.Fatalf("the recorder did not create A and B again under their names: %s/%s, %s/%s", a2.Name, a2.UID, b2.Name, b2.UID)
	}
	repeat(pod, "E2ERepeatC", 1)
	c := repeat(pod, "E2ERepeatC", 2)
	// D deleted and created again with count 2, as the recorder does.
	if err := events.Delete(ctx, d1.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	d2 := createSeriesEvent(ctx, t, shared.Client, pod, d1.Name, 2, series)

	second := startBridge(t, rcv.Addr(), opts)
	if !strings.Contains(second.out.String(), "resuming from checkpoint") {
		t.Errorf("the second bridge did not log \"resuming from checkpoint\"")
	}
	waitRecords(ctx, t, rcv, "A#4, B#3, C#2 and D#2 from the second bridge", func(recs []rec) error {
		if !slices.Contains(counts(withUID(recs, string(a2.UID))), 4) || !slices.Contains(counts(withUID(recs, string(b2.UID))), 3) ||
			!slices.Contains(counts(withUID(recs, string(c.UID))), 2) || !slices.Contains(counts(withUID(recs, string(d2.UID))), 2) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	time.Sleep(2 * time.Second) // anything more would have come by now
	recs := rcv.Logs()
	for _, tc := range []struct {
		what string
		uid  string
		want []int
	}{
		{"A (deleted while the first bridge ran) before", string(a1.UID), seq(3)},
		{"A created again with count 4", string(a2.UID), []int{4}},
		{"B (deleted while down) before", string(b1.UID), seq(2)},
		{"B created again with count 3", string(b2.UID), []int{3}},
		{"C (new while down)", string(c.UID), seq(2)},
		{"D before", string(d1.UID), seq(1)},
		{"D created again with count 2 (its series older than the checkpoint)", string(d2.UID), []int{2}},
	} {
		if got := counts(withUID(recs, tc.uid)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: record counts %v, want %v", tc.what, got, tc.want)
		}
	}
}

// The same through a relist: the bridge's watch breaks for good (the API
// server restarts while the bridge is stopped, SIGSTOP, and etcd's history
// is compacted, so that its watch resumes at a resourceVersion no longer
// served: 410, a relist), and meanwhile the recorder created an Event
// again. The relist
// shows it under a new UID while the Event it replaces is still known to
// the bridge; it yields only its new count. On a mini cluster of its own
// (an API server restart), not in parallel.
func TestRecreatedDuringRelistIsNotBackfilled(t *testing.T) {
	needCluster(t)
	ctx := ctxFor(t, 3*time.Minute)
	c := ownCluster(ctx, t)
	ns := c.NewNamespace(t)
	state := c.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	b := startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: ns, Args: deliveryArgs(state, "--kubeconfig", c.Kubeconfig)})
	maddr := b.metricsAddr(ctx)
	pod, err := c.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "target"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1.0"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	repeat := newRepeatRecorderOn(ctx, t, c.Client, ns)
	var first *corev1.Event
	for n := int32(1); n <= 3; n++ {
		first = repeat(pod, "E2ERepeat", n)
	}
	series := time.Now().Add(-30 * time.Minute)
	once := createSeriesEvent(ctx, t, c.Client, pod, "e2e-series-once", 1, series)
	waitUIDCounts(ctx, t, rcv, string(first.UID), 3)
	waitUIDCounts(ctx, t, rcv, string(once.UID), 1)
	time.Sleep(time.Second) // a checkpoint saved (every 500ms): the tracker prunes once

	if err := b.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = b.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	if err := c.Restart(cluster.APIServer, false); err != nil {
		t.Fatalf("restart the API server: %v", err)
	}
	if err := c.WaitAPIServer(ctx); err != nil {
		t.Fatalf("API server after the restart: %v", err)
	}
	if err := c.Client.CoreV1().Events(ns).Delete(ctx, first.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	again := repeat(pod, "E2ERepeat", 4)
	if again.UID == first.UID || again.Name != first.Name {
		t.Fatalf("the recorder did not create the Event again: %s/%s", again.Name, again.UID)
	}
	if err := c.Client.CoreV1().Events(ns).Delete(ctx, once.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	onceAgain := createSeriesEvent(ctx, t, c.Client, pod, once.Name, 2, series)
	// The history the bridge's watch would resume from goes (the API
	// server compacts every 5 minutes): its watch gets 410 and it lists.
	rev, err := c.CompactEtcd(ctx)
	if err != nil {
		t.Fatalf("compact etcd: %v", err)
	}
	t.Logf("etcd compacted to revision %d; the bridge resumes", rev)
	resume()

	waitRecords(ctx, t, rcv, "count 4 of the Event created again", func(recs []rec) error {
		if !slices.Contains(counts(withUID(recs, string(again.UID))), 4) || !slices.Contains(counts(withUID(recs, string(onceAgain.UID))), 2) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	time.Sleep(2 * time.Second) // anything more would have come by now
	if v, ok, err := metricValue(ctx, maddr, "kube_otel_bridge_events_lists_total"); err != nil || !ok || v < 2 {
		t.Fatalf("kube_otel_bridge_events_lists_total = %v (present %v, err %v): no relist, the test saw the watch path only", v, ok, err)
	}
	if got := counts(withUID(rcv.Logs(), string(again.UID))); !slices.Equal(got, []int{4}) {
		t.Errorf("the Event created again, seen in a relist: record counts %v, want [4]", got)
	}
	if got := counts(withUID(rcv.Logs(), string(onceAgain.UID))); !slices.Equal(got, []int{2}) {
		t.Errorf("the Event of count 1 created again, seen in a relist: record counts %v, want [2]", got)
	}
}

// createSeriesEvent creates a Warning Event about pod with count and the
// series' first time given, as client-go's recorder creates one again
// (under the same name) after the API server's TTL deleted it: its cache
// keeps the series' first time and count. The recorder itself stamps the
// first time with its clock, which a test cannot set back.
func createSeriesEvent(ctx context.Context, t *testing.T, client kubernetes.Interface, pod *corev1.Pod, name string, count int32, first time.Time) *corev1.Event {
	t.Helper()
	ev, err := client.CoreV1().Events(pod.Namespace).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: name},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Reason:         "E2ESeries",
		Message:        "the same failure again",
		Type:           corev1.EventTypeWarning,
		Count:          count,
		FirstTimestamp: metav1.NewTime(first),
		LastTimestamp:  metav1.NewTime(time.Now()),
		Source:         corev1.EventSource{Component: "e2e-recorder"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}
