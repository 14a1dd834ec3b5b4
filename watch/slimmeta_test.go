package watch

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// The reflector finds the transform (it type-asserts its store).
var _ cache.TransformingStore = (*kindStore)(nil)

// TestWatchListTransformer: objects streamed by a watch-list go into the
// cache as they arrive (the same Objects as through Add), the temporary store
// gets the same stub for all of them, and Replace with it keeps the
// streamed objects and marks the others deleted; a new watch-list attempt
// forgets what an earlier one streamed.
func TestWatchListTransformer(t *testing.T) {
	dep := partial("Deployment", "demo", "web", "dep-uid")
	dep.Annotations[TraceparentAnnotation] = testTraceparent
	rs := partial("ReplicaSet", "demo", "web-5d", "rs-uid",
		metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "dep-uid"})
	pod := partial("Pod", "demo", "web-5d-x", "pod-uid",
		metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d", UID: "rs-uid"})
	gone := partial("Pod", "demo", "web-5d-gone", "gone-uid",
		metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d", UID: "rs-uid"})
	early := partial("Pod", "demo", "web-5d-early", "11111111-2222-4333-8444-555555555555",
		metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d", UID: "rs-uid"})

	viaAdd := newTestCache(t, CacheOptions{})
	streamed := newTestCache(t, CacheOptions{})
	for _, m := range []*metav1.PartialObjectMetadata{dep, rs, pod, gone} {
		viaAdd.observe(kindOf(t, m.Kind), m)
	}
	// A previous sync knew gone-uid too; the new watch-list does not list it.
	podStore := &kindStore{c: streamed, k: kindOf(t, "Pod")}
	podStore.synced.Store(true)
	streamed.observe(kindOf(t, "Pod"), gone)
	// An attempt that broke off after streaming early-uid, which was
	// deleted before the next attempt.
	podStore.startStream()
	if _, err := podStore.Transformer()(early); err != nil {
		t.Fatal(err)
	}
	podStore.startStream()

	temporary := cache.NewStore(cache.DeletionHandlingMetaNamespaceKeyFunc, cache.WithTransformer(podStore.Transformer()))
	for _, m := range []*metav1.PartialObjectMetadata{dep, rs, pod} {
		ks := podStore
		if m.Kind != "Pod" {
			ks = &kindStore{c: streamed, k: kindOf(t, m.Kind)}
		}
		out, err := ks.Transformer()(m)
		if err != nil {
			t.Fatal(err)
		}
		if out != any(streamedStub) {
			t.Fatalf("%s: transformed into %T %v, want the streamed stub", m.Name, out, out)
		}
		if m.Kind == "Pod" {
			if err := temporary.Add(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	if items := temporary.List(); len(items) != 1 || items[0] != any(streamedStub) {
		t.Errorf("the temporary store holds %v, want the stub for the one pod", items)
	}
	// Streamed objects are in the cache before the bookmark, as through Add.
	for _, uid := range []string{"dep-uid", "rs-uid", "pod-uid"} {
		a, _ := viaAdd.Get(uid)
		b, ok := streamed.Get(uid)
		if !ok || !reflect.DeepEqual(a, b) {
			t.Errorf("%s: cached %+v from the stream, %+v through Add", uid, b, a)
		}
	}
	if err := podStore.Replace(temporary.List(), "9"); err != nil {
		t.Fatal(err)
	}
	if o, ok := streamed.Get("pod-uid"); !ok || !o.Deleted.IsZero() {
		t.Errorf("listed pod: %+v, %v", o, ok)
	}
	for _, uid := range []string{"gone-uid", string(early.UID)} {
		if o, ok := streamed.Get(uid); !ok || o.Deleted.IsZero() {
			t.Errorf("%s: not streamed but not marked deleted: %+v, %v", uid, o, ok)
		}
	}
	// Anything else passes unchanged.
	if v, _ := podStore.Transformer()("x"); v != "x" {
		t.Errorf("Transformer(x) = %v", v)
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

// TestSlimListed: a listed object slimmed in place gives the cache the same
// Object as the whole one, and keeps nothing the cache does not read.
func TestSlimListed(t *testing.T) {
	dep := partial("Deployment", "demo", "web", "dep-uid")
	dep.Annotations[TraceparentAnnotation] = testTraceparent
	dep.ResourceVersion = "42"
	pod := partial("Pod", "demo", "web-5d-x", "pod-uid",
		metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d", UID: "rs-uid"})
	now := metav1.Now()
	pod.DeletionTimestamp = &now
	pod.Finalizers = []string{"x"}
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}

	whole := newTestCache(t, CacheOptions{})
	slim := newTestCache(t, CacheOptions{})
	for _, m := range []*metav1.PartialObjectMetadata{dep, pod} {
		cp := m.DeepCopy()
		slimListed(&cp.ObjectMeta)
		if cp.Labels != nil || cp.ManagedFields != nil || cp.Finalizers != nil || len(cp.Annotations) > 1 {
			t.Errorf("%s: slimmed metadata keeps %+v", m.Name, cp.ObjectMeta)
		}
		if cp.ResourceVersion != m.ResourceVersion {
			t.Errorf("%s: resourceVersion %q, want %q", m.Name, cp.ResourceVersion, m.ResourceVersion)
		}
		whole.observe(kindOf(t, m.Kind), m)
		slim.observe(kindOf(t, m.Kind), cp)
	}
	for _, uid := range []string{"dep-uid", "pod-uid"} {
		a, _ := whole.Get(uid)
		b, _ := slim.Get(uid)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: cached %+v from the slimmed object, %+v from the whole one", uid, b, a)
		}
	}
	if o, _ := slim.Get("dep-uid"); o.Traceparent != testTraceparent {
		t.Errorf("traceparent %q", o.Traceparent)
	}
}

// TestRootMatchesGet: Root answers what Get's Object says.
func TestRootMatchesGet(t *testing.T) {
	c := newTestCache(t, CacheOptions{})
	dep := partial("Deployment", "demo", "web", "0b6c2d1e-8a51-4c1d-9d7e-0f6b2a1c3d4e")
	dep.Annotations[TraceparentAnnotation] = testTraceparent
	dep.Generation = 7
	pod := partial("Pod", "demo", "web-x", "pod-uid")
	for _, m := range []*metav1.PartialObjectMetadata{dep, pod} {
		c.observe(kindOf(t, m.Kind), m)
		o, _ := c.Get(string(m.UID))
		gen, tp, ok := c.Root(string(m.UID))
		if !ok || gen != o.Generation || tp != o.Traceparent {
			t.Errorf("%s: Root = %d, %q, %v; Get: %d, %q", m.Name, gen, tp, ok, o.Generation, o.Traceparent)
		}
	}
	if gen, _, _ := c.Root(string(dep.UID)); gen != 7 {
		t.Errorf("generation %d, want 7", gen)
	}
	if _, _, ok := c.Root("unknown"); ok {
		t.Error("Root of an unknown UID")
	}
}
