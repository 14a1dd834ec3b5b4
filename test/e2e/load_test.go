package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

// TestLoad is the end-to-end load test: a load generator creates
// KOB_LOAD_EVENTS (default 20,000) core/v1 Events in one namespace as fast
// as the mini cluster's API server accepts them (KOB_LOAD_WORKERS goroutines,
// default 32, client-side rate limit off), and one bridge process exports
// them to a real OTLP/gRPC receiver (traces on too). It reports the API
// server's create rate, the lag from creation to receipt (p50, p99, max),
// the bridge's CPU seconds per 10,000 events (/proc/<pid>/stat) and its
// peak RSS (VmHWM), and fails unless every event arrived exactly once.
//
// Lag is measured from the moment the load generator's Create call returned
// (so the API server's own write latency is left out) to the moment the
// receiver handled the export request carrying the record; it is also split
// at the record's observed timestamp (when the bridge's watch saw it).
//
// It runs only when asked, so `make test` stays fast:
//
//	KOB_LOAD=1 go test -count=1 -timeout 20m -run TestLoad -v ./test/e2e/
//
// The bridge keeps its checkpoint in the test's namespace, as deployed
// (KOB_LOAD_CHECKPOINT=0: none). KOB_LOAD_EVENTS and KOB_LOAD_WORKERS
// change the load, KOB_LOAD_CPUPROFILE=
// FILE saves a CPU profile of the bridge taken during the load
// (KOB_LOAD_PROFILE_SECONDS long, default 10), KOB_LOAD_MEMSTATS=1 logs the
// bridge's Go runtime memory statistics before and after the load (both turn
// on the bridge's --pprof; KOB_LOAD_HEAPPROFILE=FILE with it saves a heap
// profile after the load), and E2E_BRIDGE_BIN tests another binary (e.g. a
// `make build` release build). Extra flags for the bridge can be given in
// KOB_LOAD_BRIDGE_ARGS (space-separated). The bridge gets GOMAXPROCS=1 and
// GOGC=50, as the deploy manifests give it; KOB_LOAD_GOMAXPROCS=N and
// KOB_LOAD_GOGC=N change that (0: the runtime's default). KOB_LOAD_ENV adds
// environment variables for the bridge (space-separated NAME=VALUE, e.g.
// DISABLE_HTTP2=1, which client-go's transport honours).
//
// KOB_LOAD_PAIR_BIN=PATH runs a second bridge, that binary, beside the
// first on the same Events (same flags and environment plus
// KOB_LOAD_PAIR_ENV, its own receiver and checkpoint), and reports both
// one's CPU per 10,000 events and their ratio (KOB_LOAD_PAIR line). Runs one after the other differ by ±20–30 %
// on a shared VM, mostly with the API server's rate, which moves with the
// machine's speed; side by side both builds see the same Events at the same
// rate on the same machine, so the ratio compares builds far better.
func TestLoad(t *testing.T) {
	if os.Getenv("KOB_LOAD") != "1" {
		t.Skip("load test: set KOB_LOAD=1 (and -run TestLoad) to run it")
	}
	needCluster(t)
	n := loadEnvInt(t, "KOB_LOAD_EVENTS", 20000)
	workers := loadEnvInt(t, "KOB_LOAD_WORKERS", 32)
	ctx := ctxFor(t, 15*time.Minute)

	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	ns := shared.NewNamespace(t)
	// KOB_LOAD_CPUPROFILE=file: a CPU profile of the bridge during the
	// load (its /debug/pprof), for `go tool pprof BINARY file`.
	cpuProfile := os.Getenv("KOB_LOAD_CPUPROFILE")
	profSeconds := loadEnvInt(t, "KOB_LOAD_PROFILE_SECONDS", 10)
	memStats := os.Getenv("KOB_LOAD_MEMSTATS") == "1"
	heapProfile := os.Getenv("KOB_LOAD_HEAPPROFILE") // with KOB_LOAD_MEMSTATS
	extra := strings.Fields(os.Getenv("KOB_LOAD_BRIDGE_ARGS"))
	// As deployed (--state-namespace is the pod's namespace there): the
	// checkpoint tracks every Event until every output acked it and is
	// saved every 5 s. KOB_LOAD_CHECKPOINT=0 measures without it.
	checkpoint := os.Getenv("KOB_LOAD_CHECKPOINT") != "0"
	if checkpoint {
		extra = append(extra, "--state-namespace", ns)
	}
	if cpuProfile != "" || memStats {
		extra = append(extra, "--pprof")
	}
	// The bridge runs with GOMAXPROCS=1 and GOGC=50 as the deploy
	// manifests set them (KOB_LOAD_GOMAXPROCS and KOB_LOAD_GOGC override; 0
	// = the Go runtime's default).
	procs := loadEnvIntMin(t, "KOB_LOAD_GOMAXPROCS", 1, 0)
	gogc := loadEnvIntMin(t, "KOB_LOAD_GOGC", 50, 0)
	var env []string
	if procs > 0 {
		env = append(env, fmt.Sprintf("GOMAXPROCS=%d", procs))
	}
	if gogc > 0 {
		env = append(env, fmt.Sprintf("GOGC=%d", gogc))
	}
	for _, kv := range strings.Fields(os.Getenv("KOB_LOAD_ENV")) {
		if !strings.Contains(kv, "=") {
			t.Fatalf("KOB_LOAD_ENV: %q is not NAME=VALUE", kv)
		}
		env = append(env, kv)
	}
	b := startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: ns, Args: extra, Env: env})
	pid := b.cmd.Process.Pid
	var (
		pair    *bridge
		pairRcv *otlpreceiver.Receiver
	)
	if bin := os.Getenv("KOB_LOAD_PAIR_BIN"); bin != "" {
		pairRcv = otlpreceiver.NewStarted(t, otlpreceiver.Options{})
		pairArgs := slices.Clone(extra)
		if checkpoint {
			// Its own checkpoint, in a namespace of its own.
			pairArgs = slices.DeleteFunc(pairArgs, func(a string) bool { return a == "--state-namespace" || a == ns })
			pairArgs = append(pairArgs, "--state-namespace", shared.NewNamespace(t))
		}
		pairEnv := slices.Clone(env)
		for _, kv := range strings.Fields(os.Getenv("KOB_LOAD_PAIR_ENV")) {
			if !strings.Contains(kv, "=") {
				t.Fatalf("KOB_LOAD_PAIR_ENV: %q is not NAME=VALUE", kv)
			}
			pairEnv = append(pairEnv, kv)
		}
		pair = startBridge(t, pairRcv.Addr(), bridgeOpts{Namespaces: ns, Args: pairArgs, Env: pairEnv, Bin: bin})
		t.Logf("pair: %s beside %s", bin, bridgeBin)
	}
	// Let the start-up settle (caches synced, first exports done), then
	// see what the bridge costs with no events at all (timers,
	// keepalives): every wake-up is a context switch.
	time.Sleep(2 * time.Second)
	const idleFor = 3 * time.Second
	idleCPU0, idleSw0 := loadTaskCPU(t, pid), loadCtxSwitches(t, pid)
	time.Sleep(idleFor)
	idleCPU, idleSw := loadTaskCPU(t, pid)-idleCPU0, loadCtxSwitches(t, pid)-idleSw0
	t.Logf("bridge at idle: %.2f ms CPU and %.0f context switches per second",
		idleCPU.Seconds()*1000/idleFor.Seconds(), float64(idleSw)/idleFor.Seconds())
	cpu0, sw0 := loadCPUSeconds(t, pid), loadCtxSwitches(t, pid)
	var pairCPU0 float64
	if pair != nil {
		pairCPU0 = loadCPUSeconds(t, pair.cmd.Process.Pid)
	}
	rss0 := loadStatusKB(t, pid, "VmRSS")
	idleAnon, idleFile, idleHWM := loadStatusKB(t, pid, "RssAnon"), loadStatusKB(t, pid, "RssFile"), loadStatusKB(t, pid, "VmHWM")
	t.Logf("bridge memory at idle (synced, before the load): RSS %.1f MiB (anonymous %.1f MiB, file-backed %.1f MiB), VmHWM %.1f MiB",
		float64(rss0)/1024, float64(idleAnon)/1024, float64(idleFile)/1024, float64(idleHWM)/1024)
	var ms0 loadMemStats
	if memStats {
		ms0 = loadReadMemStats(ctx, t, b.metricsAddr(ctx), pid)
		t.Logf("bridge Go runtime at idle: %s", ms0)
	}

	cfg := shared.RestConfig()
	cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The involved objects are ConfigMaps (not in the bridge's object
	// cache: no owner wait), 100 of them, so the events spread over 100
	// episodes (traces).
	created := make([]time.Time, n) // when Create returned, by index
	uids := make([]string, n)
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	profDone := make(chan struct{})
	if cpuProfile != "" {
		addr := b.metricsAddr(ctx)
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
	genStart := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				now := metav1.NewTime(time.Now())
				ev, err := client.CoreV1().Events(ns).Create(ctx, &corev1.Event{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("load-%06d", i)},
					InvolvedObject: corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: ns,
						Name: fmt.Sprintf("config-%03d", i%100), UID: "", ResourceVersion: "1"},
					Reason:         "LoadTest",
					Message:        fmt.Sprintf("load test event %d of %d: the quick brown fox jumps over the lazy dog", i, n),
					Type:           corev1.EventTypeNormal,
					Count:          1,
					FirstTimestamp: now,
					LastTimestamp:  now,
					Source:         corev1.EventSource{Component: "load-generator", Host: "node-1"},
				}, metav1.CreateOptions{})
				if err != nil {
					if failed.Add(1) <= 5 {
						t.Errorf("create event %d: %v", i, err)
					}
					continue
				}
				created[i] = time.Now()
				uids[i] = string(ev.UID)
			}
		})
	}
	wg.Wait()
	genTook := time.Since(genStart)
	if failed.Load() > 0 {
		t.Fatalf("%d of %d creates failed", failed.Load(), n)
	}
	apiRate := float64(n) / genTook.Seconds()
	t.Logf("load generator: %d events created in %s by %d workers: %.0f events/s accepted by the API server", n, genTook.Round(time.Millisecond), workers, apiRate)

	// Wait until every event arrived (or time runs out).
	index := make(map[string]int, n)
	for i, uid := range uids {
		index[uid] = i
	}
	ours := func(r rec) bool { _, ok := index[attr(r, "k8s.event.uid")]; return ok }
	deadline := time.Now().Add(5 * time.Minute)
	got := 0
	for time.Now().Before(deadline) {
		got = 0
		for _, r := range rcv.Logs() {
			if ours(r) {
				got++
			}
		}
		pairGot := n
		if pairRcv != nil {
			pairGot = 0
			for _, r := range pairRcv.Logs() {
				if ours(r) {
					pairGot++
				}
			}
		}
		if got >= n && pairGot >= n {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	allIn := time.Since(genStart)
	<-profDone
	// Give late duplicates a moment to show up.
	time.Sleep(2 * time.Second)
	cpu1, sw1 := loadCPUSeconds(t, pid), loadCtxSwitches(t, pid)
	var pairCPU1 float64
	if pair != nil {
		pairCPU1 = loadCPUSeconds(t, pair.cmd.Process.Pid)
	}
	hwm := loadStatusKB(t, pid, "VmHWM")
	rss1 := loadStatusKB(t, pid, "VmRSS")
	rssAnon, rssFile := loadStatusKB(t, pid, "RssAnon"), loadStatusKB(t, pid, "RssFile")
	var heapInuse, goSys float64
	if addr := b.metricsAddr(ctx); addr != "" {
		heapInuse, _, _ = metricValue(ctx, addr, "go_memstats_heap_inuse_bytes")
		goSys, _, _ = metricValue(ctx, addr, "go_memstats_sys_bytes")
	}

	// Receive time of each record: the receiver stores records in the
	// order of the requests it accepted.
	logs := rcv.Logs()
	var recvAt []time.Time
	for _, q := range rcv.Requests() {
		if q.Signal != otlpreceiver.SignalLogs || q.Code != 0 || q.Rejected > 0 {
			continue
		}
		for range q.Items {
			recvAt = append(recvAt, q.Time)
		}
	}
	if len(recvAt) != len(logs) {
		t.Fatalf("%d records but %d accounted for by requests", len(logs), len(recvAt))
	}
	seen := make([]int, n)
	var lags, watchLags, exportLags []time.Duration
	for k, r := range logs {
		i, ok := index[attr(r, "k8s.event.uid")]
		if !ok {
			continue
		}
		seen[i]++
		if seen[i] > 1 {
			continue
		}
		lags = append(lags, recvAt[k].Sub(created[i]))
		observed := time.Unix(0, int64(r.Record.GetObservedTimeUnixNano()))
		watchLags = append(watchLags, observed.Sub(created[i]))
		exportLags = append(exportLags, recvAt[k].Sub(observed))
	}
	missing, dups := loadTally(seen)
	spans := 0
	for _, s := range rcv.Spans() {
		if v, _ := s.Attr("k8s.event.reason"); v == "LoadTest" {
			spans++
		}
	}

	cpu := cpu1 - cpu0
	def := func(v int) string {
		if v > 0 {
			return strconv.Itoa(v)
		}
		return "the Go runtime's default"
	}
	t.Logf("machine: %d CPUs (%s), the bridge's GOMAXPROCS: %s, GOGC: %s", runtime.NumCPU(), loadCPUModel(), def(procs), def(gogc))
	t.Logf("delivered: %d/%d events (%.2f%%), %d missing, %d duplicates; %d event spans", n-missing, n, 100*float64(n-missing)/float64(n), missing, dups, spans)
	t.Logf("all delivered %s after the first create (generation took %s)", allIn.Round(time.Millisecond), genTook.Round(time.Millisecond))
	t.Logf("lag creation → receipt: p50 %s, p90 %s, p99 %s, max %s", loadPct(lags, 50), loadPct(lags, 90), loadPct(lags, 99), loadPct(lags, 100))
	t.Logf("  of which creation → bridge observed: p50 %s, p99 %s, max %s", loadPct(watchLags, 50), loadPct(watchLags, 99), loadPct(watchLags, 100))
	t.Logf("  of which bridge observed → receipt:  p50 %s, p99 %s, max %s", loadPct(exportLags, 50), loadPct(exportLags, 99), loadPct(exportLags, 100))
	t.Logf("bridge CPU: %.2f s for %d events = %.3f CPU-s per 10,000 events (%.1f µs/event); %.2f context switches per event",
		cpu, n, cpu/float64(n)*10000, cpu/float64(n)*1e6, float64(sw1-sw0)/float64(n))
	t.Logf("bridge memory: RSS %.1f MiB before the load, %.1f MiB after (anonymous %.1f MiB, file-backed %.1f MiB); peak RSS (VmHWM) %.1f MiB; Go heap in use %.1f MiB, Go runtime total %.1f MiB",
		float64(rss0)/1024, float64(rss1)/1024, float64(rssAnon)/1024, float64(rssFile)/1024, float64(hwm)/1024, heapInuse/(1<<20), goSys/(1<<20))
	if memStats {
		ms1 := loadReadMemStats(ctx, t, b.metricsAddr(ctx), pid)
		t.Logf("bridge Go runtime after the load: %s", ms1)
		t.Logf("bridge GC during the load: %d GCs, ≈%.2f s of GC time (GCCPUFraction; an overestimate on a busy machine)",
			ms1.NumGC-ms0.NumGC, ms1.gcTime-ms0.gcTime)
		if heapProfile != "" {
			code, body, err := httpGet(ctx, b.metricsAddr(ctx), "/debug/pprof/heap")
			if err != nil || code != http.StatusOK {
				t.Errorf("heap profile: HTTP %d, %v", code, err)
			} else if err := os.WriteFile(heapProfile, []byte(body), 0o644); err != nil {
				t.Error(err)
			}
		}
	}
	t.Logf("KOB_LOAD_RESULT checkpoint=%v gomaxprocs=%d gogc=%d events=%d api_rate=%.0f lag_p50_ms=%.1f lag_p99_ms=%.1f lag_max_ms=%.1f cpu_s_per_10k=%.3f ctxsw_per_event=%.2f idle_ctxsw_per_s=%.0f peak_rss_mib=%.1f missing=%d dups=%d",
		checkpoint, procs, gogc, n, apiRate, loadMS(loadPct(lags, 50)), loadMS(loadPct(lags, 99)), loadMS(loadPct(lags, 100)), cpu/float64(n)*10000,
		float64(sw1-sw0)/float64(n), float64(idleSw)/idleFor.Seconds(), float64(hwm)/1024, missing, dups)
	if missing > 0 || dups > 0 {
		t.Errorf("%d events missing and %d duplicated, want all %d exactly once", missing, dups, n)
	}
	if pair != nil {
		pairSeen := make([]int, n)
		for _, r := range pairRcv.Logs() {
			if i, ok := index[attr(r, "k8s.event.uid")]; ok {
				pairSeen[i]++
			}
		}
		pairMissing, pairDups := loadTally(pairSeen)
		pairCPU := pairCPU1 - pairCPU0
		pairHWM := loadStatusKB(t, pair.cmd.Process.Pid, "VmHWM")
		t.Logf("KOB_LOAD_PAIR api_rate=%.0f cpu_s_per_10k=%.3f pair_cpu_s_per_10k=%.3f pair_over_main=%.3f peak_rss_mib=%.1f pair_peak_rss_mib=%.1f pair_missing=%d pair_dups=%d",
			apiRate, cpu/float64(n)*10000, pairCPU/float64(n)*10000, pairCPU/cpu, float64(hwm)/1024, float64(pairHWM)/1024, pairMissing, pairDups)
		if pairMissing > 0 || pairDups > 0 {
			t.Errorf("pair: %d events missing and %d duplicated, want all %d exactly once", pairMissing, pairDups, n)
		}
	}
}

// loadTally counts the events never received and the extra receipts, from
// how often each was received.
func loadTally(seen []int) (missing, dups int) {
	for _, c := range seen {
		switch {
		case c == 0:
			missing++
		case c > 1:
			dups += c - 1
		}
	}
	return missing, dups
}

func loadMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func loadEnvInt(t *testing.T, key string, def int) int {
	t.Helper()
	return loadEnvIntMin(t, key, def, 1)
}

// loadEnvIntMin is the integer in $key (def when unset), at least min.
func loadEnvIntMin(t *testing.T, key string, def, min int) int {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		t.Fatalf("%s=%q: want a number of at least %d", key, v, min)
	}
	return n
}

// loadPct is the p-th percentile of ds (p = 100: the maximum).
func loadPct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)].Round(100 * time.Microsecond)
}

// loadCPUSeconds is the user+system CPU time of process pid so far.
func loadCPUSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// f[0] is field 3 (state): utime and stime are fields 14 and 15.
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	const userHZ = 100 // USER_HZ: the unit of utime and stime on Linux
	return (utime + stime) / userHZ
}

// loadTaskCPU is the CPU time of the process's threads, in nanoseconds
// (/proc/<pid>/task/*/schedstat), finer than /proc/<pid>/stat's ticks for
// short intervals.
func loadTaskCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	paths, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no threads of %d: %v", pid, err)
	}
	var sum time.Duration
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // the thread is gone
		}
		if f := strings.Fields(string(data)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum
}

// loadCtxSwitches is the number of context switches of the process's
// threads so far (voluntary and not): on a virtual machine each costs far
// more than the work of a small wake-up.
func loadCtxSwitches(t *testing.T, pid int) int64 {
	t.Helper()
	paths, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no threads of %d: %v", pid, err)
	}
	var sum int64
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				sum += n
			}
		}
	}
	return sum
}

// loadStatusKB reads a "VmXxx: N kB" line of /proc/<pid>/status.
func loadStatusKB(t *testing.T, pid int, key string) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("/proc/%d/status %s: %q", pid, key, v)
			}
			return n
		}
	}
	t.Fatalf("/proc/%d/status: no %s", pid, key)
	return 0
}

func loadCPUModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

// loadMemStats are the runtime.MemStats fields the load test reports, read
// from the bridge's /debug/pprof/heap?debug=1.
type loadMemStats struct {
	HeapInuse, HeapSys, HeapIdle, HeapReleased, StackInuse, StackSys, Sys, NextGC uint64
	NumGC                                                                         uint64
	GCCPUFraction                                                                 float64
	Goroutines                                                                    int
	// gcTime is the GC's time since the process started: GCCPUFraction ×
	// GOMAXPROCS × uptime (the runtime's own definition). It counts the
	// wall time of the GC's workers and pauses, so it overestimates the GC's
	// CPU when the machine is busy; a CPU profile tells better.
	gcTime float64
}

func (m loadMemStats) String() string {
	mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
	return fmt.Sprintf("HeapInuse %.1f MiB, HeapSys %.1f MiB (idle %.1f, released %.1f), StackInuse %.1f MiB, Sys %.1f MiB, NextGC %.1f MiB, NumGC %d, GCCPUFraction %.4f (≈%.2f s of GC time since start), goroutines %d",
		mib(m.HeapInuse), mib(m.HeapSys), mib(m.HeapIdle), mib(m.HeapReleased), mib(m.StackInuse), mib(m.Sys), mib(m.NextGC), m.NumGC, m.GCCPUFraction, m.gcTime, m.Goroutines)
}

func loadReadMemStats(ctx context.Context, t *testing.T, addr string, pid int) loadMemStats {
	t.Helper()
	var m loadMemStats
	code, body, err := httpGet(ctx, addr, "/debug/pprof/heap?debug=1")
	if err != nil || code != http.StatusOK {
		t.Errorf("memstats: HTTP %d, %v", code, err)
		return m
	}
	u := map[string]*uint64{"HeapInuse": &m.HeapInuse, "HeapSys": &m.HeapSys, "HeapIdle": &m.HeapIdle, "HeapReleased": &m.HeapReleased,
		"StackInuse": &m.StackInuse, "Sys": &m.Sys, "NextGC": &m.NextGC, "NumGC": &m.NumGC}
	for _, line := range strings.Split(body, "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "# "), " = ")
		if !ok {
			continue
		}
		if p, ok := u[k]; ok {
			*p, _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
		if k == "Stack" { // "inuse / sys"
			in, sys, _ := strings.Cut(v, " / ")
			m.StackInuse, _ = strconv.ParseUint(strings.TrimSpace(in), 10, 64)
			m.StackSys, _ = strconv.ParseUint(strings.TrimSpace(sys), 10, 64)
		}
		if k == "GCCPUFraction" {
			m.GCCPUFraction, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if code, body, err := httpGet(ctx, addr, "/debug/pprof/goroutine?debug=1"); err == nil && code == http.StatusOK {
		first, _, _ := strings.Cut(body, "\n")
		m.Goroutines, _ = strconv.Atoi(strings.TrimPrefix(first, "goroutine profile: total "))
	}
	procs, _, _ := metricValue(ctx, addr, "go_sched_gomaxprocs_threads")
	m.gcTime = m.GCCPUFraction * procs * loadUptime(t, pid).Seconds()
	return m
}

// loadUptime is how long process pid has run (/proc/<pid>/stat field 22).
func loadUptime(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	start, err := strconv.ParseFloat(f[19], 64) // field 22: starttime in clock ticks since boot
	if err != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	up, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	boot, _, _ := strings.Cut(string(up), " ")
	sinceBoot, err := strconv.ParseFloat(boot, 64)
	if err != nil {
		t.Fatalf("/proc/uptime: %q", up)
	}
	const userHZ = 100
	return time.Duration((sinceBoot - start/userHZ) * float64(time.Second))
}
