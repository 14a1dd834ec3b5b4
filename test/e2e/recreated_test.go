package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

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

	// The recorder as every controller runs it (correlator, counts, PATCH,
	// and a create when the PATCH finds no Event).
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: shared.Client.CoreV1().Events(ns)})
	t.Cleanup(b.Shutdown)
	recorder := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "e2e-recorder"})
	events := shared.Client.CoreV1().Events(ns)
	// recordAndWait records the repeat and waits for the API server to hold
	// its Event at count n; it returns the Event.
	recordAndWait := func(n int32) *corev1.Event {
		t.Helper()
		recorder.Event(pod, corev1.EventTypeWarning, "E2ERepeat", "the same failure again")
		var got *corev1.Event
		err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			l, err := events.List(ctx, metav1.ListOptions{FieldSelector: "reason=E2ERepeat"})
			if err != nil || len(l.Items) != 1 || l.Items[0].Count != n {
				return false, nil
			}
			got = &l.Items[0]
			return true, nil
		})
		if err != nil {
			t.Fatalf("the recorder's Event did not reach count %d: %v", n, err)
		}
		return got
	}
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
