package causality

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// bytesSource turns fuzz input into choices; past its end every choice is 0.
type bytesSource struct {
	b []byte
	i int
}

func (s *bytesSource) byte() byte {
	if s.i >= len(s.b) {
		return 0
	}
	s.i++
	return s.b[s.i-1]
}

func (s *bytesSource) intn(n int) int {
	if n <= 1 {
		return 0
	}
	return int(s.byte()) % n
}

func (s *bytesSource) done() bool { return s.i >= len(s.b) }

var (
	fuzzKinds   = []string{"Deployment", "ReplicaSet", "Pod", "StatefulSet", "CronJob", "Job", "Node", "Widget", "HorizontalPodAutoscaler", ""}
	fuzzNames   = []string{"web", "web-1", "web-1-a", "db-0", "a", "node-1", "cj-1", ""}
	fuzzNS      = []string{"ns", "ns", "ns", "other", ""}
	fuzzReasons = []string{"ScalingReplicaSet", "SuccessfulCreate", "SuccessfulDelete", "SawCompletedJob", "Scheduled",
		"Pulling", "Started", "BackOff", "Killing", "NodeNotReady", "SuccessfulRescale", "FailedScheduling", "Evicted", "Completed"}
	fuzzServices = []string{"kubelet", "default-scheduler", "deployment-controller", "replicaset-controller", "node-controller", "", "x", "y"}
	fuzzTP       = []string{"", "", "", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-11111111111111111111111111111111-2222222222222222-01", "bad"}
)

// fuzzNote returns a message. Controller events mostly name one of the
// objects (so causes find what they caused), in the form the built-in rule
// for the regarding kind and reason expects; else any form.
func fuzzNote(s *bytesSource, regardingKind, reason string, objs []fuzzObject) string {
	form := s.intn(10)
	if s.intn(3) != 0 {
		switch {
		case regardingKind == "Deployment" && reason == "ScalingReplicaSet":
			form = s.intn(2)
		case regardingKind == "StatefulSet" && reason == "SuccessfulCreate":
			form = 4
		case regardingKind == "StatefulSet" && reason == "SuccessfulDelete":
			form = 8
		case regardingKind == "CronJob" && reason == "SuccessfulCreate":
			form = 5
		case regardingKind == "CronJob" && reason == "SawCompletedJob":
			form = 7
		case reason == "SuccessfulCreate":
			form = 2
		case reason == "SuccessfulDelete":
			form = 3
		case reason == "Scheduled":
			form = 6
		}
	}
	target := map[int]string{0: "ReplicaSet", 1: "ReplicaSet", 2: "Pod", 3: "Pod", 4: "Pod", 8: "Pod", 5: "Job", 7: "Job", 6: "Pod"}[form]
	name := fuzzNames[s.intn(len(fuzzNames))]
	if s.intn(4) != 0 {
		var named []string
		for i := range objs {
			if objs[i].ref.Kind == target {
				named = append(named, objs[i].ref.Name)
			}
		}
		if len(named) > 0 {
			name = named[s.intn(len(named))]
		}
	}
	switch form {
	case 0:
		return "Scaled up replica set " + name + " from 0 to 1"
	case 1:
		return "Scaled down replica set " + name + " from 1 to 0"
	case 2:
		return "Created pod: " + name
	case 3:
		return "Deleted pod: " + name
	case 4:
		return "create Pod " + name + " in StatefulSet db successful"
	case 5:
		return "Created job " + name
	case 6:
		return "Successfully assigned ns/" + name + " to node-1"
	case 7:
		return "Saw completed job: " + name + ", condition: Complete"
	case 8:
		return "delete Pod " + name + " in StatefulSet db successful"
	}
	return reason + " happened"
}

// controllerReason is what the built-in controllers of a kind report.
func controllerReason(s *bytesSource, kind string) string {
	switch kind {
	case "Deployment":
		return "ScalingReplicaSet"
	case "CronJob":
		return []string{"SuccessfulCreate", "SawCompletedJob", "SuccessfulDelete"}[s.intn(3)]
	case "Pod":
		return []string{"Scheduled", "Started", "BackOff", "Killing", "NodeNotReady"}[s.intn(5)]
	case "HorizontalPodAutoscaler":
		return "SuccessfulRescale"
	}
	return []string{"SuccessfulCreate", "SuccessfulDelete"}[s.intn(2)]
}

type fuzzObject struct {
	ref   convert.Ref
	owner int // index into objects, -1 none, -2 missing (an owner not known)
}

// runFuzzEngine derives a scenario from data and checks the engine on it.
func runFuzzEngine(t *testing.T, data []byte) *driver {
	s := &bytesSource{b: data}
	const maxOpen = 8
	cfg := Config{
		ClusterName:          "fuzz",
		EpisodeIdle:          time.Duration(1+s.intn(60)) * 10 * time.Second,
		MaxOpenEpisodes:      maxOpen,
		MaxObjectsPerEpisode: 2 + s.intn(40),
		MaxServices:          1 + s.intn(4),
	}
	cfg.EpisodeMax = cfg.EpisodeIdle * time.Duration(1+s.intn(40))
	d := newDriver(t, cfg)

	// An owner graph: random kinds, names (reused: name clashes), owners
	// among the objects (cycles included), missing owners and none.
	objs := make([]fuzzObject, 1+s.intn(12))
	for i := range objs {
		objs[i].ref = convert.Ref{
			Kind: fuzzKinds[s.intn(len(fuzzKinds))], Name: fuzzNames[s.intn(len(fuzzNames))],
			Namespace: fuzzNS[s.intn(len(fuzzNS))], UID: fmt.Sprint("uid-", i),
		}
		if s.intn(8) == 0 {
			objs[i].ref.UID = "" // keyed by kind/namespace/name
		}
		objs[i].owner = s.intn(len(objs)+2) - 2
		if i > 0 && s.intn(4) != 0 {
			objs[i].owner = s.intn(i) // mostly a tree, owners first
		}
	}
	chainOf := func(i int) []convert.Ref {
		var chain []convert.Ref
		cut := s.intn(3) != 0 // like the cache: stop at a repeat; else a raw cyclic chain
		seen := map[int]bool{}
		for n := 0; n < 6 && i >= 0; n++ {
			if cut && seen[i] {
				break
			}
			seen[i] = true
			chain = append(chain, objs[i].ref)
			if objs[i].owner == -2 {
				chain = append(chain, convert.Ref{Kind: "Missing", Namespace: "ns", Name: "gone", UID: fmt.Sprint("missing-", i)})
				break
			}
			i = objs[i].owner
		}
		return chain
	}

	// Events: fixed regarding object, reason and type per Event; each
	// occurrence a new count (keys are unique, as the watch guarantees).
	type fuzzEvent struct {
		uid    string
		obj    int // -1: no regarding object
		reason string
		typ    string
		count  int32
	}
	events := make([]fuzzEvent, 1+s.intn(16))
	for i := range events {
		events[i] = fuzzEvent{uid: fmt.Sprint("ev-", i), obj: s.intn(len(objs)+1) - 1,
			reason: fuzzReasons[s.intn(len(fuzzReasons))], typ: []string{"Normal", "Warning", ""}[s.intn(3)]}
		if events[i].obj >= 0 && s.intn(2) == 0 {
			events[i].reason = controllerReason(s, objs[events[i].obj].ref.Kind)
		}
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := base
	gens := map[int]int64{}
	for step := 0; step < 400 && !s.done(); step++ {
		switch op := s.intn(16); {
		case op == 0:
			now = now.Add(time.Duration(s.intn(256)) * time.Second)
			d.advance(now)
		case op == 1:
			d.rootDeleted(objs[s.intn(len(objs))].ref.UID, now)
		case op == 2:
			now = now.Add(-time.Duration(s.intn(64)) * time.Second) // the clock may step back
		default:
			ev := &events[s.intn(len(events))]
			ev.count++
			// Occurrence time: usually near now; sometimes zero, far off,
			// sub-second or whole seconds.
			var when time.Time
			switch s.intn(6) {
			case 0:
			case 1:
				when = now.Add(-time.Duration(s.intn(256)) * time.Second)
			case 2:
				when = now.Add(time.Duration(s.intn(256)) * time.Millisecond)
			default:
				when = now.Truncate(time.Second)
			}
			now = now.Add(time.Duration(s.intn(64)) * 100 * time.Millisecond)
			o := &convert.Occurrence{
				EventUID: ev.uid, EventName: ev.uid + ".x", Namespace: "ns", Count: ev.count, Type: ev.typ,
				Reason: ev.reason, Time: when, Observed: now,
				ReportingController: fuzzServices[s.intn(len(fuzzServices))],
			}
			if s.intn(4) == 0 {
				o.SourceHost = "node-1"
			}
			if ev.obj >= 0 {
				o.Chain = chainOf(ev.obj)
				o.Regarding = o.Chain[0]
			}
			o.Note = fuzzNote(s, o.Regarding.Kind, o.Reason, objs)
			in := func(in *Input) {
				rootIdx := ev.obj
				for n := 0; n < 6 && rootIdx >= 0 && objs[rootIdx].owner >= 0; n++ {
					rootIdx = objs[rootIdx].owner
				}
				// Generations only grow (or are unknown: 0).
				if s.intn(24) == 0 {
					gens[rootIdx]++
				}
				if s.intn(6) != 0 {
					in.RootGeneration = gens[rootIdx]
				}
				in.RootTraceparent = fuzzTP[s.intn(len(fuzzTP))]
			}
			d.observe(o, in)
		}
		if n := d.e.Stats().OpenEpisodes; n > maxOpen {
			t.Fatalf("step %d: %d open episodes, limit %d", step, n, maxOpen)
		}
		if err := errors.Join(namedIndexError(d.e), dueBoundError(d.e)); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if n := len(d.e.podNodes); n > maxOpen*cfg.MaxObjectsPerEpisode {
			t.Fatalf("step %d: %d pod nodes remembered", step, n)
		}
		if step%3 == 0 {
			checkSnapshotCache(t, d.e, step)
		}
	}
	d.flush()
	return d
}

// checkSnapshotCache: the checkpoint's snapshot of the open episodes,
// which reuses the JSON of episodes unchanged since the last one, is the
// snapshot encoded afresh (whole, and cut by a small budget).
func checkSnapshotCache(t *testing.T, e *Engine, step int) {
	t.Helper()
	for _, budget := range []int{1 << 20, 3000} {
		got, err := e.SnapshotOpen(budget)
		if err != nil {
			t.Fatalf("step %d: SnapshotOpen: %v", step, err)
		}
		want, err := e.snapshotOpen(budget, false)
		if err != nil {
			t.Fatalf("step %d: snapshot afresh: %v", step, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("step %d, budget %d: the snapshot with cached episodes differs from one encoded afresh:\n%s\n%s", step, budget, got, want)
		}
	}
}

func FuzzEngine(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("a rollout, a crash loop and a cron job"))
	for i := 0; i < 16; i++ {
		seed := make([]byte, 256)
		x := uint32(i*7919 + 1)
		for j := range seed {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			seed[j] = byte(x)
		}
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a := runFuzzEngine(t, data)
		if t.Failed() {
			return
		}
		if b := runFuzzEngine(t, data); canonical(a.spans) != canonical(b.spans) {
			t.Fatalf("two runs of the same input differ:\n%s\n%s", canonical(a.spans), canonical(b.spans))
		}
	})
}

// The fuzz scenarios, from a fixed pseudo-random source, as a unit test:
// long inputs reach deep states (many episodes, evictions, cycles) the seed
// corpus alone does not.
func TestEngineRandomScenarios(t *testing.T) {
	rng := rand.New(rand.NewPCG(20261123, 1))
	n := 200
	if testing.Short() {
		n = 50
	}
	for i := 0; i < n; i++ {
		data := make([]byte, 64+rng.IntN(4096))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		if !t.Run(fmt.Sprint(i), func(t *testing.T) {
			a := runFuzzEngine(t, data)
			if b := runFuzzEngine(t, data); !t.Failed() && canonical(a.spans) != canonical(b.spans) {
				t.Fatalf("two runs of the same input differ:\n%s\n%s", canonical(a.spans), canonical(b.spans))
			}
		}) {
			t.Logf("input: %x", data)
			return
		}
	}
}

// canonSpan is a Span as canonical prints it: its fields with all its
// attributes (an event span's derived from its occurrence), as they were
// printed when event spans kept theirs in Attributes.
type canonSpan struct {
	TraceID       trace.TraceID
	SpanID        trace.SpanID
	Parent        trace.SpanID
	Remote        bool
	Name          string
	Kind          SpanKind
	Start, End    time.Time
	Error         bool
	StatusMessage string
	Service       string
	Attributes    []attribute.KeyValue
	Links         []Link
	Seq           uint64
}

// canonical prints spans sorted by ID with every field: equal strings, equal
// output whatever the order the engine returned them in.
func canonical(spans []Span) string {
	lines := make([]string, 0, len(spans))
	for _, s := range spans {
		lines = append(lines, fmt.Sprintf("%s %s %+v", s.TraceID, s.SpanID, canonSpan{
			s.TraceID, s.SpanID, s.Parent, s.Remote, s.Name, s.Kind, s.Start, s.End, s.Error, s.StatusMessage, s.Service,
			s.AllAttributes(), s.Links, s.Seq}))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
