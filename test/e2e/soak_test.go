package e2e

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/cluster"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/scenarios"
)

// soakSource is the source component of the Events the soak creates itself
// (the controllers' and kubelets' Events have another).
const soakSource = "kob-soak"

// TestSoak is the memory soak: one bridge process watches a namespace for
// KOB_SOAK_DURATION (default 30m) under a steady workload, and its memory is
// sampled every KOB_SOAK_SAMPLE (default 30s):
//
//   - real Deployment rollouts: KOB_SOAK_DEPLOYMENTS (default 20)
//     Deployments of 3 replicas on fake nodes of the test's own, one of them
//     rolled (a new pod template) every KOB_SOAK_ROLLOUT_EVERY (default 5s),
//     so every Deployment rolls about every 100s: ReplicaSet, scheduler and
//     kubelet Events, pods created and deleted (tombstones), episodes per
//     rollout;
//   - core/v1 Events created directly at KOB_SOAK_RATE per second (default
//     60) about ConfigMaps whose names change every minute (20 per minute),
//     so episodes keep opening and close after --episode-idle (2m);
//   - every Event of the namespace (the soak's and the controllers') is
//     deleted once older than KOB_SOAK_EVENT_TTL (default 5m): the API
//     server's --event-ttl (1h) at the soak's scale. Without it the Events
//     live in the API server for the whole soak and the bridge, which keeps
//     a few dozen bytes per live Event by design (README: sizing), grows
//     with them; with it the workload has a steady state.
//
// Memory is the bridge's RSS (/proc/<pid>/status VmRSS, RssAnon) and its Go
// heap (go_memstats_heap_inuse_bytes from /metrics). The series is logged as
// a table; the growth is the median of the samples of the last third over
// the median of the second third (the first third is the warm-up: episodes,
// tombstones and Events reach their steady numbers within about 10 minutes).
//
// It fails only on a clear leak (heap in the last third more than 1.5× the
// second third AND rising window after window) and on lost or duplicated
// deliveries: every Event the soak created must arrive, and no occurrence
// (Event name, count: an Event created again after the TTL deleted it keeps
// its name) of the namespace may arrive twice, except in a log
// request that only repeats records already received while the bridge
// counted failed export attempts: a retry whose first attempt arrived but
// was answered after --otlp-timeout (on a starved machine), which OTLP's
// at-least-once delivery allows; those are reported. Everything else is
// reported. The OTLP receiver only counts (otlpreceiver.Counter), so
// the test process does not hold every record.
//
//	KOB_SOAK=1 go test -count=1 -run TestSoak -v -timeout 45m ./test/e2e/
//
// KOB_SOAK_PROFILE_DIR=DIR saves the bridge's heap profile at the end of each
// third (heap-1.pb.gz … heap-3.pb.gz), for `go tool pprof -diff_base`;
// KOB_SOAK_MEM_PROFILE_RATE=4096 runs the bridge with --pprof-mem-rate 4096,
// so they attribute a growth of a few MB (the default samples every 512 KiB).
func TestSoak(t *testing.T) {
	if os.Getenv("KOB_SOAK") != "1" {
		t.Skip("soak test: set KOB_SOAK=1 (and -run TestSoak) to run it")
	}
	needCluster(t)
	dur := soakEnvDuration(t, "KOB_SOAK_DURATION", 30*time.Minute)
	every := soakEnvDuration(t, "KOB_SOAK_SAMPLE", 30*time.Second)
	rollEvery := soakEnvDuration(t, "KOB_SOAK_ROLLOUT_EVERY", 5*time.Second)
	eventTTL := soakEnvDuration(t, "KOB_SOAK_EVENT_TTL", 5*time.Minute)
	rate := loadEnvInt(t, "KOB_SOAK_RATE", 60)
	nDeploy := loadEnvInt(t, "KOB_SOAK_DEPLOYMENTS", 20)
	profDir := os.Getenv("KOB_SOAK_PROFILE_DIR")
	ctx := ctxFor(t, dur+12*time.Minute)

	ns := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStartedCounter(t, func(r otlpreceiver.LogRecordWithResource) string {
		if v, _ := r.Attr("k8s.namespace.name"); v != ns {
			return ""
		}
		// By name, not UID: an Event that client-go's recorder creates
		// again after the TTL deleted it keeps its name and goes on
		// counting under a new UID, and its earlier counts must not come
		// again.
		name, _ := r.Attr("k8s.event.name")
		c, _ := r.Attr("k8s.event.count")
		return name + "#" + c
	})

	cfg := shared.RestConfig()
	cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	nodes := addDedicatedNodes(ctx, t, "soak-"+ns[len(ns)-5:], 3)
	setupStart := time.Now()
	for i := range nDeploy {
		d := soakDeployment(fmt.Sprintf("app-%02d", i), nodes)
		if _, err := client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create deployment %s: %v", d.Name, err)
		}
	}
	for i := range nDeploy {
		wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		err := scenarios.WaitDeploymentComplete(wctx, client, ns, fmt.Sprintf("app-%02d", i))
		cancel()
		if err != nil {
			t.Fatalf("deployment app-%02d not complete: %v", i, err)
		}
	}
	t.Logf("%d deployments × 3 replicas ready on %v in %s", nDeploy, nodes, time.Since(setupStart).Round(time.Millisecond))

	// As the deploy manifests run it (and TestLoad).
	args := []string{"--pprof", "--state-namespace", ns}
	if r := os.Getenv("KOB_SOAK_MEM_PROFILE_RATE"); r != "" {
		args = append(args, "--pprof-mem-rate", r) // finer heap profiles
	}
	b := startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: ns, Args: args, Env: []string{"GOMAXPROCS=1", "GOGC=50"}})
	pid := b.cmd.Process.Pid
	addr := b.metricsAddr(ctx)

	// The workload.
	w := &soakWorkload{t: t, client: client, ns: ns, ttl: eventTTL, created: map[string]bool{}}
	wctx, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	lim := flowcontrol.NewTokenBucketRateLimiter(float32(rate), max(rate/10, 1))
	start := time.Now()
	for range 8 {
		wg.Go(func() { w.createEvents(wctx, lim, start) })
	}
	wg.Go(func() { w.rollouts(wctx, nDeploy, rollEvery) })
	wg.Go(func() { w.expire(wctx) })
	wg.Go(func() { w.sweep(wctx) })

	// The samples.
	var samples []soakSample
	take := func() {
		s := soakSample{At: time.Since(start)}
		s.RSS = soakStatusKB(pid, "VmRSS")
		s.Anon = soakStatusKB(pid, "RssAnon")
		s.HWM = soakStatusKB(pid, "VmHWM")
		m, err := scrapeMetrics(ctx, addr)
		if err != nil {
			t.Logf("scrape /metrics: %v", err)
		}
		s.HeapInuse = m["go_memstats_heap_inuse_bytes"]
		s.HeapAlloc = m["go_memstats_heap_alloc_bytes"]
		s.HeapLive = m["go_gc_heap_live_bytes"]
		s.GoSys = m["go_memstats_sys_bytes"]
		s.Goroutines = m["go_goroutines"]
		s.OpenEpisodes = m["kube_otel_bridge_open_episodes"]
		s.Objects = m["kube_otel_bridge_cached_objects"]
		for k, v := range m {
			if strings.HasPrefix(k, "kube_otel_bridge_episodes_closed_total{") {
				s.Closed += v
			}
		}
		s.Occurrences = m["kube_otel_bridge_occurrences_total"]
		s.Tracked = m["kube_otel_bridge_events_tracked"]
		s.Checkpoint = m["kube_otel_bridge_checkpoint_bytes"]
		tot := rcv.Totals()
		s.Records, s.Spans = tot.Logs, tot.Spans
		s.Created, s.Deleted, s.Rollouts = w.nCreated.Load(), w.nDeleted.Load(), w.nRollouts.Load()
		samples = append(samples, s)
		t.Logf("soak sample %s", s.row())
	}
	saveProfile := func(i int) {
		if profDir == "" {
			return
		}
		code, body, err := httpGetTimeout(ctx, addr, "/debug/pprof/heap", 30*time.Second)
		if err != nil || code != http.StatusOK {
			t.Logf("heap profile %d: HTTP %d, %v", i, code, err)
			return
		}
		f := filepath.Join(profDir, fmt.Sprintf("heap-%d.pb.gz", i))
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Logf("heap profile: %v", err)
			return
		}
		t.Logf("heap profile of the bridge at %s: %s", time.Since(start).Round(time.Second), f)
	}
	t.Logf("soak: %s, %d events/s created (deleted after %s), one of %d deployments rolled every %s, samples every %s",
		dur, rate, eventTTL, nDeploy, rollEvery, every)
	t.Logf("soak sample %s", soakHeader)
	take()
	tick := time.NewTicker(every)
	nextProfile := 1
	for time.Since(start) < dur {
		select {
		case <-ctx.Done():
			t.Fatalf("soak: %v", ctx.Err())
		case <-tick.C:
		}
		take()
		if el := time.Since(start); nextProfile <= 2 && el >= time.Duration(nextProfile)*dur/3 {
			saveProfile(nextProfile)
			nextProfile++
		}
	}
	tick.Stop()
	saveProfile(3)
	stopWork()
	wg.Wait()
	if b.exited() {
		t.Fatalf("the bridge exited during the soak: %v", b.err)
	}

	// Delivery: every Event the soak created exactly once; no occurrence of
	// the namespace twice.
	w.mu.Lock()
	created := make([]string, 0, len(w.created))
	for name := range w.created {
		created = append(created, name)
	}
	w.mu.Unlock()
	missingUIDs := func() []string {
		var out []string
		for _, name := range created {
			if rcv.Count(name+"#1") == 0 {
				out = append(out, name)
			}
		}
		return out
	}
	waitStart := time.Now()
	var missing []string
	_ = wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(context.Context) (bool, error) {
		missing = missingUIDs()
		return len(missing) == 0, nil
	})
	time.Sleep(3 * time.Second) // late duplicates
	missing = missingUIDs()
	dups, dupKeys := 0, []string{}
	rcv.EachKey(func(k string, n int) {
		if n > 1 {
			dups += n - 1
			dupKeys = append(dupKeys, fmt.Sprintf("%s×%d", k, n))
		}
	})
	tot := rcv.Totals()
	// The bridge's failed export attempts: a retry after an attempt that
	// reached the receiver but whose answer came too late (--otlp-timeout,
	// e.g. on a starved machine) repeats records, which OTLP's
	// at-least-once delivery allows.
	var exportErrs float64
	if m, err := scrapeMetrics(ctx, addr); err == nil {
		exportErrs = m[`kube_otel_bridge_export_errors_total{output="otlp-logs"}`]
	}

	// The report.
	var table strings.Builder
	fmt.Fprintf(&table, "%s\n", soakHeader)
	for _, s := range samples {
		fmt.Fprintf(&table, "%s\n", s.row())
	}
	t.Logf("soak series (%d samples):\n%s", len(samples), table.String())
	w.mu.Lock()
	t.Logf("workload: %d events created (%d failed creates, last error %v), %d deleted after the TTL (%d controller/kubelet events swept), %d rollouts (%d failed)",
		w.nCreated.Load(), w.failedCreates, w.lastErr, w.nDeleted.Load(), w.nSwept.Load(), w.nRollouts.Load(), w.failedRollouts)
	w.mu.Unlock()
	t.Logf("delivered: %d of %d created events (%d missing, %d duplicate records of the namespace's occurrences; all waited for %s after the load stopped); receiver totals: %d log records, %d spans, %d log requests",
		len(created)-len(missing), len(created), len(missing), dups, time.Since(waitStart).Round(time.Millisecond), tot.Logs, tot.Spans, tot.LogRequests)
	t.Logf("duplicates: %d in %d log requests that only repeated records already received (retries: the bridge counted %.0f failed log export attempts), %d among new records",
		tot.DuplicatesResent, tot.ResentRequests, exportErrs, tot.DuplicatesFresh)
	if len(dupKeys) > 0 {
		sort.Strings(dupKeys)
		t.Logf("duplicated occurrences (name#count×n): %v", dupKeys[:min(len(dupKeys), 20)])
	}

	g := soakGrowth(samples, dur)
	for _, l := range g.lines() {
		t.Log(l)
	}
	t.Logf("KOB_SOAK_RESULT duration=%s samples=%d heap_mid_mib=%.1f heap_last_mib=%.1f heap_growth=%.3f live_mid_mib=%.1f live_last_mib=%.1f live_growth=%.3f live_slope_mib_per_h=%.2f anon_mid_mib=%.1f anon_last_mib=%.1f anon_growth=%.3f rss_mid_mib=%.1f rss_last_mib=%.1f peak_rss_mib=%.1f heap_slope_mib_per_h=%.2f created=%d missing=%d dups=%d dups_resent=%d export_errors=%.0f",
		dur, len(samples), g.heap.mid/(1<<20), g.heap.last/(1<<20), g.heap.ratio(), g.live.mid/(1<<20), g.live.last/(1<<20), g.live.ratio(), g.liveSlope, g.anon.mid/1024, g.anon.last/1024, g.anon.ratio(),
		g.rss.mid/1024, g.rss.last/1024, float64(samples[len(samples)-1].HWM)/1024, g.heapSlope, len(created), len(missing), dups,
		tot.DuplicatesResent, exportErrs)

	if g.heap.ratio() > 1.5 && g.heapMonotonic {
		t.Errorf("memory leak: Go heap median %.1f MiB in the last third vs %.1f MiB in the second (×%.2f), rising window after window (%s)",
			g.heap.last/(1<<20), g.heap.mid/(1<<20), g.heap.ratio(), g.heapWindowsString())
	}
	if g.live.ratio() > 1.5 && g.liveMonotonic {
		t.Errorf("memory leak: live heap median %.1f MiB in the last third vs %.1f MiB in the second (×%.2f), rising window after window (%s)",
			g.live.last/(1<<20), g.live.mid/(1<<20), g.live.ratio(), windowsString(g.liveWindows))
	}
	if n := len(missing); n > 0 {
		t.Errorf("%d created events never arrived (e.g. %v)", n, missing[:min(n, 20)])
	}
	// Duplicates fail the soak unless they are whole requests sent again
	// after failed attempts the bridge itself counted.
	switch {
	case tot.DuplicatesFresh > 0:
		t.Errorf("%d duplicate records among new ones: the bridge sent occurrences twice (name#count×n: %v)", tot.DuplicatesFresh, dupKeys[:min(len(dupKeys), 20)])
	case tot.DuplicatesResent > 0 && exportErrs == 0:
		t.Errorf("%d duplicate records in %d repeated requests, yet the bridge counted no failed export attempt", tot.DuplicatesResent, tot.ResentRequests)
	case int64(dups) != tot.DuplicatesResent+tot.DuplicatesFresh:
		t.Errorf("%d duplicate records by key, %d by request: the tallies disagree", dups, tot.DuplicatesResent+tot.DuplicatesFresh)
	}
}

// addDedicatedNodes adds n fake nodes named prefix-0…, tainted so that only
// the test's own pods (soakDeployment tolerates the taint) run on them,
// waits until they are Ready and deletes them when the test ends.
func addDedicatedNodes(ctx context.Context, t *testing.T, prefix string, n int) []string {
	t.Helper()
	var nodes []string
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, n := range nodes {
			_ = shared.Client.CoreV1().Nodes().Delete(ctx, n, metav1.DeleteOptions{})
		}
	})
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i)
		if err := shared.AddNode(ctx, name); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, name)
	}
	if err := shared.WaitNodesReady(ctx, nodes...); err != nil {
		t.Fatal(err)
	}
	return nodes
}

// soakDeployment is a 3-replica Deployment pinned to the soak's nodes, with a
// short revision history (so old ReplicaSets do not pile up for the first
// ten rollouts of each Deployment).
func soakDeployment(name string, nodes []string) *appsv1.Deployment {
	d := scenarios.Deployment(name, "registry.example/app:1.0", 3)
	hist := int32(2)
	d.Spec.RevisionHistoryLimit = &hist
	spec := &d.Spec.Template.Spec
	spec.Tolerations = []corev1.Toleration{{Key: cluster.TaintDedicated, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: nodes}},
		}}},
	}}
	return d
}

// soakWorkload drives the soak's API traffic.
type soakWorkload struct {
	t      *testing.T
	client kubernetes.Interface
	ns     string
	ttl    time.Duration

	seq                           atomic.Int64
	nCreated, nDeleted, nSwept    atomic.Int64
	nRollouts                     atomic.Int64
	mu                            sync.Mutex
	created                       map[string]bool // names
	fifo                          []soakCreated   // for expiry, oldest first
	failedCreates, failedRollouts int
	lastErr                       error
}

type soakCreated struct {
	name string
	at   time.Time
}

func (w *soakWorkload) fail(err error, rollout bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if rollout {
		w.failedRollouts++
	} else {
		w.failedCreates++
	}
	w.lastErr = err
}

// createEvents creates Events at the limiter's pace until ctx ends. The
// involved ConfigMaps change every minute (20 per minute), so each episode
// gets events for a minute, then idles and closes.
func (w *soakWorkload) createEvents(ctx context.Context, lim flowcontrol.RateLimiter, start time.Time) {
	for {
		if err := lim.Wait(ctx); err != nil {
			return
		}
		i := w.seq.Add(1)
		minute := int(time.Since(start) / time.Minute)
		typ, reason := corev1.EventTypeNormal, "SoakTick"
		if i%10 == 0 {
			typ, reason = corev1.EventTypeWarning, "SoakWarning"
		}
		now := metav1.NewTime(time.Now())
		name := fmt.Sprintf("soak-%08d", i)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ev, err := w.client.CoreV1().Events(w.ns).Create(cctx, &corev1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			InvolvedObject: corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: w.ns,
				Name: fmt.Sprintf("config-m%03d-%02d", minute, i%20)},
			Reason:         reason,
			Message:        fmt.Sprintf("soak event %d: the quick brown fox jumps over the lazy dog", i),
			Type:           typ,
			Count:          1,
			FirstTimestamp: now,
			LastTimestamp:  now,
			Source:         corev1.EventSource{Component: soakSource, Host: "node-1"},
		}, metav1.CreateOptions{})
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				w.fail(err, false)
			}
			continue
		}
		w.nCreated.Add(1)
		w.mu.Lock()
		w.created[ev.Name] = true
		w.fifo = append(w.fifo, soakCreated{name: name, at: time.Now()})
		w.mu.Unlock()
	}
}

// rollouts rolls one Deployment (a new pod template annotation) every
// `every`, round robin.
func (w *soakWorkload) rollouts(ctx context.Context, n int, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		name := fmt.Sprintf("app-%02d", i%n)
		patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"soak/rev":"%d"}}}}}`, i)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := w.client.AppsV1().Deployments(w.ns).Patch(cctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				w.fail(err, true)
			}
			continue
		}
		w.nRollouts.Add(1)
	}
}

// expire deletes the soak's Events once older than the TTL.
func (w *soakWorkload) expire(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cut := time.Now().Add(-w.ttl)
		w.mu.Lock()
		n := sort.Search(len(w.fifo), func(i int) bool { return w.fifo[i].at.After(cut) })
		old := slices.Clone(w.fifo[:n])
		w.fifo = slices.Delete(w.fifo, 0, n)
		w.mu.Unlock()
		w.nDeleted.Add(w.deleteAll(ctx, old))
	}
}

// deleteAll deletes the named Events with 4 workers and returns how many it
// deleted.
func (w *soakWorkload) deleteAll(ctx context.Context, evs []soakCreated) int64 {
	var next, deleted atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(evs) || ctx.Err() != nil {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := w.client.CoreV1().Events(w.ns).Delete(cctx, evs[i].name, metav1.DeleteOptions{})
				cancel()
				if err == nil {
					deleted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return deleted.Load()
}

// sweep deletes, once a minute, the controllers' and kubelets' Events of the
// namespace older than the TTL.
func (w *soakWorkload) sweep(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	logged := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l, err := w.client.CoreV1().Events(w.ns).List(ctx, metav1.ListOptions{FieldSelector: "source!=" + soakSource})
		if err != nil {
			if !logged && ctx.Err() == nil {
				w.t.Logf("sweep: list events: %v", err)
				logged = true
			}
			continue
		}
		cut := time.Now().Add(-w.ttl)
		var old []soakCreated
		for i := range l.Items {
			if e := &l.Items[i]; e.Source.Component != soakSource && e.CreationTimestamp.Time.Before(cut) {
				old = append(old, soakCreated{name: e.Name})
			}
		}
		w.nSwept.Add(w.deleteAll(ctx, old))
	}
}

// soakSample is one sample of the bridge's memory and counters.
type soakSample struct {
	At                   time.Duration
	RSS, Anon, HWM       int // KiB
	HeapInuse, HeapAlloc float64
	// HeapLive: the heap the last GC marked live (go_gc_heap_live_bytes),
	// what the bridge retains; the heap in use and allocated also hold the
	// garbage of the current GC cycle (up to GOGC % more), so they follow
	// the GC's sawtooth as well as retention.
	HeapLive             float64
	GoSys, Goroutines    float64
	OpenEpisodes, Closed float64
	Objects, Occurrences float64
	Tracked              float64 // Events the bridge keeps state for
	Records, Spans       int64
	Created, Deleted     int64
	Rollouts             int64
	Checkpoint           float64 // bytes of the last checkpoint saved
}

const soakHeader = "   t     RSS   anon   HWM   heap  alloc   live  gosys  gor  open  closed  objs  events   occurr   records    spans  created  deleted rolls  ckptKB"

func (s soakSample) row() string {
	mib := func(kb int) float64 { return float64(kb) / 1024 }
	return fmt.Sprintf("%5.1fm %6.1f %6.1f %5.1f %6.1f %6.1f %6.1f %6.1f %4.0f %5.0f %7.0f %5.0f %7.0f %8.0f %9d %8d %8d %8d %5d %7.1f",
		s.At.Minutes(), mib(s.RSS), mib(s.Anon), mib(s.HWM), s.HeapInuse/(1<<20), s.HeapAlloc/(1<<20), s.HeapLive/(1<<20), s.GoSys/(1<<20),
		s.Goroutines, s.OpenEpisodes, s.Closed, s.Objects, s.Tracked, s.Occurrences, s.Records, s.Spans, s.Created, s.Deleted, s.Rollouts, s.Checkpoint/1024)
}

// soakThirds are the medians of one series in the second and last thirds.
type soakThirds struct{ mid, last float64 }

func (m soakThirds) ratio() float64 {
	if m.mid == 0 {
		return 0
	}
	return m.last / m.mid
}

type soakGrowthReport struct {
	heap, alloc, live, anon, rss soakThirds
	heapWindows                  []float64 // medians of the heap in 4 windows after the first third
	heapMonotonic                bool
	heapSlope                    float64 // MiB per hour, least squares over the last two thirds
	// The same of the live heap (none when the bridge does not export it).
	liveWindows   []float64
	liveMonotonic bool
	liveSlope     float64
}

func soakGrowth(samples []soakSample, dur time.Duration) soakGrowthReport {
	var r soakGrowthReport
	var mid, last, after []soakSample
	for _, s := range samples {
		switch {
		case s.At < dur/3:
		case s.At < 2*dur/3:
			mid = append(mid, s)
			after = append(after, s)
		default:
			last = append(last, s)
			after = append(after, s)
		}
	}
	series := func(ss []soakSample, f func(soakSample) float64) []float64 {
		out := make([]float64, len(ss))
		for i, s := range ss {
			out[i] = f(s)
		}
		return out
	}
	thirds := func(f func(soakSample) float64) soakThirds {
		return soakThirds{median(series(mid, f)), median(series(last, f))}
	}
	heap := func(s soakSample) float64 { return s.HeapInuse }
	live := func(s soakSample) float64 { return s.HeapLive }
	r.heap = thirds(heap)
	r.alloc = thirds(func(s soakSample) float64 { return s.HeapAlloc })
	r.live = thirds(live)
	r.anon = thirds(func(s soakSample) float64 { return float64(s.Anon) })
	r.rss = thirds(func(s soakSample) float64 { return float64(s.RSS) })
	r.heapWindows, r.heapMonotonic = soakWindows(after, heap)
	r.heapSlope = soakSlope(after, heap)
	if r.live.mid > 0 {
		r.liveWindows, r.liveMonotonic = soakWindows(after, live)
		r.liveSlope = soakSlope(after, live)
	}
	return r
}

// soakWindows are the medians of f in 4 windows of the samples, and whether
// they rise window after window.
func soakWindows(ss []soakSample, f func(soakSample) float64) ([]float64, bool) {
	const windows = 4
	if len(ss) < windows {
		return nil, false
	}
	var out []float64
	monotonic := true
	for i := range windows {
		var v []float64
		for _, s := range ss[i*len(ss)/windows : (i+1)*len(ss)/windows] {
			v = append(v, f(s))
		}
		w := median(v)
		if i > 0 && w <= out[i-1] {
			monotonic = false
		}
		out = append(out, w)
	}
	return out, monotonic
}

// soakSlope is the least-squares slope of f (bytes) over the samples, in
// MiB per hour.
func soakSlope(ss []soakSample, f func(soakSample) float64) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, s := range ss {
		x, y := s.At.Hours(), f(s)/(1<<20)
		n++
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	if d := n*sxx - sx*sx; n >= 2 && d != 0 {
		return (n*sxy - sx*sy) / d
	}
	return 0
}

func (r soakGrowthReport) heapWindowsString() string { return windowsString(r.heapWindows) }

func windowsString(ws []float64) string {
	var parts []string
	for _, w := range ws {
		parts = append(parts, fmt.Sprintf("%.1f", w/(1<<20)))
	}
	return strings.Join(parts, " → ") + " MiB"
}

func (r soakGrowthReport) lines() []string {
	pct := func(m soakThirds) string { return fmt.Sprintf("%+.1f%%", (m.ratio()-1)*100) }
	out := []string{
		"growth, median of the last third vs median of the second third:",
		fmt.Sprintf("  Go heap in use  %6.1f → %6.1f MiB (%s)", r.heap.mid/(1<<20), r.heap.last/(1<<20), pct(r.heap)),
		fmt.Sprintf("  Go heap alloc   %6.1f → %6.1f MiB (%s)", r.alloc.mid/(1<<20), r.alloc.last/(1<<20), pct(r.alloc)),
		fmt.Sprintf("  Go heap live    %6.1f → %6.1f MiB (%s)", r.live.mid/(1<<20), r.live.last/(1<<20), pct(r.live)),
		fmt.Sprintf("  RSS anonymous   %6.1f → %6.1f MiB (%s)", r.anon.mid/1024, r.anon.last/1024, pct(r.anon)),
		fmt.Sprintf("  RSS             %6.1f → %6.1f MiB (%s)", r.rss.mid/1024, r.rss.last/1024, pct(r.rss)),
		fmt.Sprintf("  heap medians of 4 windows after the first third: %s (monotonic: %v); least-squares slope %.2f MiB/h",
			r.heapWindowsString(), r.heapMonotonic, r.heapSlope),
	}
	if r.liveWindows != nil {
		out = append(out, fmt.Sprintf("  live heap medians of 4 windows after the first third: %s (monotonic: %v); least-squares slope %.2f MiB/h",
			windowsString(r.liveWindows), r.liveMonotonic, r.liveSlope))
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// scrapeMetrics returns every sample of the bridge's /metrics by its printed
// name (with labels).
func scrapeMetrics(ctx context.Context, addr string) (map[string]float64, error) {
	out := map[string]float64{}
	code, body, err := httpGet(ctx, addr, "/metrics")
	if err != nil {
		return out, err
	}
	if code != http.StatusOK {
		return out, fmt.Errorf("/metrics: HTTP %d", code)
	}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, nil
}

// soakStatusKB reads a "Key: N kB" line of /proc/<pid>/status (0 if absent).
func soakStatusKB(pid int, key string) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

func soakEnvDuration(t *testing.T, key string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration", key, v)
	}
	return d
}
