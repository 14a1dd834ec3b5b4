package cluster_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/cluster"
)

// One mini cluster for the whole package; a namespace per test.
var shared *cluster.Cluster

func TestMain(m *testing.M) {
	start := time.Now()
	c, err := cluster.Start(context.Background(), cluster.Options{Nodes: 3})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "mini cluster ready in %s\n", time.Since(start).Round(time.Millisecond))
	shared = c
	code := m.Run()
	if err := c.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop:", err)
		code = 1
	}
	os.Exit(code)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitEvents polls the events.k8s.io API of ns until ok accepts the list.
func waitEvents(ctx context.Context, t *testing.T, ns string, ok func([]eventsv1.Event) error) []eventsv1.Event {
	t.Helper()
	var last error
	var items []eventsv1.Event
	err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		l, err := shared.Client.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			last = err
			return false, nil
		}
		items = l.Items
		last = ok(items)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("events in %s: %v (last: %v)\n%s", ns, err, last, dump(items))
	}
	return items
}

func dump(evs []eventsv1.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %s %s/%s %s %q count=%d series=%v by %s\n", e.Type, e.Regarding.Kind, e.Regarding.Name, e.Reason, e.Note, e.DeprecatedCount, e.Series != nil, e.ReportingController)
	}
	return b.String()
}

func count(evs []eventsv1.Event, kind, reason string) int {
	n := 0
	for _, e := range evs {
		if e.Regarding.Kind == kind && e.Reason == reason {
			n++
		}
	}
	return n
}

// maxCount is the highest occurrence count of a kind's events with reason.
func maxCount(evs []eventsv1.Event, kind, reason string) int32 {
	var m int32
	for _, e := range evs {
		if e.Regarding.Kind != kind || e.Reason != reason {
			continue
		}
		c := e.DeprecatedCount
		if e.Series != nil {
			c = e.Series.Count
		}
		m = max(m, c)
	}
	return m
}

func pod(name string, ann map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1.0"}},
		},
	}
}

func TestDeploymentProducesControllerSchedulerAndKubeletEvents(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	ns := shared.NewNamespace(t)
	replicas := int32(3)
	labels := map[string]string{"app": "web"}
	_, err := shared.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{
					{Name: "web", Image: "nginx:1.27"},
					{Name: "sidecar", Image: "envoy:1.30"},
				}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	evs := waitEvents(ctx, t, ns, func(evs []eventsv1.Event) error {
		want := []struct {
			kind, reason string
			n            int
		}{
			{"Deployment", "ScalingReplicaSet", 1},
			{"ReplicaSet", "SuccessfulCreate", 3},
			{"Pod", "Scheduled", 3},
			// two containers per pod: one event each
			{"Pod", "Pulling", 6},
			{"Pod", "Pulled", 6},
			{"Pod", "Created", 6},
			{"Pod", "Started", 6},
		}
		for _, w := range want {
			if got := count(evs, w.kind, w.reason); got < w.n {
				return fmt.Errorf("%s %s: %d events, want %d", w.kind, w.reason, got, w.n)
			}
		}
		return nil
	})
	// The kubelet's events look like a real kubelet's.
	for _, e := range evs {
		if e.Reason != "Started" {
			continue
		}
		if e.ReportingController != "kubelet" || e.DeprecatedSource.Component != "kubelet" {
			t.Errorf("Started by %q/%q, want kubelet", e.ReportingController, e.DeprecatedSource.Component)
		}
		if !strings.HasPrefix(e.DeprecatedSource.Host, "kwok-node-") || e.ReportingInstance != e.DeprecatedSource.Host {
			t.Errorf("Started host %q instance %q, want a kwok node", e.DeprecatedSource.Host, e.ReportingInstance)
		}
		if e.Regarding.FieldPath != "spec.containers{web}" && e.Regarding.FieldPath != "spec.containers{sidecar}" {
			t.Errorf("Started fieldPath %q", e.Regarding.FieldPath)
		}
		if e.Regarding.UID == "" {
			t.Errorf("Started without involved object UID")
		}
	}
	// ...and the controllers' are the real controllers'.
	for _, e := range evs {
		if e.Reason == "ScalingReplicaSet" && e.ReportingController != "deployment-controller" {
			t.Errorf("ScalingReplicaSet by %q", e.ReportingController)
		}
		if e.Reason == "Scheduled" && e.ReportingController != "default-scheduler" {
			t.Errorf("Scheduled by %q", e.ReportingController)
		}
	}
	// The pods become Ready.
	err = wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		d, err := shared.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == 3, nil
	})
	if err != nil {
		t.Fatalf("deployment not ready: %v", err)
	}
}

func TestFailureImagePull(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	ns := shared.NewNamespace(t)
	p := pod("pull", map[string]string{cluster.AnnotationFailure: cluster.FailureImagePull, cluster.AnnotationRepeatInterval: "300ms"})
	if _, err := shared.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	evs := waitEvents(ctx, t, ns, func(evs []eventsv1.Event) error {
		if maxCount(evs, "Pod", "BackOff") < 3 {
			return fmt.Errorf("BackOff count %d, want ≥3", maxCount(evs, "Pod", "BackOff"))
		}
		return nil
	})
	var errImagePull, pullBackOff bool
	for _, e := range evs {
		if e.Reason == "Failed" && e.Type == "Warning" && e.Note == "Error: ErrImagePull" {
			errImagePull = true
		}
		if e.Reason == "Failed" && e.Type == "Warning" && e.Note == "Error: ImagePullBackOff" {
			pullBackOff = true
		}
		if e.Reason == "Pulled" || e.Reason == "Started" {
			t.Errorf("unexpected %s event for a pod whose image cannot be pulled", e.Reason)
		}
	}
	if !errImagePull || !pullBackOff {
		t.Errorf("ErrImagePull warning %v, ImagePullBackOff warning %v; events:\n%s", errImagePull, pullBackOff, dump(evs))
	}
	if count(evs, "Pod", "BackOff") != 1 {
		t.Errorf("BackOff repeats must update one Event (count grows), got %d objects", count(evs, "Pod", "BackOff"))
	}
}

func TestFailureCrashLoop(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	ns := shared.NewNamespace(t)
	p := pod("crash", map[string]string{cluster.AnnotationFailure: cluster.FailureCrashLoop, cluster.AnnotationRepeatInterval: "300ms"})
	if _, err := shared.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	evs := waitEvents(ctx, t, ns, func(evs []eventsv1.Event) error {
		if maxCount(evs, "Pod", "BackOff") < 3 {
			return fmt.Errorf("BackOff count %d, want ≥3", maxCount(evs, "Pod", "BackOff"))
		}
		return nil
	})
	for _, e := range evs {
		if e.Reason == "BackOff" {
			if e.Type != "Warning" || !strings.HasPrefix(e.Note, "Back-off restarting failed container app in pod crash_"+ns) {
				t.Errorf("BackOff event %s %q", e.Type, e.Note)
			}
		}
	}
	if count(evs, "Pod", "Started") != 1 {
		t.Errorf("want the container started once before crashing:\n%s", dump(evs))
	}
	got, err := shared.Client.CoreV1().Pods(ns).Get(ctx, "crash", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cs := got.Status.ContainerStatuses; len(cs) != 1 || cs[0].RestartCount < 1 || cs[0].State.Waiting == nil || cs[0].State.Waiting.Reason != "CrashLoopBackOff" {
		t.Errorf("container status %+v, want CrashLoopBackOff with restarts", cs)
	}
}

func TestFailureReadiness(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	ns := shared.NewNamespace(t)
	p := pod("probe", map[string]string{cluster.AnnotationFailure: cluster.FailureReadiness, cluster.AnnotationRepeatInterval: "300ms"})
	if _, err := shared.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvents(ctx, t, ns, func(evs []eventsv1.Event) error {
		if c := maxCount(evs, "Pod", "Unhealthy"); c < 2 {
			return fmt.Errorf("Unhealthy count %d, want ≥2", c)
		}
		return nil
	})
	got, err := shared.Client.CoreV1().Pods(ns).Get(ctx, "probe", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != corev1.PodRunning {
		t.Errorf("phase %s, want Running", got.Status.Phase)
	}
	for _, c := range got.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			t.Errorf("pod with failing readiness probe is Ready")
		}
	}
}

func TestDeletedPodIsKilled(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	ns := shared.NewNamespace(t)
	if _, err := shared.Client.CoreV1().Pods(ns).Create(ctx, pod("victim", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvents(ctx, t, ns, func(evs []eventsv1.Event) error {
		if count(evs, "Pod", "Started") < 1 {
			return fmt.Errorf("not started yet")
		}
		return nil
	})
	// Wait for Running so the Killing comes from a running container.
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := shared.Client.CoreV1().Pods(ns).Get(ctx, "victim", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := shared.Client.CoreV1().Pods(ns).Delete(ctx, "victim", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	evs := waitEvents(ctx, t, ns, func(evs []eventsv1.Event) error {
		if count(evs, "Pod", "Killing") < 1 {
			return fmt.Errorf("no Killing yet")
		}
		return nil
	})
	for _, e := range evs {
		if e.Reason == "Killing" && e.Note != "Stopping container app" {
			t.Errorf("Killing note %q", e.Note)
		}
	}
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := shared.Client.CoreV1().Pods(ns).Get(ctx, "victim", metav1.GetOptions{})
		return err != nil, nil
	}); err != nil {
		t.Fatalf("pod not gone after delete: %v", err)
	}
}

func TestNodeNotReady(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	ns := shared.NewNamespace(t)
	reported, lost := "kwok-sick-"+ns[len(ns)-5:], "kwok-lost-"+ns[len(ns)-5:]
	if err := shared.AddNode(ctx, reported); err != nil {
		t.Fatal(err)
	}
	if err := shared.AddNodeWithOwnKubelet(ctx, lost); err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{reported, lost} {
		t.Cleanup(func() { _ = shared.Client.CoreV1().Nodes().Delete(context.Background(), node, metav1.DeleteOptions{}) })
		if err := shared.WaitNodesReady(ctx, node); err != nil {
			t.Fatal(err)
		}
		p := pod("on-"+node, nil)
		p.Spec.NodeName = node
		if _, err := shared.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			p, err := shared.Client.CoreV1().Pods(ns).Get(ctx, "on-"+node, metav1.GetOptions{})
			return err == nil && p.Status.Phase == corev1.PodRunning, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// A kubelet that reports its node not ready.
	if err := shared.SetNodeNotReady(ctx, reported, true); err != nil {
		t.Fatal(err)
	}
	// A kubelet that vanishes: the node lifecycle controller notices.
	if err := shared.SetNodeLost(lost, true); err != nil {
		t.Fatal(err)
	}
	if err := shared.WaitNodesNotReady(ctx, reported); err != nil {
		t.Fatal(err)
	}
	nodeEvent := func(node, reason, by string) func([]eventsv1.Event) error {
		return func(evs []eventsv1.Event) error {
			for _, e := range evs {
				if e.Regarding.Kind == "Node" && e.Regarding.Name == node && e.Reason == reason && e.ReportingController == by {
					return nil
				}
			}
			return fmt.Errorf("no %s event by %s for node %s", reason, by, node)
		}
	}
	waitEvents(ctx, t, "default", nodeEvent(reported, "NodeNotReady", "kubelet"))
	waitEvents(ctx, t, "default", nodeEvent(lost, "NodeNotReady", "node-controller"))
	waitEvents(ctx, t, ns, func(evs []eventsv1.Event) error {
		for _, e := range evs {
			if e.Regarding.Kind == "Pod" && e.Regarding.Name == "on-"+lost && e.Reason == "NodeNotReady" && e.Type == "Warning" {
				return nil
			}
		}
		return fmt.Errorf("no NodeNotReady warning for the pod on the lost node")
	})
	if err := shared.SetNodeNotReady(ctx, reported, false); err != nil {
		t.Fatal(err)
	}
	if err := shared.SetNodeLost(lost, false); err != nil {
		t.Fatal(err)
	}
	if err := shared.WaitNodesReady(ctx, reported, lost); err != nil {
		t.Fatal(err)
	}
}

// Stop leaves no process behind and removes the data directory.
func TestStopLeavesNothingBehind(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	c, err := cluster.Start(ctx, cluster.Options{Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	pids, dir := c.PIDs(), c.Dir
	if len(pids) != len(cluster.Binaries) {
		t.Fatalf("%d processes, want %d", len(pids), len(cluster.Binaries))
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("pid %d still running after Stop", pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("data dir %s still there: %v", dir, err)
	}
}
