package watch

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

const testTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// metadataScheme knows PartialObjectMetadata under every watched kind.
func metadataScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, k := range WatchedKinds {
		gv := k.gvr.GroupVersion()
		s.AddKnownTypeWithName(gv.WithKind(k.kind), &metav1.PartialObjectMetadata{})
		s.AddKnownTypeWithName(gv.WithKind(k.kind+"List"), &metav1.PartialObjectMetadataList{})
	}
	return s
}

func gvrOf(kind string) schema.GroupVersionResource {
	for _, k := range WatchedKinds {
		if k.kind == kind {
			return k.gvr
		}
	}
	panic("not watched: " + kind)
}

func partial(kind, ns, name, uid string, owners ...metav1.OwnerReference) *metav1.PartialObjectMetadata {
	var apiVersion string
	for _, k := range WatchedKinds {
		if k.kind == kind {
			apiVersion = k.apiVersion
		}
	}
	ctrl := true
	for i := range owners {
		owners[i].Controller = &ctrl
	}
	return &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: kind},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, UID: types.UID(uid), Generation: 3,
			OwnerReferences: owners,
			Labels:          map[string]string{"app": "web", "pod-template-hash": "5d"},
			Annotations: map[string]string{
				"kubectl.kubernetes.io/last-applied-configuration": `{"huge":"json"}`,
				"deployment.kubernetes.io/revision":                "2",
			},
			Finalizers:    []string{"example.com/keep"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}},
		},
	}
}

func TestObjectCacheInformers(t *testing.T) {
	dep := partial("Deployment", "demo", "web", "dep-uid")
	dep.Annotations[TraceparentAnnotation] = testTraceparent
	rs := partial("ReplicaSet", "demo", "web-5d", "rs-uid",
		metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "dep-uid"})
	pod := partial("Pod", "demo", "web-5d-x", "pod-uid",
		metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d", UID: "rs-uid"})
	node := partial("Node", "", "worker-1", "node-uid")
	job := partial("Job", "batch", "backup-1", "job-uid",
		metav1.OwnerReference{APIVersion: "batch/v1", Kind: "CronJob", Name: "backup", UID: "cron-uid"})
	cron := partial("CronJob", "batch", "backup", "cron-uid")
	client := metadatafake.NewSimpleMetadataClient(metadataScheme(t), dep, rs, pod, node, job, cron)

	clock := newFakeClock(testT0)
	changes := make(chan Object, 100)
	c := newTestCache(t, CacheOptions{Now: clock.Now, OnChange: func(o *Object) { changes <- *o }})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx, client); err != nil {
		t.Fatal(err)
	}
	if len(c.stores) != len(WatchedKinds) {
		t.Errorf("%d reflectors, want %d", len(c.stores), len(WatchedKinds))
	}
	if !c.WaitForSync(ctx) {
		t.Fatal("not synced")
	}
	if c.Len() != 6 {
		t.Errorf("Len after sync = %d, want 6", c.Len())
	}

	got, known := c.Chain([]convert.Ref{podRef("demo", "web-5d-x", "pod-uid")})
	if !known {
		t.Fatal("pod unknown after sync")
	}
	wantChain(t, got, []convert.Ref{
		{Kind: "Pod", APIVersion: "v1", Namespace: "demo", Name: "web-5d-x", UID: "pod-uid"},
		{Kind: "ReplicaSet", APIVersion: "apps/v1", Namespace: "demo", Name: "web-5d", UID: "rs-uid"},
		{Kind: "Deployment", APIVersion: "apps/v1", Namespace: "demo", Name: "web", UID: "dep-uid"},
	})
	got, _ = c.Chain([]convert.Ref{{Kind: "Job", Namespace: "batch", Name: "backup-1", UID: "job-uid"}})
	if len(got) != 2 || got[1].Kind != "CronJob" || got[1].APIVersion != "batch/v1" || got[1].UID != "cron-uid" {
		t.Errorf("job chain = %+v", got)
	}
	if _, known := c.Chain([]convert.Ref{{Kind: "Node", Name: "worker-1", UID: "worker-1"}}); !known {
		t.Error("node not resolved by name")
	}

	// What the cache keeps of each object.
	o, _ := c.Get("dep-uid")
	want := Object{UID: "dep-uid", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "demo", Name: "web", Generation: 3, Traceparent: testTraceparent}
	if o.UID != want.UID || o.APIVersion != want.APIVersion || o.Kind != want.Kind || o.Namespace != want.Namespace ||
		o.Name != want.Name || o.Generation != want.Generation || o.Traceparent != want.Traceparent || len(o.Owners) != 0 || !o.Deleted.IsZero() {
		t.Errorf("deployment cached as %+v, want %+v", o, want)
	}
	o, _ = c.Get("rs-uid")
	if len(o.Owners) != 1 || o.Owners[0] != (OwnerRef{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "dep-uid", Controller: true}) {
		t.Errorf("replica set owners = %+v", o.Owners)
	}
	if o.Traceparent != "" {
		t.Errorf("replica set traceparent = %q", o.Traceparent)
	}

	// Drain the initial adds.
	for len(changes) > 0 {
		<-changes
	}

	// A pod created after the sync is seen.
	pod2 := partial("Pod", "demo", "web-5d-y", "pod2-uid",
		metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d", UID: "rs-uid"})
	if err := client.Tracker().Create(gvrOf("Pod"), pod2, "demo"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "new pod in cache", func() bool { _, ok := c.Get("pod2-uid"); return ok })
	got, _ = c.Chain([]convert.Ref{podRef("demo", "web-5d-y", "pod2-uid")})
	if len(got) != 3 {
		t.Errorf("new pod chain = %+v", got)
	}
	if ch := <-changes; ch.UID != "pod2-uid" || !ch.Deleted.IsZero() {
		t.Errorf("OnChange for add = %+v", ch)
	}

	// A deletion leaves a tombstone at the cache's clock.
	clock.Advance(time.Minute)
	if err := client.Resource(gvrOf("Pod")).Namespace("demo").Delete(ctx, "web-5d-x", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "pod tombstone", func() bool { o, ok := c.Get("pod-uid"); return ok && !o.Deleted.IsZero() })
	o, _ = c.Get("pod-uid")
	if !o.Deleted.Equal(testT0.Add(time.Minute)) {
		t.Errorf("tombstone time = %s, want the injected clock %s", o.Deleted, testT0.Add(time.Minute))
	}
	if ch := <-changes; ch.UID != "pod-uid" || ch.Deleted.IsZero() {
		t.Errorf("OnChange for delete = %+v", ch)
	}
	got, known = c.Chain([]convert.Ref{podRef("demo", "web-5d-x", "pod-uid")})
	if !known || len(got) != 3 {
		t.Errorf("deleted pod's chain = %+v known %v", got, known)
	}
	if n := c.Collect(testT0.Add(time.Hour)); n != 1 {
		t.Errorf("Collect removed %d, want 1", n)
	}

	// An update of the traceparent annotation reaches the cache.
	dep2 := dep.DeepCopy()
	dep2.Annotations = map[string]string{TraceparentAnnotation: "00-11111111111111111111111111111111-2222222222222222-01"}
	if err := client.Tracker().Update(gvrOf("Deployment"), dep2, "demo"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "updated traceparent", func() bool {
		o, _ := c.Get("dep-uid")
		return o.Traceparent == dep2.Annotations[TraceparentAnnotation]
	})
}

func TestObjectCacheNamespaces(t *testing.T) {
	client := metadatafake.NewSimpleMetadataClient(metadataScheme(t),
		partial("Pod", "a", "p", "pa"),
		partial("Pod", "b", "p", "pb"),
		partial("Pod", "c", "p", "pc"),
		partial("Node", "", "n", "nu"),
	)
	c := newTestCache(t, CacheOptions{Namespaces: []string{"a", "b"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx, client); err != nil {
		t.Fatal(err)
	}
	if want := 2*(len(WatchedKinds)-1) + 1; len(c.stores) != want {
		t.Errorf("%d reflectors, want %d (nodes once)", len(c.stores), want)
	}
	if !c.WaitForSync(ctx) {
		t.Fatal("not synced")
	}
	for uid, want := range map[string]bool{"pa": true, "pb": true, "pc": false, "nu": true} {
		if _, ok := c.Get(uid); ok != want {
			t.Errorf("Get(%s) = %v, want %v", uid, ok, want)
		}
	}
}

// Graceful deletion bumps metadata.generation as it sets deletionTimestamp;
// the cache keeps the generation the object had, so the Events of a
// terminating pod or Deployment do not start a "new generation" episode.
// A real spec change (no deletionTimestamp) still moves it.
func TestTerminatingObjectKeepsItsGeneration(t *testing.T) {
	c := newTestCache(t, CacheOptions{})
	var podKind watchedKind
	for _, k := range WatchedKinds {
		if k.kind == "Pod" {
			podKind = k
		}
	}
	gen := func(uid string) int64 {
		t.Helper()
		g, _, ok := c.Root(uid)
		if !ok {
			t.Fatalf("%s not cached", uid)
		}
		return g
	}
	p := partial("Pod", "demo", "crasher", "pod-uid")
	p.Generation = 1
	c.observe(podKind, p)
	p2 := p.DeepCopy()
	p2.Generation = 2 // a resize, an image change
	c.observe(podKind, p2)
	if g := gen("pod-uid"); g != 2 {
		t.Errorf("after a spec change: generation %d, want 2", g)
	}
	p3 := p2.DeepCopy()
	now := metav1.Now()
	p3.DeletionTimestamp, p3.Generation = &now, 3
	c.observe(podKind, p3)
	if g := gen("pod-uid"); g != 2 {
		t.Errorf("terminating: generation %d, want the one before the deletion (2)", g)
	}
	// First seen while terminating: nothing to keep.
	q := partial("Pod", "demo", "late", "late-uid")
	q.DeletionTimestamp, q.Generation = &now, 5
	c.observe(podKind, q)
	if g := gen("late-uid"); g != 5 {
		t.Errorf("first seen terminating: generation %d, want 5", g)
	}
}
