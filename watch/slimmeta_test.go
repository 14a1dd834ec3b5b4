package watch

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// The reflector finds the transform (it type-asserts its store).
var _ cache.TransformingStore = (*kindStore)(nil)

// TestSlimMetadata: the cache keeps the same Object for a slimmed object as
// for the whole one, and the slimmed object holds nothing else.
func TestSlimMetadata(t *testing.T) {
	dep := partial("Deployment", "demo", "web", "dep-uid")
	dep.Annotations[TraceparentAnnotation] = testTraceparent
	dep.Annotations["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	rs := partial("ReplicaSet", "demo", "web-5d", "rs-uid",
		metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "dep-uid"})
	pod := partial("Pod", "demo", "web-5d-x", "pod-uid",
		metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d", UID: "rs-uid"},
		metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: "n1", UID: "node-uid"})
	f := false
	pod.OwnerReferences[1].Controller = &f
	node := partial("Node", "", "worker-1", "node-uid")

	whole, err := NewObjectCache(CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	slim, _ := NewObjectCache(CacheOptions{})
	for _, m := range []*metav1.PartialObjectMetadata{node, dep, rs, pod} {
		k := kindOf(t, m.Kind)
		s, err := slimMetadata(m)
		if err != nil {
			t.Fatal(err)
		}
		sm := s.(*metav1.PartialObjectMetadata)
		if sm.Labels != nil || sm.ManagedFields != nil || sm.Finalizers != nil {
			t.Errorf("%s: slimmed object keeps %+v", m.Name, sm.ObjectMeta)
		}
		if len(sm.Annotations) > 2 {
			t.Errorf("%s: slimmed annotations %v", m.Name, sm.Annotations)
		}
		key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(sm)
		if want, _ := cache.MetaNamespaceKeyFunc(m); err != nil || key != want {
			t.Errorf("%s: store key %q (%v), want %q", m.Name, key, err, want)
		}
		whole.observe(k, m)
		slim.observe(k, sm)
	}
	for _, uid := range []string{"node-uid", "dep-uid", "rs-uid", "pod-uid"} {
		a, _ := whole.Get(uid)
		b, _ := slim.Get(uid)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: cached %+v from the slimmed object, %+v from the whole one", uid, b, a)
		}
	}
	if o, _ := slim.Get("dep-uid"); o.Traceparent != testTraceparent {
		t.Errorf("traceparent %q", o.Traceparent)
	}
	// Anything else passes unchanged.
	if v, _ := slimMetadata("x"); v != "x" {
		t.Errorf("slimMetadata(x) = %v", v)
	}
}

func kindOf(t *testing.T, kind string) watchedKind {
	t.Helper()
	for _, k := range WatchedKinds {
		if k.kind == kind {
			return k
		}
	}
	t.Fatalf("not watched: %s", kind)
	return watchedKind{}
}
