package kube

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	metainternalversionscheme "k8s.io/apimachinery/pkg/apis/meta/internalversion/scheme"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// The metadata client lists and watches as client-go's does (paths, Accept
// headers, parameters) and hands the watched objects over decoded, with
// what the object cache reads.
func TestMetadataClientListAndWatch(t *testing.T) {
	codecs := metainternalversionscheme.Codecs
	info, _ := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	enc := codecs.EncoderForVersion(info.Serializer, metav1.SchemeGroupVersion)
	yes := true
	deleted := metav1.NewTime(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	objs := []*metav1.PartialObjectMetadata{
		{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "ns", UID: "u1", ResourceVersion: "7", Generation: 1,
			Labels:          map[string]string{"app": "web"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "u-rs", Controller: &yes}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: "Update"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "ns", UID: "u1", ResourceVersion: "8", Generation: 2, DeletionTimestamp: &deleted}},
	}
	var mu sync.Mutex
	var requests []*http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, r)
		mu.Unlock()
		w.Header().Set("Content-Type", runtime.ContentTypeProtobuf)
		if r.URL.Query().Get("watch") != "true" {
			list := &metav1.PartialObjectMetadataList{ListMeta: metav1.ListMeta{ResourceVersion: "6"}, Items: []metav1.PartialObjectMetadata{*objs[0]}}
			if err := enc.Encode(list, w); err != nil {
				t.Error(err)
			}
			return
		}
		fw := info.StreamSerializer.Framer.NewFrameWriter(w)
		for _, o := range objs {
			var obj, frame bytes.Buffer
			if err := enc.Encode(o, &obj); err != nil {
				t.Error(err)
				return
			}
			we := &metav1.WatchEvent{Type: string(watch.Modified), Object: runtime.RawExtension{Raw: obj.Bytes()}}
			if err := info.StreamSerializer.Serializer.Encode(we, &frame); err != nil {
				t.Error(err)
				return
			}
			_, _ = fw.Write(frame.Bytes())
		}
		w.(http.Flusher).Flush()
	}))
	defer srv.Close()

	c, err := New(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods := c.Metadata.Resource(schema.GroupVersionResource{Version: "v1", Resource: "pods"}).Namespace("ns")
	l, err := pods.List(ctx, metav1.ListOptions{Limit: 500, LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 1 || l.Items[0].Name != "web-1" || l.ResourceVersion != "6" {
		t.Errorf("list: %+v", l)
	}
	w, err := c.Metadata.Resource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}).Watch(ctx, metav1.ListOptions{ResourceVersion: "6"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for i, want := range objs {
		ev := <-w.ResultChan()
		got, ok := ev.Object.(*metav1.PartialObjectMetadata)
		if !ok {
			t.Fatalf("watch event %d: %T %v", i, ev.Object, ev.Object)
		}
		if got.ManagedFields != nil || got.Labels != nil {
			t.Errorf("watch event %d: kept managed fields or labels (not decoded by the bridge's decoder?)", i)
		}
		wantOwners := want.OwnerReferences
		if got.Name != want.Name || got.UID != want.UID || got.ResourceVersion != want.ResourceVersion || got.Generation != want.Generation ||
			!got.DeletionTimestamp.Equal(want.DeletionTimestamp) || len(got.OwnerReferences) != len(wantOwners) ||
			(len(wantOwners) > 0 && (got.OwnerReferences[0].UID != wantOwners[0].UID || *got.OwnerReferences[0].Controller != true)) {
			t.Errorf("watch event %d: %+v, want %+v", i, got.ObjectMeta, want.ObjectMeta)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if len(requests) != 2 {
		t.Fatalf("%d requests", len(requests))
	}
	for i, want := range []struct{ path, accept, query string }{
		{"/api/v1/namespaces/ns/pods", acceptMetadataList, "labelSelector=app%3Dweb&limit=500"},
		{"/apis/apps/v1/replicasets", acceptMetadata, "resourceVersion=6&watch=true"},
	} {
		r := requests[i]
		if r.URL.Path != want.path || r.Header.Get("Accept") != want.accept || r.URL.RawQuery != want.query {
			t.Errorf("request %d: %s?%s Accept %q, want %s?%s Accept %q", i, r.URL.Path, r.URL.RawQuery, r.Header.Get("Accept"), want.path, want.query, want.accept)
		}
	}
	for _, m := range []func() error{
		func() error { _, err := pods.Get(ctx, "x", metav1.GetOptions{}); return err },
		func() error { return pods.Delete(ctx, "x", metav1.DeleteOptions{}) },
	} {
		if err := m(); err == nil || !strings.Contains(err.Error(), "only lists and watches") {
			t.Errorf("a write or get: %v", err)
		}
	}
}
