package causality

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// A rollout's objects: Deployment web → ReplicaSet web-1 → Pod web-1-a.
var (
	dep  = ref("Deployment", "ns", "web", "dep-uid")
	rs   = ref("ReplicaSet", "ns", "web-1", "rs-uid")
	podA = ref("Pod", "ns", "web-1-a", "pod-a-uid")
	podB = ref("Pod", "ns", "web-1-b", "pod-b-uid")
)

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{EpisodeIdle: -1},
		{EpisodeMax: -1},
		{EpisodeIdle: time.Hour, EpisodeMax: time.Minute},
		{MaxOpenEpisodes: -1},
		{MaxObjectsPerEpisode: -1},
		{MaxServices: -1},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v): no error", c)
		}
	}
	if _, err := New(Config{}); err != nil {
		t.Errorf("zero config: %v", err)
	}
}

// The pod's events arrive before the ReplicaSet's "Created pod" and the
// Deployment's "Scaled up replica set" (different watches, no order between
// them): the tree is the same as in order.
func TestLateCauseStillParents(t *testing.T) {
	d := newDriver(t, Config{})
	chainPod := []convert.Ref{podA, rs, dep}
	d.observe(occ("ev-sched", 1, "Scheduled", "Successfully assigned ns/web-1-a to node-1", at(30*time.Millisecond), chainPod...))
	d.observe(occ("ev-pull", 1, "Pulling", `Pulling image "nginx"`, at(300*time.Millisecond), chainPod...))
	d.observe(occ("ev-rs", 1, "SuccessfulCreate", "Created pod: web-1-a", at(20*time.Millisecond), rs, dep))
	d.observe(occ("ev-dep", 1, "ScalingReplicaSet", "Scaled up replica set web-1 from 0 to 1", at(10*time.Millisecond), dep))
	ss := d.flush()
	if len(ss.traces) != 1 {
		t.Fatalf("%d traces, want 1", len(ss.traces))
	}
	want := "Deployment web > Deployment.ScalingReplicaSet > ReplicaSet web-1 > ReplicaSet.SuccessfulCreate > Pod web-1-a > Pod.Scheduled"
	if got := ss.path(ss.event(t, "ev-sched", 1)); got != want {
		t.Errorf("path\n got %s\nwant %s", got, want)
	}
	if got := ss.path(ss.event(t, "ev-pull", 1)); !strings.HasSuffix(got, "Pod web-1-a > Pod.Pulling") || !strings.HasPrefix(got, "Deployment web > Deployment.ScalingReplicaSet > ReplicaSet web-1 > ReplicaSet.SuccessfulCreate") {
		t.Errorf("Pulling path %s", got)
	}
	// The causes were stretched over what they caused.
	sc := ss.event(t, "ev-dep", 1)
	if !sc.End.Equal(at(300 * time.Millisecond)) {
		t.Errorf("ScalingReplicaSet ends %s, want the Pulling time", sc.End)
	}
}

// Controller events are exported at the close, the others at once with the
// IDs of their log record.
func TestLeafEventSpansExportedImmediately(t *testing.T) {
	d := newDriver(t, Config{})
	r := d.observe(occ("ev-dep", 1, "ScalingReplicaSet", "Scaled up replica set web-1 from 0 to 1", at(0), dep))
	if len(r.Spans) != 0 {
		t.Errorf("controller event exported before the close: %v", r.Spans)
	}
	r = d.observe(occ("ev-sched", 1, "Scheduled", "Successfully assigned ns/web-1-a to node-1", at(time.Second), podA, rs, dep))
	if len(r.Spans) != 1 || r.Spans[0].SpanID != r.SpanID || r.Spans[0].Name != "Pod.Scheduled" {
		t.Fatalf("leaf event: %+v", r)
	}
	if r.TraceID != r.Spans[0].TraceID || !r.TraceID.IsValid() {
		t.Errorf("trace IDs %s %s", r.TraceID, r.Spans[0].TraceID)
	}
	d.flush()
}

func TestEpisodePerRoot(t *testing.T) {
	d := newDriver(t, Config{})
	other := ref("StatefulSet", "ns", "db", "sts-uid")
	r1 := d.observe(occ("e1", 1, "ScalingReplicaSet", "Scaled up replica set web-1 from 0 to 1", at(0), dep))
	r2 := d.observe(occ("e2", 1, "SuccessfulCreate", "create Pod db-0 in StatefulSet db successful", at(time.Millisecond), other))
	r3 := d.observe(occ("e3", 1, "Scheduled", "Successfully assigned ns/web-1-a to node-1", at(2*time.Millisecond), podA, rs, dep))
	if r1.TraceID == r2.TraceID {
		t.Errorf("two roots share trace %s", r1.TraceID)
	}
	if r1.TraceID != r3.TraceID {
		t.Errorf("same root, two traces")
	}
	ss := d.flush()
	if n := len(ss.roots()); n != 2 {
		t.Errorf("%d roots, want 2", n)
	}
	if s := d.e.Stats(); s.EpisodesOpened != 2 || s.EpisodesClosed[CloseFlush] != 2 {
		t.Errorf("stats %+v", s)
	}
	root := ss.rootOf(r1.TraceID)
	if root.Name != "Deployment web" || attrOf(root, "k8s.episode.trigger") != "ScalingReplicaSet" || attrOf(root, "k8s.episode.events") != "2" {
		t.Errorf("root %q attrs %v", root.Name, root.Attributes)
	}
}

func TestNewGenerationClosesAndLinks(t *testing.T) {
	d := newDriver(t, Config{})
	r1 := d.observe(occ("e1", 1, "ScalingReplicaSet", "Scaled up replica set web-1 from 0 to 1", at(0), dep), gen(1))
	r2 := d.observe(occ("e2", 1, "Scheduled", "Successfully assigned ns/web-1-a to node-1", at(time.Second), podA, rs, dep), gen(1))
	if r1.TraceID != r2.TraceID {
		t.Fatal("same generation, two traces")
	}
	r3 := d.observe(occ("e3", 1, "ScalingReplicaSet", "Scaled up replica set web-2 from 0 to 1", at(2*time.Second), dep), gen(2))
	if r3.TraceID == r1.TraceID {
		t.Fatal("new generation did not open a new episode")
	}
	var closedRoot *Span
	for i := range r3.Spans {
		if r3.Spans[i].Kind == KindRoot {
			closedRoot = &r3.Spans[i]
		}
	}
	if closedRoot == nil || closedRoot.TraceID != r1.TraceID || attrOf(closedRoot, "k8s.episode.close_reason") != CloseNewGeneration {
		t.Fatalf("the occurrence of the new generation did not return the closed episode: %+v", r3.Spans)
	}
	// A stale generation (an old cached object) keeps the episode.
	r4 := d.observe(occ("e4", 1, "Pulling", "x", at(3*time.Second), podA, rs, dep), gen(1))
	if r4.TraceID != r3.TraceID {
		t.Error("a lower generation opened a new episode")
	}
	ss := d.flush()
	newRoot := ss.rootOf(r3.TraceID)
	if len(newRoot.Links) != 1 || newRoot.Links[0].TraceID != r1.TraceID || newRoot.Links[0].SpanID != closedRoot.SpanID {
		t.Errorf("new root links %+v, want the previous root %s/%s", newRoot.Links, r1.TraceID, closedRoot.SpanID)
	}
	// The first episode of a root carries the day it opened on; later
	// ones continue the root's sequence.
	if !strings.HasPrefix(attrOf(closedRoot, "k8s.episode.key"), "1.0.d") || attrOf(newRoot, "k8s.episode.key") != "2.0" {
		t.Errorf("episode keys %q %q", attrOf(closedRoot, "k8s.episode.key"), attrOf(newRoot, "k8s.episode.key"))
	}
	if attrOf(newRoot, "k8s.object.generation") != "2" {
		t.Errorf("generation attribute %q", attrOf(newRoot, "k8s.object.generation"))
	}
	if got := d.e.Stats().EpisodesClosed[CloseNewGeneration]; got != 1 {
		t.Errorf("closed by new generation: %d", got)
	}
}

func TestIdleCloseByAdvance(t *testing.T) {
	idle := 2 * time.Minute
	d := newDriver(t, Config{EpisodeIdle: idle})
	r1 := d.observe(occ("e1", 1, "ScalingReplicaSet", "Scaled up replica set web-1 from 0 to 1", at(0), dep))
	d.observe(occ("e2", 1, "Scheduled", "Successfully assigned ns/web-1-a to node-1", at(10*time.Second), podA, rs, dep))
	if s := d.advance(at(10*time.Second + idle - time.Nanosecond)); len(s) != 0 {
		t.Fatalf("closed before idle: %d spans", len(s))
	}
	s := d.advance(at(10*time.Second + idle))
	if len(s) == 0 {
		t.Fatal("not closed after idle")
	}
	if d.e.Stats().OpenEpisodes != 0 || d.e.Stats().EpisodesClosed[CloseIdle] != 1 {
		t.Errorf("stats %+v", d.e.Stats())
	}
	// Every span of the episode comes out at the close, the deferred
	// controller event and the object spans included.
	names := map[string]bool{}
	for _, sp := range s {
		names[sp.Name] = true
		if sp.Kind == KindRoot && attrOf(&sp, "k8s.episode.close_reason") != CloseIdle {
			t.Errorf("close reason %q", attrOf(&sp, "k8s.episode.close_reason"))
		}
	}
	for _, n := range []string{"Deployment web", "Deployment.ScalingReplicaSet", "ReplicaSet web-1", "Pod web-1-a"} {
		if !names[n] {
			t.Errorf("close did not export %q", n)
		}
	}
	if names["Pod.Scheduled"] {
		t.Error("close exported the leaf event span again")
	}
	r3 := d.observe(occ("e3", 1, "Killing", "Stopping container", at(5*time.Minute), podA, rs, dep))
	if r3.TraceID == r1.TraceID {
		t.Fatal("occurrence after idle close joined the closed trace")
	}
	ss := d.flush()
	root := ss.rootOf(r3.TraceID)
	if len(root.Links) != 1 || root.Links[0].TraceID != r1.TraceID {
		t.Errorf("links %+v", root.Links)
	}
	if attrOf(root, "k8s.episode.key") != "0.1" {
		t.Errorf("episode key %q, want 0.1", attrOf(root, "k8s.episode.key"))
	}
}

func TestMaxDuration(t *testing.T) {
	d := newDriver(t, Config{EpisodeIdle: 2 * time.Minute, EpisodeMax: time.Hour})
	var first trace.TraceID
	for i := 0; i <= 61; i++ {
		r := d.observe(occ("backoff", int32(i+1), "BackOff", "Back-off restarting failed container", at(time.Duration(i)*time.Minute), podA, rs, dep))
		if i == 0 {
			first = r.TraceID
		}
		if i < 60 && r.TraceID != first {
			t.Fatalf("minute %d: episode changed before its maximum duration", i)
		}
		if i == 60 && r.TraceID == first {
			t.Fatal("episode not closed at its maximum duration")
		}
	}
	ss := d.flush()
	if got := d.e.Stats().EpisodesClosed[CloseMax]; got != 1 {
		t.Errorf("closed at max duration: %d", got)
	}
	root := ss.rootOf(first)
	if attrOf(root, "k8s.episode.close_reason") != CloseMax || root.End.Sub(root.Start) != 59*time.Minute {
		t.Errorf("first root: reason %q, duration %s", attrOf(root, "k8s.episode.close_reason"), root.End.Sub(root.Start))
	}
}

func TestRootDeleted(t *testing.T) {
	d := newDriver(t, Config{DeleteGrace: -1}) // at once
	r1 := d.observe(occ("e1", 1, "Scheduled", "Successfully assigned ns/web-1-a to node-1", at(0), podA, rs, dep))
	if s := d.rootDeleted(podA.UID, at(0)); s != nil {
		t.Errorf("deleting a non-root closed an episode: %d spans", len(s))
	}
	if s := d.rootDeleted("nope", at(0)); s != nil {
		t.Errorf("deleting an unknown uid: %d spans", len(s))
	}
	if s := d.rootDeleted(dep.UID, at(0)); len(s) == 0 {
		t.Fatal("root deletion closed nothing")
	}
	if s := d.e.Stats(); s.OpenEpisodes != 0 || s.EpisodesClosed[CloseDeleted] != 1 {
		t.Errorf("stats %+v", s)
	}
	r2 := d.observe(occ("e2", 1, "Killing", "Stopping container", at(time.Second), podA, rs, dep))
	if r2.TraceID == r1.TraceID {
		t.Error("late occurrence joined the closed episode")
	}
	ss := d.flush()
	if attrOf(ss.rootOf(r1.TraceID), "k8s.episode.close_reason") != CloseDeleted {
		t.Error("close reason")
	}
	if l := ss.rootOf(r2.TraceID).Links; len(l) != 1 || l[0].TraceID != r1.TraceID {
		t.Errorf("late episode links %+v", l)
	}
}

// A deleted root's episode stays open for DeleteGrace: an Event written
// before the deletion but read after it (the Events watch is read in bursts)
// joins it; at the Advance past the grace it closes as root_deleted, and a
// later occurrence starts a new, linked episode.
func TestRootDeletedGrace(t *testing.T) {
	d := newDriver(t, Config{})
	r1 := d.observe(occ("e1", 1, "BackOff", "Back-off restarting failed container", at(0), podA))
	if s := d.rootDeleted(podA.UID, at(10*time.Second)); s != nil {
		t.Fatalf("closed at once (%d spans), want after the grace", len(s))
	}
	late := d.observe(occ("e1", 2, "BackOff", "Back-off restarting failed container", at(10*time.Second+DefaultDeleteGrace/2), podA))
	if late.TraceID != r1.TraceID {
		t.Errorf("an occurrence within the grace started trace %s, want the deleted root's %s", late.TraceID, r1.TraceID)
	}
	if s := d.advance(at(10*time.Second + DefaultDeleteGrace - time.Millisecond)); s != nil {
		t.Errorf("closed before the grace was over: %d spans", len(s))
	}
	s := d.advance(at(10*time.Second + DefaultDeleteGrace))
	if len(s) == 0 {
		t.Fatal("not closed once the grace was over")
	}
	if st := d.e.Stats(); st.OpenEpisodes != 0 || st.EpisodesClosed[CloseDeleted] != 1 {
		t.Errorf("stats %+v, want closed as root_deleted", st)
	}
	after := d.observe(occ("e1", 3, "BackOff", "Back-off restarting failed container", at(13*time.Second), podA))
	if after.TraceID == r1.TraceID {
		t.Error("an occurrence after the grace joined the closed episode")
	}
	ss := d.flush()
	if r := attrOf(ss.rootOf(r1.TraceID), "k8s.episode.close_reason"); r != CloseDeleted {
		t.Errorf("close reason %q", r)
	}
	if l := ss.rootOf(after.TraceID).Links; len(l) != 1 || l[0].TraceID != r1.TraceID {
		t.Errorf("later episode links %+v", l)
	}
}

// A flush or a shutdown's SaveOpen during the grace closes the episode as
// root_deleted: it is neither reported as flushed nor carried over.
func TestRootDeletedGraceAtShutdown(t *testing.T) {
	for _, save := range []bool{false, true} {
		d := newDriver(t, Config{})
		r1 := d.observe(occ("e1", 1, "BackOff", "Back-off", at(0), podA))
		r2 := d.observe(occ("e2", 1, "BackOff", "Back-off", at(0), podB))
		d.rootDeleted(podA.UID, at(time.Second))
		if save {
			open, spans, err := d.e.SaveOpen(1 << 20)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(open), podA.UID) || !strings.Contains(string(open), podB.UID) {
				t.Errorf("carried %s, want the live root's episode only", open)
			}
			reasons := map[string]string{}
			for _, s := range spans {
				if s.Kind == KindRoot {
					reasons[s.TraceID.String()] = attrOf(&s, "k8s.episode.close_reason")
				}
			}
			if len(reasons) != 1 || reasons[r1.TraceID.String()] != CloseDeleted {
				t.Errorf("SaveOpen closed %v, want the deleted root's episode as %s", reasons, CloseDeleted)
			}
			continue
		}
		ss := d.flush()
		if r := attrOf(ss.rootOf(r1.TraceID), "k8s.episode.close_reason"); r != CloseDeleted {
			t.Errorf("deleted root's episode closed as %q", r)
		}
		if r := attrOf(ss.rootOf(r2.TraceID), "k8s.episode.close_reason"); r != CloseFlush {
			t.Errorf("live root's episode closed as %q", r)
		}
	}
}

func TestMaxOpenEpisodesEvictsLeastRecentlyActive(t *testing.T) {
	d := newDriver(t, Config{MaxOpenEpisodes: 3})
	roots := map[string]convert.Ref{}
	for i, n := range []string{"a", "b", "c", "d"} {
		roots[n] = ref("Deployment", "ns", n, "uid-"+n)
		_ = i
	}
	ra := d.observe(occ("ea", 1, "ScalingReplicaSet", "x", at(0), roots["a"]))
	rb := d.observe(occ("eb", 1, "ScalingReplicaSet", "x", at(time.Second), roots["b"]))
	d.observe(occ("ec", 1, "ScalingReplicaSet", "x", at(2*time.Second), roots["c"]))
	d.observe(occ("ea", 2, "ScalingReplicaSet", "x", at(3*time.Second), roots["a"])) // a is active again
	rd := d.observe(occ("ed", 1, "ScalingReplicaSet", "x", at(4*time.Second), roots["d"]))
	var evicted []string
	for _, s := range rd.Spans {
		if s.Kind == KindRoot {
			evicted = append(evicted, s.Name)
			if attrOf(&s, "k8s.episode.close_reason") != CloseLimit {
				t.Errorf("close reason %q", attrOf(&s, "k8s.episode.close_reason"))
			}
		}
	}
	if len(evicted) != 1 || evicted[0] != "Deployment b" {
		t.Fatalf("evicted %v, want [Deployment b]", evicted)
	}
	s := d.e.Stats()
	if s.OpenEpisodes != 3 || s.EvictedEpisodes != 1 || s.EpisodesClosed[CloseLimit] != 1 {
		t.Errorf("stats %+v", s)
	}
	// a kept its episode.
	if r := d.observe(occ("ea", 3, "ScalingReplicaSet", "x", at(5*time.Second), roots["a"])); r.TraceID != ra.TraceID {
		t.Error("a lost its episode")
	}
	// b comes back in a new, linked episode, evicting c.
	rb2 := d.observe(occ("eb", 2, "ScalingReplicaSet", "x", at(6*time.Second), roots["b"]))
	if rb2.TraceID == rb.TraceID {
		t.Error("evicted episode reused")
	}
	if s := d.e.Stats(); s.OpenEpisodes != 3 || s.EvictedEpisodes != 2 {
		t.Errorf("stats %+v", s)
	}
	ss := d.flush()
	if l := ss.rootOf(rb2.TraceID).Links; len(l) != 1 || l[0].TraceID != rb.TraceID {
		t.Errorf("links %+v", l)
	}
}

// A crash loop: BackOff every 30s for 10 minutes is one episode (idle 2m)
// with every repeat as its own event span; after a 3 minute gap the next
// BackOff starts a new episode linked to the first.
func TestCrashLoopIsOneEpisode(t *testing.T) {
	d := newDriver(t, Config{EpisodeIdle: 2 * time.Minute})
	chain := []convert.Ref{podA, rs, dep}
	first := d.observe(occ("start", 1, "Started", "Started container", at(0), chain...))
	var n int32
	for dt := 30 * time.Second; dt <= 10*time.Minute; dt += 30 * time.Second {
		n++
		r := d.observe(warn(occ("backoff", n, "BackOff", "Back-off restarting failed container app", at(dt), chain...)))
		if r.TraceID != first.TraceID {
			t.Fatalf("BackOff #%d opened a new episode", n)
		}
	}
	n++
	late := d.observe(warn(occ("backoff", n, "BackOff", "Back-off restarting failed container app", at(13*time.Minute), chain...)))
	if late.TraceID == first.TraceID {
		t.Fatal("BackOff after a 3 minute gap joined the old episode")
	}
	ss := d.flush()
	if len(ss.traces) != 2 {
		t.Fatalf("%d traces, want 2", len(ss.traces))
	}
	pod := ss.find("Pod web-1-a")
	var backoffs int
	for _, s := range ss.traces[first.TraceID] {
		if s.Name == "Pod.BackOff" {
			backoffs++
			if p := ss.parent(s); p == nil || p.Name != "Pod web-1-a" {
				t.Errorf("BackOff under %v", p)
			}
			if !s.Error || s.StatusMessage != "Back-off restarting failed container app" {
				t.Errorf("BackOff status %v %q", s.Error, s.StatusMessage)
			}
		}
	}
	if backoffs != 20 || len(pod) != 2 {
		t.Errorf("%d BackOff spans in the first episode (want 20), %d pod spans (want 2)", backoffs, len(pod))
	}
	root := ss.rootOf(first.TraceID)
	if attrOf(root, "k8s.episode.close_reason") != CloseIdle || attrOf(root, "k8s.episode.warnings") != "20" || root.End.Sub(root.Start) != 10*time.Minute {
		t.Errorf("first root: %v, %s", root.Attributes, root.End.Sub(root.Start))
	}
	if l := ss.rootOf(late.TraceID).Links; len(l) != 1 || l[0].TraceID != first.TraceID || l[0].SpanID != root.SpanID {
		t.Errorf("second episode links %+v", l)
	}
}

func cronJobRun(d *driver, cj convert.Ref, n int, start time.Duration) (job, pod convert.Ref) {
	job = ref("Job", "ns", fmt.Sprintf("%s-%d", cj.Name, n), fmt.Sprintf("job-%d", n))
	pod = ref("Pod", "ns", job.Name+"-x", fmt.Sprintf("jobpod-%d", n))
	ms := func(m int) time.Time { return at(start + time.Duration(m)*time.Millisecond) }
	d.observe(occ("cj-create", int32(n), "SuccessfulCreate", "Created job "+job.Name, ms(0), cj))
	d.observe(occ("job-create-"+job.Name, 1, "SuccessfulCreate", "Created pod: "+pod.Name, ms(10), job, cj))
	d.observe(occ("sched-"+pod.Name, 1, "Scheduled", "Successfully assigned ns/"+pod.Name+" to node-1", ms(20), pod, job, cj))
	d.observe(occ("started-"+pod.Name, 1, "Started", "Started container", ms(900), pod, job, cj))
	d.observe(occ("done-"+job.Name, 1, "Completed", "Job completed", ms(3000), job, cj))
	d.observe(occ("cj-saw", int32(n), "SawCompletedJob", "Saw completed job: "+job.Name+", condition: Complete", ms(3100), cj))
	return job, pod
}

func TestCronJobRuns(t *testing.T) {
	d := newDriver(t, Config{})
	cj := ref("CronJob", "ns", "backup", "cj-uid")
	_, pod1 := cronJobRun(d, cj, 1, 0)
	_, pod2 := cronJobRun(d, cj, 2, time.Minute)
	ss := d.flush()
	roots := ss.roots()
	if len(roots) != 2 {
		t.Fatalf("%d episodes, want one per run\n%s", len(roots), dump(ss.all))
	}
	for i, pod := range []convert.Ref{pod1, pod2} {
		want := fmt.Sprintf("CronJob backup > CronJob.SuccessfulCreate > Job backup-%d > Job.SuccessfulCreate > Pod %s > Pod.Scheduled", i+1, pod.Name)
		if got := ss.path(ss.event(t, "sched-"+pod.Name, 1)); got != want {
			t.Errorf("run %d\n got %s\nwant %s", i+1, got, want)
		}
		// The run's own SawCompletedJob stays in its episode.
		if got := ss.event(t, "cj-saw", int32(i+1)).TraceID; got != roots[i].TraceID {
			t.Errorf("run %d: SawCompletedJob in another trace", i+1)
		}
	}
	if attrOf(roots[0], "k8s.episode.close_reason") != CloseNewRun {
		t.Errorf("first run closed by %q", attrOf(roots[0], "k8s.episode.close_reason"))
	}
	if l := roots[1].Links; len(l) != 1 || l[0].TraceID != roots[0].TraceID {
		t.Errorf("second run links %+v", l)
	}
}

// A CronJob edit (here: suspend after the first run) bumps its generation;
// the object cache often sees that before the run's last event
// (SawCompletedJob) comes off the Events watch. The event still belongs to
// the run: a CronJob's episodes are its runs, not its generations. The
// next run, under the new generation, is still its own episode.
func TestCronJobEditKeepsRun(t *testing.T) {
	d := newDriver(t, Config{})
	cj := ref("CronJob", "ns", "backup", "cj-uid")
	job := ref("Job", "ns", "backup-1", "job-1")
	pod := ref("Pod", "ns", "backup-1-x", "jobpod-1")
	ms := func(m int) time.Time { return at(time.Duration(m) * time.Millisecond) }
	d.observe(occ("cj-create", 1, "SuccessfulCreate", "Created job "+job.Name, ms(0), cj), gen(1))
	d.observe(occ("job-create-1", 1, "SuccessfulCreate", "Created pod: "+pod.Name, ms(10), job, cj), gen(1))
	d.observe(occ("done-1", 1, "Completed", "Job completed", ms(3000), job, cj), gen(1))
	d.observe(occ("cj-saw", 1, "SawCompletedJob", "Saw completed job: "+job.Name+", condition: Complete", ms(3100), cj), gen(2))
	job2 := ref("Job", "ns", "backup-2", "job-2")
	d.observe(occ("cj-create", 2, "SuccessfulCreate", "Created job "+job2.Name, ms(60000), cj), gen(2))
	ss := d.flush()
	roots := ss.roots()
	if len(roots) != 2 {
		t.Fatalf("%d episodes, want one per run\n%s", len(roots), dump(ss.all))
	}
	if got := ss.event(t, "cj-saw", 1).TraceID; got != roots[0].TraceID {
		t.Errorf("SawCompletedJob of run 1 left its run's trace\n%s", dump(ss.all))
	}
	if got := attrOf(roots[0], "k8s.episode.close_reason"); got != CloseNewRun {
		t.Errorf("first run closed by %q, want %q", got, CloseNewRun)
	}
}

// The Job controller's and kubelet's events of a run may reach the bridge
// before the CronJob controller's "Created job" (separate Event objects):
// they must still land in that run's episode, and the late "Created job"
// must not close it as a new run.
func TestCronJobRunEventsBeforeCreatedJob(t *testing.T) {
	d := newDriver(t, Config{})
	cj := ref("CronJob", "ns", "backup", "cj-uid")
	job := ref("Job", "ns", "backup-1", "job-1")
	pod := ref("Pod", "ns", "backup-1-x", "jobpod-1")
	ms := func(m int) time.Time { return at(time.Duration(m) * time.Millisecond) }
	d.observe(occ("job-create-1", 1, "SuccessfulCreate", "Created pod: "+pod.Name, ms(10), job, cj))
	d.observe(occ("sched-1", 1, "Scheduled", "Successfully assigned ns/"+pod.Name+" to node-1", ms(20), pod, job, cj))
	d.observe(occ("cj-create", 1, "SuccessfulCreate", "Created job "+job.Name, ms(0), cj))
	ss := d.flush()
	if n := len(ss.roots()); n != 1 {
		t.Fatalf("%d episodes for one run\n%s", n, dump(ss.all))
	}
	want := "CronJob backup > CronJob.SuccessfulCreate > Job backup-1 > Job.SuccessfulCreate > Pod backup-1-x > Pod.Scheduled"
	if got := ss.path(ss.event(t, "sched-1", 1)); got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}

// The same while the previous run's episode is still open (a schedule
// shorter than EpisodeIdle): the next run's early events join the previous
// run's episode, which the late "Created job" then closes.
func TestCronJobNextRunEventsBeforeCreatedJob(t *testing.T) {
	t.Skip("known limitation: a CronJob's runs share one open episode per root; " +
		"routing a run's events by the Job in their chain needs per-run episode keys (reported to the lead)")
	d := newDriver(t, Config{})
	cj := ref("CronJob", "ns", "backup", "cj-uid")
	cronJobRun(d, cj, 1, 0)
	job := ref("Job", "ns", "backup-2", "job-2")
	pod := ref("Pod", "ns", "backup-2-x", "jobpod-2")
	ms := func(m int) time.Time { return at(time.Minute + time.Duration(m)*time.Millisecond) }
	d.observe(occ("job-create-2", 1, "SuccessfulCreate", "Created pod: "+pod.Name, ms(10), job, cj))
	d.observe(occ("cj-create", 2, "SuccessfulCreate", "Created job "+job.Name, ms(0), cj))
	d.observe(occ("sched-2", 1, "Scheduled", "Successfully assigned ns/"+pod.Name+" to node-1", ms(20), pod, job, cj))
	ss := d.flush()
	want := "CronJob backup > CronJob.SuccessfulCreate > Job backup-2 > Job.SuccessfulCreate > Pod backup-2-x > Pod.Scheduled"
	if got := ss.path(ss.event(t, "sched-2", 1)); got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}

// A StatefulSet pod deleted and recreated under the same name within one
// episode: two Pod spans (different UIDs), each under the event that
// brought it: the first under its create, the recreated one under the
// second create (not under the delete of its predecessor).
func TestStatefulSetPodRecreatedWithinEpisode(t *testing.T) {
	d := newDriver(t, Config{})
	sts := ref("StatefulSet", "ns", "db", "sts-uid")
	p1 := ref("Pod", "ns", "db-0", "db-0-v1")
	p2 := ref("Pod", "ns", "db-0", "db-0-v2")
	ms := func(m int) time.Time { return at(time.Duration(m) * time.Millisecond) }
	d.observe(occ("create", 1, "SuccessfulCreate", "create Pod db-0 in StatefulSet db successful", ms(0), sts))
	d.observe(occ("sched-1", 1, "Scheduled", "Successfully assigned ns/db-0 to node-1", ms(10), p1, sts))
	d.observe(occ("started-1", 1, "Started", "Started container db", ms(900), p1, sts))
	d.observe(occ("delete", 1, "SuccessfulDelete", "delete Pod db-0 in StatefulSet db successful", ms(5000), sts))
	d.observe(occ("kill-1", 1, "Killing", "Stopping container db", ms(5200), p1, sts))
	d.observe(occ("create", 2, "SuccessfulCreate", "create Pod db-0 in StatefulSet db successful", ms(5300), sts))
	d.observe(occ("sched-2", 1, "Scheduled", "Successfully assigned ns/db-0 to node-2", ms(5310), p2, sts))
	ss := d.flush()
	pods := ss.find("Pod db-0")
	if len(pods) != 2 || attrOf(pods[0], "k8s.object.uid") == attrOf(pods[1], "k8s.object.uid") {
		t.Fatalf("pod spans %v", pods)
	}
	check := func(evUID string, wantCause *Span) {
		t.Helper()
		podSpan := ss.parent(ss.event(t, evUID, 1))
		if c := ss.parent(podSpan); c != wantCause {
			t.Errorf("%s: pod %s under %v, want %s ×%s", evUID, attrOf(podSpan, "k8s.object.uid"), c, wantCause.Name, attrOf(wantCause, "k8s.event.count"))
		}
	}
	check("sched-1", ss.event(t, "create", 1))
	check("kill-1", ss.event(t, "create", 1))
	check("sched-2", ss.event(t, "create", 2))
}

// As in the statefulset recording: the old pod was created in an earlier
// episode; in this one it is deleted and recreated.
func TestStatefulSetPodReplacedInNewEpisode(t *testing.T) {
	d := newDriver(t, Config{})
	sts := ref("StatefulSet", "ns", "db", "sts-uid")
	p1 := ref("Pod", "ns", "db-2", "db-2-v1")
	p2 := ref("Pod", "ns", "db-2", "db-2-v2")
	ms := func(m int) time.Time { return at(time.Duration(m) * time.Millisecond) }
	d.observe(occ("delete", 1, "SuccessfulDelete", "delete Pod db-2 in StatefulSet db successful", ms(0), sts), gen(2))
	d.observe(occ("kill", 1, "Killing", "Stopping container db", ms(210), p1, sts), gen(2))
	d.observe(occ("create", 2, "SuccessfulCreate", "create Pod db-2 in StatefulSet db successful", ms(260), sts), gen(2))
	d.observe(occ("sched", 1, "Scheduled", "Successfully assigned ns/db-2 to node-0", ms(275), p2, sts), gen(2))
	ss := d.flush()
	if got := ss.path(ss.event(t, "kill", 1)); got != "StatefulSet db > StatefulSet.SuccessfulDelete > Pod db-2 > Pod.Killing" {
		t.Errorf("old pod: %s", got)
	}
	if got := ss.path(ss.event(t, "sched", 1)); got != "StatefulSet db > StatefulSet.SuccessfulCreate > Pod db-2 > Pod.Scheduled" {
		t.Errorf("new pod: %s", got)
	}
}

// As in CI's StatefulSetUpdate failure: the controller deleted db-1 twice
// (its cache still showed the old pod running), and the bridge read the
// controller's and kwok's whole-second events in bursts, so their times are
// when it read them, while the scheduler's carry their own microsecond; kwok
// even stamped the old pod's Killing (4s) after the new pod was scheduled
// (3.967s), and the bridge read it after the Scheduled. Neither times nor
// arrival tell old from new; the new pod is the one scheduled in the
// episode. The old pod takes the first delete, the new one the create, also
// after a restart in between (snapshot and restore).
func TestStatefulSetPodDeletedTwiceReadLate(t *testing.T) {
	for _, restart := range []bool{false, true} {
		d := newDriver(t, Config{})
		sts := ref("StatefulSet", "ns", "db", "sts-uid")
		p1 := ref("Pod", "ns", "db-1", "db-1-v1")
		p2 := ref("Pod", "ns", "db-1", "db-1-v2")
		ms := func(m int) time.Time { return at(time.Duration(m) * time.Millisecond) }
		read := func(o *convert.Occurrence, observed int) *convert.Occurrence {
			o.Observed = ms(observed)
			return o
		}
		d.observe(read(occ("old-started", 1, "Started", "Started container db", ms(-60000), p1, sts), -59000), gen(1))
		d.observe(read(occ("delete", 1, "SuccessfulDelete", "delete Pod db-1 in StatefulSet db successful", ms(3000), sts), 3900), gen(2))
		d.observe(read(occ("delete", 2, "SuccessfulDelete", "delete Pod db-1 in StatefulSet db successful", ms(3000), sts), 3950), gen(2))
		d.observe(read(occ("create", 2, "SuccessfulCreate", "create Pod db-1 in StatefulSet db successful", ms(3000), sts), 4100), gen(2))
		d.observe(read(occ("sched", 1, "Scheduled", "Successfully assigned ns/db-1 to node-0", ms(3967), p2, sts), 4100), gen(2))
		d.observe(read(occ("kill", 1, "Killing", "Stopping container db", ms(4000), p1, sts), 4179), gen(2))
		if restart {
			d.e = snapshotAndRestore(t, sha256.New(), d.e)
		}
		ss := d.flush()
		if got := ss.path(ss.event(t, "kill", 1)); got != "StatefulSet db > StatefulSet.SuccessfulDelete > Pod db-1 > Pod.Killing" {
			t.Errorf("restart %v: old pod: %s", restart, got)
		} else if c := ss.parent(ss.parent(ss.event(t, "kill", 1))); c != ss.event(t, "delete", 1) {
			t.Errorf("restart %v: old pod under %s ×%s, want the first delete", restart, c.Name, attrOf(c, "k8s.event.count"))
		}
		if got := ss.path(ss.event(t, "sched", 1)); got != "StatefulSet db > StatefulSet.SuccessfulCreate > Pod db-1 > Pod.Scheduled" {
			t.Errorf("restart %v: new pod: %s", restart, got)
		}
	}
}

func TestTraceparentContinuesTrace(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	want, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	wantParent, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	d := newDriver(t, Config{})
	withTP := func(in *Input) { in.RootTraceparent = tp; in.RootGeneration = 3 }
	r := d.observe(occ("e1", 1, "ScalingReplicaSet", "Scaled up replica set web-1 from 0 to 1", at(0), dep), withTP)
	d.observe(occ("e2", 1, "Scheduled", "Successfully assigned ns/web-1-a to node-1", at(time.Second), podA, rs, dep), withTP)
	if r.TraceID != want {
		t.Fatalf("trace %s, want the traceparent's %s", r.TraceID, want)
	}
	ss := d.flush()
	root := ss.rootOf(want)
	if root == nil || root.Parent != wantParent || !root.Remote {
		t.Fatalf("root %+v", root)
	}
	for _, s := range ss.all {
		if s.TraceID != want {
			t.Errorf("span %q in trace %s", s.Name, s.TraceID)
		}
	}
	// Malformed traceparents are ignored.
	for i, bad := range []string{"", "garbage", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"} {
		d := newDriver(t, Config{})
		other := ref("Deployment", "ns", "x", fmt.Sprint("x-", i))
		r := d.observe(occ("e", 1, "ScalingReplicaSet", "x", at(0), other), func(in *Input) { in.RootTraceparent = bad })
		ss := d.flush()
		if root := ss.rootOf(r.TraceID); r.TraceID == want || root.Parent.IsValid() || root.Remote {
			t.Errorf("traceparent %q was used", bad)
		}
	}
}

// Two episodes of a root with the same traceparent annotation (an idle
// split, or a scale that did not touch the annotation) join the same
// remote trace; their spans must still have distinct IDs.
func TestTraceparentTwoEpisodesDistinctSpanIDs(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	d := newDriver(t, Config{})
	withTP := func(g int64) func(*Input) {
		return func(in *Input) { in.RootTraceparent = tp; in.RootGeneration = g }
	}
	d.observe(occ("e1", 1, "Scheduled", "Successfully assigned ns/web-1-a to node-1", at(0), podA, rs, dep), withTP(1))
	d.observe(occ("e2", 1, "Killing", "Stopping container", at(10*time.Minute), podA, rs, dep), withTP(1))
	d.observe(occ("e3", 1, "Started", "Started container", at(11*time.Minute), podA, rs, dep), withTP(2))
	d.spans = append(d.spans, d.e.Flush()...)
	seen := map[trace.SpanID]string{}
	for _, s := range d.spans {
		if prev, dup := seen[s.SpanID]; dup {
			t.Errorf("span ID %s used twice in trace %s: %q and %q", s.SpanID, s.TraceID, prev, s.Name)
		}
		seen[s.SpanID] = s.Name
	}
	var roots int
	for _, s := range d.spans {
		if s.Kind == KindRoot {
			roots++
			if !s.Remote || s.Parent.String() != "00f067aa0ba902b7" {
				t.Errorf("root %+v", s)
			}
		}
	}
	if roots != 3 {
		t.Errorf("%d roots, want 3", roots)
	}
}

func TestNodeLink(t *testing.T) {
	d := newDriver(t, Config{})
	node := ref("Node", "", "node-1", "node-1-uid")
	d.observe(occ("sched", 1, "Scheduled", "Successfully assigned ns/web-1-a to node-1", at(0), podA, rs, dep))
	nr := d.observe(occ("node-nr", 1, "NodeNotReady", "Node node-1 status is now: NodeNotReady", at(time.Second), node))
	// The other pod was never seen scheduled: no link.
	d.observe(occ("pod-b-nr", 1, "NodeNotReady", "Node is not ready", at(2*time.Second), podB, rs, dep))
	pr := d.observe(warn(occ("pod-nr", 1, "NodeNotReady", "Node is not ready", at(2*time.Second), podA, rs, dep)))
	ss := d.flush()
	nodeRoot := ss.rootOf(nr.TraceID)
	if nodeRoot == nil || nodeRoot.Name != "Node node-1" {
		t.Fatalf("node root %v", nodeRoot)
	}
	ev := ss.event(t, "pod-nr", 1)
	if ev.TraceID != pr.TraceID || len(ev.Links) != 1 || ev.Links[0].TraceID != nr.TraceID || ev.Links[0].SpanID != nodeRoot.SpanID {
		t.Fatalf("pod NodeNotReady links %+v, want the node episode's root %s/%s", ev.Links, nr.TraceID, nodeRoot.SpanID)
	}
	attrs := map[string]string{}
	for _, a := range ev.Links[0].Attributes {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	if attrs["k8s.node.name"] != "node-1" || attrs["link.reason"] != "node" {
		t.Errorf("link attributes %v", attrs)
	}
	if l := ss.event(t, "pod-b-nr", 1).Links; len(l) != 0 {
		t.Errorf("unscheduled pod linked: %+v", l)
	}
	// The node's own event does not link to itself.
	if l := ss.event(t, "node-nr", 1).Links; len(l) != 0 {
		t.Errorf("node event links %+v", l)
	}
}

func TestHPARescaleLinksToTarget(t *testing.T) {
	d := newDriver(t, Config{})
	hpa := ref("HorizontalPodAutoscaler", "ns", "web", "hpa-uid")
	other := ref("HorizontalPodAutoscaler", "ns2", "web", "hpa2-uid")
	dr := d.observe(occ("e1", 1, "ScalingReplicaSet", "Scaled up replica set web-1 from 2 to 4", at(0), dep))
	hr := d.observe(occ("hpa", 1, "SuccessfulRescale", "New size: 4; reason: cpu resource utilization (percentage of request) above target", at(time.Second), hpa))
	d.observe(occ("hpa2", 1, "SuccessfulRescale", "New size: 4; reason: cpu", at(time.Second), other))
	ss := d.flush()
	ev := ss.event(t, "hpa", 1)
	if ev.TraceID != hr.TraceID || hr.TraceID == dr.TraceID {
		t.Fatal("HPA event in the Deployment's trace")
	}
	if len(ev.Links) != 1 || ev.Links[0].TraceID != dr.TraceID || ev.Links[0].SpanID != ss.rootOf(dr.TraceID).SpanID {
		t.Errorf("HPA links %+v", ev.Links)
	}
	if l := ss.event(t, "hpa2", 1).Links; len(l) != 0 {
		t.Errorf("HPA in another namespace linked: %+v", l)
	}
}

func TestServiceNamesBounded(t *testing.T) {
	d := newDriver(t, Config{MaxServices: 2})
	var svc []string
	for i, rc := range []string{"kubelet", "default-scheduler", "kubelet", "my-operator", "", "default-scheduler"} {
		o := occ(fmt.Sprint("e", i), 1, "Started", "x", at(time.Duration(i)*time.Second), podA, rs, dep)
		o.ReportingController = rc
		r := d.observe(o)
		svc = append(svc, r.Spans[0].Service)
	}
	want := []string{"kubelet", "default-scheduler", "kubelet", "other", "unknown", "default-scheduler"}
	if fmt.Sprint(svc) != fmt.Sprint(want) {
		t.Errorf("services %v, want %v", svc, want)
	}
	ss := d.flush()
	for _, s := range ss.all {
		if s.Kind != KindEvent && s.Service != "kube-otel-bridge" {
			t.Errorf("%s span %q service %q", s.Kind, s.Name, s.Service)
		}
	}
}

// An Event about nothing (no regarding object) gets a synthetic root.
func TestNoRegardingObject(t *testing.T) {
	d := newDriver(t, Config{})
	o := occ("orphan-ev", 1, "Something", "happened", at(0))
	o.EventName, o.Namespace = "orphan.123", "ns"
	r := d.observe(o)
	o2 := occ("zero-chain", 1, "Other", "x", at(time.Second), convert.Ref{})
	o2.EventName = "zero.1"
	d.observe(o2)
	o3 := occ("zero-time", 1, "Other", "x", time.Time{})
	o3.Observed = time.Time{}
	d.observe(o3)
	ss := d.flush()
	root := ss.rootOf(r.TraceID)
	if root == nil || root.Name != "Event orphan.123" {
		t.Fatalf("synthetic root %v", root)
	}
	if ev := ss.event(t, "orphan-ev", 1); ev.Name != "Event.Something" || ss.parent(ev) != root {
		t.Errorf("event %q under %v", ev.Name, ss.parent(ev))
	}
	if len(ss.roots()) != 3 {
		t.Errorf("%d roots", len(ss.roots()))
	}
}

// Owner cycles in a chain (the cache cuts them; hand-made chains may not)
// neither loop nor lose spans.
func TestOwnerCyclesInChain(t *testing.T) {
	a := ref("Foo", "ns", "a", "ua")
	b := ref("Bar", "ns", "b", "ub")
	c := ref("Baz", "ns", "c", "uc")
	for i, chain := range [][]convert.Ref{
		{a, b, a},
		{a, b, c, b},
		{a, b, a, c},
		{a, a},
		{b, a, b, a, b},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			d := newDriver(t, Config{})
			d.observe(occ("e1", 1, "Sync", "x", at(0), chain...))
			d.observe(occ("e2", 1, "Sync", "x", at(time.Second), chain[1:]...))
			d.flush()
		})
	}
}

func TestMaxObjectsPerEpisode(t *testing.T) {
	d := newDriver(t, Config{MaxObjectsPerEpisode: 3})
	for i := 0; i < 5; i++ {
		p := ref("Pod", "ns", fmt.Sprint("p", i), fmt.Sprint("p-uid-", i))
		d.observe(occ(fmt.Sprint("e", i), 1, "Started", "x", at(time.Duration(i)*time.Second), p, rs, dep))
	}
	ss := d.flush()
	if got := len(ss.find("Pod p0")) + len(ss.find("Pod p1")) + len(ss.find("Pod p2")) + len(ss.find("Pod p3")) + len(ss.find("Pod p4")); got != 1 {
		t.Errorf("%d pod spans, want 1 (root, ReplicaSet, one pod)", got)
	}
	root := ss.roots()[0]
	if attrOf(root, "k8s.episode.objects_over_limit") != "4" || d.e.Stats().ObjectsOverLimit != 4 {
		t.Errorf("over limit: attr %q, stats %d", attrOf(root, "k8s.episode.objects_over_limit"), d.e.Stats().ObjectsOverLimit)
	}
}

// Warnings become Error spans with the note as status.
func TestWarningStatus(t *testing.T) {
	d := newDriver(t, Config{})
	r := d.observe(warn(occ("w", 1, "FailedScheduling", "0/3 nodes are available", at(0), podA, rs, dep)))
	if s := r.Spans[0]; !s.Error || s.StatusMessage != "0/3 nodes are available" || s.Name != "Pod.FailedScheduling" {
		t.Errorf("%+v", s)
	}
	d.flush()
}

// Same input, same IDs, whatever engine instance computes them; another
// cluster name gives other IDs.
func TestIDsDeterministic(t *testing.T) {
	run := func(cluster string) []Span {
		d := newDriver(t, Config{ClusterName: cluster})
		d.observe(occ("e1", 1, "ScalingReplicaSet", "Scaled up replica set web-1 from 0 to 1", at(0), dep), gen(1))
		d.observe(occ("e2", 1, "SuccessfulCreate", "Created pod: web-1-a", at(time.Millisecond), rs, dep), gen(1))
		d.observe(occ("e3", 1, "Scheduled", "Successfully assigned ns/web-1-a to node-1", at(2*time.Millisecond), podA, rs, dep), gen(1))
		return d.flush().all
	}
	a, b, c := run("c1"), run("c1"), run("c2")
	if len(a) != len(b) {
		t.Fatalf("two runs differ: %d and %d spans", len(a), len(b))
	}
	for i := range a {
		if canonical(a[i:i+1]) != canonical(b[i:i+1]) {
			t.Errorf("two runs differ at span %d:\n%s\n%s", i, canonical(a[i:i+1]), canonical(b[i:i+1]))
		}
	}
	if a[0].TraceID == c[0].TraceID {
		t.Error("cluster name not in the trace ID")
	}
}

// Controller-style messages can name each other's regarding objects (a
// custom controller reusing "Created pod: x"): parents from causes must not
// form a cycle that detaches spans from the root.
func TestCauseCycle(t *testing.T) {
	d := newDriver(t, Config{})
	a := ref("Pod", "ns", "a", "ua")
	b := ref("Pod", "ns", "b", "ub")
	root := ref("Foo", "ns", "root", "uroot")
	d.observe(occ("ea", 1, "SuccessfulCreate", "Created pod: b", at(0), a, root))
	d.observe(occ("eb", 1, "SuccessfulCreate", "Created pod: a", at(time.Millisecond), b, root))
	d.observe(occ("self", 1, "SuccessfulCreate", "Created pod: a", at(2*time.Millisecond), a, root))
	d.flush()
}

// The first events of a new Deployment may come before the object cache
// has it (generation unknown, 0); a rollout (a new generation) that follows
// within the idle period must still open its own episode.
func TestNewGenerationAfterUnknownGeneration(t *testing.T) {
	d := newDriver(t, Config{})
	r1 := d.observe(occ("e1", 1, "ScalingReplicaSet", "Scaled up replica set web-1 from 0 to 1", at(0), dep), gen(0))
	r2 := d.observe(occ("e2", 1, "Scheduled", "Successfully assigned ns/web-1-a to node-1", at(time.Second), podA, rs, dep), gen(1))
	r3 := d.observe(occ("e3", 1, "ScalingReplicaSet", "Scaled up replica set web-2 from 0 to 1", at(10*time.Second), dep), gen(2))
	if r1.TraceID != r2.TraceID {
		t.Error("the generation becoming known split the episode")
	}
	if r3.TraceID == r1.TraceID {
		t.Error("a new generation after an unknown one did not open a new episode")
	}
	ss := d.flush()
	keys := map[string]bool{}
	for _, r := range ss.roots() {
		if k := attrOf(r, "k8s.episode.key"); keys[k] {
			t.Errorf("episode key %s twice", k)
		} else {
			keys[k] = true
		}
	}
}

// Two open episodes of nodes with one name (a node re-registered under a
// new UID): the link goes to the same one on every run (the newer), not to
// whichever map iteration meets first.
func TestNodeLinkDeterministic(t *testing.T) {
	for i := 0; i < 30; i++ {
		d := newDriver(t, Config{})
		d.observe(occ("sched", 1, "Scheduled", "Successfully assigned ns/web-1-a to node-1", at(0), podA, rs, dep))
		d.observe(occ("n1", 1, "NodeNotReady", "x", at(time.Second), ref("Node", "", "node-1", "node-1-old")))
		n2 := d.observe(occ("n2", 1, "RegisteredNode", "x", at(2*time.Second), ref("Node", "", "node-1", "node-1-new")))
		r := d.observe(occ("pod-nr", 1, "NodeNotReady", "Node is not ready", at(3*time.Second), podA, rs, dep))
		if l := r.Spans[0].Links; len(l) != 1 || l[0].TraceID != n2.TraceID {
			t.Fatalf("run %d: link to %v, want the newer node's episode %s", i, l, n2.TraceID)
		}
		// The same for an HPA whose target name has two open episodes.
		old := d.observe(occ("d-old", 1, "ScalingReplicaSet", "x", at(4*time.Second), ref("Deployment", "ns", "api", "api-old")))
		newer := d.observe(occ("d-new", 1, "ScalingReplicaSet", "x", at(5*time.Second), ref("Deployment", "ns", "api", "api-new")))
		h := d.observe(occ("hpa", 1, "SuccessfulRescale", "New size: 3", at(6*time.Second), ref("HorizontalPodAutoscaler", "ns", "api", "hpa")))
		if l := h.Spans[0].Links; len(l) != 1 || l[0].TraceID != newer.TraceID || old.TraceID == newer.TraceID {
			t.Fatalf("run %d: HPA link %v, want the newer Deployment's episode", i, l)
		}
		d.flush()
	}
}

// The engine keeps the span of a controller event until its episode closes,
// long after the occurrence's outputs acked it; by then the watch source
// may have reused the occurrence's memory for another one (watch.Handler).
// The kept span must not see that.
func TestCauseSpanOutlivesItsOccurrence(t *testing.T) {
	d := newDriver(t, Config{})
	o := occ("ev-rs", 1, "SuccessfulCreate", "Created pod: web-1-a", at(0), rs, dep)
	chain := o.Chain // the source's room for the chain is reused too
	d.observe(o)
	// The source reuses both for an unrelated occurrence.
	*o = *occ("ev-other", 7, "Pulled", "overwritten", at(time.Second), podB, rs, dep)
	chain[0], chain[1] = podB, podB
	d.observe(occ("ev-sched", 1, "Scheduled", "Successfully assigned ns/web-1-a to node-1", at(2*time.Second), podA, rs, dep))
	ss := d.flush()
	sc := ss.event(t, "ev-rs", 1)
	if sc.Event == nil {
		t.Fatal("cause span has no occurrence")
	}
	if got := sc.Event; got.EventUID != "ev-rs" || got.Count != 1 || got.Note != "Created pod: web-1-a" || len(got.Chain) != 2 || got.Chain[0] != rs || got.Chain[1] != dep {
		t.Errorf("cause span's occurrence changed with the source's memory: %+v", got)
	}
	if got := ss.path(ss.event(t, "ev-sched", 1)); !strings.Contains(got, "ReplicaSet.SuccessfulCreate > Pod web-1-a") {
		t.Errorf("Scheduled path %s", got)
	}
}

// A crash during a deleted root's grace: the periodic snapshot carries the
// deletion, so the next process closes the episode as root_deleted once the
// grace is over (no deletion will be seen again: the root is gone), not
// after the idle time.
func TestRootDeletedGraceSurvivesCrash(t *testing.T) {
	d := newDriver(t, Config{})
	r1 := d.observe(occ("e1", 1, "BackOff", "Back-off", at(0), podA))
	r2 := d.observe(occ("e2", 1, "BackOff", "Back-off", at(0), podB))
	d.rootDeleted(podA.UID, at(time.Second))
	snap, err := d.e.SnapshotOpen(1 << 20)
	if err != nil {
		t.Fatal(err)
	}

	next := newDriver(t, Config{})
	if err := next.e.RestoreOpen(snap); err != nil {
		t.Fatal(err)
	}
	if got := next.advance(at(2 * time.Second)); len(got) != 0 {
		t.Errorf("closed within the grace: %s", dump(got))
	}
	closed := next.advance(at(4 * time.Second)) // grace (2s) over, idle (minutes) not
	reasons := map[string]string{}
	for _, s := range closed {
		if s.Kind == KindRoot {
			reasons[s.TraceID.String()] = attrOf(&s, "k8s.episode.close_reason")
		}
	}
	if len(reasons) != 1 || reasons[r1.TraceID.String()] != CloseDeleted {
		t.Errorf("after the restart the grace closed %v, want only the deleted root's episode (%s) as %s", reasons, r1.TraceID, CloseDeleted)
	}
	if n := next.e.Stats().OpenEpisodes; n != 1 {
		t.Errorf("%d open episodes after the grace, want the live root's one (%s)", n, r2.TraceID)
	}
}

// From the tenth pod a ReplicaSet creates within ten minutes, client-go's
// event recorder aggregates: one Event whose count rises, its note the latest
// "Created pod: X" behind "(combined from similar events): ". Each count is
// an occurrence that still parents the pod it names.
func TestAggregatedControllerEventsParentTheirPods(t *testing.T) {
	d := newDriver(t, Config{})
	d.observe(occ("ev-dep", 1, "ScalingReplicaSet", "Scaled up replica set web-1 from 0 to 12", at(0), dep))
	var pods []convert.Ref
	for i := range 12 {
		pod := ref("Pod", "ns", fmt.Sprintf("web-1-%02d", i), fmt.Sprintf("pod-uid-%02d", i))
		pods = append(pods, pod)
		ms := at(time.Duration(10+i) * time.Millisecond)
		if i < 9 {
			d.observe(occ(fmt.Sprintf("ev-rs-%02d", i), 1, "SuccessfulCreate", "Created pod: "+pod.Name, ms, rs, dep))
		} else {
			// The aggregated Event: counts 1, 2, 3 for pods 9, 10, 11.
			d.observe(occ("ev-rs-agg", int32(i-8), "SuccessfulCreate", "(combined from similar events): Created pod: "+pod.Name, ms, rs, dep))
		}
		d.observe(occ("ev-sched-"+pod.Name, 1, "Scheduled", "Successfully assigned ns/"+pod.Name+" to node-1", ms.Add(time.Second), pod, rs, dep))
	}
	ss := d.flush()
	for _, pod := range pods {
		want := "Deployment web > Deployment.ScalingReplicaSet > ReplicaSet web-1 > ReplicaSet.SuccessfulCreate > Pod " + pod.Name + " > Pod.Scheduled"
		if got := ss.path(ss.event(t, "ev-sched-"+pod.Name, 1)); got != want {
			t.Errorf("path\n got %s\nwant %s", got, want)
		}
	}
}

// A pod's node is forgotten when the pod is deleted, also when one of its
// Events is read after the deletion (a kubelet's Killing, read in the next
// burst): such a late Event must not bring the mapping back, or every pod a
// rollout replaces would leave one behind for good.
func TestDeletedPodsNodeIsForgotten(t *testing.T) {
	d := newDriver(t, Config{})
	for i := range 50 {
		pod := ref("Pod", "ns", fmt.Sprintf("web-%d", i), fmt.Sprintf("pod-uid-%d", i))
		ms := at(time.Duration(i) * time.Second)
		d.observe(occ(fmt.Sprintf("sched-%d", i), 1, "Scheduled", "Successfully assigned ns/"+pod.Name+" to node-1", ms, pod, rs, dep))
		d.rootDeleted(pod.UID, ms.Add(100*time.Millisecond))
		kill := occ(fmt.Sprintf("kill-%d", i), 1, "Killing", "Stopping container web", ms.Add(200*time.Millisecond), pod, rs, dep)
		kill.SourceHost = "node-1"
		d.observe(kill)
	}
	if n := len(d.e.podNodes); n != 0 {
		t.Errorf("%d deleted pods still mapped to their node", n)
	}
	d.advance(at(time.Hour)) // the memory of deletions expires
	if n := len(d.e.deletedPods); n != 0 {
		t.Errorf("%d deletions still remembered an hour later", n)
	}
	d.flush()
}
