package e2e

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/cluster"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/scenarios"
)

// Severity numbers of the OpenTelemetry log data model.
const (
	sevInfo = 9
	sevWarn = 13
)

// apiCount is the occurrence count of an Event as the API holds it.
func apiCount(e *eventsv1.Event) int {
	if e.Series != nil && e.Series.Count > 0 {
		return int(e.Series.Count)
	}
	return max(int(e.DeprecatedCount), 1)
}

// occurrenceTime is the time of an Event's latest occurrence per DESIGN.md:
// series.lastObservedTime > eventTime > lastTimestamp > firstTimestamp >
// creationTimestamp (written out here rather than taken from convert, so
// that the test checks the bridge instead of agreeing with it).
func occurrenceTime(e *eventsv1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.DeprecatedLastTimestamp.IsZero():
		return e.DeprecatedLastTimestamp.Time
	case !e.DeprecatedFirstTimestamp.IsZero():
		return e.DeprecatedFirstTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

func recTime(r rec) time.Time { return time.Unix(0, int64(r.Record.GetTimeUnixNano())) }

// compareWithAPI checks that the records hold exactly one record per
// occurrence of the Events: for each Event, counts 1..count, nothing else.
func compareWithAPI(evs []eventsv1.Event, recs []rec) error {
	byUID := map[string][]rec{}
	for _, r := range recs {
		uid := attr(r, "k8s.event.uid")
		byUID[uid] = append(byUID[uid], r)
	}
	var problems []string
	for i := range evs {
		e := &evs[i]
		uid := string(e.UID)
		got, want := counts(byUID[uid]), seq(apiCount(e))
		if !slices.Equal(got, want) {
			problems = append(problems, fmt.Sprintf("%s %s/%s %s (uid %s): record counts %v, want %v", e.Type, e.Regarding.Kind, e.Regarding.Name, e.Reason, uid, got, want))
		}
		delete(byUID, uid)
	}
	for uid, rs := range byUID {
		problems = append(problems, fmt.Sprintf("%d records for event uid %q that is not in the API (first: %s)", len(rs), uid, strings.TrimSpace(dumpRecords(rs[:1]))))
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return errors.New(strings.Join(problems, "\n  "))
	}
	return nil
}

// checkNoDuplicates checks that every Event uid's records have distinct
// counts 1..n: the bridge emits counts in order and the sink keeps it, so any
// snapshot of the receiver has no gaps and no duplicates.
func checkNoDuplicates(t *testing.T, recs []rec) {
	t.Helper()
	byUID := map[string][]rec{}
	for _, r := range recs {
		uid := attr(r, "k8s.event.uid")
		byUID[uid] = append(byUID[uid], r)
	}
	for uid, rs := range byUID {
		if got := counts(rs); !slices.Equal(got, seq(len(rs))) {
			t.Errorf("event %s (%s %s/%s): record counts %v, want 1..%d without duplicates or gaps",
				uid, attr(rs[0], "k8s.event.reason"), attr(rs[0], "k8s.object.kind"), attr(rs[0], "k8s.object.name"), got, len(rs))
		}
	}
}

// checkResource checks the bridge's resource attributes on a record.
func checkResource(t *testing.T, r rec) {
	t.Helper()
	for key, want := range map[string]string{
		"service.name":     "kube-otel-bridge",
		"k8s.cluster.name": "e2e",
		"k8s.cluster.uid":  clusterUID,
	} {
		if got, _ := r.ResourceAttr(key); got != want {
			t.Errorf("resource %s = %q, want %q", key, got, want)
		}
	}
}

// checkEventFields checks what every record must carry of its Event.
func checkEventFields(t *testing.T, r rec, e *eventsv1.Event) {
	t.Helper()
	lr := r.Record
	if lr.GetEventName() != "k8s.event" {
		t.Errorf("%s: EventName %q, want k8s.event", e.Name, lr.GetEventName())
	}
	wantSev := sevInfo
	if e.Type == corev1.EventTypeWarning {
		wantSev = sevWarn
	}
	if int(lr.GetSeverityNumber()) != wantSev || lr.GetSeverityText() != e.Type {
		t.Errorf("%s: severity %d %q, want %d %q", e.Name, lr.GetSeverityNumber(), lr.GetSeverityText(), wantSev, e.Type)
	}
	if body := lr.GetBody().GetStringValue(); body != e.Note {
		t.Errorf("%s: body %q, want the note %q", e.Name, body, e.Note)
	}
	for key, want := range map[string]string{
		"k8s.event.reason":     e.Reason,
		"k8s.event.name":       e.Name,
		"k8s.event.uid":        string(e.UID),
		"k8s.object.kind":      e.Regarding.Kind,
		"k8s.object.name":      e.Regarding.Name,
		"k8s.object.uid":       string(e.Regarding.UID),
		"k8s.event.action":     e.Action,
		"k8s.object.fieldpath": e.Regarding.FieldPath,
	} {
		if got := attr(r, key); got != want {
			t.Errorf("%s: %s = %q, want %q", e.Name, key, got, want)
		}
	}
	if e.Regarding.Namespace != "" {
		if got := attr(r, "k8s.namespace.name"); got != e.Regarding.Namespace {
			t.Errorf("%s: k8s.namespace.name = %q, want %q", e.Name, got, e.Regarding.Namespace)
		}
	}
	if lr.GetObservedTimeUnixNano() == 0 {
		t.Errorf("%s: no observed timestamp", e.Name)
	}
	// The latest occurrence carries the Event's time, to the microsecond.
	if count(r) == apiCount(e) {
		if got, want := recTime(r), occurrenceTime(e); !got.Equal(want) {
			// The fake kubelet (test/cluster/stages.go) re-applies a pod's
			// last container event with first- and lastTimestamp {{ Now }}:
			// when the second has moved on, the times change without a new
			// count. That is no new occurrence, so the record rightly keeps
			// the time it was seen with.
			touched := e.Series == nil && e.EventTime.IsZero() && e.DeprecatedSource.Component == "kubelet" &&
				got.Before(want) && want.Sub(got) <= 5*time.Second
			if touched {
				t.Logf("%s count %d: lastTimestamp moved from %s to %s without a new count (fake kubelet re-apply)", e.Name, count(r), got.UTC().Format(time.RFC3339), want.UTC().Format(time.RFC3339))
			} else {
				t.Errorf("%s count %d: timestamp %s, want %s", e.Name, count(r), got.UTC().Format(time.RFC3339Nano), want.UTC().Format(time.RFC3339Nano))
			}
		}
	}
	checkResource(t, r)
}

// TestRolloutRecordsMatchAPIEvents runs for both Events APIs: each has its
// own decoding path (the bridge's protobuf decoder turns core/v1 Events into
// the events.k8s.io/v1 form).
func TestRolloutRecordsMatchAPIEvents(t *testing.T) {
	needCluster(t)
	t.Parallel()
	for _, api := range []string{"events.k8s.io/v1", "v1"} {
		t.Run(strings.ReplaceAll(api, "/", "_"), func(t *testing.T) {
			t.Parallel()
			testRolloutRecordsMatchAPIEvents(t, api)
		})
	}
}

func testRolloutRecordsMatchAPIEvents(t *testing.T, api string) {
	ctx := ctxFor(t, 3*time.Minute)
	ns := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	b := startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: ns, Args: []string{"--events-api", api}})
	if err := b.waitLog(ctx, "api="+api); err != nil {
		t.Fatalf("bridge does not say it watches %s: %v", api, err)
	}

	if err := scenarios.Rollout(ctx, shared.Client, ns); err != nil {
		t.Fatal(err)
	}

	// One record per occurrence of every Event in the API, no more.
	var (
		evs  []eventsv1.Event
		recs []rec
		last error
	)
	check := func(ctx context.Context) (bool, error) {
		l, err := shared.Client.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			last = err
			return false, nil
		}
		evs, recs = l.Items, rcv.Logs()
		last = compareWithAPI(evs, recs)
		return last == nil, nil
	}
	if err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, check); err != nil {
		t.Fatalf("records never matched the API's events: %v\n  %v", err, last)
	}
	// Nothing more arrives later (a late duplicate, say): the sink batches
	// for 1s, so 2s of quiet settle it.
	time.Sleep(2 * time.Second)
	_, _ = check(ctx)
	if last != nil {
		t.Fatalf("after 2s more: %v", last)
	}
	t.Logf("%d events, %d records", len(evs), len(recs))

	dep, err := shared.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rsByUID := map[string]*appsv1.ReplicaSet{}
	rss, err := shared.Client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range rss.Items {
		rsByUID[string(rss.Items[i].UID)] = &rss.Items[i]
	}
	if len(rss.Items) != 2 {
		t.Errorf("%d ReplicaSets after the rollout, want 2", len(rss.Items))
	}

	// Every record: its Event's fields, and the owner chain up to the
	// Deployment, also for pods deleted by the rollout (tombstones).
	evByUID := map[string]*eventsv1.Event{}
	for i := range evs {
		evByUID[string(evs[i].UID)] = &evs[i]
	}
	kinds := map[string]int{}
	for _, r := range recs {
		e := evByUID[attr(r, "k8s.event.uid")]
		checkEventFields(t, r, e)
		kinds[e.Regarding.Kind+"."+e.Reason]++
		switch e.Regarding.Kind {
		case "Pod":
			if attr(r, "k8s.pod.name") != e.Regarding.Name || attr(r, "k8s.pod.uid") != string(e.Regarding.UID) {
				t.Errorf("%s %s: k8s.pod.name/uid %q/%q", e.Reason, e.Regarding.Name, attr(r, "k8s.pod.name"), attr(r, "k8s.pod.uid"))
			}
			rs := rsByUID[attr(r, "k8s.replicaset.uid")]
			if rs == nil || attr(r, "k8s.replicaset.name") != rs.Name {
				t.Errorf("%s %s: k8s.replicaset.name/uid %q/%q is not one of the Deployment's ReplicaSets", e.Reason, e.Regarding.Name,
					attr(r, "k8s.replicaset.name"), attr(r, "k8s.replicaset.uid"))
			}
			fallthrough
		case "ReplicaSet":
			if e.Regarding.Kind == "ReplicaSet" && (attr(r, "k8s.replicaset.name") != e.Regarding.Name || attr(r, "k8s.replicaset.uid") != string(e.Regarding.UID)) {
				t.Errorf("%s %s: k8s.replicaset.name/uid %q/%q", e.Reason, e.Regarding.Name, attr(r, "k8s.replicaset.name"), attr(r, "k8s.replicaset.uid"))
			}
			fallthrough
		case "Deployment":
			if attr(r, "k8s.deployment.name") != "web" || attr(r, "k8s.deployment.uid") != string(dep.UID) {
				t.Errorf("%s %s/%s: k8s.deployment.name/uid %q/%q, want web/%s", e.Reason, e.Regarding.Kind, e.Regarding.Name,
					attr(r, "k8s.deployment.name"), attr(r, "k8s.deployment.uid"), dep.UID)
			}
		default:
			t.Errorf("unexpected record about a %s: %s", e.Regarding.Kind, strings.TrimSpace(dumpRecords([]rec{r})))
		}
	}
	t.Logf("records by kind and reason: %v", kinds)
	for _, want := range []string{"Deployment.ScalingReplicaSet", "ReplicaSet.SuccessfulCreate", "ReplicaSet.SuccessfulDelete",
		"Pod.Scheduled", "Pod.Pulling", "Pod.Pulled", "Pod.Created", "Pod.Started", "Pod.Killing"} {
		if kinds[want] == 0 {
			t.Errorf("no %s record", want)
		}
	}

	// One kubelet record in detail: Started of a pod of the new ReplicaSet.
	pods, err := shared.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("pods of web: %v (%d)", err, len(pods.Items))
	}
	pod := &pods.Items[0]
	owner := metav1.GetControllerOf(pod)
	if owner == nil {
		t.Fatalf("pod %s has no controller", pod.Name)
	}
	var started *rec
	var startedEv *eventsv1.Event
	for i, r := range recs {
		if attr(r, "k8s.object.uid") == string(pod.UID) && attr(r, "k8s.event.reason") == "Started" {
			started, startedEv = &recs[i], evByUID[attr(r, "k8s.event.uid")]
		}
	}
	if started == nil {
		t.Fatalf("no Started record for pod %s", pod.Name)
	}
	r, e := *started, startedEv
	want := map[string]string{
		"k8s.event.reason":               "Started",
		"k8s.event.name":                 e.Name,
		"k8s.event.uid":                  string(e.UID),
		"k8s.event.count":                "1",
		"k8s.event.reporting_controller": "kubelet",
		"k8s.event.start_time":           e.DeprecatedFirstTimestamp.UTC().Format(time.RFC3339Nano),
		"k8s.namespace.name":             ns,
		"k8s.object.kind":                "Pod",
		"k8s.object.api_version":         "v1",
		"k8s.object.name":                pod.Name,
		"k8s.object.uid":                 string(pod.UID),
		"k8s.object.fieldpath":           "spec.containers{web}",
		"k8s.node.name":                  pod.Spec.NodeName,
		"k8s.pod.name":                   pod.Name,
		"k8s.pod.uid":                    string(pod.UID),
		"k8s.replicaset.name":            owner.Name,
		"k8s.replicaset.uid":             string(owner.UID),
		"k8s.deployment.name":            "web",
		"k8s.deployment.uid":             string(dep.UID),
	}
	for key, w := range want {
		if got, ok := r.Attr(key); !ok || got != w {
			t.Errorf("Started record: %s = %q (present %v), want %q", key, got, ok, w)
		}
	}
	if rs := rsByUID[string(owner.UID)]; rs == nil || metav1.GetControllerOf(rs) == nil || metav1.GetControllerOf(rs).UID != dep.UID {
		t.Errorf("the pod's ReplicaSet %s is not controlled by the Deployment", owner.Name)
	}
	if !strings.HasPrefix(pod.Spec.NodeName, "kwok-node-") {
		t.Errorf("pod on node %q", pod.Spec.NodeName)
	}
	lr := r.Record
	if lr.GetSeverityNumber() != sevInfo || lr.GetSeverityText() != "Normal" || lr.GetEventName() != "k8s.event" {
		t.Errorf("Started record: severity %d %q, event name %q; want 9 Normal k8s.event", lr.GetSeverityNumber(), lr.GetSeverityText(), lr.GetEventName())
	}
	if body := lr.GetBody().GetStringValue(); body != e.Note || body != "Started container web" {
		t.Errorf("Started record body %q, event note %q", body, e.Note)
	}
	if obs, ts := time.Unix(0, int64(lr.GetObservedTimeUnixNano())), recTime(r); obs.Before(ts) {
		t.Errorf("observed %s before the occurrence %s", obs, ts)
	}
	if got := r.Scope.GetName(); got == "" {
		t.Errorf("no instrumentation scope name")
	}
	checkResource(t, r)
	checkNoDuplicates(t, recs)
	checkArrivalOrder(t, recs)

	// Traces: SIGTERM closes the open episodes, so that afterwards every
	// span is there.
	if code := b.Stop(); code != 0 {
		t.Fatalf("bridge exited %d", code)
	}
	checkTraces(t, rcv.Logs(), rcv.Spans(), evByUID, rsByUID, dep)
}

func hexID(b []byte) string { return hex.EncodeToString(b) }

// checkTraces checks the spans of the rollout against its log records: each
// record points at its event span (named <Kind>.<Reason>, service.name the
// reporter), no span is exported twice or lacks its parent, and the two
// generations of the Deployment are two linked traces.
func checkTraces(t *testing.T, recs []rec, spans []otlpreceiver.SpanWithResource, evByUID map[string]*eventsv1.Event,
	rsByUID map[string]*appsv1.ReplicaSet, dep *appsv1.Deployment) {
	t.Helper()
	if len(spans) == 0 {
		t.Fatalf("no spans")
	}
	byID := map[string]otlpreceiver.SpanWithResource{}
	for _, sp := range spans {
		id := hexID(sp.Span.GetSpanId())
		if prev, dup := byID[id]; dup {
			t.Errorf("span %s exported twice: %q and %q", id, prev.Span.GetName(), sp.Span.GetName())
		}
		byID[id] = sp
	}
	roots := map[string][]otlpreceiver.SpanWithResource{} // trace → spans without parent
	for _, sp := range spans {
		tid := hexID(sp.Span.GetTraceId())
		if len(sp.Span.GetTraceId()) != 16 || len(sp.Span.GetSpanId()) != 8 {
			t.Errorf("span %q with trace id %q span id %x", sp.Span.GetName(), tid, sp.Span.GetSpanId())
		}
		parent := sp.Span.GetParentSpanId()
		if len(parent) == 0 {
			roots[tid] = append(roots[tid], sp)
			continue
		}
		p, ok := byID[hexID(parent)]
		if !ok || hexID(p.Span.GetTraceId()) != tid {
			t.Errorf("span %q (trace %s): parent %x was not exported in that trace", sp.Span.GetName(), tid, parent)
		}
		if ok && (sp.Span.GetStartTimeUnixNano() < p.Span.GetStartTimeUnixNano() || sp.Span.GetEndTimeUnixNano() > p.Span.GetEndTimeUnixNano()) {
			t.Errorf("span %q [%d, %d] is not within its parent %q [%d, %d]", sp.Span.GetName(), sp.Span.GetStartTimeUnixNano(), sp.Span.GetEndTimeUnixNano(),
				p.Span.GetName(), p.Span.GetStartTimeUnixNano(), p.Span.GetEndTimeUnixNano())
		}
	}
	for tid, rs := range roots {
		if len(rs) != 1 {
			names := []string{}
			for _, r := range rs {
				names = append(names, r.Span.GetName())
			}
			t.Errorf("trace %s has %d spans without parent: %v", tid, len(rs), names)
		}
	}

	// Each record → its event span.
	traceOf := map[string]string{} // event uid → trace id
	for _, r := range recs {
		e := evByUID[attr(r, "k8s.event.uid")]
		tid, sid := hexID(r.Record.GetTraceId()), hexID(r.Record.GetSpanId())
		sp, ok := byID[sid]
		if !ok || hexID(sp.Span.GetTraceId()) != tid {
			t.Errorf("%s %s/%s: record's span %s/%s was not exported", e.Reason, e.Regarding.Kind, e.Regarding.Name, tid, sid)
			continue
		}
		traceOf[string(e.UID)] = tid
		if want := e.Regarding.Kind + "." + e.Reason; sp.Span.GetName() != want {
			t.Errorf("record %s/%s %s: span name %q, want %q", e.Regarding.Kind, e.Regarding.Name, e.Reason, sp.Span.GetName(), want)
		}
		wantSvc := e.ReportingController
		if wantSvc == "" {
			wantSvc = e.DeprecatedSource.Component
		}
		if got, _ := sp.ResourceAttr("service.name"); got != wantSvc {
			t.Errorf("span %s: service.name %q, want the reporter %q", sp.Span.GetName(), got, wantSvc)
		}
		if got, _ := sp.ResourceAttr("k8s.cluster.name"); got != "e2e" {
			t.Errorf("span %s: k8s.cluster.name %q", sp.Span.GetName(), got)
		}
	}

	// Two rollouts (generations 1 and 2): two traces, the second linked to
	// the first. The old ReplicaSet's creations belong to the first, the new
	// one's creations and the old one's deletions to the second.
	var oldRS, newRS string
	for uid, rs := range rsByUID {
		if rs.Spec.Template.Spec.Containers[0].Image == "nginx:1.27" {
			oldRS = uid
		} else {
			newRS = uid
		}
	}
	traceFor := func(rsUID, reason string) map[string]bool {
		out := map[string]bool{}
		for uid, e := range evByUID {
			if string(e.Regarding.UID) == rsUID && e.Reason == reason && traceOf[uid] != "" {
				out[traceOf[uid]] = true
			}
		}
		return out
	}
	t1, t2, del := traceFor(oldRS, "SuccessfulCreate"), traceFor(newRS, "SuccessfulCreate"), traceFor(oldRS, "SuccessfulDelete")
	if len(t1) != 1 || len(t2) != 1 || len(del) != 1 {
		t.Fatalf("traces of old RS creations %v, new RS creations %v, old RS deletions %v: want one each", t1, t2, del)
	}
	var first, second string
	for k := range t1 {
		first = k
	}
	for k := range t2 {
		second = k
	}
	if first == second || !del[second] {
		t.Errorf("first rollout trace %s, second %s, old pods' deletion in %v", first, second, del)
	}
	if rs := roots[second]; len(rs) == 1 {
		linked := false
		for _, l := range rs[0].Span.GetLinks() {
			linked = linked || hexID(l.GetTraceId()) == first
		}
		if !linked {
			t.Errorf("root %q of the second rollout has no link to the first trace", rs[0].Span.GetName())
		}
		if want := "Deployment web"; rs[0].Span.GetName() != want {
			t.Logf("root span name %q (DESIGN.md shows %q)", rs[0].Span.GetName(), want)
		}
		if got, _ := rs[0].Attr("k8s.deployment.uid"); got != "" && got != string(dep.UID) {
			t.Errorf("root span k8s.deployment.uid %q, want %s", got, dep.UID)
		}
	}
	t.Logf("%d spans in %d traces for %d records", len(spans), len(roots), len(recs))
}

// updateCoreEvent sets count and lastTimestamp of a core/v1 Event.
func updateCoreEvent(ctx context.Context, t *testing.T, ns, name string, n int32, last time.Time) {
	t.Helper()
	ev, err := shared.Client.CoreV1().Events(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev.Count = n
	ev.LastTimestamp = metav1.NewTime(last)
	if _, err := shared.Client.CoreV1().Events(ns).Update(ctx, ev, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update %s to count %d: %v", name, n, err)
	}
}

func TestCoreEventCountUpdates(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	ns := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: ns})
	pod := createPod(ctx, t, ns, "target", nil)

	create := func(name string, at time.Time) *corev1.Event {
		ev, err := shared.Client.CoreV1().Events(ns).Create(ctx, &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: name},
			InvolvedObject: podRef(pod),
			Reason:         "E2ECounted",
			Message:        "counted by the e2e test",
			Type:           corev1.EventTypeNormal,
			Count:          1,
			FirstTimestamp: metav1.NewTime(at),
			LastTimestamp:  metav1.NewTime(at),
			Source:         corev1.EventSource{Component: "e2e-test", Host: "e2e-host"},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	checkRecord := func(r rec, ev *corev1.Event, wantTime time.Time) {
		t.Helper()
		if got := recTime(r); !got.Equal(wantTime) {
			t.Errorf("%s count %d: timestamp %s, want %s", ev.Name, count(r), got.UTC().Format(time.RFC3339Nano), wantTime.UTC().Format(time.RFC3339Nano))
		}
		for key, want := range map[string]string{
			"k8s.event.name":       ev.Name,
			"k8s.event.reason":     "E2ECounted",
			"k8s.event.start_time": ev.FirstTimestamp.UTC().Format(time.RFC3339Nano),
			"k8s.object.kind":      "Pod",
			"k8s.pod.name":         pod.Name,
			"k8s.pod.uid":          string(pod.UID),
			"k8s.node.name":        "e2e-host",
			"k8s.namespace.name":   ns,
		} {
			if got := attr(r, key); got != want {
				t.Errorf("%s count %d: %s = %q, want %q", ev.Name, count(r), key, got, want)
			}
		}
		if r.Record.GetBody().GetStringValue() != ev.Message {
			t.Errorf("%s: body %q", ev.Name, r.Record.GetBody().GetStringValue())
		}
		checkResource(t, r)
	}

	t.Run("one at a time", func(t *testing.T) {
		// Core/v1 timestamps have whole seconds.
		base := time.Now().Truncate(time.Second)
		ev := create("stepped", base)
		for n := int32(2); n <= 5; n++ {
			time.Sleep(300 * time.Millisecond)
			updateCoreEvent(ctx, t, ns, ev.Name, n, base.Add(time.Duration(n-1)*time.Second))
		}
		recs := withUID(waitUIDCounts(ctx, t, rcv, string(ev.UID), 5), string(ev.UID))
		for _, r := range recs {
			checkRecord(r, ev, base.Add(time.Duration(count(r)-1)*time.Second))
		}
	})

	t.Run("jump", func(t *testing.T) {
		base := time.Now().Truncate(time.Second)
		ev := create("jumped", base)
		waitUIDCounts(ctx, t, rcv, string(ev.UID), 1)
		updateCoreEvent(ctx, t, ns, ev.Name, 5, base.Add(10*time.Second))
		recs := withUID(waitUIDCounts(ctx, t, rcv, string(ev.UID), 5), string(ev.UID))
		for _, r := range recs {
			// The API keeps only the latest time: the missed occurrences
			// share it.
			want := base.Add(10 * time.Second)
			if count(r) == 1 {
				want = base
			}
			checkRecord(r, ev, want)
		}
	})

	// Nothing more for either Event after a quiet period.
	time.Sleep(2 * time.Second)
	recs := rcv.Logs()
	checkNoDuplicates(t, recs)
	checkArrivalOrder(t, recs)
	for _, name := range []string{"stepped", "jumped"} {
		ev, err := shared.Client.CoreV1().Events(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := counts(withUID(recs, string(ev.UID))); !slices.Equal(got, seq(5)) {
			t.Errorf("%s: record counts %v after a quiet period, want 1..5", name, got)
		}
	}
}

func TestEventsV1Series(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	ns := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: ns})
	pod := createPod(ctx, t, ns, "target", nil)

	// Microsecond times with a non-zero sub-millisecond part.
	t0 := time.Now().Truncate(time.Second).Add(123456 * time.Microsecond)
	times := map[int]time.Time{1: t0}
	events := shared.Client.EventsV1().Events(ns)
	ev, err := events.Create(ctx, &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: "series"},
		EventTime:           metav1.NewMicroTime(t0),
		ReportingController: "e2e.kube-otel-bridge.io/series-controller",
		ReportingInstance:   "series-controller-0",
		Action:              "Probing",
		Reason:              "E2ESeries",
		Regarding:           podRef(pod),
		Note:                "a series of occurrences",
		Type:                corev1.EventTypeNormal,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for n := 2; n <= 4; n++ {
		time.Sleep(300 * time.Millisecond)
		times[n] = t0.Add(time.Duration(n-1)*time.Second + time.Duration(n*111)*time.Microsecond)
		cur, err := events.Get(ctx, ev.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Series = &eventsv1.EventSeries{Count: int32(n), LastObservedTime: metav1.NewMicroTime(times[n])}
		if _, err := events.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("series count %d: %v", n, err)
		}
	}
	recs := withUID(waitUIDCounts(ctx, t, rcv, string(ev.UID), 4), string(ev.UID))
	for _, r := range recs {
		n := count(r)
		if got := recTime(r); !got.Equal(times[n]) {
			t.Errorf("count %d: timestamp %s, want %s (microseconds kept)", n, got.UTC().Format(time.RFC3339Nano), times[n].UTC().Format(time.RFC3339Nano))
		}
		for key, want := range map[string]string{
			"k8s.event.action":               "Probing",
			"k8s.event.reason":               "E2ESeries",
			"k8s.event.reporting_controller": "e2e.kube-otel-bridge.io/series-controller",
			"k8s.event.reporting_instance":   "series-controller-0",
			"k8s.event.start_time":           t0.UTC().Format(time.RFC3339Nano),
			"k8s.object.kind":                "Pod",
			"k8s.object.name":                pod.Name,
			"k8s.pod.uid":                    string(pod.UID),
			"k8s.namespace.name":             ns,
		} {
			if got := attr(r, key); got != want {
				t.Errorf("count %d: %s = %q, want %q", n, key, got, want)
			}
		}
		if r.Record.GetBody().GetStringValue() != "a series of occurrences" || r.Record.GetSeverityNumber() != sevInfo {
			t.Errorf("count %d: body %q severity %d", n, r.Record.GetBody().GetStringValue(), r.Record.GetSeverityNumber())
		}
	}
	time.Sleep(2 * time.Second)
	if got := counts(withUID(rcv.Logs(), string(ev.UID))); !slices.Equal(got, seq(4)) {
		t.Errorf("record counts %v after a quiet period, want 1..4", got)
	}
}

// assertNoneFrom waits 2s more and then checks that no record is about the
// Events in uids or carries namespace ns.
func assertNoneFrom(t *testing.T, rcv *otlpreceiver.Receiver, ns string, uids ...string) {
	t.Helper()
	time.Sleep(2 * time.Second)
	for _, r := range rcv.Logs() {
		if slices.Contains(uids, attr(r, "k8s.event.uid")) || attr(r, "k8s.namespace.name") == ns {
			t.Errorf("record from excluded namespace %s: %s", ns, strings.TrimSpace(dumpRecords([]rec{r})))
		}
	}
}

func TestNamespaceFilter(t *testing.T) {
	needCluster(t)
	t.Parallel()

	t.Run("namespaces", func(t *testing.T) {
		t.Parallel()
		ctx := ctxFor(t, time.Minute)
		nsA, nsB := shared.NewNamespace(t), shared.NewNamespace(t)
		rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
		startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: nsA})
		evB := createEvent(ctx, t, nsB, "in-b", corev1.EventTypeNormal, "E2EFiltered")
		createPod(ctx, t, nsB, "pod-b", nil)
		evA := createEvent(ctx, t, nsA, "in-a", corev1.EventTypeNormal, "E2EKept")
		waitUIDCounts(ctx, t, rcv, string(evA.UID), 1)
		assertNoneFrom(t, rcv, nsB, string(evB.UID))
		for _, r := range rcv.Logs() {
			if attr(r, "k8s.namespace.name") != nsA {
				t.Errorf("record from namespace %q, want only %s", attr(r, "k8s.namespace.name"), nsA)
			}
		}
	})

	t.Run("namespaces-list", func(t *testing.T) {
		t.Parallel()
		ctx := ctxFor(t, time.Minute)
		nsA, nsB, nsC := shared.NewNamespace(t), shared.NewNamespace(t), shared.NewNamespace(t)
		rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
		startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: nsA + ", " + nsB})
		evC := createEvent(ctx, t, nsC, "in-c", corev1.EventTypeNormal, "E2EFiltered")
		evA := createEvent(ctx, t, nsA, "in-a", corev1.EventTypeNormal, "E2EKept")
		evB := createEvent(ctx, t, nsB, "in-b", corev1.EventTypeNormal, "E2EKept")
		waitUIDCounts(ctx, t, rcv, string(evA.UID), 1)
		waitUIDCounts(ctx, t, rcv, string(evB.UID), 1)
		assertNoneFrom(t, rcv, nsC, string(evC.UID))
	})

	t.Run("exclude-namespaces", func(t *testing.T) {
		t.Parallel()
		ctx := ctxFor(t, time.Minute)
		nsA, nsB := shared.NewNamespace(t), shared.NewNamespace(t)
		rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
		// All namespaces but B: other tests' records arrive too.
		startBridge(t, rcv.Addr(), bridgeOpts{Args: []string{"--exclude-namespaces", nsB}})
		evB := createEvent(ctx, t, nsB, "in-b", corev1.EventTypeNormal, "E2EFiltered")
		createPod(ctx, t, nsB, "pod-b", nil)
		evA := createEvent(ctx, t, nsA, "in-a", corev1.EventTypeNormal, "E2EKept")
		waitUIDCounts(ctx, t, rcv, string(evA.UID), 1)
		assertNoneFrom(t, rcv, nsB, string(evB.UID))
	})
}

func TestWarningSeverity(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	ns := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	b := startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: ns})

	// A Warning of our own...
	ev := createEvent(ctx, t, ns, "warned", corev1.EventTypeWarning, "E2EWarning")
	recs := waitUIDCounts(ctx, t, rcv, string(ev.UID), 1)
	r := withUID(recs, string(ev.UID))[0]
	if r.Record.GetSeverityNumber() != sevWarn || r.Record.GetSeverityText() != "Warning" {
		t.Errorf("Warning event: severity %d %q, want 13 Warning", r.Record.GetSeverityNumber(), r.Record.GetSeverityText())
	}

	// ...and the kubelet's: an image that cannot be pulled.
	createPod(ctx, t, ns, "pull", map[string]string{cluster.AnnotationFailure: cluster.FailureImagePull, cluster.AnnotationRepeatInterval: "300ms"})
	recs = waitRecords(ctx, t, rcv, "kubelet warnings and repeated BackOff", func(recs []rec) error {
		var failed, backoff int
		for _, r := range recs {
			if attr(r, "k8s.object.name") != "pull" {
				continue
			}
			switch attr(r, "k8s.event.reason") {
			case "Failed":
				failed++
			case "BackOff":
				backoff = max(backoff, count(r))
			}
		}
		if failed < 3 || backoff < 3 {
			return fmt.Errorf("%d Failed records, BackOff up to count %d; want 3 and 3", failed, backoff)
		}
		return nil
	})
	for _, r := range recs {
		typ := r.Record.GetSeverityText()
		want := map[string]int32{"Normal": sevInfo, "Warning": sevWarn}[typ]
		if want == 0 || int32(r.Record.GetSeverityNumber()) != want {
			t.Errorf("severity %d for type %q: %s", r.Record.GetSeverityNumber(), typ, strings.TrimSpace(dumpRecords([]rec{r})))
		}
		if attr(r, "k8s.event.reason") == "Failed" && typ != "Warning" {
			t.Errorf("kubelet Failed record of type %q", typ)
		}
	}
	checkNoDuplicates(t, recs)
	checkArrivalOrder(t, recs)

	// The event span of a Warning has status Error with the message.
	if code := b.Stop(); code != 0 {
		t.Fatalf("bridge exited %d", code)
	}
	spans := map[string]otlpreceiver.SpanWithResource{}
	for _, sp := range rcv.Spans() {
		spans[hexID(sp.Span.GetSpanId())] = sp
	}
	for _, r := range recs {
		sp, ok := spans[hexID(r.Record.GetSpanId())]
		if !ok {
			t.Errorf("no span for record %s", strings.TrimSpace(dumpRecords([]rec{r})))
			continue
		}
		st := sp.Span.GetStatus()
		if r.Record.GetSeverityText() == "Warning" {
			if st.GetCode() != tracepb.Status_STATUS_CODE_ERROR || st.GetMessage() != r.Record.GetBody().GetStringValue() {
				t.Errorf("span %s of a Warning: status %v %q, want Error with the message", sp.Span.GetName(), st.GetCode(), st.GetMessage())
			}
		} else if st.GetCode() == tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("span %s of a Normal event has status Error", sp.Span.GetName())
		}
	}
}

func TestInitialLookback(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	ns := shared.NewNamespace(t)
	old := createEvent(ctx, t, ns, "before-start", corev1.EventTypeNormal, "E2EOld")

	// Without --initial-lookback, Events already there are the baseline.
	rcvNo := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	startBridge(t, rcvNo.Addr(), bridgeOpts{Namespaces: ns})
	// With it, recent ones are emitted too.
	rcvLB := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	lb := startBridge(t, rcvLB.Addr(), bridgeOpts{Namespaces: ns, Args: []string{"--initial-lookback", "5m"}})

	waitUIDCounts(ctx, t, rcvLB, string(old.UID), 1)
	// The Event from before the start came with the one list of the start
	// (page by page, handed on as it came), not with a watch.
	if v, ok, err := metricValue(ctx, lb.metricsAddr(ctx), "kube_otel_bridge_events_lists_total"); err != nil || !ok || v != 1 {
		t.Errorf("kube_otel_bridge_events_lists_total = %v (present %v, err %v), want 1", v, ok, err)
	}
	fresh := createEvent(ctx, t, ns, "after-start", corev1.EventTypeNormal, "E2ENew")
	waitUIDCounts(ctx, t, rcvNo, string(fresh.UID), 1)
	waitUIDCounts(ctx, t, rcvLB, string(fresh.UID), 1)
	if got := counts(withUID(rcvNo.Logs(), string(old.UID))); len(got) != 0 {
		t.Errorf("without --initial-lookback, the Event from before the start was emitted (counts %v)", got)
	}
}
