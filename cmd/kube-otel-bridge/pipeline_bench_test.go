package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"reflect"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	watchapi "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/otlp"
	"github.com/kube-otel-bridge/kube-otel-bridge/kube"
	"github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

// BenchmarkPipeline is the daemon's whole hot path on one core, one op = one
// occurrence:
//
//	events.k8s.io/v1 watch stream (protobuf or JSON, served in memory by a fake
//	http.RoundTripper: no socket) → client-go's REST watch decoder with the
//	bridge's kube.Client codecs (watch.EventDecoder for protobuf Events) →
//	reflector → its store (eventStore: UID and resourceVersion per Event) →
//	EventSource queue →
//	dedup / convert.FromEvent / checkpoint tracker → owner chain from a loaded
//	ObjectCache → causality Engine.Observe → TraceSink and LogSink (the
//	production sinks, batching and acks) → the production OTLP/gRPC exporters
//	(the direct OTLP protobuf encoders of exporter/otlp) → the gRPC
//	exporter's Invoke of each encoded request.
//
// Not included: the sockets (the watch body is read from memory; the gRPC
// export is answered by a client interceptor right after marshalling, so no
// HTTP/2 framing or write), TLS, gzip, and the episode-closing ticker (all
// open episodes are flushed at the end of each run instead, inside the timed
// region, so their root, object and controller-event spans are counted).
//
// The stream is a rollout storm: 1,000 Deployments × 10 replicas rolling at
// once (scale up/down, create/delete per pod, Scheduled, Pulling, Pulled,
// Created, Started and Killing per pod, every tenth pod crash-looping with
// five BackOff counts of one Event), 87,000 occurrences per pass; longer runs
// replay it with new Event UIDs. GOMAXPROCS is 1 during the benchmark.
//
// Sub-benchmarks: protobuf is the daemon as it is (client-go's generated
// clients prefer application/vnd.kubernetes.protobuf for built-in kinds such
// as Events, and the fake API server answers in the media type asked for);
// json is the same with the clientset forced to application/json, i.e. with
// client-go's JSON decoder on the hot path.
func BenchmarkPipeline(b *testing.B) {
	fx := loadStormFixture(b)
	for _, mt := range []string{k8sruntime.ContentTypeProtobuf, k8sruntime.ContentTypeJSON} {
		name := "json"
		if mt == k8sruntime.ContentTypeProtobuf {
			name = "protobuf"
		}
		b.Run(name, func(b *testing.B) {
			enc, err := fx.encoding(mt)
			if err != nil {
				b.Fatal(err)
			}
			benchPipeline(b, fx, enc, mt)
		})
	}
}

func benchPipeline(b *testing.B, fx *stormFixture, enc *stormEncoding, mediaType string) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := slog.New(slog.DiscardHandler)

	var wire atomic.Int64 // encoded OTLP request bytes
	cfg := benchOTLPConfig(&wire)
	lexp, err := otlp.NewLogExporter(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	texp, err := otlp.NewTraceExporter(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	res, err := bridgeResource("", "bench", "00000000-0000-0000-0000-000000000000")
	if err != nil {
		b.Fatal(err)
	}
	// The same wiring as runPipeline.
	logs := otlp.NewLogSink(lexp, res, cfg, logger)
	traces := otlp.NewTraceSink(texp, res, cfg, logger)
	engine, err := causality.New(causality.Config{ClusterName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	p := &pipeline{engine: engine, objects: fx.objects}
	p.emitLog = func(ctx context.Context, occ *convert.Occurrence, ack func()) error {
		return logs.EmitOccurrence(ctx, occ, ack)
	}
	p.emitSpan = func(ctx context.Context, s causality.Span, ack func()) error {
		return traces.Emit(ctx, s, ack)
	}

	stream := enc.stream(b.N)
	var handled atomic.Int64
	allHandled := make(chan struct{})
	handler := func(ctx context.Context, _ *eventsv1.Event, occ *convert.Occurrence) error {
		err := p.occurrence(ctx, occ)
		if handled.Add(1) == int64(b.N) {
			close(allHandled)
		}
		return err
	}
	// protobuf: the client as the daemon makes it (it prefers protobuf,
	// like client-go's typed clients for built-in kinds); json: forced to
	// JSON.
	rc := &rest.Config{Host: "http://bench.invalid", Transport: stream, QPS: -1}
	if mediaType == k8sruntime.ContentTypeJSON {
		rc.ContentType = k8sruntime.ContentTypeJSON
		rc.AcceptContentTypes = k8sruntime.ContentTypeJSON
	}
	client, err := kube.New(rc)
	if err != nil {
		b.Fatal(err)
	}
	src, err := watch.NewEventSource(client, fx.objects, handler, watch.SourceOptions{
		API:     "events.k8s.io/v1",
		Convert: convert.Options{MaxMessageBytes: convert.DefaultMaxMessageBytes},
		Logger:  logger,
		Tracker: watch.NewTracker(nil, 50000),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := src.Start(ctx); err != nil {
		b.Fatal(err)
	}
	syncCtx, syncCancel := context.WithTimeout(ctx, 30*time.Second)
	defer syncCancel()
	if !src.WaitForSync(syncCtx) {
		b.Fatal("event informer did not sync (was the watch refused? see the fake API server's RoundTrip)")
	}
	runDone := make(chan struct{})
	go func() { defer close(runDone); src.Run(ctx) }()

	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	if f := os.Getenv("KOB_BENCH_CPUPROFILE"); f != "" {
		pf, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	start, cpu0 := time.Now(), benchCPUTime()
	close(stream.start)
	<-allHandled
	if err := p.flush(ctx); err != nil {
		b.Fatal(err)
	}
	if err := errors.Join(traces.ForceFlush(ctx), logs.ForceFlush(ctx)); err != nil {
		b.Fatal(err)
	}
	elapsed, cpu := time.Since(start), benchCPUTime()-cpu0
	b.StopTimer()

	// The machine may be shared: besides wall time (ns/op, occ/s), the
	// process's CPU time (user+system, getrusage), which other processes
	// do not inflate. With GOMAXPROCS=1 both agree on an idle machine.
	n := float64(b.N)
	b.ReportMetric(n/elapsed.Seconds(), "occ/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/occ")
	b.ReportMetric(n/cpu.Seconds(), "occ/cpu-s")
	b.ReportMetric(float64(traces.Stats().Exported)/n, "spans/occ")
	b.ReportMetric(float64(wire.Load())/n, "otlp-B/occ")
	if got := logs.Stats().Exported; got != uint64(b.N) {
		b.Fatalf("%d log records exported, want %d", got, b.N)
	}
	if st := src.Stats(); st.Occurrences != uint64(b.N) || st.Unresolved != 0 {
		b.Fatalf("source stats %+v, want %d occurrences, all resolved", st, b.N)
	}
	cancel()
	<-runDone
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = logs.Shutdown(sctx)
	_ = traces.Shutdown(sctx)
}

// benchCPUTime is the CPU time (user+system) the process used so far.
func benchCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchOTLPConfig makes the production OTLP exporters talk to no collector:
// a client interceptor takes each encoded export request (the bytes gRPC
// would frame and send), counts them and answers OK.
func benchOTLPConfig(wire *atomic.Int64) otlp.Config {
	intercept := func(_ context.Context, method string, req, _ any, _ *grpc.ClientConn, _ grpc.UnaryInvoker, _ ...grpc.CallOption) error {
		wire.Add(int64(reflect.ValueOf(req).Len())) // an otlp.rawRequest ([]byte)
		return nil
	}
	return otlp.Config{Endpoint: "otlp.bench.invalid:4317", Insecure: true,
		DialOptions: []grpc.DialOption{grpc.WithUnaryInterceptor(intercept)}}
}

// ---------------------------------------------------------------------------
// The rollout storm as an events.k8s.io/v1 watch stream.

type stormFixture struct {
	objects *watch.ObjectCache
	events  []*eventsv1.Event // the storm's Event updates, in order
	mu      sync.Mutex
	enc     map[string]*stormEncoding // by media type
}

// stormEncoding is the storm as a watch response in one media type.
type stormEncoding struct {
	contentType    string   // of the watch response
	frames         [][]byte // one framed watch event each
	uidOff         []int    // offset of the 4-digit pass marker in the Event UID
	rvOff          []int    // offset of the 12-digit resourceVersion
	bookmark, list []byte   // the initial-events-end bookmark frame; an empty list
}

var (
	stormOnce sync.Once
	storm     *stormFixture
	stormErr  error
)

func loadStormFixture(b *testing.B) *stormFixture {
	b.Helper()
	stormOnce.Do(func() { storm, stormErr = buildStorm(1000, 10) })
	if stormErr != nil {
		b.Fatal(stormErr)
	}
	return storm
}

// stormSpec is one Event update of the storm.
type stormSpec struct {
	typ, reason, note, controller, host, fieldPath, action string
	regarding                                              corev1.ObjectReference
	count                                                  int32
	first, last                                            time.Time
	scheduler                                              bool // an events.k8s.io/v1 event (eventTime), not a core/v1 one
	evName                                                 string
	uidN                                                   int
}

func buildStorm(deployments, replicas int) (*stormFixture, error) {
	objects, err := watch.NewObjectCache(watch.CacheOptions{})
	if err != nil {
		return nil, err
	}
	base := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	objUID := func(kind, n int) string { return fmt.Sprintf("%08x-1111-4000-8000-a0a0%08x", kind, n) }
	evN := 0
	var specs []stormSpec
	add := func(s stormSpec) {
		if s.count == 0 {
			s.count = 1
		}
		if s.typ == "" {
			s.typ = corev1.EventTypeNormal
		}
		if s.last.IsZero() {
			s.last = s.first
		}
		if s.uidN == 0 {
			evN++
			s.uidN = evN
		}
		s.evName = fmt.Sprintf("%s.%016x", s.regarding.Name, 0x17f0abcdef000000+uint64(s.uidN))
		specs = append(specs, s)
	}
	for d := 0; d < deployments; d++ {
		ns := fmt.Sprintf("team-%02d", d%50)
		dn := fmt.Sprintf("app-%04d", d)
		dep := &watch.Object{UID: objUID(1, d), APIVersion: "apps/v1", Kind: "Deployment", Namespace: ns, Name: dn, Generation: 2}
		newRS := &watch.Object{UID: objUID(2, d), APIVersion: "apps/v1", Kind: "ReplicaSet", Namespace: ns, Name: dn + "-7bc89f5d4", Generation: 1,
			Owners: []watch.OwnerRef{{APIVersion: "apps/v1", Kind: "Deployment", Name: dn, UID: dep.UID, Controller: true}}}
		oldRS := &watch.Object{UID: objUID(3, d), APIVersion: "apps/v1", Kind: "ReplicaSet", Namespace: ns, Name: dn + "-6f9c8d7b5", Generation: 3,
			Owners: []watch.OwnerRef{{APIVersion: "apps/v1", Kind: "Deployment", Name: dn, UID: dep.UID, Controller: true}}}
		for _, o := range []*watch.Object{dep, newRS, oldRS} {
			objects.Upsert(o)
		}
		ref := func(o *watch.Object) corev1.ObjectReference {
			return corev1.ObjectReference{Kind: o.Kind, APIVersion: o.APIVersion, Namespace: o.Namespace, Name: o.Name, UID: types.UID(o.UID), ResourceVersion: "48213"}
		}
		t := base.Add(time.Duration(d) * 20 * time.Millisecond)
		ms := func(m int) time.Time { return t.Add(time.Duration(m) * time.Millisecond) }
		add(stormSpec{reason: "ScalingReplicaSet", controller: "deployment-controller", regarding: ref(dep), first: ms(0),
			note: fmt.Sprintf("Scaled up replica set %s from 0 to %d", newRS.Name, replicas)})
		add(stormSpec{reason: "ScalingReplicaSet", controller: "deployment-controller", regarding: ref(dep), first: ms(500),
			note: fmt.Sprintf("Scaled down replica set %s from %d to 0", oldRS.Name, replicas)})
		for r := 0; r < replicas; r++ {
			node := fmt.Sprintf("node-%03d", (d*replicas+r)%300)
			pod := &watch.Object{UID: objUID(4, d*replicas+r), APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: fmt.Sprintf("%s-%s", newRS.Name, podSuffix(d, r, 0)),
				Owners: []watch.OwnerRef{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: newRS.Name, UID: newRS.UID, Controller: true}}}
			old := &watch.Object{UID: objUID(5, d*replicas+r), APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: fmt.Sprintf("%s-%s", oldRS.Name, podSuffix(d, r, 1)),
				Owners: []watch.OwnerRef{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: oldRS.Name, UID: oldRS.UID, Controller: true}}}
			objects.Upsert(pod)
			objects.Upsert(old)
			add(stormSpec{reason: "SuccessfulCreate", controller: "replicaset-controller", regarding: ref(newRS), first: ms(10 + r),
				note: "Created pod: " + pod.Name})
			add(stormSpec{reason: "Scheduled", action: "Binding", controller: "default-scheduler", scheduler: true, regarding: ref(pod), first: ms(20 + r),
				note: fmt.Sprintf("Successfully assigned %s/%s to %s", ns, pod.Name, node)})
			kubelet := func(reason, note string, at int) {
				add(stormSpec{reason: reason, controller: "kubelet", host: node, fieldPath: "spec.containers{app}", regarding: ref(pod), first: ms(at + r), note: note})
			}
			kubelet("Pulling", `Pulling image "registry.example/app:2.0"`, 200)
			kubelet("Pulled", `Successfully pulled image "registry.example/app:2.0" in 512ms (512ms including waiting). Image size: 41235562 bytes.`, 350)
			kubelet("Created", "Created container: app", 500)
			kubelet("Started", "Started container app", 650)
			if r%10 == 3 {
				evN++
				uid := evN
				for c := int32(1); c <= 5; c++ {
					add(stormSpec{typ: corev1.EventTypeWarning, reason: "BackOff", controller: "kubelet", host: node, fieldPath: "spec.containers{app}",
						regarding: ref(pod), count: c, first: ms(1000 + r), last: ms(1000 + 500*int(c) + r), uidN: uid,
						note: "Back-off restarting failed container app in pod " + pod.Name + "_" + ns + "(" + pod.UID + ")"})
				}
			}
			add(stormSpec{reason: "SuccessfulDelete", controller: "replicaset-controller", regarding: ref(oldRS), first: ms(510 + r),
				note: "Deleted pod: " + old.Name})
			add(stormSpec{reason: "Killing", controller: "kubelet", host: node, fieldPath: "spec.containers{app}", regarding: ref(old), first: ms(600 + r),
				note: "Stopping container app"})
		}
	}
	sort.SliceStable(specs, func(i, j int) bool { return specs[i].last.Before(specs[j].last) })

	fx := &stormFixture{objects: objects, enc: map[string]*stormEncoding{}}
	for i := range specs {
		fx.events = append(fx.events, specs[i].event(i))
	}
	return fx, nil
}

// encoding renders the storm in mediaType (application/json or
// application/vnd.kubernetes.protobuf) as the API server writes a watch:
// each Event encoded, wrapped in a metav1.WatchEvent, framed.
func (fx *stormFixture) encoding(mediaType string) (*stormEncoding, error) {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	if e, ok := fx.enc[mediaType]; ok {
		return e, nil
	}
	info, ok := k8sruntime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), mediaType)
	if !ok || info.StreamSerializer == nil {
		return nil, fmt.Errorf("no stream serializer for %s", mediaType)
	}
	enc := scheme.Codecs.EncoderForVersion(info.Serializer, eventsv1.SchemeGroupVersion)
	frame := func(typ string, obj k8sruntime.Object) ([]byte, error) {
		var raw, ev, out bytes.Buffer
		if err := enc.Encode(obj, &raw); err != nil {
			return nil, err
		}
		we := &metav1.WatchEvent{Type: typ, Object: k8sruntime.RawExtension{Raw: bytes.TrimSpace(raw.Bytes())}}
		if err := info.StreamSerializer.Serializer.Encode(we, &ev); err != nil {
			return nil, err
		}
		if _, err := info.StreamSerializer.Framer.NewFrameWriter(&out).Write(ev.Bytes()); err != nil {
			return nil, err
		}
		return out.Bytes(), nil
	}
	e := &stormEncoding{contentType: mediaType}
	if mediaType == k8sruntime.ContentTypeProtobuf {
		e.contentType += ";stream=watch"
	}
	var err error
	e.bookmark, err = frame(string(watchapi.Bookmark), &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "1",
		Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}})
	if err != nil {
		return nil, err
	}
	var list bytes.Buffer
	if err := enc.Encode(&eventsv1.EventList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}}, &list); err != nil {
		return nil, err
	}
	e.list = list.Bytes()
	for i, ev := range fx.events {
		typ := string(watchapi.Added)
		if i > 0 && fx.events[i-1].UID == ev.UID {
			typ = string(watchapi.Modified)
		}
		f, err := frame(typ, ev)
		if err != nil {
			return nil, err
		}
		uidAt := bytes.Index(f, []byte(ev.UID))
		rvAt := bytes.Index(f, []byte(ev.ResourceVersion))
		if uidAt < 0 || rvAt < 0 || bytes.Count(f, []byte(ev.UID)) != 1 || bytes.Count(f, []byte(ev.ResourceVersion)) != 1 {
			return nil, fmt.Errorf("frame %d: markers not found once", i)
		}
		e.frames = append(e.frames, f)
		e.uidOff = append(e.uidOff, uidAt+9)
		e.rvOff = append(e.rvOff, rvAt)
	}
	return e, nil
}

func podSuffix(d, r, gen int) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	n := (d*131+r*7+gen*977)*2654435761 + 12345
	var s [5]byte
	for i := range s {
		s[i] = alphabet[n%len(alphabet)]
		n /= len(alphabet)
	}
	return string(s[:])
}

// event is the Event as the API server serves it on the events.k8s.io/v1
// watch (core/v1 events converted), with the managed fields the server adds.
func (s *stormSpec) event(i int) *eventsv1.Event {
	managedFields := []metav1.ManagedFieldsEntry{{
		Manager: s.controller, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
		Time: &metav1.Time{Time: s.last}, FieldsType: "FieldsV1",
		FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:count":{},"f:firstTimestamp":{},"f:involvedObject":{},"f:lastTimestamp":{},"f:message":{},"f:reason":{},"f:reportingComponent":{},"f:reportingInstance":{},"f:source":{"f:component":{},"f:host":{}},"f:type":{}}`)},
	}}
	ev := &eventsv1.Event{
		TypeMeta: metav1.TypeMeta{Kind: "Event", APIVersion: "events.k8s.io/v1"},
		ObjectMeta: metav1.ObjectMeta{
			Name: s.evName, Namespace: s.regarding.Namespace,
			UID:               types.UID(fmt.Sprintf("%08x-0000-4000-8000-e0e0%08x", 0xe0, s.uidN)),
			ResourceVersion:   fmt.Sprintf("%012d", 100+i),
			CreationTimestamp: metav1.NewTime(s.first.Truncate(time.Second)),
			ManagedFields:     managedFields,
		},
		Reason: s.reason, Note: s.note, Type: s.typ, Action: s.action,
		Regarding:           s.regarding,
		ReportingController: s.controller,
		ReportingInstance:   s.host,
	}
	if s.regarding.Kind == "Pod" && s.fieldPath != "" {
		ev.Regarding.FieldPath = s.fieldPath
	}
	if s.scheduler {
		ev.EventTime = metav1.NewMicroTime(s.first)
		ev.ReportingInstance = "default-scheduler-control-plane-1"
		ev.ManagedFields[0].APIVersion = "events.k8s.io/v1"
		ev.ManagedFields[0].FieldsV1 = &metav1.FieldsV1{Raw: []byte(`{"f:action":{},"f:eventTime":{},"f:note":{},"f:reason":{},"f:regarding":{},"f:reportingController":{},"f:reportingInstance":{},"f:type":{}}`)}
		return ev
	}
	ev.DeprecatedSource = corev1.EventSource{Component: s.controller, Host: s.host}
	ev.DeprecatedFirstTimestamp = metav1.NewTime(s.first.Truncate(time.Second))
	ev.DeprecatedLastTimestamp = metav1.NewTime(s.last.Truncate(time.Second))
	ev.DeprecatedCount = s.count
	return ev
}

// ---------------------------------------------------------------------------
// An in-memory API server for the Event informer: an empty list, then a
// watch that serves the storm's frames.

// stormStream is the http.RoundTripper of the benchmark's clientset.
type stormStream struct {
	enc   *stormEncoding
	n     int           // frames to serve on the watch
	start chan struct{} // closed when the timed region starts
}

func (e *stormEncoding) stream(n int) *stormStream {
	return &stormStream{enc: e, n: n, start: make(chan struct{})}
}

func (s *stormStream) RoundTrip(req *http.Request) (*http.Response, error) {
	q := req.URL.Query()
	resp := &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: req,
		Header: http.Header{"Content-Type": []string{s.enc.contentType}}}
	if !strings.HasSuffix(req.URL.Path, "/apis/events.k8s.io/v1/events") {
		resp.StatusCode = http.StatusNotFound
		resp.Header.Set("Content-Type", "application/json")
		resp.Body = io.NopCloser(strings.NewReader(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`))
		return resp, nil
	}
	if q.Get("watch") != "true" {
		resp.Header.Set("Content-Type", strings.TrimSuffix(s.enc.contentType, ";stream=watch"))
		resp.Body = io.NopCloser(bytes.NewReader(s.enc.list))
		return resp, nil
	}
	// Answer in the media type the client prefers, as the API server does.
	if accept := req.Header.Get("Accept"); !strings.HasPrefix(accept, strings.TrimSuffix(s.enc.contentType, ";stream=watch")) {
		return nil, fmt.Errorf("bench: the watch asks for %q, the fixture is %s", accept, s.enc.contentType)
	}
	body := &watchBody{s: s, ctx: req.Context(), closed: make(chan struct{})}
	if q.Get("sendInitialEvents") == "true" {
		body.cur = s.enc.bookmark
	}
	resp.Body = body
	return resp, nil
}

// watchBody serves frames: the bookmark if any, then (once start is closed)
// n storm frames, patching the pass number into Event UIDs and a growing
// resourceVersion; then it blocks until the watch is closed.
type watchBody struct {
	s         *stormStream
	ctx       context.Context
	cur       []byte
	i         int
	started   bool
	closeOnce sync.Once
	closed    chan struct{}
}

func (w *watchBody) Read(p []byte) (int, error) {
	if len(w.cur) == 0 {
		if !w.started {
			select {
			case <-w.s.start:
				w.started = true
			case <-w.closed:
				return 0, io.EOF
			case <-w.ctx.Done():
				return 0, io.EOF
			}
		}
		if w.i >= w.s.n {
			select {
			case <-w.closed:
			case <-w.ctx.Done():
			}
			return 0, io.EOF
		}
		e := w.s.enc
		k, pass := w.i%len(e.frames), w.i/len(e.frames)
		f := e.frames[k]
		putDigits(f[e.uidOff[k]:e.uidOff[k]+4], pass)
		putDigits(f[e.rvOff[k]:e.rvOff[k]+12], 100+w.i)
		w.cur = f
		w.i++
	}
	n := copy(p, w.cur)
	w.cur = w.cur[n:]
	return n, nil
}

func (w *watchBody) Close() error {
	w.closeOnce.Do(func() { close(w.closed) })
	return nil
}

func putDigits(dst []byte, v int) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
}
