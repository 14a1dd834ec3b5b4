package e2e

// Helpers for the span-tree tests (traces_test.go): a forest built from the
// spans the real OTLP receiver got (by parent span ID), a renderer for
// failure messages, the invariants every trace must hold, and a small
// harness (namespace, receiver, bridge, wait, stop).

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

// bridgeService is the service.name of object and root spans (and of the
// log records): the bridge itself.
const bridgeService = "kube-otel-bridge"

// ---------------------------------------------------------------------------
// The forest.

// tnode is one received span in its tree.
type tnode struct {
	sp       otlpreceiver.SpanWithResource
	tid, id  string // hex trace and span ID
	parentID string // hex, "" for a root
	parent   *tnode
	children []*tnode // by start time
}

func (n *tnode) name() string { return n.sp.Span.GetName() }

func (n *tnode) attr(key string) string {
	v, _ := n.sp.Attr(key)
	return v
}

func (n *tnode) service() string {
	v, _ := n.sp.ResourceAttr("service.name")
	return v
}

// isEvent: event spans carry the Event's UID, object and root spans do not.
func (n *tnode) isEvent() bool { return n.attr("k8s.event.uid") != "" }

func (n *tnode) note() string { return n.attr("k8s.event.note") }

func (n *tnode) count() int {
	c, err := strconv.Atoi(n.attr("k8s.event.count"))
	if err != nil {
		return -1
	}
	return c
}

func (n *tnode) isError() bool {
	return n.sp.Span.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR
}

func (n *tnode) start() uint64 { return n.sp.Span.GetStartTimeUnixNano() }
func (n *tnode) end() uint64   { return n.sp.Span.GetEndTimeUnixNano() }

// kids returns the children named name (all children for "").
func (n *tnode) kids(name string) []*tnode {
	var out []*tnode
	for _, c := range n.children {
		if name == "" || c.name() == name {
			out = append(out, c)
		}
	}
	return out
}

// eventKids returns the event children named name whose note starts with
// prefix.
func (n *tnode) eventKids(name, prefix string) []*tnode {
	var out []*tnode
	for _, c := range n.kids(name) {
		if c.isEvent() && strings.HasPrefix(c.note(), prefix) {
			out = append(out, c)
		}
	}
	return out
}

// kidNames counts the children by span name.
func (n *tnode) kidNames() map[string]int {
	out := map[string]int{}
	for _, c := range n.children {
		out[c.name()]++
	}
	return out
}

// walk visits n and its descendants, depth first.
func (n *tnode) walk(f func(*tnode)) {
	f(n)
	for _, c := range n.children {
		c.walk(f)
	}
}

// find returns n's descendants (and n) that match.
func (n *tnode) find(match func(*tnode) bool) []*tnode {
	var out []*tnode
	n.walk(func(m *tnode) {
		if match(m) {
			out = append(out, m)
		}
	})
	return out
}

func (n *tnode) findNamed(name string) []*tnode {
	return n.find(func(m *tnode) bool { return m.name() == name })
}

// root returns the top of n's tree.
func (n *tnode) root() *tnode {
	for n.parent != nil {
		n = n.parent
	}
	return n
}

// forest is every received span, joined into trees by parent span ID.
type forest struct {
	nodes []*tnode
	byKey map[string]*tnode // trace/span
	// roots are the parentless spans, by start time; orphans the spans
	// whose parent was not received (in their trace).
	roots   []*tnode
	orphans []*tnode
	dups    []string
}

func spanKey(tid, id string) string { return tid + "/" + id }

func buildForest(spans []otlpreceiver.SpanWithResource) *forest {
	f := &forest{byKey: map[string]*tnode{}}
	for _, sp := range spans {
		n := &tnode{sp: sp, tid: hexID(sp.Span.GetTraceId()), id: hexID(sp.Span.GetSpanId()), parentID: hexID(sp.Span.GetParentSpanId())}
		k := spanKey(n.tid, n.id)
		if prev, dup := f.byKey[k]; dup {
			f.dups = append(f.dups, fmt.Sprintf("%s %q and %q", k, prev.name(), n.name()))
			continue
		}
		f.byKey[k] = n
		f.nodes = append(f.nodes, n)
	}
	for _, n := range f.nodes {
		if n.parentID == "" {
			f.roots = append(f.roots, n)
			continue
		}
		p, ok := f.byKey[spanKey(n.tid, n.parentID)]
		if !ok {
			f.orphans = append(f.orphans, n)
			continue
		}
		n.parent = p
		p.children = append(p.children, n)
	}
	byStart := func(s []*tnode) {
		sort.SliceStable(s, func(i, j int) bool {
			if s[i].start() != s[j].start() {
				return s[i].start() < s[j].start()
			}
			return s[i].name() < s[j].name()
		})
	}
	byStart(f.roots)
	for _, n := range f.nodes {
		byStart(n.children)
	}
	return f
}

// rootsNamed returns the roots named name, by start time.
func (f *forest) rootsNamed(name string) []*tnode {
	var out []*tnode
	for _, r := range f.roots {
		if r.name() == name {
			out = append(out, r)
		}
	}
	return out
}

// trace returns the root of the trace tid.
func (f *forest) trace(tid string) *tnode {
	for _, r := range f.roots {
		if r.tid == tid {
			return r
		}
	}
	return nil
}

// render draws the trees, one line per span:
//
//	Deployment web  [trace 1a2b3c4d, close=shutdown]
//	  Deployment.ScalingReplicaSet  "Scaled up replica set web-777 from 0 to 3"
//	    ReplicaSet web-777
//	      ReplicaSet.SuccessfulCreate  "Created pod: web-777-a"
//	        Pod web-777-a  (uid 0f1e2d3c)
//	          Pod.Scheduled  "Successfully assigned ..."
//	          Pod.BackOff #3 !  "Back-off restarting ..."
func (f *forest) render() string {
	var b strings.Builder
	for _, r := range f.roots {
		renderNode(&b, r, 0)
	}
	for _, o := range f.orphans {
		fmt.Fprintf(&b, "ORPHAN (parent %s not received) in trace %s:\n", o.parentID, short(o.tid))
		renderNode(&b, o, 1)
	}
	return b.String()
}

func (n *tnode) render() string {
	var b strings.Builder
	renderNode(&b, n, 0)
	return b.String()
}

func renderNode(b *strings.Builder, n *tnode, depth int) {
	b.WriteString(strings.Repeat("  ", depth))
	b.WriteString(n.name())
	switch {
	case n.isEvent():
		if c := n.count(); c != 1 {
			fmt.Fprintf(b, " #%d", c)
		}
		if n.isError() {
			b.WriteString(" !")
		}
		note := n.note()
		if len(note) > 80 {
			note = note[:77] + "..."
		}
		fmt.Fprintf(b, "  %q", note)
		if node := n.attr("k8s.node.name"); node != "" && n.service() == "kubelet" {
			fmt.Fprintf(b, " @%s", node)
		}
		for _, l := range n.sp.Span.GetLinks() {
			fmt.Fprintf(b, "  link→%s/%s", short(hexID(l.GetTraceId())), short(hexID(l.GetSpanId())))
		}
	case n.parent == nil:
		fmt.Fprintf(b, "  [trace %s, gen %s, close=%s", short(n.tid), n.attr("k8s.object.generation"), n.attr("k8s.episode.close_reason"))
		for _, l := range n.sp.Span.GetLinks() {
			fmt.Fprintf(b, ", link→%s", short(hexID(l.GetTraceId())))
		}
		b.WriteString("]")
	default:
		if uid := n.attr("k8s.object.uid"); uid != "" && strings.HasPrefix(n.name(), "Pod ") {
			fmt.Fprintf(b, "  (uid %s)", short(uid))
		}
	}
	b.WriteString("\n")
	for _, c := range n.children {
		renderNode(b, c, depth+1)
	}
}

func short(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

// ---------------------------------------------------------------------------
// Invariants.

// expectedService is the reporting component of the built-in controllers'
// and the kubelet's events ("" when not pinned here; the API's reporter is
// checked for every event anyway).
func expectedService(kind, reason string) string {
	switch kind {
	case "Deployment":
		return "deployment-controller"
	case "ReplicaSet":
		return "replicaset-controller"
	case "StatefulSet":
		return "statefulset-controller"
	case "DaemonSet":
		return "daemonset-controller"
	case "Job":
		return "job-controller"
	case "CronJob":
		return "cronjob-controller"
	case "Pod":
		switch reason {
		case "Scheduled", "FailedScheduling":
			return "default-scheduler"
		case "NodeNotReady":
			return "node-controller"
		case "Pulling", "Pulled", "Created", "Started", "Killing", "BackOff", "Failed", "Unhealthy":
			return "kubelet"
		}
	case "Node":
		if reason == "RegisteredNode" {
			return "node-controller"
		}
	}
	return ""
}

// apiReporter is who reported an Event per the API.
func apiReporter(e *eventsv1.Event) string {
	if e.ReportingController != "" {
		return e.ReportingController
	}
	return e.DeprecatedSource.Component
}

// checkInvariants checks what holds for every trace the bridge exports, and
// for every log record against its span:
//   - no span twice, no orphan (every parent span ID was received in the
//     trace), exactly one root per trace, every parent covers its children
//     in time;
//   - every log record points (trace_id/span_id) to a received event span of
//     its trace named <Kind>.<Reason> of the record, and every event span has
//     exactly one record (one span per occurrence);
//   - event spans: Warning ⇔ status Error with the note as message;
//     service.name = the reporting controller (per the API Event and, for the
//     built-in controllers, per expectedService); object and root spans:
//     service.name = the bridge, status unset;
//   - k8s.cluster.name on every span's resource.
//
// evs are the API's Events by UID (for the reporter); records of Events not
// in it are checked against expectedService only.
func checkInvariants(t *testing.T, f *forest, recs []rec, evs map[string]*eventsv1.Event) {
	t.Helper()
	for _, d := range f.dups {
		t.Errorf("span exported twice: %s", d)
	}
	for _, o := range f.orphans {
		t.Errorf("orphan: span %q (trace %s) has parent %s, which was not received in that trace", o.name(), o.tid, o.parentID)
	}
	rootsOf := map[string][]string{}
	for _, r := range f.roots {
		rootsOf[r.tid] = append(rootsOf[r.tid], r.name())
	}
	tids := map[string]bool{}
	for _, n := range f.nodes {
		tids[n.tid] = true
	}
	for tid := range tids {
		if rs := rootsOf[tid]; len(rs) != 1 {
			t.Errorf("trace %s has %d root spans %v, want 1", tid, len(rs), rs)
		}
	}
	for _, n := range f.nodes {
		if got, _ := n.sp.ResourceAttr("k8s.cluster.name"); got != "e2e" {
			t.Errorf("span %q: resource k8s.cluster.name %q, want e2e", n.name(), got)
		}
		if p := n.parent; p != nil && (n.start() < p.start() || n.end() > p.end()) {
			t.Errorf("span %q [%d, %d] is not within its parent %q [%d, %d] (trace %s)", n.name(), n.start(), n.end(), p.name(), p.start(), p.end(), n.tid)
		}
		if n.end() < n.start() {
			t.Errorf("span %q ends before it starts", n.name())
		}
		if !n.isEvent() {
			if got := n.service(); got != bridgeService {
				t.Errorf("object span %q: service.name %q, want %q", n.name(), got, bridgeService)
			}
			if n.isError() {
				t.Errorf("object span %q has status Error", n.name())
			}
			if n.parent != nil && !strings.Contains(n.name(), " ") {
				t.Errorf("object span %q is not named \"<Kind> <name>\"", n.name())
			}
			continue
		}
		kind, reason := n.attr("k8s.object.kind"), n.attr("k8s.event.reason")
		if kind == "" {
			kind = "Event"
		}
		if want := kind + "." + reason; n.name() != want {
			t.Errorf("event span %q: want the name %q", n.name(), want)
		}
		warning := n.attr("k8s.event.type") == "Warning"
		if warning != n.isError() {
			t.Errorf("event span %q #%d: type %q but status %v", n.name(), n.count(), n.attr("k8s.event.type"), n.sp.Span.GetStatus().GetCode())
		}
		if warning && n.sp.Span.GetStatus().GetMessage() != n.note() {
			t.Errorf("event span %q: status message %q, want the note %q", n.name(), n.sp.Span.GetStatus().GetMessage(), n.note())
		}
		if n.parent == nil {
			t.Errorf("event span %q is a root", n.name())
		}
		svc := n.service()
		if want := expectedService(kind, reason); want != "" && svc != want {
			t.Errorf("event span %q: service.name %q, want %q", n.name(), svc, want)
		}
		if e := evs[n.attr("k8s.event.uid")]; e != nil && svc != apiReporter(e) {
			t.Errorf("event span %q: service.name %q, but the API says %q reported it", n.name(), svc, apiReporter(e))
		}
	}

	// Records ↔ event spans, one to one.
	recsOf := map[string]int{}
	for _, r := range recs {
		tid, sid := hexID(r.Record.GetTraceId()), hexID(r.Record.GetSpanId())
		what := fmt.Sprintf("record %s %s/%s %s #%s", attr(r, "k8s.namespace.name"), attr(r, "k8s.object.kind"), attr(r, "k8s.object.name"),
			attr(r, "k8s.event.reason"), attr(r, "k8s.event.count"))
		n, ok := f.byKey[spanKey(tid, sid)]
		if !ok {
			t.Errorf("%s: its span %s/%s was not received", what, tid, sid)
			continue
		}
		recsOf[spanKey(tid, sid)]++
		kind := attr(r, "k8s.object.kind")
		if kind == "" {
			kind = "Event"
		}
		if !n.isEvent() || n.name() != kind+"."+attr(r, "k8s.event.reason") {
			t.Errorf("%s: points to span %q, want the event span %s.%s", what, n.name(), kind, attr(r, "k8s.event.reason"))
			continue
		}
		if n.attr("k8s.event.uid") != attr(r, "k8s.event.uid") || n.attr("k8s.event.count") != attr(r, "k8s.event.count") {
			t.Errorf("%s: points to the span of event %s #%s", what, n.attr("k8s.event.uid"), n.attr("k8s.event.count"))
		}
	}
	for _, n := range f.nodes {
		if n.isEvent() && recsOf[spanKey(n.tid, n.id)] != 1 {
			t.Errorf("event span %q #%d (trace %s): %d log records point to it, want 1", n.name(), n.count(), short(n.tid), recsOf[spanKey(n.tid, n.id)])
		}
	}
}

// ---------------------------------------------------------------------------
// Harness.

// treeEnv is one tree test: its namespace, receiver and bridge.
type treeEnv struct {
	t   *testing.T
	ctx context.Context
	ns  string
	// watch are the namespaces the bridge watches (ns first).
	watch []string
	rcv   *otlpreceiver.Receiver
	b     *bridge
	// the outcome, after finish
	f    *forest
	recs []rec
	evs  map[string]*eventsv1.Event
}

// newTreeEnv makes the namespace and the receiver; start starts the bridge.
func newTreeEnv(t *testing.T, timeout time.Duration, extraNamespaces ...string) *treeEnv {
	t.Helper()
	e := &treeEnv{t: t, ctx: ctxFor(t, timeout), ns: shared.NewNamespace(t)}
	e.watch = append([]string{e.ns}, extraNamespaces...)
	e.rcv = otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	t.Cleanup(func() {
		if t.Failed() && e.f != nil {
			t.Logf("span trees of %s:\n%s", e.ns, e.f.render())
		}
	})
	return e
}

// start runs the bridge on the namespaces, with --episode-idle (30s unless
// args set it) and args.
func (e *treeEnv) start(args ...string) {
	e.t.Helper()
	e.b = startBridge(e.t, e.rcv.Addr(), bridgeOpts{
		Namespaces: strings.Join(e.watch, ","),
		Args:       append([]string{"--episode-idle", "30s"}, args...),
	})
}

// apiEvents lists the Events of the namespaces.
func (e *treeEnv) apiEvents(ctx context.Context, namespaces ...string) (map[string]*eventsv1.Event, error) {
	out := map[string]*eventsv1.Event{}
	for _, ns := range namespaces {
		l, err := shared.Client.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for i := range l.Items {
			out[string(l.Items[i].UID)] = &l.Items[i]
		}
	}
	return out, nil
}

// waitCovered waits until every occurrence of every Event of the test's
// namespace, as the API has them now, has its record (later counts of an
// Event that keeps repeating may be there too).
func (e *treeEnv) waitCovered() {
	e.t.Helper()
	var last error
	err := wait.PollUntilContextCancel(e.ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		evs, err := e.apiEvents(ctx, e.ns)
		if err != nil {
			last = err
			return false, nil
		}
		byUID := map[string][]rec{}
		for _, r := range e.rcv.Logs() {
			byUID[attr(r, "k8s.event.uid")] = append(byUID[attr(r, "k8s.event.uid")], r)
		}
		var missing []string
		for uid, ev := range evs {
			got := counts(byUID[uid])
			for c := 1; c <= apiCount(ev); c++ {
				if !slices.Contains(got, c) {
					missing = append(missing, fmt.Sprintf("%s/%s %s #%d", ev.Regarding.Kind, ev.Regarding.Name, ev.Reason, c))
				}
			}
		}
		if len(evs) == 0 {
			missing = append(missing, "no Events in the API yet")
		}
		sort.Strings(missing)
		last = fmt.Errorf("missing records: %v", missing)
		return len(missing) == 0, nil
	})
	if err != nil {
		e.t.Fatalf("records never covered the API's Events of %s: %v; %v", e.ns, err, last)
	}
}

// waitRecord waits for a record that matches.
func (e *treeEnv) waitRecord(what string, match func(rec) bool) rec {
	e.t.Helper()
	var found rec
	err := wait.PollUntilContextCancel(e.ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		for _, r := range e.rcv.Logs() {
			if match(r) {
				found = r
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		e.t.Fatalf("no record of %s: %v\n%s", what, err, dumpRecords(e.rcv.Logs()))
	}
	return found
}

// finish waits until the records cover the API's Events, stops the bridge
// (SIGTERM closes the open episodes: every span goes out), builds the
// forest and checks the invariants.
func (e *treeEnv) finish() *forest {
	e.t.Helper()
	e.waitCovered()
	if e.b.exited() {
		e.t.Fatalf("the bridge exited on its own: %v", e.b.err)
	}
	if code := e.b.Stop(); code != 0 {
		e.t.Fatalf("bridge exited %d after SIGTERM", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	evs, err := e.apiEvents(ctx, e.watch...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.evs, e.recs = evs, e.rcv.Logs()
	e.f = buildForest(e.rcv.Spans())
	checkInvariants(e.t, e.f, e.recs, e.evs)
	checkNoDuplicates(e.t, e.recs)
	e.t.Logf("%d spans in %d traces, %d records, bridge stopped in %s", len(e.f.nodes), len(e.f.roots), len(e.recs), e.b.stopTook.Round(time.Millisecond))
	return e.f
}

// one reports unless nodes has exactly one element, and returns it (nil when
// none).
func one(t *testing.T, nodes []*tnode, what string, in *tnode) *tnode {
	t.Helper()
	if len(nodes) != 1 {
		where := ""
		if in != nil {
			where = "\nin:\n" + in.render()
		}
		t.Errorf("%d × %s, want 1%s", len(nodes), what, where)
	}
	if len(nodes) == 0 {
		return nil
	}
	return nodes[0]
}

// linksTo reports whether n has a span link to the span (tid, id).
func linksTo(n *tnode, tid, id string) bool {
	for _, l := range n.sp.Span.GetLinks() {
		if hexID(l.GetTraceId()) == tid && hexID(l.GetSpanId()) == id {
			return true
		}
	}
	return false
}
