package causality

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// t0 is the start of every hand-made scenario.
var t0 = time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func ref(kind, ns, name, uid string) convert.Ref {
	return convert.Ref{Kind: kind, Namespace: ns, Name: name, UID: uid}
}

// occ builds an occurrence about chain[0] (chain runs from the regarding
// object up to the root), with the event UID and count as its key.
func occ(uid string, count int32, reason, note string, when time.Time, chain ...convert.Ref) *convert.Occurrence {
	o := &convert.Occurrence{
		EventUID: uid, EventName: uid, Count: count, Type: "Normal",
		Reason: reason, Note: note, Time: when, Observed: when,
		Chain: chain,
	}
	if len(chain) > 0 {
		o.Regarding = chain[0]
		o.Namespace = chain[0].Namespace
	}
	switch {
	case strings.HasPrefix(reason, "Scaling"):
		o.ReportingController = "deployment-controller"
	case reason == "Scheduled" || reason == "FailedScheduling":
		o.ReportingController = "default-scheduler"
	case reason == "NodeNotReady":
		o.ReportingController = "node-controller"
	case strings.HasPrefix(reason, "Successful"), reason == "SawCompletedJob":
		o.ReportingController = "controller"
	default:
		o.ReportingController = "kubelet"
	}
	return o
}

func warn(o *convert.Occurrence) *convert.Occurrence {
	o.Type = "Warning"
	return o
}

// driver feeds an engine the way the pipeline does (Advance before every
// occurrence, at its observation time) and keeps everything it produced.
type driver struct {
	t       testing.TB
	e       *Engine
	spans   []Span
	results map[convert.Key]Result
	keys    []convert.Key
}

func newDriver(t testing.TB, cfg Config) *driver {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &driver{t: t, e: e, results: map[convert.Key]Result{}}
}

func (d *driver) observe(o *convert.Occurrence, opts ...func(*Input)) Result {
	d.spans = append(d.spans, d.e.Advance(o.Observed)...)
	in := Input{Occ: o, Now: o.Observed}
	for _, f := range opts {
		f(&in)
	}
	res := d.e.Observe(in)
	d.spans = append(d.spans, res.Spans...)
	d.results[o.Key()] = res
	d.keys = append(d.keys, o.Key())
	return res
}

func gen(g int64) func(*Input) { return func(in *Input) { in.RootGeneration = g } }

func (d *driver) advance(now time.Time) []Span {
	s := d.e.Advance(now)
	d.spans = append(d.spans, s...)
	return s
}

func (d *driver) rootDeleted(uid string, at time.Time) []Span {
	s := d.e.RootDeleted(uid, at)
	d.spans = append(d.spans, s...)
	return s
}

// flush closes everything and checks the invariants on all spans produced.
func (d *driver) flush() *spanSet {
	d.t.Helper()
	d.spans = append(d.spans, d.e.Flush()...)
	if n := d.e.Stats().OpenEpisodes; n != 0 {
		d.t.Errorf("after Flush: %d open episodes", n)
	}
	ss := index(d.spans)
	for _, err := range checkInvariants(d.spans) {
		d.t.Error(err)
	}
	for _, err := range checkOccurrences(ss, d.keys, d.results) {
		d.t.Error(err)
	}
	if d.t.Failed() {
		d.t.Logf("spans:\n%s", dump(d.spans))
	}
	return ss
}

type spanKey struct {
	trace trace.TraceID
	span  trace.SpanID
}

// spanSet indexes spans for assertions.
type spanSet struct {
	all    []Span
	byID   map[spanKey]*Span
	traces map[trace.TraceID][]*Span
}

func index(spans []Span) *spanSet {
	ss := &spanSet{all: spans, byID: map[spanKey]*Span{}, traces: map[trace.TraceID][]*Span{}}
	for i := range spans {
		s := &spans[i]
		ss.byID[spanKey{s.TraceID, s.SpanID}] = s
		ss.traces[s.TraceID] = append(ss.traces[s.TraceID], s)
	}
	return ss
}

func (ss *spanSet) parent(s *Span) *Span {
	if !s.Parent.IsValid() || s.Remote {
		return nil
	}
	return ss.byID[spanKey{s.TraceID, s.Parent}]
}

// path is the names from the root down to s, joined by " > ".
func (ss *spanSet) path(s *Span) string {
	var names []string
	for i := 0; s != nil && i < 100; i++ {
		names = append(names, s.Name)
		s = ss.parent(s)
	}
	for i, j := 0, len(names)-1; i < j; i, j = i+1, j-1 {
		names[i], names[j] = names[j], names[i]
	}
	return strings.Join(names, " > ")
}

// find returns the spans with the name (and, for object spans, "Kind name").
func (ss *spanSet) find(name string) []*Span {
	var out []*Span
	for i := range ss.all {
		if ss.all[i].Name == name {
			out = append(out, &ss.all[i])
		}
	}
	return out
}

func (ss *spanSet) one(t testing.TB, name string) *Span {
	t.Helper()
	f := ss.find(name)
	if len(f) != 1 {
		t.Fatalf("%d spans named %q, want 1\n%s", len(f), name, dump(ss.all))
	}
	return f[0]
}

// event returns the event span of an occurrence key.
func (ss *spanSet) event(t testing.TB, uid string, count int32) *Span {
	t.Helper()
	var out []*Span
	for i := range ss.all {
		s := &ss.all[i]
		if s.Kind == KindEvent && attrOf(s, "k8s.event.uid") == uid && attrOf(s, "k8s.event.count") == strconv.Itoa(int(count)) {
			out = append(out, s)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%d event spans for %s/%d, want 1\n%s", len(out), uid, count, dump(ss.all))
	}
	return out[0]
}

func (ss *spanSet) rootOf(tid trace.TraceID) *Span {
	for _, s := range ss.traces[tid] {
		if s.Kind == KindRoot {
			return s
		}
	}
	return nil
}

func (ss *spanSet) roots() []*Span {
	var out []*Span
	for i := range ss.all {
		if ss.all[i].Kind == KindRoot {
			out = append(out, &ss.all[i])
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

func attrOf(s *Span, key string) string {
	for _, a := range s.AllAttributes() {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}

func hasAttr(s *Span, key string) bool {
	for _, a := range s.AllAttributes() {
		if string(a.Key) == key {
			return true
		}
	}
	return false
}

// checkInvariants checks the trace model's structural promises on a set of
// finished spans (everything an engine produced up to and including Flush).
func checkInvariants(spans []Span) []error {
	var errs []error
	fail := func(format string, args ...any) {
		if len(errs) < 20 {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	ss := &spanSet{byID: map[spanKey]*Span{}, traces: map[trace.TraceID][]*Span{}}
	for i := range spans {
		s := &spans[i]
		k := spanKey{s.TraceID, s.SpanID}
		if !s.TraceID.IsValid() || !s.SpanID.IsValid() {
			fail("span %q has an invalid ID %s/%s", s.Name, s.TraceID, s.SpanID)
		}
		if prev, dup := ss.byID[k]; dup {
			fail("duplicate span ID %s/%s: %q and %q", s.TraceID, s.SpanID, prev.Name, s.Name)
			continue
		}
		ss.byID[k] = s
		ss.traces[s.TraceID] = append(ss.traces[s.TraceID], s)
	}
	for tid, tr := range ss.traces {
		var roots []*Span
		for _, s := range tr {
			if s.Kind == KindRoot {
				roots = append(roots, s)
			}
			if s.Remote && s.Kind != KindRoot {
				fail("%s: non-root span %q has a remote parent", tid, s.Name)
			}
			if s.Remote && !s.Parent.IsValid() {
				fail("%s: root %q is Remote without a parent", tid, s.Name)
			}
			if s.End.Before(s.Start) {
				fail("%s: span %q ends (%s) before it starts (%s)", tid, s.Name, s.End, s.Start)
			}
			if s.Service == "" {
				fail("%s: span %q has no service", tid, s.Name)
			}
			// No orphans; parents cover their children.
			if s.Parent.IsValid() && !s.Remote {
				p, ok := ss.byID[spanKey{tid, s.Parent}]
				if !ok {
					fail("%s: orphan span %q (%s): parent %s was never output", tid, s.Name, s.SpanID, s.Parent)
				} else {
					if s.Start.Before(p.Start) || s.End.After(p.End) {
						fail("%s: parent %q [%s, %s] does not cover child %q [%s, %s]", tid, p.Name,
							p.Start.Format(time.RFC3339Nano), p.End.Format(time.RFC3339Nano), s.Name,
							s.Start.Format(time.RFC3339Nano), s.End.Format(time.RFC3339Nano))
					}
					if p.Kind == KindEvent && s.Kind == KindEvent {
						fail("%s: event span %q under event span %q", tid, s.Name, p.Name)
					}
				}
			} else if s.Kind != KindRoot {
				fail("%s: non-root span %q (%s) has no parent", tid, s.Name, s.Kind)
			}
			switch s.Kind {
			case KindEvent:
				kind := attrOf(s, "k8s.object.kind")
				if kind == "" {
					kind = "Event"
				}
				if want := kind + "." + attrOf(s, "k8s.event.reason"); s.Name != want {
					fail("%s: event span named %q, want %q", tid, s.Name, want)
				}
				warning := attrOf(s, "k8s.event.type") == "Warning"
				if s.Error != warning {
					fail("%s: event span %q of type %q has Error=%v", tid, s.Name, attrOf(s, "k8s.event.type"), s.Error)
				}
				if warning && s.StatusMessage != attrOf(s, "k8s.event.note") {
					fail("%s: warning %q has status %q, want the note %q", tid, s.Name, s.StatusMessage, attrOf(s, "k8s.event.note"))
				}
				if !s.End.Equal(s.Start) && !hasCausedChild(ss, s) {
					fail("%s: event span %q has a duration but caused nothing", tid, s.Name)
				}
			case KindObject, KindRoot:
			default:
				fail("%s: span %q of unknown kind %d", tid, s.Name, s.Kind)
			}
		}
		// Exactly one root per trace: one episode, one trace. Episodes of
		// roots with a traceparent annotation share its trace; each is
		// then a child of the remote span.
		switch {
		case len(roots) == 0:
			fail("trace %s has no root span", tid)
		case len(roots) > 1:
			for _, r := range roots {
				if !r.Remote {
					var names []string
					for _, r := range roots {
						names = append(names, r.Name+" "+attrOf(r, "k8s.episode.key"))
					}
					fail("trace %s has %d root spans %v, want exactly 1", tid, len(roots), names)
					break
				}
			}
		}
		// Every span reaches a root (no cycles among parents), and each
		// episode has one object span per object.
		objects := map[spanKey]map[string]string{}
		for _, s := range tr {
			cur := s
			for i := 0; cur != nil && cur.Kind != KindRoot; i++ {
				if i > len(tr) {
					fail("%s: span %q is in a parent cycle", tid, s.Name)
					cur = nil
					break
				}
				cur = ss.byID[spanKey{tid, cur.Parent}]
			}
			if cur == nil || s.Kind == KindEvent {
				continue
			}
			rk := spanKey{tid, cur.SpanID}
			if objects[rk] == nil {
				objects[rk] = map[string]string{}
			}
			if uid := attrOf(s, "k8s.object.uid"); uid != "" {
				if prev, dup := objects[rk][uid]; dup {
					fail("%s: two object spans for uid %s in episode %q: %q and %q", tid, uid, cur.Name, prev, s.Name)
				}
				objects[rk][uid] = s.Name
			}
		}
	}
	return errs
}

func hasCausedChild(ss *spanSet, p *Span) bool {
	for _, s := range ss.traces[p.TraceID] {
		if s.Parent == p.SpanID && s.Kind != KindEvent {
			return true
		}
	}
	return false
}

// checkOccurrences checks that every occurrence given to Observe has exactly
// one event span, with the IDs Observe returned for its log record.
func checkOccurrences(ss *spanSet, keys []convert.Key, results map[convert.Key]Result) []error {
	var errs []error
	count := map[convert.Key][]*Span{}
	for i := range ss.all {
		s := &ss.all[i]
		if s.Kind != KindEvent {
			continue
		}
		n, _ := strconv.Atoi(attrOf(s, "k8s.event.count"))
		k := convert.Key{EventUID: attrOf(s, "k8s.event.uid"), Count: int32(n)}
		count[k] = append(count[k], s)
	}
	for _, k := range keys {
		got := count[k]
		if len(got) != 1 {
			errs = append(errs, fmt.Errorf("occurrence %v has %d event spans, want 1", k, len(got)))
			continue
		}
		if r := results[k]; got[0].TraceID != r.TraceID || got[0].SpanID != r.SpanID {
			errs = append(errs, fmt.Errorf("occurrence %v: Observe said %s/%s, span is %s/%s", k, r.TraceID, r.SpanID, got[0].TraceID, got[0].SpanID))
		}
		if len(errs) > 20 {
			break
		}
	}
	if len(count) != len(keys) {
		errs = append(errs, fmt.Errorf("%d occurrence keys among event spans, %d observed", len(count), len(keys)))
	}
	return errs
}

// dump prints spans as indented trees (for failure messages).
func dump(spans []Span) string {
	ss := index(spans)
	children := map[spanKey][]*Span{}
	var tops []*Span
	for i := range spans {
		s := &spans[i]
		if p := ss.parent(s); p != nil && p != s {
			k := spanKey{s.TraceID, s.Parent}
			children[k] = append(children[k], s)
		} else {
			tops = append(tops, s)
		}
	}
	var b strings.Builder
	var rec func(s *Span, depth int)
	rec = func(s *Span, depth int) {
		if depth > 40 {
			return
		}
		fmt.Fprintf(&b, "%s%s [%s] %s..%s %s\n", strings.Repeat("  ", depth), s.Name, s.Kind,
			s.Start.Format("15:04:05.000"), s.End.Format("15:04:05.000"), s.SpanID)
		cs := children[spanKey{s.TraceID, s.SpanID}]
		sort.SliceStable(cs, func(i, j int) bool { return cs[i].Seq < cs[j].Seq })
		for _, c := range cs {
			rec(c, depth+1)
		}
	}
	for _, s := range tops {
		fmt.Fprintf(&b, "trace %s\n", s.TraceID)
		rec(s, 1)
	}
	return b.String()
}
