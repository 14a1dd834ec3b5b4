package watch

import (
	"context"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"
)

// pagedLister is a metadata.ResourceInterface whose List serves pages:
// pages[continue token] with the next token; expire makes a continue token
// answer 410 Expired once.
type pagedLister struct {
	metadata.ResourceInterface
	pages  map[string][]*metav1.PartialObjectMetadata
	next   map[string]string
	expire map[string]bool
	opts   []metav1.ListOptions
}

func (p *pagedLister) List(_ context.Context, o metav1.ListOptions) (*metav1.PartialObjectMetadataList, error) {
	p.opts = append(p.opts, o)
	if p.expire[o.Continue] {
		delete(p.expire, o.Continue)
		return nil, apierrors.NewResourceExpired("continue token expired")
	}
	l := &metav1.PartialObjectMetadataList{ListMeta: metav1.ListMeta{ResourceVersion: "42", Continue: p.next[o.Continue]}}
	for _, m := range p.pages[o.Continue] {
		l.Items = append(l.Items, *m)
	}
	return l, nil
}

func kindNamed(t *testing.T, kind string) watchedKind {
	t.Helper()
	for _, k := range WatchedKinds {
		if k.kind == kind {
			return k
		}
	}
	t.Fatalf("not watched: %s", kind)
	return watchedKind{}
}

// streamList puts the pages into the cache as they come and returns one
// item for all; Replace with it keeps what this list streamed and marks
// the rest deleted, also what a list that broke off (an expired continue
// token) streamed before starting over.
func TestStreamList(t *testing.T) {
	pod := func(name string) *metav1.PartialObjectMetadata {
		return partial("Pod", "demo", name, fmt.Sprintf("00000000-0000-4000-8000-%012d", len(name)*7+int(name[len(name)-1])),
			metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d", UID: "rs-uid"})
	}
	a, b, c, gone, early := pod("web-5d-a"), pod("web-5d-bb"), pod("web-5d-ccc"), pod("web-5d-gone"), pod("web-5d-early")
	cache := newTestCache(t, CacheOptions{})
	st := &kindStore{c: cache, k: kindNamed(t, "Pod")}
	st.synced.Store(true)
	cache.observe(st.k, gone) // from an earlier sync, deleted since
	lister := &pagedLister{
		pages:  map[string][]*metav1.PartialObjectMetadata{"": {early}, "p2": {a, b}, "p3": {c}},
		next:   map[string]string{"": "p2", "p2": "p3"},
		expire: map[string]bool{"p2": true},
	}
	// The first attempt streams early, then p2 expires; early is deleted
	// before the list starts over.
	restarted := false
	list := func() {
		t.Helper()
		obj, err := st.streamList(context.Background(), &restartHook{lister, func() {
			if !restarted {
				restarted = true
				lister.pages[""] = []*metav1.PartialObjectMetadata{}
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		l := obj.(*metav1.PartialObjectMetadataList)
		if len(l.Items) != 1 || !isStreamed(&l.Items[0]) || l.ResourceVersion != "42" {
			t.Fatalf("streamList returned %+v", l)
		}
		if err := st.Replace([]any{&l.Items[0]}, l.ResourceVersion); err != nil {
			t.Fatal(err)
		}
	}
	list()
	for _, o := range lister.opts {
		if o.Limit != listPageSize || o.ResourceVersion != "" {
			t.Errorf("a page asked with %+v, want limit %d and a consistent read", o, listPageSize)
		}
	}
	if len(lister.opts) != 5 {
		t.Errorf("%d LIST calls, want 5: the first page, the expired second, then all three again", len(lister.opts))
	}
	for _, m := range []*metav1.PartialObjectMetadata{a, b, c} {
		if o, ok := cache.Get(string(m.UID)); !ok || !o.Deleted.IsZero() || o.Name != m.Name {
			t.Errorf("%s: %+v, %v; want it live", m.Name, o, ok)
		}
	}
	for _, m := range []*metav1.PartialObjectMetadata{gone, early} {
		if o, ok := cache.Get(string(m.UID)); !ok || o.Deleted.IsZero() {
			t.Errorf("%s: %+v, %v; want it marked deleted", m.Name, o, ok)
		}
	}
}

// restartHook calls before when a list starts from the first page again
// (after the first time).
type restartHook struct {
	*pagedLister
	before func()
}

func (r *restartHook) List(ctx context.Context, o metav1.ListOptions) (*metav1.PartialObjectMetadataList, error) {
	if o.Continue == "" && len(r.opts) > 0 {
		r.before()
	}
	return r.pagedLister.List(ctx, o)
}
