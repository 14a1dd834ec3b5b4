package causality

import (
	"fmt"
	"runtime"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
	"github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

// stormEvent is one occurrence of the synthetic rollout storm, before
// conversion: enough to build both an Event and an Occurrence.
type stormEvent struct {
	uid, name, reason, note, typ, controller string
	count                                    int32
	at                                       time.Time
	chain                                    []convert.Ref
}

// rolloutStorm is deployments × replicas rolling at once: per Deployment a
// new ReplicaSet scaled up, a create and five kubelet events per new pod, the
// old ReplicaSet scaled down with a delete and a Killing per old pod, and
// one pod in ten crash-looping (five BackOff repeats of one Event).
func rolloutStorm(deployments, replicas int) []stormEvent {
	var out []stormEvent
	base := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	add := func(e stormEvent) {
		if e.count == 0 {
			e.count = 1
		}
		out = append(out, e)
	}
	for d := 0; d < deployments; d++ {
		ns := fmt.Sprintf("ns-%d", d%50)
		dn := fmt.Sprintf("app-%d", d)
		dep := convert.Ref{Kind: "Deployment", APIVersion: "apps/v1", Namespace: ns, Name: dn, UID: fmt.Sprintf("dep-%d", d)}
		oldRS := convert.Ref{Kind: "ReplicaSet", APIVersion: "apps/v1", Namespace: ns, Name: dn + "-old", UID: fmt.Sprintf("rs-old-%d", d)}
		newRS := convert.Ref{Kind: "ReplicaSet", APIVersion: "apps/v1", Namespace: ns, Name: dn + "-new", UID: fmt.Sprintf("rs-new-%d", d)}
		t := base.Add(time.Duration(d) * 20 * time.Millisecond)
		ms := func(m int) time.Time { return t.Add(time.Duration(m) * time.Millisecond) }
		add(stormEvent{uid: fmt.Sprintf("ev-up-%d", d), name: dn + ".up", reason: "ScalingReplicaSet", controller: "deployment-controller",
			note: fmt.Sprintf("Scaled up replica set %s from 0 to %d", newRS.Name, replicas), at: ms(0), chain: []convert.Ref{dep}})
		add(stormEvent{uid: fmt.Sprintf("ev-down-%d", d), name: dn + ".down", reason: "ScalingReplicaSet", controller: "deployment-controller",
			note: fmt.Sprintf("Scaled down replica set %s from %d to 0", oldRS.Name, replicas), at: ms(500), chain: []convert.Ref{dep}})
		for r := 0; r < replicas; r++ {
			pod := convert.Ref{Kind: "Pod", APIVersion: "v1", Namespace: ns, Name: fmt.Sprintf("%s-new-%d", dn, r), UID: fmt.Sprintf("pod-new-%d-%d", d, r)}
			chain := []convert.Ref{pod, newRS, dep}
			p := func(s string) string { return fmt.Sprintf("ev-%s-%d-%d", s, d, r) }
			add(stormEvent{uid: p("create"), name: pod.Name + ".c", reason: "SuccessfulCreate", controller: "replicaset-controller",
				note: "Created pod: " + pod.Name, at: ms(10 + r), chain: []convert.Ref{newRS, dep}})
			add(stormEvent{uid: p("sched"), name: pod.Name + ".s", reason: "Scheduled", controller: "default-scheduler",
				note: fmt.Sprintf("Successfully assigned %s/%s to node-%d", ns, pod.Name, r%100), at: ms(20 + r), chain: chain})
			for i, reason := range []string{"Pulling", "Pulled", "Created", "Started"} {
				add(stormEvent{uid: p(reason), name: pod.Name + "." + reason, reason: reason, controller: "kubelet",
					note: reason + " container app", at: ms(200 + 150*i + r), chain: chain})
			}
			if r%10 == 3 {
				for c := int32(1); c <= 5; c++ {
					add(stormEvent{uid: p("backoff"), name: pod.Name + ".b", reason: "BackOff", controller: "kubelet", typ: "Warning",
						note: "Back-off restarting failed container app in pod " + pod.Name, count: c, at: ms(1000 + 500*int(c) + r), chain: chain})
				}
			}
			old := convert.Ref{Kind: "Pod", APIVersion: "v1", Namespace: ns, Name: fmt.Sprintf("%s-old-%d", dn, r), UID: fmt.Sprintf("pod-old-%d-%d", d, r)}
			add(stormEvent{uid: p("delete"), name: old.Name + ".d", reason: "SuccessfulDelete", controller: "replicaset-controller",
				note: "Deleted pod: " + old.Name, at: ms(510 + r), chain: []convert.Ref{oldRS, dep}})
			add(stormEvent{uid: p("kill"), name: old.Name + ".k", reason: "Killing", controller: "kubelet",
				note: "Stopping container app", at: ms(600 + r), chain: []convert.Ref{old, oldRS, dep}})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

func (e *stormEvent) occurrence() *convert.Occurrence {
	typ := e.typ
	if typ == "" {
		typ = "Normal"
	}
	return &convert.Occurrence{
		EventUID: e.uid, EventName: e.name, Namespace: e.chain[0].Namespace, Count: e.count, Type: typ,
		Reason: e.reason, Note: e.note, Time: e.at, Observed: e.at.Add(5 * time.Millisecond),
		Regarding: e.chain[0], ReportingController: e.controller, Chain: e.chain,
	}
}

func (e *stormEvent) event() *eventsv1.Event {
	typ := e.typ
	if typ == "" {
		typ = "Normal"
	}
	r := e.chain[0]
	ev := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: e.name, Namespace: r.Namespace, UID: types.UID(e.uid),
			CreationTimestamp: metav1.NewTime(e.at.Truncate(time.Second))},
		Reason: e.reason, Note: e.note, Type: typ, ReportingController: e.controller,
		Regarding:                corev1.ObjectReference{Kind: r.Kind, APIVersion: r.APIVersion, Namespace: r.Namespace, Name: r.Name, UID: types.UID(r.UID)},
		DeprecatedSource:         corev1.EventSource{Component: e.controller},
		DeprecatedFirstTimestamp: metav1.NewTime(e.at.Truncate(time.Second)),
		DeprecatedLastTimestamp:  metav1.NewTime(e.at.Truncate(time.Second)),
		DeprecatedCount:          e.count,
	}
	if e.reason == "Scheduled" {
		ev.EventTime = metav1.NewMicroTime(e.at)
	}
	return ev
}

// BenchmarkEngineObserve: one op is one occurrence through Engine.Observe
// (episodes are closed by a Flush each time the stream wraps around, which
// is counted: closing is part of the work per occurrence).
func BenchmarkEngineObserve(b *testing.B) {
	stream := rolloutStorm(1000, 10)
	occs := make([]*convert.Occurrence, len(stream))
	for i := range stream {
		occs[i] = stream[i].occurrence()
	}
	for _, advanceEvery := range []int{0, 1} {
		name := "observe"
		if advanceEvery == 1 {
			name = "advance-per-occurrence" // as replay's pipeline does
		}
		b.Run(name, func(b *testing.B) {
			e, _ := New(Config{})
			spans := 0
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			i := 0
			for ; b.Loop(); i++ {
				k := i % len(occs)
				if k == 0 && i > 0 {
					spans += len(e.Flush())
					e, _ = New(Config{})
				}
				o := occs[k]
				if advanceEvery > 0 {
					spans += len(e.Advance(o.Observed))
				}
				spans += len(e.Observe(Input{Occ: o, Now: o.Observed, RootGeneration: 2}).Spans)
			}
			spans += len(e.Flush())
			b.ReportMetric(float64(i)/time.Since(start).Seconds(), "occurrences/s")
			b.ReportMetric(float64(len(occs)), "stream-len")
			_ = spans
		})
	}
}

// BenchmarkPipelineObserve: one op is one occurrence the way the daemon
// handles it after the watch: convert.FromEvent, the owner chain from the
// slim object cache, then Engine.Observe.
func BenchmarkPipelineObserve(b *testing.B) {
	stream := rolloutStorm(1000, 10)
	events := make([]*eventsv1.Event, len(stream))
	cache, _ := watch.NewObjectCache(watch.CacheOptions{Now: func() time.Time { return stream[0].at }})
	for i := range stream {
		events[i] = stream[i].event()
		ch := stream[i].chain
		for j := range ch {
			o := &watch.Object{UID: ch[j].UID, APIVersion: ch[j].APIVersion, Kind: ch[j].Kind, Namespace: ch[j].Namespace, Name: ch[j].Name, Generation: 2}
			if j+1 < len(ch) {
				o.Owners = []watch.OwnerRef{{APIVersion: ch[j+1].APIVersion, Kind: ch[j+1].Kind, Name: ch[j+1].Name, UID: ch[j+1].UID, Controller: true}}
			}
			if _, ok := cache.Get(o.UID); !ok {
				cache.Upsert(o)
			}
		}
	}
	e, _ := New(Config{})
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	i := 0
	for ; b.Loop(); i++ {
		k := i % len(events)
		if k == 0 && i > 0 {
			e.Flush()
			e, _ = New(Config{})
		}
		o, err := convert.FromEvent(events[k], stream[k].count, stream[k].at.Add(5*time.Millisecond), convert.Options{})
		if err != nil {
			b.Fatal(err)
		}
		o.Chain, _ = cache.Chain(o.Chain)
		in := Input{Occ: &o, Now: o.Observed}
		if root, ok := cache.Get(o.Chain[len(o.Chain)-1].UID); ok {
			in.RootGeneration = root.Generation
		}
		e.Observe(in)
	}
	e.Flush()
	b.ReportMetric(float64(i)/time.Since(start).Seconds(), "occurrences/s")
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkEngineMemory measures what the engine holds: bytes per open
// episode (a root with one occurrence), per tracked object (a pod with its
// "Created pod" cause and five kubelet events), and per closed root (the
// mark it keeps to key and link the root's next episode).
func BenchmarkEngineMemory(b *testing.B) {
	const episodes = 5000
	const pods = 10
	roots := make([]convert.Ref, episodes)
	for i := range roots {
		roots[i] = convert.Ref{Kind: "Deployment", Namespace: fmt.Sprintf("ns-%d", i%50), Name: fmt.Sprintf("app-%d", i), UID: fmt.Sprintf("dep-%08d", i)}
	}
	base := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	var perEpisode, perObject, perClosed float64
	for b.Loop() {
		// Open episodes with one occurrence each.
		before := heapInUse()
		e, _ := New(Config{MaxOpenEpisodes: episodes * 2})
		for i := range roots {
			o := occ(fmt.Sprintf("ev-%d", i), 1, "ScalingReplicaSet", "Scaled up replica set "+roots[i].Name+"-1 from 0 to 10", base, roots[i])
			e.Observe(Input{Occ: o, Now: base})
		}
		perEpisode = float64(heapInUse()-before) / episodes
		// Closed: only what links the next episode of the root remains
		// (until ForgetBefore drops it).
		e.Flush()
		perClosed = float64(int64(heapInUse())-int64(before)) / episodes
		runtime.KeepAlive(e)

		// The same episodes with a ReplicaSet and pods each.
		before = heapInUse()
		e2, _ := New(Config{MaxOpenEpisodes: episodes * 2})
		for i := range roots {
			rs := convert.Ref{Kind: "ReplicaSet", Namespace: roots[i].Namespace, Name: roots[i].Name + "-1", UID: fmt.Sprintf("rs-%08d", i)}
			o := occ(fmt.Sprintf("ev-%d", i), 1, "ScalingReplicaSet", "Scaled up replica set "+rs.Name+" from 0 to 10", base, roots[i])
			e2.Observe(Input{Occ: o, Now: base})
			for p := 0; p < pods; p++ {
				pod := convert.Ref{Kind: "Pod", Namespace: rs.Namespace, Name: fmt.Sprintf("%s-%d", rs.Name, p), UID: fmt.Sprintf("pod-%08d-%d", i, p)}
				c := occ(fmt.Sprintf("ev-c-%d-%d", i, p), 1, "SuccessfulCreate", "Created pod: "+pod.Name, base, rs, roots[i])
				e2.Observe(Input{Occ: c, Now: base})
				for k, reason := range []string{"Scheduled", "Pulling", "Pulled", "Created", "Started"} {
					note := "x"
					if k == 0 {
						note = "Successfully assigned " + pod.Namespace + "/" + pod.Name + " to node-1"
					}
					ko := occ(fmt.Sprintf("ev-k-%d-%d-%d", i, p, k), 1, reason, note, base, pod, rs, roots[i])
					e2.Observe(Input{Occ: ko, Now: base})
				}
			}
		}
		total := float64(heapInUse() - before)
		perObject = (total/episodes - perEpisode) / (pods + 1)
		runtime.KeepAlive(e2)
	}
	b.ReportMetric(perEpisode, "B/open-episode")
	b.ReportMetric(perObject, "B/tracked-object")
	b.ReportMetric(perClosed, "B/closed-root")
}

// BenchmarkSnapshotOpen: the checkpoint's snapshot of the open episodes as
// a soak has them: 80 open, each of a root with 60 occurrences, 20 of them
// active between two snapshots (the rest wait out --episode-idle). cached
// reuses the JSON of the episodes unchanged since the last snapshot; afresh
// encodes every one, as before.
func BenchmarkSnapshotOpen(b *testing.B) {
	for _, cached := range []bool{true, false} {
		name := "afresh"
		if cached {
			name = "cached"
		}
		b.Run(name, func(b *testing.B) {
			e, err := New(Config{})
			if err != nil {
				b.Fatal(err)
			}
			base := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
			count := map[int]int32{}
			observe := func(root, n int, now time.Time) {
				count[root]++
				cm := convert.Ref{Kind: "ConfigMap", APIVersion: "v1", Namespace: "soak", Name: fmt.Sprintf("config-%02d", root), UID: fmt.Sprintf("uid-cm-%02d", root)}
				o := &convert.Occurrence{EventUID: fmt.Sprintf("ev-%02d-%d", root, n%20), EventName: "soak", Namespace: "soak", Count: count[root],
					Type: "Normal", Reason: "SoakTick", Note: "soak event: the quick brown fox jumps over the lazy dog",
					Time: now, Observed: now, Regarding: cm, Chain: []convert.Ref{cm}, ReportingController: "soak"}
				e.Observe(Input{Occ: o, Now: now})
			}
			for root := range 80 {
				for n := range 60 {
					observe(root, n, base.Add(time.Duration(root*60+n)*time.Millisecond))
				}
			}
			now := base.Add(time.Minute)
			if _, err := e.snapshotOpen(1<<30, cached); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			size := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for k := range 20 {
					now = now.Add(time.Millisecond)
					observe((i*20+k)%80, i, now)
				}
				b.StartTimer()
				snap, err := e.snapshotOpen(1<<30, cached)
				if err != nil {
					b.Fatal(err)
				}
				size = len(snap)
			}
			b.ReportMetric(float64(size), "snapshot-B")
		})
	}
}
