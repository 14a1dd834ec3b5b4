package e2e

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/scenarios"
)

// TestLoadRollouts is the other half of issue 7's end-to-end benchmark: real
// rollouts of many Deployments at once, every Event written by the control
// plane (the deployment and replica set controllers, the scheduler, kwok's
// kubelets), as a rollout storm makes them. KOB_LOAD_DEPLOYMENTS (default
// 100) Deployments of KOB_LOAD_REPLICAS (10) pods run on KOB_LOAD_NODES (20)
// fake nodes of the test's own; the bridge runs as deployed (checkpoint,
// GOMAXPROCS=1, GOGC=50) from before they are created. Once every Event of
// their creation has its record, all of them are rolled at once (a new pod
// template) and measured until every occurrence has its record:
//
//   - the control plane's Event rate (its own ceiling here: the rate at
//     which the test's watch saw new occurrences),
//   - the lag from the test's own Events watch seeing an occurrence to the
//     receiver getting its record (p50, p99, max),
//   - the bridge's CPU seconds per 10,000 occurrences and its peak RSS,
//   - 100 % delivered, no duplicates;
//
// then, with the bridge stopped, that the traces are right under the storm:
// the invariants every trace holds, and per Deployment a creation trace and
// a rollout trace linked to it, the new ReplicaSet under the rollout with
// one SuccessfulCreate per pod and each pod's span with its Scheduled, the
// old ReplicaSet with one SuccessfulDelete per pod.
//
//	KOB_LOAD=1 go test -count=1 -run 'TestLoadRollouts$' -v -timeout 30m ./test/e2e/
//
// Figures go to the log (KOB_LOAD_ROLLOUTS_RESULT line); it fails only when
// occurrences are lost or doubled or a trace is wrong.
func TestLoadRollouts(t *testing.T) {
	if os.Getenv("KOB_LOAD") != "1" {
		t.Skip("load test: set KOB_LOAD=1 (and -run TestLoadRollouts) to run it")
	}
	needCluster(t)
	nDeploy := loadEnvInt(t, "KOB_LOAD_DEPLOYMENTS", 100)
	replicas := loadEnvInt(t, "KOB_LOAD_REPLICAS", 10)
	nNodes := loadEnvInt(t, "KOB_LOAD_NODES", 20)
	e := newTreeEnv(t, 25*time.Minute)
	ctx, ns := e.ctx, e.ns

	cfg := shared.RestConfig()
	cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nodes := addDedicatedNodes(ctx, t, "storm-"+ns[len(ns)-5:], nNodes)

	// As deployed, and as TestLoad runs it, but with a short
	// --episode-idle: a stop with a checkpoint carries open episodes over to
	// the next process instead of closing them, so the traces are complete
	// only once every episode closed on its own.
	args := []string{"--state-namespace", ns, "--episode-idle", stormEpisodeIdle}
	// KOB_LOAD_CPUPROFILE=file: a CPU profile of the bridge during the
	// storm's first KOB_LOAD_PROFILE_SECONDS (default 20).
	cpuProfile := os.Getenv("KOB_LOAD_CPUPROFILE")
	profSeconds := loadEnvInt(t, "KOB_LOAD_PROFILE_SECONDS", 20)
	if cpuProfile != "" {
		args = append(args, "--pprof")
	}
	env := []string{"GOMAXPROCS=1", "GOGC=50"}
	e.b = startBridge(t, e.rcv.Addr(), bridgeOpts{Namespaces: ns, Args: args, Env: env})
	pid := e.b.cmd.Process.Pid
	// KOB_LOAD_PAIR_BIN and/or KOB_LOAD_PAIR_ENV: a second bridge beside
	// the first, as in TestLoad (its own receiver and checkpoint), for the
	// ratio of their CPU on the same storm.
	var pair *bridge
	var pairRcv *otlpreceiver.Receiver
	if pairBin, pairEnv := os.Getenv("KOB_LOAD_PAIR_BIN"), strings.Fields(os.Getenv("KOB_LOAD_PAIR_ENV")); pairBin != "" || len(pairEnv) > 0 {
		pairRcv = otlpreceiver.NewStarted(t, otlpreceiver.Options{})
		pair = startBridge(t, pairRcv.Addr(), bridgeOpts{Namespaces: ns, Bin: pairBin,
			Args: []string{"--state-namespace", shared.NewNamespace(t), "--episode-idle", stormEpisodeIdle}, Env: append(slices.Clone(env), pairEnv...)})
		t.Logf("pair: %q with %v beside %s", pairBin, pairEnv, bridgeBin)
	}

	names := make([]string, nDeploy)
	for i := range names {
		names[i] = fmt.Sprintf("app-%03d", i)
	}
	setupStart := time.Now()
	stormParallel(t, names, func(name string) error {
		d := soakDeployment(name, nodes)
		r := int32(replicas)
		d.Spec.Replicas = &r
		_, err := client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
		return err
	})
	waitDeploymentsComplete(ctx, t, client, ns, names)
	e.waitCovered()
	t.Logf("%d Deployments × %d pods on %d nodes created and their Events delivered in %s", nDeploy, replicas, nNodes, time.Since(setupStart).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // the bridge settles (exports, checkpoint)

	// The storm. The test's own watch sees every occurrence as the bridge
	// would (lag is measured from it: core/v1 Events written by the
	// controllers carry one-second timestamps only).
	seen := newOccurrenceWatch(ctx, t, client, ns)
	cpu0, sw0 := loadCPUSeconds(t, pid), loadCtxSwitches(t, pid)
	var pairCPU0 float64
	if pair != nil {
		pairCPU0 = loadCPUSeconds(t, pair.cmd.Process.Pid)
	}
	profDone := make(chan struct{})
	if cpuProfile != "" {
		addr := e.b.metricsAddr(ctx)
		go func() {
			defer close(profDone)
			code, body, err := httpGetTimeout(ctx, addr, fmt.Sprintf("/debug/pprof/profile?seconds=%d", profSeconds), time.Duration(profSeconds+20)*time.Second)
			if err != nil || code != 200 {
				t.Errorf("CPU profile: HTTP %d, %v", code, err)
				return
			}
			if err := os.WriteFile(cpuProfile, []byte(body), 0o644); err != nil {
				t.Error(err)
			}
		}()
	} else {
		close(profDone)
	}
	stormStart := time.Now()
	stormParallel(t, names, func(name string) error {
		patch := `{"spec":{"template":{"metadata":{"annotations":{"storm/rev":"2"}}}}}`
		_, err := client.AppsV1().Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	})
	waitDeploymentsComplete(ctx, t, client, ns, names)
	rolled := time.Since(stormStart)
	e.waitCovered()
	covered := time.Since(stormStart)
	<-profDone
	time.Sleep(2 * time.Second) // late duplicates
	cpu1, sw1 := loadCPUSeconds(t, pid), loadCtxSwitches(t, pid)
	var pairCPU1 float64
	if pair != nil {
		pairCPU1 = loadCPUSeconds(t, pair.cmd.Process.Pid)
	}
	hwm := loadStatusKB(t, pid, "VmHWM")
	occ := seen.stop()
	if len(occ) == 0 {
		t.Fatal("the test's watch saw no occurrence during the storm")
	}

	// Lag: the receiver keeps records in the order of the requests it
	// accepted.
	recs := e.rcv.Logs()
	var recvAt []time.Time
	for _, q := range e.rcv.Requests() {
		if q.Signal != otlpreceiver.SignalLogs || q.Code != 0 || q.Rejected > 0 {
			continue
		}
		for range q.Items {
			recvAt = append(recvAt, q.Time)
		}
	}
	if len(recvAt) != len(recs) {
		t.Fatalf("%d records but %d accounted for by requests", len(recs), len(recvAt))
	}
	var lags []time.Duration
	got := map[string]bool{}
	for k, r := range recs {
		key := attr(r, "k8s.event.uid") + "#" + attr(r, "k8s.event.count")
		at, ok := occ[key]
		if !ok || got[key] {
			continue
		}
		got[key] = true
		lags = append(lags, recvAt[k].Sub(at))
	}
	first, last := stormStart.Add(time.Hour), stormStart
	for _, at := range occ {
		first, last = minTime(first, at), maxTime(last, at)
	}
	n := len(occ)
	missing := n - len(got)
	cpu := cpu1 - cpu0
	rate := float64(n) / max(last.Sub(first).Seconds(), 0.001)
	t.Logf("machine: %d CPUs (%s)", runtime.NumCPU(), loadCPUModel())
	t.Logf("storm: %d Deployments × %d pods rolled in %s; %d occurrences written by the control plane at %.0f/s (first to last %s), all records in %s",
		nDeploy, replicas, rolled.Round(time.Millisecond), n, rate, last.Sub(first).Round(time.Millisecond), covered.Round(time.Millisecond))
	t.Logf("lag watched → receipt: p50 %s, p90 %s, p99 %s, max %s", loadPct(lags, 50), loadPct(lags, 90), loadPct(lags, 99), loadPct(lags, 100))
	t.Logf("bridge CPU: %.2f s for %d occurrences = %.3f CPU-s per 10,000 (%.1f µs each); %.2f context switches each; peak RSS %.1f MiB",
		cpu, n, cpu/float64(n)*10000, cpu/float64(n)*1e6, float64(sw1-sw0)/float64(n), float64(hwm)/1024)

	waitEpisodesClosed(ctx, t, e.b)
	// How often an occurrence had to wait for its object (or the version of
	// it its Event names) and gave up: the object watches' lag behind the
	// Events' watch in a storm.
	maddr := e.b.metricsAddr(ctx)
	waited, _, _ := metricValue(ctx, maddr, "kube_otel_bridge_occurrences_waited_total")
	behind, _, _ := metricValue(ctx, maddr, "kube_otel_bridge_occurrences_object_behind_total")
	unresolved, _, _ := metricValue(ctx, maddr, "kube_otel_bridge_occurrences_without_owners_total")
	t.Logf("occurrences that waited for their object (or its version): %v; past the owner wait: %v with their object behind the Event's version, %v without their object",
		waited, behind, unresolved)
	f := e.finish() // stops the bridge; invariants, no duplicate records
	t.Logf("KOB_LOAD_ROLLOUTS_RESULT deployments=%d replicas=%d occurrences=%d api_rate=%.0f lag_p50_ms=%.1f lag_p99_ms=%.1f lag_max_ms=%.1f cpu_s_per_10k=%.3f ctxsw_per_event=%.2f peak_rss_mib=%.1f missing=%d traces=%d spans=%d",
		nDeploy, replicas, n, rate, loadMS(loadPct(lags, 50)), loadMS(loadPct(lags, 99)), loadMS(loadPct(lags, 100)), cpu/float64(n)*10000,
		float64(sw1-sw0)/float64(n), float64(hwm)/1024, missing, len(f.roots), len(f.nodes))
	if missing > 0 {
		t.Errorf("%d of the storm's %d occurrences have no record", missing, n)
	}
	if pair != nil {
		pairGot := map[string]bool{}
		for deadline := time.Now().Add(time.Minute); len(pairGot) < n && time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			for _, r := range pairRcv.Logs() {
				if key := attr(r, "k8s.event.uid") + "#" + attr(r, "k8s.event.count"); !occ[key].IsZero() {
					pairGot[key] = true
				}
			}
		}
		pairCPU := pairCPU1 - pairCPU0
		t.Logf("KOB_LOAD_PAIR occurrences=%d cpu_s_per_10k=%.3f pair_cpu_s_per_10k=%.3f pair_over_main=%.3f pair_missing=%d",
			n, cpu/float64(n)*10000, pairCPU/float64(n)*10000, pairCPU/cpu, n-len(pairGot))
		if len(pairGot) != n {
			t.Errorf("pair: %d of the storm's %d occurrences have no record", n-len(pairGot), n)
		}
	}
	checkStormTraces(ctx, t, f, client, ns, names, replicas)
}

// stormEpisodeIdle is the storm's --episode-idle: short, so that the test
// need not wait long for the episodes to close, but longer than a
// Deployment of a busy control plane stays quiet in the middle of its
// rollout (with 10s, at 33 occurrences a second, some rollouts were cut in
// two traces).
const stormEpisodeIdle = "60s"

// waitEpisodesClosed waits until the bridge has no open episode.
func waitEpisodesClosed(ctx context.Context, t *testing.T, b *bridge) {
	t.Helper()
	addr := b.metricsAddr(ctx)
	var open float64
	var err error
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		if open, _, err = metricValue(ctx, addr, "kube_otel_bridge_open_episodes"); err == nil && open == 0 {
			return
		}
	}
	t.Fatalf("%v episodes still open (%v)", open, err)
}

// stormParallel runs do for every name, 8 at a time, and fails the test on
// the first error.
func stormParallel(t *testing.T, names []string, do func(name string) error) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(names) {
					return
				}
				if err := do(names[i]); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s: %w", names[i], err))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d failed, the first: %v", len(errs), len(names), errs[0])
	}
}

// waitDeploymentsComplete waits until every Deployment of names is rolled out
// (newest generation, all pods updated and available) and the namespace
// holds their pods only (old ones gone).
func waitDeploymentsComplete(ctx context.Context, t *testing.T, client kubernetes.Interface, ns string, names []string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for {
		l, err := client.AppsV1().Deployments(ns).List(wctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("list Deployments: %v", err)
		}
		done, want := 0, 0
		for i := range l.Items {
			if scenarios.DeploymentComplete(&l.Items[i]) {
				done++
			}
			want += int(scenarios.DeploymentReplicas(&l.Items[i]))
		}
		if done == len(names) && len(l.Items) == len(names) {
			pods, err := client.CoreV1().Pods(ns).List(wctx, metav1.ListOptions{})
			if err == nil && len(pods.Items) == want {
				return
			}
		}
		select {
		case <-wctx.Done():
			t.Fatalf("%d of %d Deployments complete: %v", done, len(names), wctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// occurrenceWatch records when the test's own watch saw each new
// occurrence (uid#count) of the namespace's Events.
type occurrenceWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	seen   map[string]time.Time
}

// newOccurrenceWatch lists the Events (their counts so far are not the
// storm's) and watches from there.
func newOccurrenceWatch(ctx context.Context, t *testing.T, client kubernetes.Interface, ns string) *occurrenceWatch {
	t.Helper()
	l, err := client.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[types.UID]int{}
	for i := range l.Items {
		counts[l.Items[i].UID] = apiCount(&l.Items[i])
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &occurrenceWatch{cancel: cancel, done: make(chan struct{}), seen: map[string]time.Time{}}
	rv := l.ResourceVersion
	go func() {
		defer close(w.done)
		for wctx.Err() == nil {
			wi, err := client.EventsV1().Events(ns).Watch(wctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range wi.ResultChan() {
				e, ok := ev.Object.(*eventsv1.Event)
				if !ok {
					continue // an error: watch again from rv
				}
				rv = e.ResourceVersion
				if ev.Type != watch.Added && ev.Type != watch.Modified {
					continue
				}
				now := time.Now()
				c := apiCount(e)
				w.mu.Lock()
				for k := counts[e.UID] + 1; k <= c; k++ {
					w.seen[fmt.Sprintf("%s#%d", e.UID, k)] = now
				}
				if c > counts[e.UID] {
					counts[e.UID] = c
				}
				w.mu.Unlock()
			}
			wi.Stop()
		}
	}()
	return w
}

// stop ends the watch and returns what it saw.
func (w *occurrenceWatch) stop() map[string]time.Time {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

// checkStormTraces checks each Deployment's two traces (creation, rollout)
// after the storm, reporting at most a few Deployments in full.
func checkStormTraces(ctx context.Context, t *testing.T, f *forest, client kubernetes.Interface, ns string, names []string, replicas int) {
	t.Helper()
	rss, err := client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// ReplicaSets by Deployment and revision ("1": created, "2": rolled).
	rsOf := map[string]map[string]string{}
	for _, rs := range rss.Items {
		for _, o := range rs.OwnerReferences {
			if o.Kind == "Deployment" {
				if rsOf[o.Name] == nil {
					rsOf[o.Name] = map[string]string{}
				}
				rsOf[o.Name][rs.Annotations["deployment.kubernetes.io/revision"]] = rs.Name
			}
		}
	}
	bad := 0
	for _, name := range names {
		problems := stormTraceProblems(f, name, rsOf[name]["1"], rsOf[name]["2"], replicas)
		if len(problems) == 0 {
			continue
		}
		bad++
		if bad <= 3 {
			t.Errorf("Deployment %s: %s", name, strings.Join(problems, "; "))
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d Deployments have wrong traces", bad, len(names))
	}
}

// stormTraceProblems lists what is wrong with a Deployment's traces: its
// creation trace and its rollout trace, linked, the rollout holding the new
// ReplicaSet (one SuccessfulCreate per pod, each pod scheduled) and the old
// one (one SuccessfulDelete per pod).
func stormTraceProblems(f *forest, name, oldRS, newRS string, replicas int) []string {
	var out []string
	roots := f.rootsNamed("Deployment " + name)
	if len(roots) != 2 {
		return []string{fmt.Sprintf("%d traces, want 2 (creation, rollout)", len(roots))}
	}
	if oldRS == "" || newRS == "" {
		return []string{fmt.Sprintf("ReplicaSets of revisions 1 and 2: %q, %q", oldRS, newRS)}
	}
	if g1, g2 := roots[0].attr("k8s.object.generation"), roots[1].attr("k8s.object.generation"); g1 != "1" || g2 != "2" {
		out = append(out, fmt.Sprintf("root generations %s, %s, want 1, 2", g1, g2))
	}
	if !linksTo(roots[1], roots[0].tid, roots[0].id) {
		out = append(out, "the rollout trace does not link to the creation trace")
	}
	rollout := roots[1]
	check := func(rs, reason, podEvent string) {
		nodes := rollout.findNamed("ReplicaSet " + rs)
		if len(nodes) != 1 {
			out = append(out, fmt.Sprintf("%d spans of ReplicaSet %s in the rollout trace, want 1", len(nodes), rs))
			return
		}
		evs := nodes[0].kids("ReplicaSet." + reason)
		if len(evs) != replicas {
			out = append(out, fmt.Sprintf("ReplicaSet %s: %d %s, want %d", rs, len(evs), reason, replicas))
		}
		for _, ev := range evs {
			pods := ev.kids("")
			if len(pods) != 1 || !strings.HasPrefix(pods[0].name(), "Pod ") {
				out = append(out, fmt.Sprintf("ReplicaSet %s: %s %q has %d children, want its pod", rs, reason, ev.note(), len(pods)))
				continue
			}
			if podEvent != "" && len(pods[0].kids(podEvent)) != 1 {
				out = append(out, fmt.Sprintf("%s: %d %s, want 1", pods[0].name(), len(pods[0].kids(podEvent)), podEvent))
			}
		}
	}
	check(newRS, "SuccessfulCreate", "Pod.Scheduled")
	check(oldRS, "SuccessfulDelete", "")
	return out
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
