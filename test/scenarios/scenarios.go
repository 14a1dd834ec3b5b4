// Package scenarios drives a cluster through the situations the bridge must
// explain: rollouts, crash loops, unschedulable pods, CronJobs, StatefulSet
// updates. Tests use them against the mini cluster, and `go run
// ./test/scenarios/cmd/capture` records them into examples/recordings/.
package scenarios

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Scenario is one situation played in a namespace; it returns when the
// cluster has settled (or ctx ends).
type Scenario struct {
	Name        string
	Description string
	Play        func(ctx context.Context, cs kubernetes.Interface, ns string) error
}

// All lists the scenarios by name.
var All = []Scenario{
	{"rollout", "a 3-replica Deployment is created, then rolled to a new image", Rollout},
	{"crashloop", "a pod whose container keeps crashing (BackOff repeats)", CrashLoop},
	{"unschedulable", "a pod asking for more CPU than any node has (FailedScheduling)", Unschedulable},
	{"scale", "a Deployment scaled from 2 to 4 replicas, then down to 1", Scale},
	{"statefulset", "a 3-replica StatefulSet rolled to a new image (pods recreated under the same names)", StatefulSetUpdate},
	{"daemonset", "a DaemonSet that places one pod on each of the cluster's nodes", DaemonSet},
	{"cronjob", "a CronJob's scheduled run: CronJob → Job → Pod, to completion", CronJob},
}

// Find returns the scenario with the name.
func Find(name string) (Scenario, bool) {
	for _, s := range All {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

func labels(app string) map[string]string { return map[string]string{"app": app} }

// Deployment returns a Deployment of replicas pods running image.
func Deployment(name, image string, replicas int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels(name)},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels(name)},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: image}}},
			},
		},
	}
}

// WaitDeploymentComplete waits until the Deployment's newest generation is
// fully rolled out and available, and its old pods are gone.
func WaitDeploymentComplete(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	return wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || !DeploymentComplete(d) {
			return false, nil
		}
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		return err == nil && len(pods.Items) == int(DeploymentReplicas(d)), nil
	})
}

// DeploymentReplicas is the number of pods the Deployment asks for.
func DeploymentReplicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas != nil {
		return *d.Spec.Replicas
	}
	return 1
}

// DeploymentComplete tells whether the Deployment's status says its newest
// generation is fully rolled out and available (old pods may still be
// terminating).
func DeploymentComplete(d *appsv1.Deployment) bool {
	want := DeploymentReplicas(d)
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want
}

// Rollout creates a 3-replica Deployment, waits for it, then changes its
// image and waits for the rolling update to finish.
func Rollout(ctx context.Context, cs kubernetes.Interface, ns string) error {
	d := Deployment("web", "nginx:1.27", 3)
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create deployment: %w", err)
	}
	if err := WaitDeploymentComplete(ctx, cs, ns, "web"); err != nil {
		return fmt.Errorf("deployment web not available: %w", err)
	}
	patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.28"}]}}}}`)
	if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, "web", "application/strategic-merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("update image: %w", err)
	}
	if err := WaitDeploymentComplete(ctx, cs, ns, "web"); err != nil {
		return fmt.Errorf("rolling update of web did not finish: %w", err)
	}
	return nil
}

// CrashLoop runs a one-replica Deployment whose container crashes and is
// backed off repeatedly, for a few seconds.
func CrashLoop(ctx context.Context, cs kubernetes.Interface, ns string) error {
	d := Deployment("worker", "busybox:1.36", 1)
	d.Spec.Template.Annotations = map[string]string{
		"fake.kube-otel-bridge.io/failure":         "crash-loop",
		"fake.kube-otel-bridge.io/repeat-interval": "500ms",
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create deployment: %w", err)
	}
	return waitEvent(ctx, cs, ns, "BackOff", 5)
}

// Unschedulable creates a pod no node can hold; the scheduler reports
// FailedScheduling (as an events.k8s.io series).
func Unschedulable(ctx context.Context, cs kubernetes.Interface, ns string) error {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "huge"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "huge", Image: "app:1",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1000")}},
		}}},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create pod: %w", err)
	}
	return waitEvent(ctx, cs, ns, "FailedScheduling", 1)
}

// waitEvent waits until an Event with the reason has reached count.
func waitEvent(ctx context.Context, cs kubernetes.Interface, ns, reason string, count int32) error {
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		l, err := cs.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, e := range l.Items {
			c := e.DeprecatedCount
			if e.Series != nil {
				c = e.Series.Count
			}
			if e.Reason == reason && max(c, 1) >= count {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("no %s event with count %d: %w", reason, count, err)
	}
	return nil
}

// Scale scales a Deployment up and then down.
func Scale(ctx context.Context, cs kubernetes.Interface, ns string) error {
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, Deployment("api", "api:1.0", 2), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create deployment: %w", err)
	}
	for _, n := range []int32{2, 4, 1} {
		patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, n)
		if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, "api", "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("scale to %d: %w", n, err)
		}
		if err := WaitDeploymentComplete(ctx, cs, ns, "api"); err != nil {
			return fmt.Errorf("scale to %d did not finish: %w", n, err)
		}
	}
	return nil
}

// StatefulSetUpdate creates a 3-replica StatefulSet, waits until it is
// ready, then rolls it to a new image: web-2, web-1, web-0 are deleted and
// recreated under the same names, one at a time.
func StatefulSetUpdate(ctx context.Context, cs kubernetes.Interface, ns string) error {
	replicas := int32(3)
	ss := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			ServiceName: "db",
			Selector:    &metav1.LabelSelector{MatchLabels: labels("db")},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels("db")},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "postgres:16"}}},
			},
		},
	}
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, ss, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create statefulset: %w", err)
	}
	if err := waitStatefulSet(ctx, cs, ns, "db"); err != nil {
		return err
	}
	patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"db","image":"postgres:17"}]}}}}`)
	if _, err := cs.AppsV1().StatefulSets(ns).Patch(ctx, "db", "application/strategic-merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("update image: %w", err)
	}
	return waitStatefulSet(ctx, cs, ns, "db")
}

func waitStatefulSet(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		s, err := cs.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || s.Spec.Replicas == nil {
			return false, nil
		}
		st := s.Status
		return st.ObservedGeneration >= s.Generation && st.ReadyReplicas == *s.Spec.Replicas &&
			st.UpdatedReplicas == *s.Spec.Replicas && st.CurrentRevision == st.UpdateRevision, nil
	})
	if err != nil {
		return fmt.Errorf("statefulset %s not rolled out: %w", name, err)
	}
	return nil
}

// DaemonSet places one pod per (untainted) node and waits until all run.
func DaemonSet(ctx context.Context, cs kubernetes.Interface, ns string) error {
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels("agent")},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels("agent")},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "fluent-bit:3"}}},
			},
		},
	}
	if _, err := cs.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create daemonset: %w", err)
	}
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().DaemonSets(ns).Get(ctx, "agent", metav1.GetOptions{})
		return err == nil && d.Status.DesiredNumberScheduled > 0 && d.Status.NumberReady == d.Status.DesiredNumberScheduled, nil
	})
	if err != nil {
		return fmt.Errorf("daemonset agent not ready: %w", err)
	}
	return nil
}

// CronJob creates a CronJob that runs every minute and waits for its first
// run to complete (up to a minute for the schedule, then the run itself).
func CronJob(ctx context.Context, cs kubernetes.Interface, ns string) error {
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "report"},
		Spec: batchv1.CronJobSpec{
			Schedule:          "* * * * *",
			ConcurrencyPolicy: batchv1.ForbidConcurrent,
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers:    []corev1.Container{{Name: "report", Image: "report:1"}},
				}},
			}},
		},
	}
	if _, err := cs.BatchV1().CronJobs(ns).Create(ctx, cj, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create cronjob: %w", err)
	}
	if err := waitEvent(ctx, cs, ns, "SawCompletedJob", 1); err != nil {
		return err
	}
	// Stop further runs so the recording ends with one.
	suspend := []byte(`{"spec":{"suspend":true}}`)
	if _, err := cs.BatchV1().CronJobs(ns).Patch(ctx, "report", "application/merge-patch+json", suspend, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("suspend cronjob: %w", err)
	}
	return nil
}
