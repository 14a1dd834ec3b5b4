package watch

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	k8suuid "k8s.io/apimachinery/pkg/util/uuid"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

func TestUUIDRoundTrip(t *testing.T) {
	for _, s := range []string{
		"00000000-0000-0000-0000-000000000000",
		"ffffffff-ffff-ffff-ffff-ffffffffffff",
		"0123abcd-4567-89ef-0a1b-2c3d4e5f6789",
		"00000004-1111-4000-8000-0000000186a0",
		string(k8suuid.NewUUID()), // what the API server generates
		string(k8suuid.NewUUID()),
	} {
		u, ok := parseUUID(s)
		if !ok {
			t.Errorf("parseUUID(%q) failed", s)
			continue
		}
		if got := u.String(); got != s {
			t.Errorf("parseUUID(%q).String() = %q", s, got)
		}
	}
	u, _ := parseUUID("0123abcd-4567-89ef-0a1b-2c3d4e5f6789")
	if want := (uuid{0x01, 0x23, 0xab, 0xcd, 0x45, 0x67, 0x89, 0xef, 0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x67, 0x89}); u != want {
		t.Errorf("parsed bytes %x, want %x", u, want)
	}
	for _, s := range []string{
		"",
		"pod-uid",
		"worker-1",
		"0123ABCD-4567-89EF-0A1B-2C3D4E5F6789", // upper case would not format back the same
		"0123abcd-4567-89ef-0a1b-2c3d4e5f678",  // short
		"0123abcd-4567-89ef-0a1b-2c3d4e5f67890",
		"0123abcd4567-89ef-0a1b-2c3d4e5f67890-",
		"0123abcd-4567-89ef-0a1b_2c3d4e5f6789",
		"0123abcg-4567-89ef-0a1b-2c3d4e5f6789",
		"{123abcd-4567-89ef-0a1b-2c3d4e5f678}",
		"0123abcd-4567-89ef-0a1b-2c3d4e5f678 ",
		"0123abcd-+567-89ef-0a1b-2c3d4e5f6789",
		"0123abcd-4567-89ef-0a1b-2c3d4e5f6/89",
		"0123abcd-4567-89ef-0a1b-2c3d4e5f6:89",
		"0123abcd-4567-89ef-0a1b-2c3d4e5f67\xe9", // not ASCII
		"0123abcd-4567-89ef-0a1b-2c3d4e5f67\x00",
	} {
		if u, ok := parseUUID(s); ok {
			t.Errorf("parseUUID(%q) = %x, want not a canonical UUID", s, u)
		}
	}
}

// Every shape of Object comes back from Get as it went in.
func TestObjectRoundTrip(t *testing.T) {
	const (
		u1 = "0123abcd-4567-89ef-0a1b-2c3d4e5f6789"
		u2 = "11111111-2222-4333-8444-555555555555"
		u3 = "99999999-8888-4777-8666-555555555555"
	)
	far := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) // past int64 Unix nanoseconds
	objects := []*Object{
		{UID: u1, APIVersion: "apps/v1", Kind: "Deployment", Namespace: "demo", Name: "web", Generation: 7, Traceparent: testTraceparent},
		{UID: u2, APIVersion: "apps/v1", Kind: "ReplicaSet", Namespace: "demo", Name: "web-5d",
			Owners: []OwnerRef{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: u1, Controller: true}}},
		{UID: u3, APIVersion: "v1", Kind: "Pod", Namespace: "demo", Name: "web-5d-x",
			Owners: []OwnerRef{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d", UID: u2}}, Deleted: testT0},
		// Not canonical UIDs, of the object and of its owner.
		{UID: "pod-uid", APIVersion: "v1", Kind: "Pod", Namespace: "demo", Name: "web-5d-y",
			Owners: []OwnerRef{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d", UID: u2, Controller: true}}},
		{UID: "ABCDEF00-1111-4222-8333-444444444444", APIVersion: "v1", Kind: "Pod", Namespace: "demo", Name: "web-5d-z",
			Owners: []OwnerRef{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d", UID: "rs-uid", Controller: true}}},
		// Several owners; an owner of another kind; no kind at all.
		{UID: "22222222-2222-4222-8222-222222222222", APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "p", Owners: []OwnerRef{
			{APIVersion: "v1", Kind: "ConfigMap", Name: "c", UID: "33333333-3333-4333-8333-333333333333"},
			{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "r", UID: u2, Controller: true},
		}},
		{UID: "44444444-4444-4444-8444-444444444444", Kind: "Widget", Name: "w",
			Owners: []OwnerRef{{Kind: "Gadget", Name: "g", UID: "55555555-5555-4555-8555-555555555555"}}},
		{UID: "x"},
		// Names that are, or are not, "<owner>-<suffix>".
		{UID: "66666666-6666-4666-8666-666666666661", Kind: "Pod", Name: "web-5d",
			Owners: []OwnerRef{{Kind: "ReplicaSet", Name: "web-5d", UID: u2}}},
		{UID: "66666666-6666-4666-8666-666666666662", Kind: "Pod", Name: "web-5d-",
			Owners: []OwnerRef{{Kind: "ReplicaSet", Name: "web-5d", UID: u2}}},
		{UID: "66666666-6666-4666-8666-666666666663", Kind: "Pod", Name: "web-5dx",
			Owners: []OwnerRef{{Kind: "ReplicaSet", Name: "web-5d", UID: u2}}},
		{UID: "66666666-6666-4666-8666-666666666664", Kind: "Pod", Name: "web-5d--",
			Owners: []OwnerRef{{Kind: "ReplicaSet", Name: "web-5d", UID: u2}}},
		{UID: "66666666-6666-4666-8666-666666666665", Kind: "Pod", Name: "x-y",
			Owners: []OwnerRef{{Kind: "ReplicaSet", UID: u2}}},
		// Tombstone times: other locations, out of the inline range, the
		// Unix epoch itself.
		{UID: "77777777-7777-4777-8777-777777777771", Kind: "Pod", Name: "a", Deleted: testT0.In(time.FixedZone("CET", 3600))},
		{UID: "77777777-7777-4777-8777-777777777772", Kind: "Pod", Name: "b", Deleted: testT0.Local()},
		{UID: "77777777-7777-4777-8777-777777777773", Kind: "Pod", Name: "c", Deleted: far},
		{UID: "77777777-7777-4777-8777-777777777774", Kind: "Pod", Name: "d", Deleted: time.Date(1600, 1, 1, 0, 0, 0, 1, time.UTC)},
		{UID: "77777777-7777-4777-8777-777777777775", Kind: "Pod", Name: "e", Deleted: time.Unix(0, 0).UTC()},
		{UID: "77777777-7777-4777-8777-777777777776", Kind: "Pod", Name: "f", Deleted: time.Unix(0, -1)},
	}
	c := newTestCache(t, CacheOptions{})
	for _, o := range objects {
		c.Upsert(o)
	}
	if c.Len() != len(objects) {
		t.Errorf("Len = %d, want %d", c.Len(), len(objects))
	}
	for _, want := range objects {
		got, ok := c.Get(want.UID)
		if !ok {
			t.Errorf("Get(%s) missing", want.UID)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Get(%s) =\n%+v\nwant\n%+v", want.UID, got, want)
		}
	}
	for _, uid := range []string{strings.ToUpper(u1), "abcdef00-1111-4222-8333-444444444444", "POD-UID", u1[:35], "rs-uid"} {
		if o, ok := c.Get(uid); ok {
			t.Errorf("Get(%q) = %+v, want none", uid, o)
		}
	}
}

func TestDeletedRoundTrip(t *testing.T) {
	now := time.Now() // with a monotonic clock reading, which is not kept
	for _, at := range []time.Time{
		now, now.UTC(), testT0, testT0.Local(), testT0.In(time.FixedZone("X", -7*3600)),
		time.Unix(0, 0), time.Unix(0, 1).UTC(), time.Unix(-1, 0),
		time.Date(2262, 4, 11, 23, 47, 16, 854775807, time.UTC), // the last inline nanosecond
		time.Date(2262, 4, 11, 23, 47, 16, 854775808, time.UTC), // the first past it
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
	} {
		var e entry
		e.setDeleted(at)
		if !e.isDeleted() {
			t.Errorf("%s: not a tombstone", at)
		}
		if got := e.deletedAt(); got != at.Round(0) {
			t.Errorf("deleted %s (%s) came back as %s (%s)", at, at.Location(), got, got.Location())
		}
		e.setDeleted(time.Time{})
		if e.isDeleted() || !e.deletedAt().IsZero() || e.ext != nil && !e.ext.deleted.IsZero() {
			t.Errorf("%s: zero time did not make it live again", at)
		}
	}
	// Inline when it can be.
	var e entry
	e.setDeleted(testT0)
	if e.ext != nil {
		t.Error("a UTC tombstone time went to the extension")
	}
	e.setDeleted(testT0.In(time.FixedZone("X", 3600)))
	if e.ext == nil {
		t.Error("a tombstone time in a fixed zone was kept inline (its location lost)")
	}
}

// Kinds past the table (and past uint8) are kept in the extension and still
// chain.
func TestKindTableFull(t *testing.T) {
	c := newTestCache(t, CacheOptions{})
	const n = 2 * maxKinds
	uid := func(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012x", i) }
	for i := 0; i < n; i++ {
		o := &Object{UID: uid(i), APIVersion: "example.com/v1", Kind: fmt.Sprintf("Kind%d", i), Namespace: "ns", Name: fmt.Sprint("o", i)}
		if i > 0 {
			o.Owners = []OwnerRef{{APIVersion: "example.com/v1", Kind: fmt.Sprintf("Kind%d", i-1), Name: fmt.Sprint("o", i-1), UID: uid(i - 1), Controller: true}}
		}
		c.Upsert(o)
	}
	if len(c.kinds) != maxKinds+1 {
		t.Errorf("kind table holds %d, want %d", len(c.kinds), maxKinds+1)
	}
	for _, i := range []int{0, 1, maxKinds - len(WatchedKinds), maxKinds - len(WatchedKinds) + 1, n - 1} {
		o, ok := c.Get(uid(i))
		if !ok || o.Kind != fmt.Sprintf("Kind%d", i) || o.APIVersion != "example.com/v1" || o.Name != fmt.Sprint("o", i) {
			t.Errorf("object %d = %+v", i, o)
		}
		if i > 0 && (len(o.Owners) != 1 || o.Owners[0].Kind != fmt.Sprintf("Kind%d", i-1) || o.Owners[0].UID != uid(i-1)) {
			t.Errorf("object %d owners = %+v", i, o.Owners)
		}
		got, _ := c.Chain([]convert.Ref{{Kind: o.Kind, Name: o.Name, UID: o.UID}})
		if len(got) != min(i+1, maxChain) || i > 0 && (got[1].Kind != fmt.Sprintf("Kind%d", i-1) || got[1].Namespace != "ns") {
			t.Errorf("chain from %d = %+v", i, got)
		}
	}
	// A watched kind keeps its place.
	if c.kindLocked("Pod", "v1") != 1 {
		t.Error("Pod is not the first kind")
	}
}

func TestNamespaceTableFull(t *testing.T) {
	if testing.Short() {
		t.Skip("fills the namespace table")
	}
	c := newTestCache(t, CacheOptions{})
	for i := 0; i < maxInterned+10; i++ {
		c.Upsert(&Object{UID: fmt.Sprintf("00000000-0000-4000-8000-%012x", i), Kind: "Pod", Namespace: fmt.Sprint("ns-", i), Name: "p"})
	}
	if len(c.nss) != maxInterned {
		t.Errorf("namespace table holds %d", len(c.nss))
	}
	for _, i := range []int{0, maxInterned - 2, maxInterned - 1, maxInterned + 9} {
		if o, _ := c.Get(fmt.Sprintf("00000000-0000-4000-8000-%012x", i)); o.Namespace != fmt.Sprint("ns-", i) {
			t.Errorf("object %d namespace %q", i, o.Namespace)
		}
	}
}

// A generated name is kept as its suffix after the owner's name, and an
// owner's name is shared by its dependents.
func TestNameSharing(t *testing.T) {
	const (
		dep = "11111111-1111-4111-8111-111111111111"
		rs  = "22222222-2222-4222-8222-222222222222"
		pod = "33333333-3333-4333-8333-333333333333"
	)
	c := newTestCache(t, CacheOptions{})
	ref := func(kind, name, uid string) metav1.OwnerReference {
		return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: strings.Clone(name), UID: types.UID(uid)}
	}
	c.observe(WatchedKinds[2], partial("Deployment", "demo", "web", dep))
	c.observe(WatchedKinds[1], partial("ReplicaSet", "demo", "web-5d8f", rs, ref("Deployment", "web", dep)))
	c.mu.RLock()
	d, r := c.findLocked(dep), c.findLocked(rs)
	if r.flags&flagNameSuffix == 0 || r.name != "5d8f" || unsafe.StringData(r.ownerName) != unsafe.StringData(d.name) {
		t.Errorf("replica set name kept as %q (flags %b), owner name not shared", r.name, r.flags)
	}
	c.mu.RUnlock()
	// Owner references that do not name the owner as it is cached (stale,
	// or made up) keep their own names and leave the owner alone.
	for i, name := range []string{"web-5d8x", "webx5d8f", "web-5d8f-zz", "web-5d8fzz", "web", "web-5d8", "", "5d8f"} {
		uid := fmt.Sprintf("44444444-4444-4444-8444-%012d", i)
		c.observe(WatchedKinds[0], partial("Pod", "demo", name+"-p", uid, ref("ReplicaSet", name, rs)))
		if o, _ := c.Get(uid); o.Name != name+"-p" || len(o.Owners) != 1 || o.Owners[0].Name != name {
			t.Errorf("pod owned by a ReplicaSet called %q: %+v", name, o)
		}
	}
	if o, _ := c.Get(rs); o.Name != "web-5d8f" {
		t.Errorf("replica set name %q after dependents naming it otherwise", o.Name)
	}
	c.observe(WatchedKinds[0], partial("Pod", "demo", "web-5d8f-abcde", pod, ref("ReplicaSet", "web-5d8f", rs)))
	c.mu.RLock()
	p := c.findLocked(pod)
	if p.flags&flagNameSuffix == 0 || p.name != "abcde" {
		t.Errorf("pod name kept as %q (flags %b)", p.name, p.flags)
	}
	// The first dependent's copy of the owner's name is now the owner's.
	if r.flags&flagNameSuffix != 0 || r.name != "web-5d8f" || unsafe.StringData(p.ownerName) != unsafe.StringData(r.name) {
		t.Errorf("replica set name kept as %q (flags %b), not shared with the pod", r.name, r.flags)
	}
	c.mu.RUnlock()
	for uid, name := range map[string]string{dep: "web", rs: "web-5d8f", pod: "web-5d8f-abcde"} {
		if o, _ := c.Get(uid); o.Name != name {
			t.Errorf("Get(%s).Name = %q, want %q", uid, o.Name, name)
		}
	}
	got, _ := c.Chain([]convert.Ref{podRef("demo", "web-5d8f-abcde", pod)})
	wantChain(t, got, []convert.Ref{
		podRef("demo", "web-5d8f-abcde", pod),
		{Kind: "ReplicaSet", APIVersion: "apps/v1", Namespace: "demo", Name: "web-5d8f", UID: rs},
		{Kind: "Deployment", APIVersion: "apps/v1", Namespace: "demo", Name: "web", UID: dep},
	})
}

// A relist tombstones the objects of its kind and scope that it no longer
// lists, whatever form their UIDs have.
func TestReplaceTombstonesUnlisted(t *testing.T) {
	const (
		a = "aaaaaaaa-0000-4000-8000-000000000001"
		b = "aaaaaaaa-0000-4000-8000-000000000002"
	)
	clock := newFakeClock(testT0)
	var deleted []string
	c := newTestCache(t, CacheOptions{Now: clock.Now, OnChange: func(o *Object) {
		if !o.Deleted.IsZero() {
			deleted = append(deleted, o.UID)
		}
	}})
	pods := &kindStore{c: c, k: WatchedKinds[0], ns: "demo"}
	list := []any{partial("Pod", "demo", "a", a), partial("Pod", "demo", "b", b), partial("Pod", "demo", "c", "c-uid"),
		partial("Pod", "demo", "d", "D-UID")}
	if err := pods.Replace(list, "1"); err != nil {
		t.Fatal(err)
	}
	c.observe(WatchedKinds[0], partial("Pod", "other", "e", "e-uid"))                                      // another namespace
	c.observe(WatchedKinds[1], partial("ReplicaSet", "demo", "f", "aaaaaaaa-0000-4000-8000-00000000000f")) // another kind
	if len(deleted) != 0 {
		t.Fatalf("deleted on the first list: %v", deleted)
	}
	clock.Advance(time.Minute)
	if err := pods.Replace([]any{list[1], list[3]}, "2"); err != nil {
		t.Fatal(err)
	}
	if strings.Join(deleted, ",") != a+",c-uid" && strings.Join(deleted, ",") != "c-uid,"+a {
		t.Errorf("relist deleted %v, want %s and c-uid", deleted, a)
	}
	for uid, want := range map[string]bool{a: true, b: false, "c-uid": true, "D-UID": false, "e-uid": false, "aaaaaaaa-0000-4000-8000-00000000000f": false} {
		o, ok := c.Get(uid)
		if !ok || o.Deleted.IsZero() == want || want && !o.Deleted.Equal(testT0.Add(time.Minute)) {
			t.Errorf("after relist %s = %+v, %v; want deleted %v", uid, o, ok, want)
		}
	}
}

func TestEntrySize(t *testing.T) {
	// One size class: a field more costs 16 bytes per object.
	if s := unsafe.Sizeof(entry{}); s != 96 {
		t.Errorf("entry is %d bytes, want 96", s)
	}
}
