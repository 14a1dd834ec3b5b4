package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/cluster"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
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
