package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/cluster"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

var (
	// shared is the one mini cluster of the package; each test works in
	// namespaces of its own.
	shared *cluster.Cluster
	// bridgeBin is the kube-otel-bridge binary built by TestMain.
	bridgeBin string
	// clusterUID is the UID of kube-system, the expected k8s.cluster.uid.
	clusterUID string
	// skipReason, when set, makes every test skip (no cluster binaries and
	// -short).
	skipReason string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	binDir := cluster.DefaultBinDir()
	if _, err := os.Stat(filepath.Join(binDir, cluster.APIServer)); err != nil {
		if testing.Short() {
			skipReason = fmt.Sprintf("e2e tests need the mini cluster binaries (%s missing; run `make cluster-bins`); skipped in -short mode", filepath.Join(binDir, cluster.APIServer))
			fmt.Fprintln(os.Stderr, skipReason)
			return m.Run()
		}
		fmt.Fprintf(os.Stderr, "e2e: %s missing: run `make cluster-bins` (or use -short to skip the e2e tests): %v\n", filepath.Join(binDir, cluster.APIServer), err)
		return 1
	}

	tmp, err := os.MkdirTemp("", "kob-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	start := time.Now()
	var (
		wg       sync.WaitGroup
		buildErr error
	)
	// Build the bridge while the cluster starts (E2E_BRIDGE_BIN: test that
	// binary instead, e.g. a release build).
	if bin := os.Getenv("E2E_BRIDGE_BIN"); bin != "" {
		bridgeBin = bin
		fmt.Fprintln(os.Stderr, "e2e: testing the bridge binary", bin)
	} else {
		wg.Go(func() { bridgeBin, buildErr = buildBridge(tmp) })
	}
	c, err := cluster.Start(context.Background(), cluster.Options{Nodes: 3})
	wg.Wait()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start mini cluster:", err)
		return 1
	}
	shared = c
	defer func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stop mini cluster:", err)
		}
	}()
	if buildErr != nil {
		fmt.Fprintln(os.Stderr, "e2e:", buildErr)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ks, err := c.Client.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: kube-system namespace:", err)
		return 1
	}
	clusterUID = string(ks.UID)
	fmt.Fprintf(os.Stderr, "e2e: bridge built and mini cluster ready in %s\n", time.Since(start).Round(time.Millisecond))
	return m.Run()
}

// repoRoot is the module root, two levels above this package.
func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the e2e package")
	}
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("no go.mod in %s: %w", root, err)
	}
	return root, nil
}

func buildBridge(dir string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, "kube-otel-bridge")
	// The release build's tags (GOTAGS in the Makefile).
	cmd := exec.Command(goBin, "build", "-tags", "grpcnotrace", "-o", out, "./cmd/kube-otel-bridge")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build kube-otel-bridge: %v\n%s", err, b)
	}
	return out, nil
}

// needCluster skips the test when the package runs without a cluster.
func needCluster(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// ---------------------------------------------------------------------------
// The bridge as a subprocess.

// bridgeOpts configure one bridge process.
type bridgeOpts struct {
	// Namespaces is the --namespaces value; "" leaves the flag out (all
	// namespaces).
	Namespaces string
	// TLS leaves out --otlp-insecure (the extra Args then carry the TLS
	// flags).
	TLS bool
	// Args are extra flags, after the defaults (a repeated flag wins).
	Args []string
	// Env are extra environment variables (KEY=VALUE).
	Env []string
	// Bin, when set, is the binary to run instead of the one under test
	// (e.g. an earlier release, for upgrades).
	Bin string
}

// bridge is a running kube-otel-bridge process.
type bridge struct {
	t               *testing.T
	cmd             *exec.Cmd
	out             *logBuffer
	done            chan struct{}
	err             error // Wait's result, set when done is closed
	shutdownTimeout time.Duration

	stopOnce sync.Once
	stopped  atomic.Bool
	code     int
	stopTook time.Duration
}

// startBridge runs `kube-otel-bridge run` against the shared cluster,
// exporting to endpoint, and waits until it logs "watching events". At
// cleanup it is stopped with SIGTERM and must exit 0 (unless the test stopped
// it itself); its stderr goes into the test log if the test failed.
func startBridge(t *testing.T, endpoint string, o bridgeOpts) *bridge {
	t.Helper()
	b := launchBridge(t, endpoint, o)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := b.waitLog(ctx, "watching events"); err != nil {
		t.Fatalf("bridge did not start watching: %v", err)
	}
	return b
}

// launchBridge starts the process without waiting for it to be ready.
func launchBridge(t *testing.T, endpoint string, o bridgeOpts) *bridge {
	t.Helper()
	args := []string{"run",
		"--kubeconfig", shared.Kubeconfig,
		"--otlp-endpoint", endpoint,
		"--cluster-name", "e2e", "--metrics-addr", "127.0.0.1:0",
		"--log-format", "text",
		"--otlp-timeout", "2s",
	}
	if !o.TLS {
		args = append(args, "--otlp-insecure")
	}
	if o.Namespaces != "" {
		args = append(args, "--namespaces", o.Namespaces)
	}
	args = append(args, o.Args...)

	b := &bridge{t: t, out: newLogBuffer(), done: make(chan struct{}), shutdownTimeout: 20 * time.Second}
	for i, a := range args {
		if a == "--shutdown-timeout" && i+1 < len(args) {
			if d, err := time.ParseDuration(args[i+1]); err == nil {
				b.shutdownTimeout = d
			}
		}
	}
	bin := bridgeBin
	if o.Bin != "" {
		bin = o.Bin
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(hermeticEnv(), o.Env...)
	cmd.Stdout = b.out
	cmd.Stderr = b.out
	// If the test binary dies, the bridge dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bridge: %v", err)
	}
	b.cmd = cmd
	go func() {
		b.err = cmd.Wait()
		close(b.done)
	}()
	t.Logf("bridge pid %d: %s", cmd.Process.Pid, strings.Join(args, " "))
	t.Cleanup(func() {
		switch {
		case b.stopped.Load():
			// The test stopped it and checked the exit itself.
		case b.exited():
			t.Errorf("bridge exited on its own: %v", b.err)
		default:
			if code := b.Stop(); code != 0 {
				t.Errorf("bridge exited with %d after SIGTERM, want 0", code)
			}
		}
		if t.Failed() {
			t.Logf("bridge pid %d output:\n%s", cmd.Process.Pid, b.out.String())
		}
	})
	return b
}

// hermeticEnv is the test's environment without variables that would change
// the bridge's behaviour behind the flags' back.
func hermeticEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "OTEL_") || strings.HasPrefix(kv, "KUBECONFIG=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (b *bridge) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and waits for the exit (up to the shutdown timeout plus
// a margin, then SIGKILL); it returns the exit code (-1 when killed).
func (b *bridge) Stop() int {
	b.stopped.Store(true)
	b.stopOnce.Do(func() {
		start := time.Now()
		if !b.exited() {
			_ = b.cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-b.done:
		case <-time.After(b.shutdownTimeout + 15*time.Second):
			b.t.Errorf("bridge did not exit within %s of SIGTERM; killing it", b.shutdownTimeout+15*time.Second)
			_ = b.cmd.Process.Kill()
			<-b.done
		}
		b.stopTook = time.Since(start)
		b.code = exitCode(b.err)
	})
	return b.code
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// waitLog waits until the bridge's output contains s; it fails early if the
// bridge exits.
func (b *bridge) waitLog(ctx context.Context, s string) error {
	for {
		ok, ch := b.out.contains(s)
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-b.done:
			if ok, _ := b.out.contains(s); ok {
				return nil
			}
			return fmt.Errorf("bridge exited (%v) before logging %q", b.err, s)
		case <-ctx.Done():
			return fmt.Errorf("no %q in the bridge's output: %w", s, ctx.Err())
		}
	}
}

// logBuffer is a concurrency-safe buffer that tells waiters about writes.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newLogBuffer() *logBuffer { return &logBuffer{changed: make(chan struct{})} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return n, err
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) contains(s string) (bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.buf.String(), s), l.changed
}

// ---------------------------------------------------------------------------
// Records.

type rec = otlpreceiver.LogRecordWithResource

func attr(r rec, key string) string {
	v, _ := r.Attr(key)
	return v
}

func count(r rec) int {
	n, err := strconv.Atoi(attr(r, "k8s.event.count"))
	if err != nil {
		return -1
	}
	return n
}

// withUID returns the records of the Event uid.
func withUID(recs []rec, uid string) []rec {
	var out []rec
	for _, r := range recs {
		if attr(r, "k8s.event.uid") == uid {
			out = append(out, r)
		}
	}
	return out
}

// counts returns the sorted k8s.event.count values of recs.
func counts(recs []rec) []int {
	out := make([]int, 0, len(recs))
	for _, r := range recs {
		out = append(out, count(r))
	}
	sort.Ints(out)
	return out
}

// seq returns 1..n.
func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// waitRecords polls the receiver until check accepts what it holds, and
// fails the test with check's last complaint when ctx ends first.
func waitRecords(ctx context.Context, t *testing.T, r *otlpreceiver.Receiver, what string, check func([]rec) error) []rec {
	t.Helper()
	var last error
	var recs []rec
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		recs = r.Logs()
		last = check(recs)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v; last: %v\n%d records:\n%s", what, err, last, len(recs), dumpRecords(recs))
	}
	return recs
}

// waitUIDCounts waits until the Event uid has exactly records 1..n (and fails
// at once on a duplicate or an unexpected count).
func waitUIDCounts(ctx context.Context, t *testing.T, r *otlpreceiver.Receiver, uid string, n int) []rec {
	t.Helper()
	return waitRecords(ctx, t, r, fmt.Sprintf("records 1..%d of event %s", n, uid), func(recs []rec) error {
		got := counts(withUID(recs, uid))
		if !slices.Equal(got, seq(n)) {
			return fmt.Errorf("counts %v, want %v", got, seq(n))
		}
		return nil
	})
}

func dumpRecords(recs []rec) string {
	const limit = 200
	var b strings.Builder
	for i, r := range recs {
		if i == limit {
			fmt.Fprintf(&b, "  ... %d more\n", len(recs)-limit)
			break
		}
		fmt.Fprintf(&b, "  %s %s %s/%s %s count=%s uid=%s %q\n", r.Record.GetSeverityText(), attr(r, "k8s.namespace.name"),
			attr(r, "k8s.object.kind"), attr(r, "k8s.object.name"), attr(r, "k8s.event.reason"), attr(r, "k8s.event.count"),
			attr(r, "k8s.event.uid"), r.Record.GetBody().GetStringValue())
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// Events and objects.

// createEvent creates a core/v1 Normal or Warning Event about a ConfigMap
// (a kind the bridge's object cache does not follow, so the event needs no
// owner resolution) and returns it.
func createEvent(ctx context.Context, t *testing.T, ns, name, typ, reason string) *corev1.Event {
	t.Helper()
	now := metav1.NewTime(time.Now())
	ev, err := shared.Client.CoreV1().Events(ns).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: name},
		InvolvedObject: corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: ns, Name: "e2e-config"},
		Reason:         reason,
		Message:        fmt.Sprintf("%s event %s in %s", typ, name, ns),
		Type:           typ,
		Count:          1,
		FirstTimestamp: now,
		LastTimestamp:  now,
		Source:         corev1.EventSource{Component: "e2e-test"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create event %s/%s: %v", ns, name, err)
	}
	return ev
}

// createPod creates a pod that the fake kubelets run.
func createPod(ctx context.Context, t *testing.T, ns, name string, ann map[string]string) *corev1.Pod {
	t.Helper()
	p, err := shared.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1.0"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, name, err)
	}
	return p
}

func podRef(p *corev1.Pod) corev1.ObjectReference {
	return corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: p.Namespace, Name: p.Name, UID: p.UID}
}
