package kube

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// request is what the fake API server saw.
type request struct {
	method, path, query, accept string
	body                        map[string]any
}

// fakeAPI answers every request with the JSON body its handler returns (the
// client accepts JSON after protobuf) and records the requests.
type fakeAPI struct {
	mu   sync.Mutex
	reqs []request
}

func (f *fakeAPI) last(t *testing.T) request {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("no request")
	}
	return f.reqs[len(f.reqs)-1]
}

func newFake(t *testing.T, answer func(r *http.Request) (int, any)) (*Client, *fakeAPI) {
	t.Helper()
	f := &fakeAPI{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := request{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, accept: r.Header.Get("Accept")}
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			if err := json.Unmarshal(b, &req.body); err != nil {
				t.Errorf("%s %s: body not JSON: %v", r.Method, r.URL.Path, err)
			}
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		f.mu.Unlock()
		code, body := answer(r)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(srv.Close)
	// JSON bodies, so that the test can read them.
	cfg := &rest.Config{Host: srv.URL, QPS: 100, Burst: 10}
	cfg.ContentType = "application/json"
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, f
}

func TestClientRequests(t *testing.T) {
	ctx := context.Background()
	c, f := newFake(t, func(r *http.Request) (int, any) {
		switch {
		case r.URL.Path == "/apis/events.k8s.io/v1":
			return 404, metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: "Failure", Reason: metav1.StatusReasonNotFound, Code: 404}
		case strings.HasSuffix(r.URL.Path, "/namespaces/kube-system"):
			return 200, corev1.Namespace{TypeMeta: metav1.TypeMeta{Kind: "Namespace", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: "kube-system", UID: "cluster-uid"}}
		case strings.HasSuffix(r.URL.Path, "/events") && r.URL.Query().Get("watch") == "":
			if strings.HasPrefix(r.URL.Path, "/apis/") {
				return 200, eventsv1.EventList{TypeMeta: metav1.TypeMeta{Kind: "EventList", APIVersion: "events.k8s.io/v1"}, ListMeta: metav1.ListMeta{ResourceVersion: "7"}}
			}
			return 200, corev1.EventList{TypeMeta: metav1.TypeMeta{Kind: "EventList", APIVersion: "v1"}, ListMeta: metav1.ListMeta{ResourceVersion: "8"}}
		case strings.Contains(r.URL.Path, "/configmaps") && r.Method == "PUT":
			return 200, metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"}, ObjectMeta: metav1.ObjectMeta{Name: "cp", Namespace: "ns", ResourceVersion: "3"}}
		case strings.Contains(r.URL.Path, "/configmaps"):
			return 200, corev1.ConfigMap{TypeMeta: metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: "cp", Namespace: "ns", ResourceVersion: "3"}}
		case strings.Contains(r.URL.Path, "/leases"):
			return 200, coordinationv1.Lease{TypeMeta: metav1.TypeMeta{Kind: "Lease", APIVersion: "coordination.k8s.io/v1"}, ObjectMeta: metav1.ObjectMeta{Name: "l", Namespace: "ns", ResourceVersion: "4"}}
		}
		return 200, map[string]any{}
	})

	if err := c.ServesGroupVersion(ctx, EventsV1); !apierrors.IsNotFound(err) {
		t.Errorf("ServesGroupVersion(events.k8s.io/v1) = %v, want a NotFound error", err)
	}
	if err := c.ServesGroupVersion(ctx, CoreV1); err != nil {
		t.Errorf("ServesGroupVersion(v1) = %v", err)
	}
	if got := f.last(t).path; got != "/api/v1" {
		t.Errorf("core discovery path %q", got)
	}

	ns, err := c.GetNamespace(ctx, "kube-system")
	if err != nil || ns.UID != "cluster-uid" {
		t.Fatalf("GetNamespace = %v, %v", ns, err)
	}
	if r := f.last(t); r.method != "GET" || r.path != "/api/v1/namespaces/kube-system" || !strings.HasPrefix(r.accept, "application/json") {
		t.Errorf("GetNamespace sent %+v", r)
	}

	list, err := c.ListEvents(ctx, EventsV1, "ns", metav1.ListOptions{FieldSelector: "metadata.namespace!=x", ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := list.(*eventsv1.EventList); !ok || l.ResourceVersion != "7" {
		t.Errorf("ListEvents(events.k8s.io/v1) = %#v", list)
	}
	if r := f.last(t); r.path != "/apis/events.k8s.io/v1/namespaces/ns/events" || !strings.Contains(r.query, "fieldSelector=metadata.namespace%21%3Dx") || !strings.Contains(r.query, "resourceVersion=0") {
		t.Errorf("ListEvents sent %+v", r)
	}
	list, err = c.ListEvents(ctx, CoreV1, "", metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := list.(*corev1.EventList); !ok || l.ResourceVersion != "8" {
		t.Errorf("ListEvents(v1) = %#v", list)
	}
	if r := f.last(t); r.path != "/api/v1/events" {
		t.Errorf("ListEvents(v1, all namespaces) sent %+v", r)
	}
	if _, err := c.ListEvents(ctx, "v2", "", metav1.ListOptions{}); err == nil {
		t.Error("ListEvents(v2): no error")
	}

	w, err := c.WatchEvents(ctx, EventsV1, "", metav1.ListOptions{ResourceVersion: "7", AllowWatchBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	w.Stop()
	if r := f.last(t); r.path != "/apis/events.k8s.io/v1/events" || !strings.Contains(r.query, "watch=true") || !strings.Contains(r.query, "allowWatchBookmarks=true") {
		t.Errorf("WatchEvents sent %+v", r)
	}

	if _, err := c.GetConfigMap(ctx, "ns", "cp"); err != nil {
		t.Fatal(err)
	}
	if r := f.last(t); r.method != "GET" || r.path != "/api/v1/namespaces/ns/configmaps/cp" {
		t.Errorf("GetConfigMap sent %+v", r)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cp", Namespace: "ns"}, BinaryData: map[string][]byte{"k": []byte("v")}}
	if _, err := c.CreateConfigMap(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if r := f.last(t); r.method != "POST" || r.path != "/api/v1/namespaces/ns/configmaps" || r.body["binaryData"] == nil {
		t.Errorf("CreateConfigMap sent %+v", r)
	}
	got, err := c.UpdateConfigMapMeta(ctx, cm)
	if err != nil || got.ResourceVersion != "3" {
		t.Fatalf("UpdateConfigMapMeta = %v, %v", got, err)
	}
	if r := f.last(t); r.method != "PUT" || r.path != "/api/v1/namespaces/ns/configmaps/cp" || r.body["binaryData"] == nil || r.accept != acceptMetadataOnlyJSON {
		t.Errorf("UpdateConfigMapMeta sent %+v", r)
	}

	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l", Namespace: "ns"}}
	if _, err := c.CreateLease(ctx, l); err != nil {
		t.Fatal(err)
	}
	if r := f.last(t); r.method != "POST" || r.path != "/apis/coordination.k8s.io/v1/namespaces/ns/leases" {
		t.Errorf("CreateLease sent %+v", r)
	}
	if _, err := c.UpdateLease(ctx, l); err != nil {
		t.Fatal(err)
	}
	if r := f.last(t); r.method != "PUT" || r.path != "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l" {
		t.Errorf("UpdateLease sent %+v", r)
	}
	if _, err := c.GetLease(ctx, "ns", "l"); err != nil {
		t.Fatal(err)
	}
}

// Without a content type of their own, requests ask for protobuf first, as
// client-go's typed clients do for built-in kinds.
func TestClientPrefersProtobuf(t *testing.T) {
	f := &fakeAPI{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.reqs = append(f.reqs, request{path: r.URL.Path, accept: r.Header.Get("Accept")})
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"kube-system","uid":"u"}}`))
	}))
	defer srv.Close()
	c, err := New(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetNamespace(context.Background(), "kube-system"); err != nil {
		t.Fatal(err)
	}
	if got := f.last(t).accept; got != "application/vnd.kubernetes.protobuf,application/json" {
		t.Errorf("Accept %q, want protobuf first", got)
	}
}

// With EventsReadDelay the Events API clients (both APIs) have their own
// connection (coalescing its reads, HTTP/1.1); the metadata client of an
// object cache with few watches has its own (HTTP/1.1) in any case;
// everything else shares the other one (HTTP/2 with a server that speaks
// it).
func TestClientEventsConnection(t *testing.T) {
	for _, delay := range []time.Duration{0, 20 * time.Millisecond} {
		var mu sync.Mutex
		remote := map[string]string{} // path → the client's address
		proto := map[string]int{}     // path → HTTP major version
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			remote[r.URL.Path] = r.RemoteAddr
			proto[r.URL.Path] = r.ProtoMajor
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			switch {
			case strings.HasSuffix(r.URL.Path, "/pods"):
				_ = json.NewEncoder(w).Encode(metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: "meta.k8s.io/v1"}})
			case strings.HasPrefix(r.URL.Path, "/apis/"):
				_ = json.NewEncoder(w).Encode(eventsv1.EventList{TypeMeta: metav1.TypeMeta{Kind: "EventList", APIVersion: "events.k8s.io/v1"}})
			case strings.HasSuffix(r.URL.Path, "/events"):
				_ = json.NewEncoder(w).Encode(corev1.EventList{TypeMeta: metav1.TypeMeta{Kind: "EventList", APIVersion: "v1"}})
			default:
				_ = json.NewEncoder(w).Encode(corev1.Namespace{TypeMeta: metav1.TypeMeta{Kind: "Namespace", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}})
			}
		}))
		srv.EnableHTTP2 = true
		srv.StartTLS()
		cfg := &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{
			CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})}}
		cfg.ContentType = "application/json"
		c, err := NewWithOptions(cfg, Options{EventsReadDelay: delay})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if _, err := c.GetNamespace(ctx, "kube-system"); err != nil {
			t.Fatal(err)
		}
		for _, api := range []string{EventsV1, CoreV1} {
			if _, err := c.ListEvents(ctx, api, "", metav1.ListOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		// An object cache of 8 watches streams them like the Events; one of
		// 17 multiplexes them on the shared connection.
		pods := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
		for ns, watches := range map[string]int{"few": MaxStreamedWatches / 2, "many": MaxStreamedWatches + 1} {
			if _, err := c.MetadataFor(watches).Resource(pods).Namespace(ns).List(ctx, metav1.ListOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		srv.Close()
		ns, ev, core := remote["/api/v1/namespaces/kube-system"], remote["/apis/events.k8s.io/v1/events"], remote["/api/v1/events"]
		if few, many := remote["/api/v1/namespaces/few/pods"], remote["/api/v1/namespaces/many/pods"]; few == ns || few == ev || many != ns {
			t.Errorf("delay %s: object lists for few watches from %s, for many from %s; want a connection of their own and %s", delay, few, many, ns)
		}
		if ev != core {
			t.Errorf("delay %s: the two Events APIs came from %s and %s, want one connection", delay, ev, core)
		}
		if separate := ns != ev; separate != (delay > 0) {
			t.Errorf("delay %s: namespace GET from %s, Events from %s: separate connections %v, want %v", delay, ns, ev, separate, delay > 0)
		}
		wantEvents := 2
		if delay > 0 {
			wantEvents = 1
		}
		for path, want := range map[string]int{"/api/v1/namespaces/kube-system": 2, "/apis/events.k8s.io/v1/events": wantEvents, "/api/v1/events": wantEvents,
			"/api/v1/namespaces/few/pods": 1, "/api/v1/namespaces/many/pods": 2} {
			if proto[path] != want {
				t.Errorf("delay %s: %s over HTTP/%d, want HTTP/%d", delay, path, proto[path], want)
			}
		}
	}
	if _, err := NewWithOptions(&rest.Config{Host: "http://x"}, Options{EventsReadDelay: -time.Second}); err == nil {
		t.Error("a negative EventsReadDelay was accepted")
	}
}
