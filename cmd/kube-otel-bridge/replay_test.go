package main

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/stdout"
	"github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden from the current output")

// recordings returns the bundled recordings by name; empty files (a scenario
// not captured yet) are reported and left out.
func recordings(t *testing.T) map[string]string {
	t.Helper()
	paths, err := filepath.Glob("../../examples/recordings/*.jsonl")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no recordings: %v", err)
	}
	out := map[string]string{}
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".jsonl")
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Logf("recording %s is empty: not replayed", name)
			continue
		}
		out[name] = p
	}
	return out
}

func sortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func readEntries(t *testing.T, path string) []watch.Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries, err := watch.ReadRecording(f)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// defaultReplayOptions are the replay command's defaults.
func defaultReplayOptions() replayOptions {
	return replayOptions{causality: causality.Config{EpisodeIdle: 2 * time.Minute, EpisodeMax: time.Hour}}
}

func replayEntries(t *testing.T, entries []watch.Entry) ([]convert.Occurrence, []causality.Span) {
	t.Helper()
	occs, spans, err := replay(entries, defaultReplayOptions())
	if err != nil {
		t.Fatal(err)
	}
	return occs, spans
}

// The replay command's output for every bundled recording, as a tree and as
// JSON, is compared with testdata/golden; `go test -run Golden -update`
// rewrites the files after a deliberate change (review the diff).
func TestReplayGolden(t *testing.T) {
	recs := recordings(t)
	for _, name := range sortedNames(recs) {
		path := recs[name]
		for _, format := range []string{"tree", "json"} {
			t.Run(name+"."+format, func(t *testing.T) {
				var out, errb bytes.Buffer
				if err := replayCmd([]string{path, "--output", format}, &out, &errb); err != nil {
					t.Fatalf("replay: %v: %s", err, errb.String())
				}
				golden := filepath.Join("testdata", "golden", name+"."+format)
				if *update {
					if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if !bytes.Equal(out.Bytes(), want) {
					t.Errorf("replay of %s differs from %s (run with -update after checking the change):\n%s", name, golden, lineDiff(string(want), out.String()))
				}
			})
		}
	}
}

// lineDiff shows the first differing lines.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			fmt.Fprintf(&b, "line %d:\n- %s\n+ %s\n", i+1, a, c)
			if shown++; shown == 10 {
				break
			}
		}
	}
	return b.String()
}

// Two replays of the same recording give the same bytes and the same IDs
// for every occurrence's log record.
func TestReplayDeterministic(t *testing.T) {
	recs := recordings(t)
	for _, name := range sortedNames(recs) {
		t.Run(name, func(t *testing.T) {
			entries := readEntries(t, recs[name])
			var outs [2]bytes.Buffer
			var ids [2][]string
			for i := range outs {
				occs, spans := replayEntries(t, readEntries(t, recs[name]))
				if err := stdout.JSON(&outs[i], spans); err != nil {
					t.Fatal(err)
				}
				for _, o := range occs {
					ids[i] = append(ids[i], fmt.Sprintf("%s/%d %x %x", o.EventUID, o.Count, o.TraceID, o.SpanID))
				}
			}
			if outs[0].Len() == 0 || !bytes.Equal(outs[0].Bytes(), outs[1].Bytes()) {
				t.Errorf("two replays differ:\n%s", lineDiff(outs[0].String(), outs[1].String()))
			}
			if strings.Join(ids[0], "\n") != strings.Join(ids[1], "\n") {
				t.Error("occurrence IDs differ between two replays")
			}
			if len(ids[0]) == 0 {
				t.Errorf("no occurrences from %d entries", len(entries))
			}
		})
	}
}

// Every bundled recording yields a well-formed forest.
func TestReplayInvariants(t *testing.T) {
	recs := recordings(t)
	for _, name := range sortedNames(recs) {
		t.Run(name, func(t *testing.T) {
			occs, spans := replayEntries(t, readEntries(t, recs[name]))
			for _, err := range replayInvariants(occs, spans) {
				t.Error(err)
			}
		})
	}
}

// shuffleWindows reorders a recording the way separate watches may deliver
// it: within windows of a few seconds, events come in a random order, each
// keeping its own time. Objects stay ahead of the events of their window
// (the cache is fed before the events that need it), and a root object's
// new generation or deletion is a barrier nothing crosses: which episode an
// occurrence belongs to depends on the generation it was seen with, by
// design.
func shuffleWindows(entries []watch.Entry, window time.Duration, rng *rand.Rand) []watch.Entry {
	out := make([]watch.Entry, 0, len(entries))
	var objs, evs []watch.Entry
	var start time.Time
	gens := map[string]int64{}
	flush := func() {
		rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		out = append(append(out, objs...), evs...)
		objs, evs = nil, nil
	}
	for _, e := range entries {
		barrier := false
		if o := e.Object; o != nil && len(o.Owners) == 0 {
			prev, seen := gens[o.UID]
			barrier = (seen && prev != o.Generation) || !o.Deleted.IsZero()
			gens[o.UID] = o.Generation
		}
		if barrier || (len(objs)+len(evs) > 0 && e.At.Sub(start) > window) {
			flush()
		}
		if len(objs)+len(evs) == 0 {
			start = e.At
		}
		if barrier {
			out = append(out, e)
			continue
		}
		if e.Object != nil {
			objs = append(objs, e)
		} else {
			evs = append(evs, e)
		}
	}
	flush()
	return out
}

// structure is what must not depend on arrival order: every span by ID with
// its name, kind and parent, and the span of every occurrence.
func structure(occs []convert.Occurrence, spans []causality.Span) map[string]string {
	m := map[string]string{}
	names := map[string]string{}
	for _, s := range spans {
		names[s.TraceID.String()+"/"+s.SpanID.String()] = s.Name
	}
	for _, s := range spans {
		parent := ""
		if s.Parent.IsValid() {
			parent = names[s.TraceID.String()+"/"+s.Parent.String()] + " " + s.Parent.String()
		}
		key := "span " + s.TraceID.String() + "/" + s.SpanID.String()
		if prev, dup := m[key]; dup {
			m[key] = prev + " AND DUPLICATE"
			continue
		}
		m[key] = fmt.Sprintf("%s (%s) parent %s", s.Name, s.Kind, parent)
	}
	for _, o := range occs {
		m[fmt.Sprintf("occurrence %s/%d", o.EventUID, o.Count)] = fmt.Sprintf("%x/%x", o.TraceID, o.SpanID)
	}
	return m
}

func diffStructure(want, got map[string]string) []string {
	var d []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			d = append(d, fmt.Sprintf("missing %s: %s", k, w))
		} else if g != w {
			d = append(d, fmt.Sprintf("%s: %s, want %s", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("extra %s: %s", k, g))
		}
	}
	sort.Strings(d)
	return d
}

func TestReplayShuffledSameStructure(t *testing.T) {
	recs := recordings(t)
	for _, name := range sortedNames(recs) {
		t.Run(name, func(t *testing.T) {
			entries := readEntries(t, recs[name])
			want := structure(replayEntries(t, entries))
			reordered := 0
			for seed := uint64(1); seed <= 30; seed++ {
				rng := rand.New(rand.NewPCG(seed, 42))
				shuffled := shuffleWindows(readEntries(t, recs[name]), 3*time.Second, rng)
				if len(shuffled) != len(entries) {
					t.Fatalf("shuffle lost entries: %d of %d", len(shuffled), len(entries))
				}
				for i := range shuffled {
					if !shuffled[i].At.Equal(entries[i].At) {
						reordered++
						break
					}
				}
				occs, spans := replayEntries(t, shuffled)
				for _, err := range replayInvariants(occs, spans) {
					t.Errorf("seed %d: %v", seed, err)
				}
				if d := diffStructure(want, structure(occs, spans)); len(d) > 0 {
					var tree bytes.Buffer
					_ = stdout.Tree(&tree, spans)
					t.Fatalf("seed %d: structure differs from the recorded order:\n%s\n%s", seed, strings.Join(d, "\n"), tree.String())
				}
			}
			if reordered == 0 && len(entries) > 3 {
				t.Error("no seed changed the order: the shuffle tests nothing")
			}
		})
	}
}

// replayInvariants checks the trace model's promises on a replay's output
// (causality's tests check the same on hand-made and fuzzed input).
func replayInvariants(occs []convert.Occurrence, spans []causality.Span) []error {
	var errs []error
	fail := func(format string, args ...any) {
		if len(errs) < 20 {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	type key struct {
		t trace.TraceID
		s trace.SpanID
	}
	byID := map[key]*causality.Span{}
	roots := map[trace.TraceID]int{}
	events := map[string]int{}
	objects := map[string]int{}
	for i := range spans {
		s := &spans[i]
		if _, dup := byID[key{s.TraceID, s.SpanID}]; dup {
			fail("duplicate span %s/%s %q", s.TraceID, s.SpanID, s.Name)
		}
		byID[key{s.TraceID, s.SpanID}] = s
		attrs := map[string]string{}
		for _, a := range s.AllAttributes() {
			attrs[string(a.Key)] = a.Value.Emit()
		}
		switch s.Kind {
		case causality.KindRoot:
			roots[s.TraceID]++
		case causality.KindEvent:
			events[attrs["k8s.event.uid"]+"/"+attrs["k8s.event.count"]]++
			kind := attrs["k8s.object.kind"]
			if kind == "" {
				kind = "Event"
			}
			if s.Name != kind+"."+attrs["k8s.event.reason"] {
				fail("event span %q: kind %q reason %q", s.Name, kind, attrs["k8s.event.reason"])
			}
			if w := attrs["k8s.event.type"] == "Warning"; w != s.Error || (w && s.StatusMessage != attrs["k8s.event.note"]) {
				fail("event span %q type %q: error %v status %q", s.Name, attrs["k8s.event.type"], s.Error, s.StatusMessage)
			}
		}
		if uid := attrs["k8s.object.uid"]; s.Kind != causality.KindEvent && uid != "" {
			objects[s.TraceID.String()+"/"+uid]++
		}
	}
	for tid := range byID {
		if roots[tid.t] != 1 {
			fail("trace %s has %d roots", tid.t, roots[tid.t])
		}
	}
	for k, n := range objects {
		if n != 1 {
			fail("object %s has %d spans in its trace", k, n)
		}
	}
	for i := range spans {
		s := &spans[i]
		if !s.Parent.IsValid() || s.Remote {
			if s.Kind != causality.KindRoot {
				fail("span %q has no parent", s.Name)
			}
			continue
		}
		p, ok := byID[key{s.TraceID, s.Parent}]
		if !ok {
			fail("orphan span %q: parent %s not output", s.Name, s.Parent)
			continue
		}
		if s.Start.Before(p.Start) || s.End.After(p.End) {
			fail("%q [%s..%s] not covered by its parent %q [%s..%s]", s.Name, s.Start.Format(time.StampMicro), s.End.Format(time.StampMicro),
				p.Name, p.Start.Format(time.StampMicro), p.End.Format(time.StampMicro))
		}
	}
	for _, o := range occs {
		k := o.EventUID + "/" + strconv.Itoa(int(o.Count))
		if events[k] != 1 {
			fail("occurrence %s has %d event spans", k, events[k])
		}
		if s, ok := byID[key{o.TraceID, o.SpanID}]; !ok || s.Kind != causality.KindEvent || s.Name != o.Regarding.Kind+"."+o.Reason {
			fail("occurrence %s: its log's span %x/%x is not its event span", k, o.TraceID, o.SpanID)
		}
	}
	if len(events) != len(occs) {
		fail("%d event spans for %d occurrences", len(events), len(occs))
	}
	return errs
}
