package watch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	restwatch "k8s.io/client-go/rest/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// benchStorm is a rollout storm as the Event informer hands it over:
// deployments × replicas pods replaced at once, kubelet events per pod, every
// tenth pod crash-looping (one BackOff Event updated to counts 1..5). Each
// element is one Event update that yields exactly one occurrence. The
// objects the events are about are loaded into cache (through Upsert).
func benchStorm(deployments, replicas int, cache *ObjectCache) []*eventsv1.Event {
	base := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	uid := func(kind, n int) string { return fmt.Sprintf("%08x-1111-4000-8000-%012x", kind, n) }
	var out []*eventsv1.Event
	evN := 0
	add := func(reason, note, controller, host string, regarding corev1.ObjectReference, at time.Time, count int32, evUID int) {
		if evUID == 0 {
			evN++
			evUID = evN
		}
		typ := corev1.EventTypeNormal
		if reason == "BackOff" {
			typ = corev1.EventTypeWarning
		}
		ev := &eventsv1.Event{
			ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("%s.%016x", regarding.Name, 0x17f0000000000000+uint64(evUID)), Namespace: regarding.Namespace,
				UID: types.UID(fmt.Sprintf("%08x-0000-4000-8000-%012x", 0xe0, evUID)), ResourceVersion: fmt.Sprint(100 + len(out)),
				CreationTimestamp: metav1.NewTime(at.Truncate(time.Second)),
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: controller, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
					Time: &metav1.Time{Time: at}, FieldsType: "FieldsV1",
					FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:count":{},"f:firstTimestamp":{},"f:involvedObject":{},"f:lastTimestamp":{},"f:message":{},"f:reason":{},"f:reportingComponent":{},"f:reportingInstance":{},"f:source":{"f:component":{},"f:host":{}},"f:type":{}}`)}}},
			},
			Reason: reason, Note: note, Type: typ, Regarding: regarding,
			ReportingController: controller, ReportingInstance: host,
			DeprecatedSource:         corev1.EventSource{Component: controller, Host: host},
			DeprecatedFirstTimestamp: metav1.NewTime(at.Truncate(time.Second)),
			DeprecatedLastTimestamp:  metav1.NewTime(at.Truncate(time.Second)),
			DeprecatedCount:          count,
		}
		if controller == "default-scheduler" {
			ev.EventTime = metav1.NewMicroTime(at)
			ev.DeprecatedSource = corev1.EventSource{}
			ev.DeprecatedFirstTimestamp, ev.DeprecatedLastTimestamp, ev.DeprecatedCount = metav1.Time{}, metav1.Time{}, 0
		}
		out = append(out, ev)
	}
	for d := 0; d < deployments; d++ {
		ns, dn := fmt.Sprintf("team-%02d", d%50), fmt.Sprintf("app-%04d", d)
		dep := &Object{UID: uid(1, d), APIVersion: "apps/v1", Kind: "Deployment", Namespace: ns, Name: dn, Generation: 2}
		rs := &Object{UID: uid(2, d), APIVersion: "apps/v1", Kind: "ReplicaSet", Namespace: ns, Name: dn + "-7bc89f5d4",
			Owners: []OwnerRef{{APIVersion: "apps/v1", Kind: "Deployment", Name: dn, UID: dep.UID, Controller: true}}}
		cache.Upsert(dep)
		cache.Upsert(rs)
		ref := func(o *Object) corev1.ObjectReference {
			return corev1.ObjectReference{Kind: o.Kind, APIVersion: o.APIVersion, Namespace: o.Namespace, Name: o.Name, UID: types.UID(o.UID), ResourceVersion: "48213"}
		}
		t := base.Add(time.Duration(d) * 20 * time.Millisecond)
		add("ScalingReplicaSet", fmt.Sprintf("Scaled up replica set %s from 0 to %d", rs.Name, replicas), "deployment-controller", "", ref(dep), t, 1, 0)
		for r := 0; r < replicas; r++ {
			node := fmt.Sprintf("node-%03d", (d*replicas+r)%300)
			pod := &Object{UID: uid(4, d*replicas+r), APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: fmt.Sprintf("%s-%05d", rs.Name, r),
				Owners: []OwnerRef{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: true}}}
			cache.Upsert(pod)
			pr := ref(pod)
			pr.FieldPath = "spec.containers{app}"
			add("SuccessfulCreate", "Created pod: "+pod.Name, "replicaset-controller", "", ref(rs), t.Add(10*time.Millisecond), 1, 0)
			add("Scheduled", fmt.Sprintf("Successfully assigned %s/%s to %s", ns, pod.Name, node), "default-scheduler", "", ref(pod), t.Add(20*time.Millisecond), 1, 0)
			for i, reason := range []string{"Pulling", "Pulled", "Created", "Started"} {
				add(reason, reason+` container app, image "registry.example/app:2.0"`, "kubelet", node, pr, t.Add(time.Duration(200+150*i)*time.Millisecond), 1, 0)
			}
			if r%10 == 3 {
				evN++
				id := evN
				for c := int32(1); c <= 5; c++ {
					add("BackOff", "Back-off restarting failed container app in pod "+pod.Name, "kubelet", node, pr, t.Add(time.Duration(500*c)*time.Millisecond), c, id)
				}
			}
		}
	}
	return out
}

// benchCodec is the decoder stack client-go's REST client builds for a watch
// of events.k8s.io/v1 (rest.Request.newStreamWatcher) for a media type.
func benchWatchDecoder(b *testing.B, mediaType string, body io.Reader) *restwatch.Decoder {
	b.Helper()
	neg := k8sruntime.NewClientNegotiator(rest.CodecFactoryForGeneratedClient(scheme.Scheme, scheme.Codecs).WithoutConversion(), eventsv1.SchemeGroupVersion)
	objDec, streamSer, framer, err := neg.StreamDecoder(mediaType, nil)
	if err != nil {
		b.Fatal(err)
	}
	return restwatch.NewDecoder(streaming.NewDecoder(framer.NewFrameReader(io.NopCloser(body)), streamSer), objDec)
}

// benchWatchStream encodes events as the API server writes a watch response
// in mediaType: framed metav1.WatchEvents wrapping the encoded objects.
func benchWatchStream(b *testing.B, mediaType string, events []*eventsv1.Event) []byte {
	b.Helper()
	info, ok := k8sruntime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), mediaType)
	if !ok || info.StreamSerializer == nil {
		b.Fatalf("no stream serializer for %s", mediaType)
	}
	enc := scheme.Codecs.EncoderForVersion(info.Serializer, eventsv1.SchemeGroupVersion)
	var out bytes.Buffer
	fw := info.StreamSerializer.Framer.NewFrameWriter(&out)
	var obj, frame bytes.Buffer
	for i, ev := range events {
		obj.Reset()
		if err := enc.Encode(ev, &obj); err != nil {
			b.Fatal(err)
		}
		typ := "ADDED"
		if i > 0 && events[i-1].UID == ev.UID {
			typ = "MODIFIED"
		}
		frame.Reset()
		we := &metav1.WatchEvent{Type: typ, Object: k8sruntime.RawExtension{Raw: bytes.Clone(obj.Bytes())}}
		if err := info.StreamSerializer.Serializer.Encode(we, &frame); err != nil {
			b.Fatal(err)
		}
		if _, err := fw.Write(frame.Bytes()); err != nil {
			b.Fatal(err)
		}
	}
	return out.Bytes()
}

// BenchmarkWatchDecode is client-go's decoding of one watch event of an
// events.k8s.io/v1 Event (with the managed fields the API server adds), as
// the Event informer's reflector does it: framing, the WatchEvent envelope,
// the embedded object; then slimEvent. One op is one Event. protobuf is what
// the daemon's clientset negotiates (client-go's generated clients prefer it
// for built-in kinds); json is client-go's JSON decoder, for comparison.
func BenchmarkWatchDecode(b *testing.B) {
	events := benchStorm(20, 10, mustCache(b))
	for _, mt := range []string{k8sruntime.ContentTypeProtobuf, k8sruntime.ContentTypeJSON} {
		name := "json"
		if mt == k8sruntime.ContentTypeProtobuf {
			name = "protobuf"
		}
		b.Run(name, func(b *testing.B) {
			stream := benchWatchStream(b, mt, events)
			defer b.ReportMetric(float64(len(stream))/float64(len(events)), "wire-B/event")
			r := bytes.NewReader(stream)
			dec := benchWatchDecoder(b, mt, r)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%len(events) == 0 && i > 0 {
					b.StopTimer()
					r.Reset(stream)
					dec = benchWatchDecoder(b, mt, r)
					b.StartTimer()
				}
				_, obj, err := dec.Decode()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := slimEvent(obj); err != nil {
					b.Fatal(err)
				}
				if obj.(*eventsv1.Event).UID != events[i%len(events)].UID {
					b.Fatal("decoded the wrong event")
				}
			}
		})
	}
}

func mustCache(b *testing.B) *ObjectCache {
	c, err := NewObjectCache(CacheOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkEventSourceProcess is the watch worker's part of the hot path for
// one occurrence: EventSource.process with dedup, convert.FromEvent, the
// checkpoint tracker, the ack context and the owner chain (Pod → ReplicaSet →
// Deployment) from a loaded ObjectCache, handing to a handler that only acks.
// One op is one Event update yielding one occurrence.
func BenchmarkEventSourceProcess(b *testing.B) {
	objects := mustCache(b)
	events := benchStorm(200, 10, objects)
	ctx := context.Background()
	var handled int
	handler := func(ctx context.Context, _ *eventsv1.Event, o *convert.Occurrence) error {
		handled++
		DoneFromContext(ctx)()
		return nil
	}
	newSource := func() *EventSource {
		s, err := NewEventSource(nil, objects, handler, SourceOptions{Tracker: NewTracker(nil, 50000)})
		if err != nil {
			b.Fatal(err)
		}
		s.start = time.Now()
		return s
	}
	s := newSource()
	at := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%len(events) == 0 && i > 0 {
			s = newSource() // the same Event UIDs again: start over
		}
		if held := s.process(ctx, observed{ev: events[i%len(events)], at: at}, nil); len(held) > 0 {
			b.Fatal("occurrence held: owner missing")
		}
	}
	b.StopTimer()
	if handled != b.N {
		b.Fatalf("handled %d occurrences, want %d", handled, b.N)
	}
}

func benchHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// benchMetadataJSON appends to buf an object's metadata as a metadata-only
// watch or list returns it (PartialObjectMetadata), with the labels,
// annotations and managed fields a controller-made object carries.
func benchMetadataJSON(buf []byte, apiVersion, ns, name, generateName, uid string, gen int64, owner string, rv int) []byte {
	buf = fmt.Appendf(buf, `{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":%q,`, name)
	if generateName != "" {
		buf = fmt.Appendf(buf, `"generateName":%q,`, generateName)
	}
	buf = fmt.Appendf(buf, `"namespace":%q,"uid":%q,"resourceVersion":"%d",`, ns, uid, rv)
	if gen > 0 {
		buf = fmt.Appendf(buf, `"generation":%d,`, gen)
	}
	buf = fmt.Appendf(buf, `"creationTimestamp":"2026-11-01T09:30:00Z","labels":{"app.kubernetes.io/name":%q,"pod-template-hash":"7bc89f5d4"},`+
		`"annotations":{"deployment.kubernetes.io/revision":"2"},`, name[:min(len(name), 8)])
	if owner != "" {
		buf = append(buf, `"ownerReferences":[`...)
		buf = append(buf, owner...)
		buf = append(buf, `],`...)
	}
	buf = fmt.Appendf(buf, `"managedFields":[{"manager":"kube-controller-manager","operation":"Update","apiVersion":%q,"time":"2026-11-01T09:30:00Z",`+
		`"fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:app.kubernetes.io/name":{}}},"f:spec":{"f:replicas":{}}}}]}}`, apiVersion)
	return buf
}

// BenchmarkObjectCacheMemory measures the heap per tracked object with
// (the daemon now keeps only the ObjectCache: its metadata reflectors' store
// is the cache itself, so B/obj-objectcache-alone is the daemon's figure;
// the informer-store figures show what an informer would add)
// 100,000 pods, their 20,000 ReplicaSets (current and previous revision) and
// 10,000 Deployments: each object decoded from metadata JSON, slimmed by
// without managed fields (an informer's usual transform), stored in an informer store
// (cache.Indexer keyed namespace/name, as the metadata informers hold it) and
// fed to the ObjectCache through observe (the informer handler's path, which
// calls Upsert). Reported: the informer store's copy per object, the
// ObjectCache's own part (sharing strings with the store's copy, as in the
// daemon), both together, and the ObjectCache alone if the store were gone.
func BenchmarkObjectCacheMemory(b *testing.B) {
	const deployments, replicas = 10000, 10
	kinds := map[string]watchedKind{}
	for _, k := range WatchedKinds {
		kinds[k.kind] = k
	}
	// each calls f with every object's metadata JSON.
	each := func(f func(kind string, data []byte)) {
		var buf []byte
		for d := 0; d < deployments; d++ {
			ns, dn := fmt.Sprintf("team-%02d", d%50), fmt.Sprintf("app-%05d", d)
			depUID := fmt.Sprintf("%08x-1111-4000-8000-%012x", 1, d)
			buf = benchMetadataJSON(buf[:0], "apps/v1", ns, dn, "", depUID, 2, "", 1000)
			f("Deployment", buf)
			rsOwner := fmt.Sprintf(`{"apiVersion":"apps/v1","kind":"Deployment","name":%q,"uid":%q,"controller":true,"blockOwnerDeletion":true}`, dn, depUID)
			for rev := 0; rev < 2; rev++ {
				rsName := fmt.Sprintf("%s-%09x", dn, 0x7bc89f5d4+rev)
				rsUID := fmt.Sprintf("%08x-1111-4000-8000-%012x", 2+rev, d)
				buf = benchMetadataJSON(buf[:0], "apps/v1", ns, rsName, "", rsUID, int64(1+rev), rsOwner, 1000)
				f("ReplicaSet", buf)
				if rev == 1 {
					continue // the previous revision, scaled to 0
				}
				podOwner := fmt.Sprintf(`{"apiVersion":"apps/v1","kind":"ReplicaSet","name":%q,"uid":%q,"controller":true,"blockOwnerDeletion":true}`, rsName, rsUID)
				for r := 0; r < replicas; r++ {
					podUID := fmt.Sprintf("%08x-1111-4000-8000-%012x", 4, d*replicas+r)
					buf = benchMetadataJSON(buf[:0], "v1", ns, fmt.Sprintf("%s-%05d", rsName, r), rsName+"-", podUID, 0, podOwner, 1000)
					f("Pod", buf)
				}
			}
		}
	}
	decode := func(data []byte) *metav1.PartialObjectMetadata {
		m := &metav1.PartialObjectMetadata{}
		if err := json.Unmarshal(data, m); err != nil {
			b.Fatal(err)
		}
		m.ManagedFields = nil // what an informer's transform would drop
		return m
	}
	var perStore, perCache, perBoth, perCacheAlone, perDaemon float64
	var objects int
	for b.Loop() {
		before := benchHeap()
		store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
		c := mustCache(b)
		objects = 0
		each(func(kind string, data []byte) {
			m := decode(data)
			if err := store.Add(m); err != nil {
				b.Fatal(err)
			}
			c.observe(kinds[kind], m)
			objects++
		})
		n := float64(objects)
		perBoth = float64(benchHeap()-before) / n
		if c.Len() != objects {
			b.Fatalf("cache holds %d objects, want %d", c.Len(), objects)
		}
		// The ObjectCache alone (if no informer store shared its strings):
		// a copy with every string cloned.
		c2 := mustCache(b)
		for _, o := range c.objects() {
			cp := &Object{UID: strings.Clone(o.UID), APIVersion: o.APIVersion, Kind: o.Kind, Namespace: strings.Clone(o.Namespace),
				Name: strings.Clone(o.Name), Generation: o.Generation, Traceparent: o.Traceparent}
			for _, r := range o.Owners {
				cp.Owners = append(cp.Owners, OwnerRef{APIVersion: strings.Clone(r.APIVersion), Kind: strings.Clone(r.Kind),
					Name: strings.Clone(r.Name), UID: strings.Clone(r.UID), Controller: r.Controller})
			}
			c2.Upsert(cp)
		}
		runtime.KeepAlive(c)
		c = nil
		withC2 := benchHeap()
		runtime.KeepAlive(store)
		store = nil
		perCacheAlone = float64(benchHeap()-before) / n
		perStore = float64(withC2-before)/n - perCacheAlone
		perCache = perBoth - perStore
		runtime.KeepAlive(c2)
		c2 = nil
		// As the daemon keeps them: decoded, observed, nothing else held.
		before3 := benchHeap()
		c3 := mustCache(b)
		each(func(kind string, data []byte) { c3.observe(kinds[kind], decode(data)) })
		perDaemon = float64(benchHeap()-before3) / n
		runtime.KeepAlive(c3)
	}
	b.ReportMetric(perDaemon, "B/obj-daemon")
	b.ReportMetric(float64(objects), "objects")
	b.ReportMetric(perStore, "B/obj-informer-store")
	b.ReportMetric(perCache, "B/obj-objectcache")
	b.ReportMetric(perBoth, "B/obj-total")
	b.ReportMetric(perCacheAlone, "B/obj-objectcache-alone")
}

// BenchmarkEventStoreMemory measures the heap the bridge keeps per live
// Event: the Event reflector's store and dedup (one table entry: UID,
// resourceVersion, highest count emitted) and the checkpoint tracker's entry,
// after the Event's occurrence was processed and acked. The API server keeps
// Events for an hour (--event-ttl), so the bridge holds rate × 1h of them;
// the Events themselves are not kept (an informer would keep each whole,
// ~1.2 KB). The tracker's entries of Events done with count 1 go at the
// next checkpoint its watermark passes them (not counted out here).
func BenchmarkEventStoreMemory(b *testing.B) {
	objects := mustCache(b)
	all := benchStorm(200, 10, objects)
	// One update per Event (the last).
	var events []*eventsv1.Event
	for i, ev := range all {
		if i+1 < len(all) && all[i+1].UID == ev.UID {
			continue
		}
		events = append(events, ev)
	}
	stream := benchWatchStream(b, k8sruntime.ContentTypeProtobuf, events)
	handler := func(ctx context.Context, _ *eventsv1.Event, _ *convert.Occurrence) error {
		DoneFromContext(ctx)()
		return nil
	}
	var perEvent float64
	for b.Loop() {
		before := benchHeap()
		s, err := NewEventSource(nil, objects, handler, SourceOptions{Tracker: NewTracker(nil, 1<<30)})
		if err != nil {
			b.Fatal(err)
		}
		s.start = time.Now()
		st := newEventStore(context.Background(), s)
		dec := benchWatchDecoder(b, k8sruntime.ContentTypeProtobuf, bytes.NewReader(stream))
		for range events {
			_, obj, err := dec.Decode()
			if err != nil {
				b.Fatal(err)
			}
			changed, ok := st.remember(obj)
			if !changed || !ok {
				b.Fatal("a new Event was not remembered as one")
			}
			slim, _ := slimEvent(obj)
			s.process(context.Background(), observed{ev: slim.(*eventsv1.Event), at: time.Now()}, nil)
		}
		dec = nil
		perEvent = float64(benchHeap()-before) / float64(len(events))
		if st.Len() != len(events) {
			b.Fatalf("%d Events known, want %d", st.Len(), len(events))
		}
		runtime.KeepAlive(st)
		runtime.KeepAlive(s)
	}
	b.ReportMetric(float64(len(events)), "events")
	b.ReportMetric(perEvent, "B/event")
}
