package watch

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/racebuild"
)

func newTestCache(t *testing.T, opts CacheOptions) *ObjectCache {
	t.Helper()
	c, err := NewObjectCache(opts)
	if err != nil {
		t.Fatalf("NewObjectCache: %v", err)
	}
	return c
}

func podRef(ns, name, uid string) convert.Ref {
	return convert.Ref{Kind: "Pod", APIVersion: "v1", Namespace: ns, Name: name, UID: uid}
}

// rollout fills c with Deployment web → ReplicaSet web-5d → Pod web-5d-x in
// namespace demo. The pod also has a non-controller owner listed first (that
// is in the cache too), which the chain must not follow.
func rollout(c *ObjectCache) {
	c.Upsert(&Object{UID: "dep-uid", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "demo", Name: "web", Generation: 2})
	c.Upsert(&Object{UID: "rs-uid", APIVersion: "apps/v1", Kind: "ReplicaSet", Namespace: "demo", Name: "web-5d",
		Owners: []OwnerRef{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "dep-uid", Controller: true}}})
	c.Upsert(&Object{UID: "other-uid", APIVersion: "v1", Kind: "ConfigMap", Namespace: "demo", Name: "other"})
	c.Upsert(&Object{UID: "pod-uid", APIVersion: "v1", Kind: "Pod", Namespace: "demo", Name: "web-5d-x",
		Owners: []OwnerRef{
			{APIVersion: "v1", Kind: "ConfigMap", Name: "other", UID: "other-uid"},
			{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d", UID: "rs-uid", Controller: true},
		}})
}

var wantRollout = []convert.Ref{
	{Kind: "Pod", APIVersion: "v1", Namespace: "demo", Name: "web-5d-x", UID: "pod-uid"},
	{Kind: "ReplicaSet", APIVersion: "apps/v1", Namespace: "demo", Name: "web-5d", UID: "rs-uid"},
	{Kind: "Deployment", APIVersion: "apps/v1", Namespace: "demo", Name: "web", UID: "dep-uid"},
}

func wantChain(t *testing.T, got []convert.Ref, want []convert.Ref) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("chain = %+v\nwant    %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("chain[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func noRepeatedUID(t *testing.T, chain []convert.Ref) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range chain {
		if seen[r.UID] {
			t.Errorf("UID %q repeated in chain %+v", r.UID, chain)
		}
		seen[r.UID] = true
	}
}

func TestChainRollout(t *testing.T) {
	c := newTestCache(t, CacheOptions{})
	rollout(c)
	got, known := c.Chain([]convert.Ref{podRef("demo", "web-5d-x", "pod-uid")})
	if !known {
		t.Fatal("known = false for a cached pod")
	}
	wantChain(t, got, wantRollout)

	// From the middle of the chain.
	got, known = c.Chain([]convert.Ref{{Kind: "ReplicaSet", APIVersion: "apps/v1", Namespace: "demo", Name: "web-5d", UID: "rs-uid"}})
	if !known {
		t.Fatal("known = false for a cached replica set")
	}
	wantChain(t, got, wantRollout[1:])

	// The root alone.
	got, known = c.Chain([]convert.Ref{wantRollout[2]})
	if !known {
		t.Fatal("known = false for a cached deployment")
	}
	wantChain(t, got, wantRollout[2:])
}

func TestChainRegardingFieldsKept(t *testing.T) {
	c := newTestCache(t, CacheOptions{})
	rollout(c)
	reg := podRef("demo", "web-5d-x", "pod-uid")
	reg.FieldPath = "spec.containers{web}"
	reg.ResourceVersion = "1234"
	got, _ := c.Chain([]convert.Ref{reg})
	if got[0] != reg {
		t.Errorf("chain[0] = %+v, want the regarding ref unchanged %+v", got[0], reg)
	}
}

func TestChainFirstOwnerWithoutController(t *testing.T) {
	c := newTestCache(t, CacheOptions{})
	c.Upsert(&Object{UID: "a", Kind: "Widget", Namespace: "ns", Name: "a"})
	c.Upsert(&Object{UID: "b", Kind: "Widget", Namespace: "ns", Name: "b"})
	c.Upsert(&Object{UID: "pod", Kind: "Pod", Namespace: "ns", Name: "p", Owners: []OwnerRef{
		{Kind: "Widget", Name: "a", UID: "a"}, {Kind: "Widget", Name: "b", UID: "b"},
	}})
	got, _ := c.Chain([]convert.Ref{podRef("ns", "p", "pod")})
	if len(got) != 2 || got[1].UID != "a" {
		t.Errorf("chain = %+v, want pod then the first owner a", got)
	}
}

func TestChainMissingOwner(t *testing.T) {
	c := newTestCache(t, CacheOptions{})
	c.Upsert(&Object{UID: "pod-uid", APIVersion: "v1", Kind: "Pod", Namespace: "demo", Name: "web-5d-x",
		Owners: []OwnerRef{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d", UID: "rs-uid", Controller: true}}})
	got, known := c.Chain([]convert.Ref{podRef("demo", "web-5d-x", "pod-uid")})
	if !known {
		t.Fatal("known = false")
	}
	wantChain(t, got, wantRollout[:2])
}

func TestChainCycles(t *testing.T) {
	t.Run("A→B→A", func(t *testing.T) {
		c := newTestCache(t, CacheOptions{})
		c.Upsert(&Object{UID: "a", Kind: "Pod", Namespace: "ns", Name: "a", Owners: []OwnerRef{{Kind: "ReplicaSet", Name: "b", UID: "b", Controller: true}}})
		c.Upsert(&Object{UID: "b", Kind: "ReplicaSet", Namespace: "ns", Name: "b", Owners: []OwnerRef{{Kind: "Pod", Name: "a", UID: "a", Controller: true}}})
		got, known := c.Chain([]convert.Ref{podRef("ns", "a", "a")})
		if !known || len(got) != 2 || got[1].UID != "b" {
			t.Errorf("chain = %+v, known %v; want a, b", got, known)
		}
		noRepeatedUID(t, got)
	})
	t.Run("self owner", func(t *testing.T) {
		c := newTestCache(t, CacheOptions{})
		c.Upsert(&Object{UID: "a", Kind: "Pod", Namespace: "ns", Name: "a", Owners: []OwnerRef{{Kind: "Pod", Name: "a", UID: "a", Controller: true}}})
		got, known := c.Chain([]convert.Ref{podRef("ns", "a", "a")})
		if !known || len(got) != 1 {
			t.Errorf("chain = %+v, known %v; want just a", got, known)
		}
	})
	t.Run("cycle further up", func(t *testing.T) {
		c := newTestCache(t, CacheOptions{})
		c.Upsert(&Object{UID: "p", Kind: "Pod", Namespace: "ns", Name: "p", Owners: []OwnerRef{{Kind: "ReplicaSet", Name: "a", UID: "a"}}})
		c.Upsert(&Object{UID: "a", Kind: "ReplicaSet", Namespace: "ns", Name: "a", Owners: []OwnerRef{{Kind: "Deployment", Name: "b", UID: "b"}}})
		c.Upsert(&Object{UID: "b", Kind: "Deployment", Namespace: "ns", Name: "b", Owners: []OwnerRef{{Kind: "ReplicaSet", Name: "a", UID: "a"}}})
		got, _ := c.Chain([]convert.Ref{podRef("ns", "p", "p")})
		if len(got) != 3 || got[1].UID != "a" || got[2].UID != "b" {
			t.Errorf("chain = %+v, want p, a, b", got)
		}
		noRepeatedUID(t, got)
	})
	t.Run("node event by name owning itself", func(t *testing.T) {
		c := newTestCache(t, CacheOptions{})
		c.Upsert(&Object{UID: "node-uid", Kind: "Node", Name: "n1", Owners: []OwnerRef{{Kind: "Node", Name: "n1", UID: "node-uid"}}})
		got, known := c.Chain([]convert.Ref{{Kind: "Node", Name: "n1", UID: "n1"}})
		if !known || len(got) != 1 || got[0].UID != "node-uid" {
			t.Errorf("chain = %+v, known %v; want just the node", got, known)
		}
	})
}

func TestChainDepthLimit(t *testing.T) {
	c := newTestCache(t, CacheOptions{})
	const n = 3 * maxChain
	for i := 0; i < n; i++ {
		o := &Object{UID: fmt.Sprintf("o%d", i), Kind: "Widget", Namespace: "ns", Name: fmt.Sprintf("o%d", i)}
		if i+1 < n {
			o.Owners = []OwnerRef{{Kind: "Widget", Name: fmt.Sprintf("o%d", i+1), UID: fmt.Sprintf("o%d", i+1)}}
		}
		c.Upsert(o)
	}
	got, known := c.Chain([]convert.Ref{{Kind: "Widget", Namespace: "ns", Name: "o0", UID: "o0"}})
	if !known {
		t.Error("known = false")
	}
	if len(got) != maxChain {
		t.Errorf("chain length = %d, want the limit %d", len(got), maxChain)
	}
	for i, r := range got {
		if r.UID != fmt.Sprintf("o%d", i) {
			t.Errorf("chain[%d] = %s, want o%d", i, r.UID, i)
		}
	}

	// A chain of exactly maxChain objects is complete.
	got, _ = c.Chain([]convert.Ref{{Kind: "Widget", Namespace: "ns", Name: "x", UID: fmt.Sprintf("o%d", n-maxChain)}})
	if len(got) != maxChain || got[maxChain-1].UID != fmt.Sprintf("o%d", n-1) {
		t.Errorf("chain of exactly %d = %d links ending %s", maxChain, len(got), got[len(got)-1].UID)
	}
}

func TestChainTombstones(t *testing.T) {
	clock := newFakeClock(testT0)
	c := newTestCache(t, CacheOptions{TombstoneTTL: 5 * time.Minute, Now: clock.Now})
	rollout(c)
	n := c.Len()
	deleted := testT0.Add(time.Minute)
	c.MarkDeleted("pod-uid", deleted)
	c.MarkDeleted("rs-uid", deleted)

	got, known := c.Chain([]convert.Ref{podRef("demo", "web-5d-x", "pod-uid")})
	if !known {
		t.Fatal("tombstoned pod unknown")
	}
	wantChain(t, got, wantRollout)

	o, ok := c.Get("pod-uid")
	if !ok || !o.Deleted.Equal(deleted) {
		t.Fatalf("Get tombstone = %+v, %v", o, ok)
	}
	// A second deletion keeps the first time.
	c.MarkDeleted("pod-uid", deleted.Add(time.Minute))
	if o, _ := c.Get("pod-uid"); !o.Deleted.Equal(deleted) {
		t.Errorf("tombstone time moved to %s", o.Deleted)
	}

	if k := c.Collect(deleted.Add(4 * time.Minute)); k != 0 {
		t.Errorf("Collect before TTL removed %d", k)
	}
	if k := c.Collect(deleted.Add(5 * time.Minute)); k != 0 {
		t.Errorf("Collect exactly at TTL removed %d", k)
	}
	if c.Len() != n {
		t.Errorf("Len = %d, want %d", c.Len(), n)
	}
	if k := c.Collect(deleted.Add(5*time.Minute + time.Nanosecond)); k != 2 {
		t.Errorf("Collect after TTL removed %d, want 2", k)
	}
	if c.Len() != n-2 {
		t.Errorf("Len = %d, want %d", c.Len(), n-2)
	}
	if _, ok := c.Get("pod-uid"); ok {
		t.Error("pod still cached after collection")
	}
	if _, ok := c.Get("dep-uid"); !ok {
		t.Error("live deployment collected")
	}
	got, known = c.Chain([]convert.Ref{podRef("demo", "web-5d-x", "pod-uid")})
	if known || len(got) != 1 {
		t.Errorf("collected pod: chain %+v known %v, want unknown", got, known)
	}
}

func TestTombstoneResurrectAndDefaultTTL(t *testing.T) {
	c := newTestCache(t, CacheOptions{})
	c.Upsert(&Object{UID: "p", Kind: "Pod", Namespace: "ns", Name: "p"})
	c.MarkDeleted("p", testT0)
	c.MarkDeleted("unknown", testT0) // no-op
	if c.Len() != 1 {
		t.Fatalf("Len = %d", c.Len())
	}
	if k := c.Collect(testT0.Add(9 * time.Minute)); k != 0 {
		t.Errorf("default TTL: collected after 9m")
	}
	if k := c.Collect(testT0.Add(10*time.Minute + time.Second)); k != 1 {
		t.Errorf("default TTL: not collected after 10m1s")
	}

	// An object seen again after its deletion (relist) is live again.
	c.Upsert(&Object{UID: "q", Kind: "Pod", Namespace: "ns", Name: "q"})
	c.MarkDeleted("q", testT0)
	c.Upsert(&Object{UID: "q", Kind: "Pod", Namespace: "ns", Name: "q"})
	if k := c.Collect(testT0.Add(time.Hour)); k != 0 {
		t.Errorf("re-added object collected")
	}
}

func TestChainNodeByName(t *testing.T) {
	c := newTestCache(t, CacheOptions{TombstoneTTL: time.Minute})
	c.Upsert(&Object{UID: "node-uid", APIVersion: "v1", Kind: "Node", Name: "worker-1"})
	// kubelet: involvedObject.uid is the node name.
	got, known := c.Chain([]convert.Ref{{Kind: "Node", Name: "worker-1", UID: "worker-1"}})
	if !known || len(got) != 1 || got[0].UID != "node-uid" || got[0].Name != "worker-1" {
		t.Errorf("node by name: chain %+v known %v", got, known)
	}
	// No UID at all.
	got, known = c.Chain([]convert.Ref{{Kind: "Node", Name: "worker-1"}})
	if !known || got[0].UID != "node-uid" {
		t.Errorf("node without uid: chain %+v known %v", got, known)
	}
	// The real UID.
	got, known = c.Chain([]convert.Ref{{Kind: "Node", Name: "worker-1", UID: "node-uid"}})
	if !known || got[0].UID != "node-uid" {
		t.Errorf("node by uid: chain %+v known %v", got, known)
	}
	// A node the cache does not have (yet).
	got, known = c.Chain([]convert.Ref{{Kind: "Node", Name: "worker-2", UID: "worker-2"}})
	if known || got[0].UID != "worker-2" {
		t.Errorf("unknown node: chain %+v known %v", got, known)
	}
	// Name lookup is only for nodes.
	c.Upsert(&Object{UID: "pod-uid", Kind: "Pod", Namespace: "ns", Name: "worker-1"})
	if _, known := c.Chain([]convert.Ref{{Kind: "Pod", Namespace: "ns", Name: "worker-1", UID: "worker-1"}}); known {
		t.Errorf("pod resolved by name")
	}

	// Node recreated under the same name with a new UID; the old one's
	// tombstone is collected without dropping the new name mapping.
	c.MarkDeleted("node-uid", testT0)
	c.Upsert(&Object{UID: "node-uid-2", APIVersion: "v1", Kind: "Node", Name: "worker-1"})
	c.Collect(testT0.Add(time.Hour))
	got, known = c.Chain([]convert.Ref{{Kind: "Node", Name: "worker-1", UID: "worker-1"}})
	if !known || got[0].UID != "node-uid-2" {
		t.Errorf("recreated node: chain %+v known %v", got, known)
	}
	// Collecting the only node drops its name.
	c.MarkDeleted("node-uid-2", testT0)
	c.Collect(testT0.Add(time.Hour))
	if _, known := c.Chain([]convert.Ref{{Kind: "Node", Name: "worker-1", UID: "worker-1"}}); known {
		t.Errorf("collected node still resolves by name")
	}
}

func TestChainUnknownKinds(t *testing.T) {
	c := newTestCache(t, CacheOptions{})
	rollout(c)
	for _, ref := range []convert.Ref{
		{Kind: "Widget", APIVersion: "example.com/v1", Namespace: "demo", Name: "w", UID: "w-uid"},
		{Kind: "Service", APIVersion: "v1", Namespace: "demo", Name: "svc", UID: "svc-uid"},
		{Kind: "", Name: "nothing", UID: "x"},
		{},
		{Kind: "Pod", Namespace: "demo", Name: "no-uid"}, // a watched kind without UID cannot be waited for
	} {
		got, known := c.Chain([]convert.Ref{ref})
		if !known || len(got) != 1 || got[0] != ref {
			t.Errorf("Chain(%+v) = %+v, known %v; want just the ref, known", ref, got, known)
		}
	}
	got, known := c.Chain(nil)
	if !known || len(got) != 0 {
		t.Errorf("Chain(nil) = %+v, %v", got, known)
	}
}

func TestChainWatchedKindNotCached(t *testing.T) {
	c := newTestCache(t, CacheOptions{})
	rollout(c)
	for _, k := range WatchedKinds {
		ref := convert.Ref{Kind: k.kind, APIVersion: k.apiVersion, Namespace: "demo", Name: "missing", UID: "missing-uid"}
		got, known := c.Chain([]convert.Ref{ref})
		if known {
			t.Errorf("%s not in cache: known = true", k.kind)
		}
		if len(got) != 1 || got[0] != ref {
			t.Errorf("%s not in cache: chain %+v", k.kind, got)
		}
	}
}

func TestOnChange(t *testing.T) {
	var mu sync.Mutex
	var seen []Object
	c := newTestCache(t, CacheOptions{OnChange: func(o *Object) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, *o)
	}})
	c.Upsert(&Object{UID: "p", Kind: "Pod", Name: "p"})
	c.Upsert(&Object{UID: "p", Kind: "Pod", Name: "p", Generation: 2})
	c.Upsert(nil)
	c.Upsert(&Object{Kind: "Pod", Name: "no-uid"})
	c.MarkDeleted("p", testT0)
	c.MarkDeleted("p", testT0.Add(time.Second)) // already a tombstone
	c.MarkDeleted("unknown", testT0)

	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 {
		t.Fatalf("OnChange called %d times (%+v), want 3", len(seen), seen)
	}
	if seen[0].Generation != 0 || seen[1].Generation != 2 || !seen[0].Deleted.IsZero() || !seen[1].Deleted.IsZero() {
		t.Errorf("upserts seen as %+v", seen[:2])
	}
	if !seen[2].Deleted.Equal(testT0) || seen[2].Generation != 2 {
		t.Errorf("delete seen as %+v", seen[2])
	}
	// The tombstone is a copy: the live object handed out before is untouched.
	if o, _ := c.Get("p"); !o.Deleted.Equal(testT0) {
		t.Errorf("Get after delete = %+v", o)
	}
}

func TestCacheOptionsValidate(t *testing.T) {
	if _, err := NewObjectCache(CacheOptions{TombstoneTTL: -time.Second}); err == nil {
		t.Error("negative TTL accepted")
	}
	if _, err := NewObjectCache(CacheOptions{}); err != nil {
		t.Errorf("zero options: %v", err)
	}
}

// TestChainConcurrent exercises Chain against concurrent writers (run with
// -race to be meaningful).
func TestChainConcurrent(t *testing.T) {
	c := newTestCache(t, CacheOptions{})
	rollout(c)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 500; i++ {
			uid := fmt.Sprintf("p%d", i)
			c.Upsert(&Object{UID: uid, Kind: "Pod", Namespace: "demo", Name: uid,
				Owners: []OwnerRef{{Kind: "ReplicaSet", Name: "web-5d", UID: "rs-uid", Controller: true}}})
			c.MarkDeleted(uid, testT0)
			c.Collect(testT0.Add(time.Hour))
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 500; i++ {
			got, known := c.Chain([]convert.Ref{podRef("demo", "web-5d-x", "pod-uid")})
			if !known || len(got) != 3 {
				t.Errorf("chain %+v known %v", got, known)
				return
			}
		}
	}()
	wg.Wait()
}

func TestTraceparentAnnotationKeys(t *testing.T) {
	if got := traceparent(map[string]string{"traceparent": "00-a-b-01"}); got != "00-a-b-01" {
		t.Errorf("plain key: %q", got)
	}
	if got := traceparent(map[string]string{"traceparent": "x", TraceparentAnnotation: "y"}); got != "y" {
		t.Errorf("prefixed key must win: %q", got)
	}
	if got := traceparent(nil); got != "" {
		t.Errorf("none: %q", got)
	}
}

// Owner UIDs kept in compact form are formatted once per owner: later chains
// through the same owners allocate nothing, and the kept strings go with
// their tombstones.
func TestChainKeepsOwnerUIDs(t *testing.T) {
	clock := newFakeClock(testT0)
	c := newTestCache(t, CacheOptions{TombstoneTTL: time.Minute, Now: clock.Now})
	const dep, rs, pod = "00000001-1111-4000-8000-000000000001", "00000002-1111-4000-8000-000000000001", "00000004-1111-4000-8000-000000000001"
	c.Upsert(&Object{UID: dep, APIVersion: "apps/v1", Kind: "Deployment", Namespace: "demo", Name: "web"})
	c.Upsert(&Object{UID: rs, APIVersion: "apps/v1", Kind: "ReplicaSet", Namespace: "demo", Name: "web-5d",
		Owners: []OwnerRef{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: dep, Controller: true}}})
	c.Upsert(&Object{UID: pod, APIVersion: "v1", Kind: "Pod", Namespace: "demo", Name: "web-5d-x",
		Owners: []OwnerRef{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d", UID: rs, Controller: true}}})
	want := []convert.Ref{podRef("demo", "web-5d-x", pod),
		{Kind: "ReplicaSet", APIVersion: "apps/v1", Namespace: "demo", Name: "web-5d", UID: rs},
		{Kind: "Deployment", APIVersion: "apps/v1", Namespace: "demo", Name: "web", UID: dep}}
	buf := make([]convert.Ref, 1, 4)
	chain := func() []convert.Ref {
		buf[0] = want[0]
		got, known := c.Chain(buf[:1])
		if !known {
			t.Fatal("known = false for a cached pod")
		}
		return got
	}
	wantChain(t, chain(), want)
	if n := testing.AllocsPerRun(100, func() { chain() }); n != 0 && !racebuild.Enabled {
		t.Errorf("a chain through known owners allocates %v times", n)
	}
	wantChain(t, chain(), want)
	c.MarkDeleted(rs, testT0)
	c.MarkDeleted(dep, testT0)
	clock.Advance(2 * time.Minute)
	c.Collect(clock.Now())
	if len(c.uidStrs) != 0 {
		t.Errorf("%d UID strings kept after their objects were collected", len(c.uidStrs))
	}
}

// Watches counts what Start runs: each kind once per namespace, Nodes once.
func TestObjectCacheWatches(t *testing.T) {
	for _, tt := range []struct {
		namespaces []string
		want       int
	}{
		{nil, len(WatchedKinds)},
		{[]string{"a"}, len(WatchedKinds)},
		{[]string{"a", "b", "c"}, 3*(len(WatchedKinds)-1) + 1},
	} {
		c, err := NewObjectCache(CacheOptions{Namespaces: tt.namespaces})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Watches(); got != tt.want {
			t.Errorf("namespaces %v: %d watches, want %d", tt.namespaces, got, tt.want)
		}
	}
}

// OnDelete hears of deletions only, from the watch (a delete, or a
// replacement list without the object), MarkDeleted and Upsert; the
// updates the watch delivers build no Object for it.
func TestOnDelete(t *testing.T) {
	var mu sync.Mutex
	var seen []Object
	c := newTestCache(t, CacheOptions{Now: func() time.Time { return testT0 }, OnDelete: func(o *Object) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, *o)
	}})
	pods := WatchedKinds[0]
	pod := func(name, uid, rv string) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name, UID: types.UID(uid), ResourceVersion: rv}}
	}
	c.observe(pods, pod("a", "uid-a", "1"))
	c.observe(pods, pod("a", "uid-a", "2"))
	c.Upsert(&Object{UID: "uid-b", Kind: "Pod", Namespace: "demo", Name: "b"})
	if n := testing.AllocsPerRun(100, func() { c.observe(pods, pod("a", "uid-a", "3")) }); n > 1 && !racebuild.Enabled {
		// The pod literal itself; no Object for the hook.
		t.Errorf("an update allocates %v times with OnDelete set", n)
	}
	c.observeDelete(pod("a", "uid-a", "4"))
	c.MarkDeleted("uid-b", testT0.Add(time.Second))
	c.Upsert(&Object{UID: "uid-c", Kind: "Pod", Namespace: "demo", Name: "c", Deleted: testT0.Add(2 * time.Second)})

	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, o := range seen {
		got = append(got, fmt.Sprintf("%s@%s", o.Name, o.Deleted.Sub(testT0)))
	}
	if want := []string{"a@0s", "b@1s", "c@2s"}; !slices.Equal(got, want) {
		t.Errorf("OnDelete saw %v, want %v", got, want)
	}
}
