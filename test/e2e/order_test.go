package e2e

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/cluster"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/scenarios"
)

// checkArrivalOrder checks that each Event's records arrived in count order:
// the event source hands occurrences over in the order it saw them and the
// sink exports in order.
func checkArrivalOrder(t *testing.T, recs []rec) {
	t.Helper()
	byUID := map[string][]int{}
	for _, r := range recs {
		uid := attr(r, "k8s.event.uid")
		byUID[uid] = append(byUID[uid], count(r))
	}
	for uid, cs := range byUID {
		if !slices.IsSorted(cs) {
			t.Errorf("event %s: counts arrived in the order %v", uid, cs)
		}
	}
}

// An occurrence that waits for its object to reach the cache (owner wait)
// must not be overtaken by a later occurrence of the same Event. Here the
// object is a Node that appears while count 1 waits; count 2 comes right
// after. Without care, count 2 goes out at once (its object is known) while
// count 1 still waits for the event source's next 100ms retry tick; whether
// count 2 lands before that tick is a race, so several Events try it at once
// with different gaps.
func TestHeldOccurrenceNotOvertaken(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	ns := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	// A long owner wait so that only the node's arrival releases count 1.
	startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: ns, Args: []string{"--owner-wait", "10s"}})

	const trials = 8
	uids := make([]string, trials)
	var wg sync.WaitGroup
	errs := make(chan error, trials)
	for i := range trials {
		wg.Go(func() {
			node := fmt.Sprintf("late-%s-%d", ns[len(ns)-5:], i)
			gap := time.Duration(5+12*i) * time.Millisecond
			uid, err := heldThenKnown(ctx, ns, node, gap)
			uids[i] = uid
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	recs := waitRecords(ctx, t, rcv, "counts 1 and 2 of every trial", func(recs []rec) error {
		for _, uid := range uids {
			if got := counts(withUID(recs, uid)); !slices.Equal(got, []int{1, 2}) {
				return fmt.Errorf("event %s: counts %v", uid, got)
			}
		}
		return nil
	})
	checkArrivalOrder(t, recs)
}

// heldThenKnown creates an Event about a Node that does not exist yet (named
// in the UID field, as kubelets do), then the Node, then after gap raises
// the Event's count to 2.
func heldThenKnown(ctx context.Context, ns, node string, gap time.Duration) (string, error) {
	now := metav1.Now()
	ev, err := shared.Client.CoreV1().Events(ns).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: node},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: node, UID: types.UID(node), Namespace: ns},
		Reason:         "E2ELateNode", Message: "about a node not yet in the cache", Type: corev1.EventTypeNormal,
		Count: 1, FirstTimestamp: now, LastTimestamp: now, Source: corev1.EventSource{Component: "e2e-test"},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	time.Sleep(300 * time.Millisecond) // count 1 is now held
	_, err = shared.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: node},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: cluster.TaintDedicated, Value: "true", Effect: corev1.TaintEffectNoSchedule}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	go func() {
		<-ctx.Done()
		_ = shared.Client.CoreV1().Nodes().Delete(context.Background(), node, metav1.DeleteOptions{})
	}()
	time.Sleep(gap)
	ev.Count = 2
	ev.LastTimestamp = metav1.Now()
	if _, err := shared.Client.CoreV1().Events(ns).Update(ctx, ev, metav1.UpdateOptions{}); err != nil {
		return "", err
	}
	return string(ev.UID), nil
}

// An Event written after an update of its object names the object at that
// update's resourceVersion; the bridge's object watch may read the update
// after the Event. The occurrence must wait for it, so that a controller's
// Event about a Deployment's new generation joins that rollout's trace, not
// the one before. Here the Event is written first, naming the Deployment at
// the next resourceVersion (every write after it, the update included, is
// later), and the update that makes generation 2 comes 1.5 s after: the
// occurrence must wait that long and land in the rollout's trace (without
// the wait it goes at once into the creation's trace).
func TestEventWaitsForItsObjectVersion(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 3*time.Minute)
	ns := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	b := startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: ns, Args: []string{"--owner-wait", "15s"}})
	deployments := shared.Client.AppsV1().Deployments(ns)

	// A quiet Deployment is needed for the 1.5 s: a status update of it in
	// between would be a later version too. Retried on a fresh Deployment
	// when one came.
	var name, evUID string
	for trial := 0; ; trial++ {
		name = fmt.Sprintf("versioned-%d", trial)
		if _, err := deployments.Create(ctx, scenarios.Deployment(name, "nginx:1.27", 1), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := scenarios.WaitDeploymentComplete(ctx, shared.Client, ns, name); err != nil {
			t.Fatal(err)
		}
		d, err := deployments.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rv0, err := strconv.ParseUint(d.ResourceVersion, 10, 64)
		if err != nil {
			t.Fatalf("resourceVersion %q: %v", d.ResourceVersion, err)
		}
		now := metav1.Now()
		ev, err := shared.Client.CoreV1().Events(ns).Create(ctx, &corev1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-versioned"},
			InvolvedObject: corev1.ObjectReference{Kind: "Deployment", APIVersion: "apps/v1", Namespace: ns, Name: name, UID: d.UID,
				ResourceVersion: strconv.FormatUint(rv0+1, 10)},
			Reason: "E2EAfterUpdate", Message: "about the Deployment's next version", Type: corev1.EventTypeNormal,
			Count: 1, FirstTimestamp: now, LastTimestamp: now, Source: corev1.EventSource{Component: "e2e-test"},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		if d, err = deployments.Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
		if d.ResourceVersion != strconv.FormatUint(rv0, 10) {
			if trial == 2 {
				t.Fatalf("Deployment %s changed (resourceVersion %d → %s) in each of 3 trials", name, rv0, d.ResourceVersion)
			}
			t.Logf("Deployment %s changed meanwhile (resourceVersion %d → %s): again", name, rv0, d.ResourceVersion)
			continue
		}
		if got := withUID(rcv.Logs(), string(ev.UID)); len(got) != 0 {
			t.Fatalf("the Event went out before its object's version reached the cache (%d records)", len(got))
		}
		d.Spec.Template.Spec.Containers[0].Image = "nginx:1.28"
		if _, err := deployments.Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		evUID = string(ev.UID)
		break
	}
	if err := scenarios.WaitDeploymentComplete(ctx, shared.Client, ns, name); err != nil {
		t.Fatal(err)
	}

	// The trace of each ScalingReplicaSet about the Deployment: the
	// creation's scales up the first ReplicaSet, the rollout's the second.
	var ours rec
	recs := waitRecords(ctx, t, rcv, "the Event and the rollout's scale-up", func(recs []rec) error {
		got := withUID(recs, evUID)
		if len(got) != 1 {
			return fmt.Errorf("%d records of the Event", len(got))
		}
		ours = got[0]
		if n := len(scaledUp(recs, name)); n < 2 {
			return fmt.Errorf("%d ScalingReplicaSet scale-ups of %s, want 2", n, name)
		}
		return nil
	})
	ups := scaledUp(recs, name)
	traces := map[string]bool{}
	for _, r := range ups {
		traces[hexID(r.Record.GetTraceId())] = true
	}
	if len(traces) != 2 {
		t.Fatalf("the scale-ups of %s are in %d traces, want 2 (creation, rollout)", name, len(traces))
	}
	rollout := hexID(ups[len(ups)-1].Record.GetTraceId())
	if got := hexID(ours.Record.GetTraceId()); got != rollout {
		t.Errorf("the Event is in trace %s, want the rollout's %s (the Deployment's generation 2)", got, rollout)
	}
	maddr := b.metricsAddr(ctx)
	if v, _, _ := metricValue(ctx, maddr, "kube_otel_bridge_occurrences_waited_total"); v < 1 {
		t.Errorf("kube_otel_bridge_occurrences_waited_total %v, want at least 1", v)
	}
	if v, _, _ := metricValue(ctx, maddr, "kube_otel_bridge_occurrences_object_behind_total"); v != 0 {
		t.Errorf("kube_otel_bridge_occurrences_object_behind_total %v, want 0 (the version came)", v)
	}
}

// scaledUp returns the ScalingReplicaSet records of Deployment name that
// scale a ReplicaSet up, in the order the Events were written.
func scaledUp(recs []rec, name string) []rec {
	var out []rec
	for _, r := range recs {
		if attr(r, "k8s.event.reason") == "ScalingReplicaSet" && attr(r, "k8s.object.name") == name &&
			strings.Contains(r.Record.GetBody().GetStringValue(), "Scaled up") {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Record.GetTimeUnixNano() < out[j].Record.GetTimeUnixNano() })
	return out
}
