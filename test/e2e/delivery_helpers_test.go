package e2e

// Helpers of the delivery-guarantee tests (delivery_test.go, ha_test.go,
// apirestart_test.go, deploy_test.go): an event stream that creates and bumps
// core/v1 Events at a steady rate, the tally of records against the API's
// Events per occurrence (k8s.event.uid, k8s.event.count), and access to a
// bridge's /metrics and /readyz.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/scenarios"
)

// deliveryArgs are the flags of a bridge that keeps its checkpoint in
// stateNS, saved every 500ms.
func deliveryArgs(stateNS string, extra ...string) []string {
	return append([]string{"--state-namespace", stateNS, "--checkpoint-interval", "500ms"}, extra...)
}

// kill ends the bridge with SIGKILL (no flush, no final checkpoint) and waits
// for it to be gone.
func (b *bridge) kill() {
	b.stopped.Store(true)
	b.stopOnce.Do(func() {
		start := time.Now()
		_ = b.cmd.Process.Signal(syscall.SIGKILL)
		<-b.done
		b.stopTook = time.Since(start)
		b.code = -1
	})
}

// ---------------------------------------------------------------------------
// The event stream.

// eventStream creates core/v1 Events about a ConfigMap (no owner wait) and
// raises the counts of the ones it created, one operation per tick,
// alternating. Failed calls (the API server restarting) are counted and
// simply retried on a later tick.
type eventStream struct {
	client kubernetes.Interface
	ns     string
	prefix string

	mu      sync.Mutex
	names   []string
	counts  map[string]int32
	created int
	bumped  int
	failed  int
	lastErr error

	cancel context.CancelFunc
	done   chan struct{}
}

// startStream runs a stream until stop (or ctx ends).
func startStream(ctx context.Context, client kubernetes.Interface, ns, prefix string, every time.Duration) *eventStream {
	ctx, cancel := context.WithCancel(ctx)
	s := &eventStream{client: client, ns: ns, prefix: prefix, counts: map[string]int32{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for i := 0; ; i++ {
			s.step(ctx, i)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *eventStream) step(ctx context.Context, i int) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s.mu.Lock()
	n := len(s.names)
	s.mu.Unlock()
	if i%2 == 0 || n == 0 {
		name := fmt.Sprintf("%s-%04d", s.prefix, i)
		now := metav1.NewTime(time.Now())
		_, err := s.client.CoreV1().Events(s.ns).Create(cctx, &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: name},
			InvolvedObject: corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: s.ns, Name: "e2e-config"},
			Reason:         "E2EStream",
			Message:        "stream event " + name,
			Type:           corev1.EventTypeNormal,
			Count:          1,
			FirstTimestamp: now,
			LastTimestamp:  now,
			Source:         corev1.EventSource{Component: "e2e-test"},
		}, metav1.CreateOptions{})
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				s.failed++
				s.lastErr = err
			}
			return
		}
		s.names = append(s.names, name)
		s.counts[name] = 1
		s.created++
		return
	}
	s.mu.Lock()
	name := s.names[rand.IntN(n)]
	next := s.counts[name] + 1
	s.mu.Unlock()
	patch := fmt.Sprintf(`{"count":%d,"lastTimestamp":%q}`, next, time.Now().UTC().Format(time.RFC3339))
	ev, err := s.client.CoreV1().Events(s.ns).Patch(cctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			s.failed++
			s.lastErr = err
		}
		return
	}
	s.counts[name] = ev.Count
	s.bumped++
}

// stop ends the stream and waits for the operation in progress.
func (s *eventStream) stop() {
	s.cancel()
	<-s.done
}

func (s *eventStream) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var occ int32
	for _, c := range s.counts {
		occ += c
	}
	return fmt.Sprintf("%d events created, %d count bumps, %d occurrences, %d failed calls (last: %v)", s.created, s.bumped, occ, s.failed, s.lastErr)
}

// occurrences is the number of occurrences the stream made (as the API
// answered).
func (s *eventStream) occurrences() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.counts {
		n += int(c)
	}
	return n
}

// checkAgainst checks that the API holds every Event the stream created with
// at least the count the stream last saw.
func (s *eventStream) checkAgainst(t *testing.T, evs []eventsv1.Event) {
	t.Helper()
	byName := map[string]int{}
	for i := range evs {
		byName[evs[i].Name] = apiCount(&evs[i])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, c := range s.counts {
		if got, ok := byName[name]; !ok || got < int(c) {
			t.Errorf("stream event %s: API count %d (present %v), stream saw %d", name, got, ok, c)
		}
	}
}

// createDeployment creates a Deployment whose controllers and fake kubelets
// produce events in ns.
func createDeployment(ctx context.Context, t *testing.T, client kubernetes.Interface, ns, name string, replicas int32) {
	t.Helper()
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, scenarios.Deployment(name, "registry.example/app:1.0", replicas), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment %s/%s: %v", ns, name, err)
	}
}

// ---------------------------------------------------------------------------
// The tally.

// occKey is one occurrence: an Event uid and a count.
type occKey struct {
	uid   string
	count int
}

// delivery compares records with the API's Events, per occurrence.
type delivery struct {
	Events      int // Events in the API
	Occurrences int // their occurrences (sum of counts)
	Records     int
	Missing     int // occurrences without a record
	Duplicates  int // records beyond the first of an occurrence
	Unexpected  int // records of no occurrence in the API
	missing     []string
	duplicated  []string
	unexpected  []string
}

func (d delivery) String() string {
	s := fmt.Sprintf("%d events, %d occurrences, %d records: %d missing, %d duplicates, %d unexpected",
		d.Events, d.Occurrences, d.Records, d.Missing, d.Duplicates, d.Unexpected)
	for _, l := range []struct {
		what string
		list []string
	}{{"missing", d.missing}, {"duplicated", d.duplicated}, {"unexpected", d.unexpected}} {
		if len(l.list) == 0 {
			continue
		}
		sort.Strings(l.list)
		if len(l.list) > 20 {
			l.list = append(l.list[:20], fmt.Sprintf("... %d more", len(l.list)-20))
		}
		s += fmt.Sprintf("\n  %s: %s", l.what, strings.Join(l.list, ", "))
	}
	return s
}

func tallyDelivery(evs []eventsv1.Event, recs []rec) delivery {
	got := map[occKey]int{}
	for _, r := range recs {
		got[occKey{attr(r, "k8s.event.uid"), count(r)}]++
	}
	d := delivery{Events: len(evs), Records: len(recs)}
	for i := range evs {
		e := &evs[i]
		n := apiCount(e)
		d.Occurrences += n
		for c := 1; c <= n; c++ {
			k := occKey{string(e.UID), c}
			switch m := got[k]; {
			case m == 0:
				d.Missing++
				d.missing = append(d.missing, fmt.Sprintf("%s/%s#%d", e.Regarding.Kind, e.Name, c))
			case m > 1:
				d.Duplicates += m - 1
				d.duplicated = append(d.duplicated, fmt.Sprintf("%s#%d×%d", e.Name, c, m))
			}
			delete(got, k)
		}
	}
	for k, m := range got {
		d.Unexpected += m
		d.unexpected = append(d.unexpected, fmt.Sprintf("uid %s count %d ×%d", k.uid, k.count, m))
	}
	return d
}

// waitDelivered polls until every occurrence of the Events in ns has a
// record (and no record is of an unknown occurrence), then waits 2s of quiet
// (the sinks batch for 1s) for late duplicates and returns the final tally
// and Events.
func waitDelivered(ctx context.Context, t *testing.T, client kubernetes.Interface, ns string, rcv *otlpreceiver.Receiver, what string) (delivery, []eventsv1.Event) {
	t.Helper()
	var (
		d    delivery
		evs  []eventsv1.Event
		last error
	)
	check := func(ctx context.Context) (bool, error) {
		l, err := client.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			last = err
			return false, nil
		}
		evs = l.Items
		d = tallyDelivery(evs, rcv.Logs())
		last = nil
		return d.Missing == 0 && d.Unexpected == 0, nil
	}
	start := time.Now()
	if err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, check); err != nil {
		t.Fatalf("%s: not every occurrence arrived (%v, last error %v): %s", what, err, last, d)
	}
	t.Logf("%s: every occurrence arrived %s after the wait began", what, time.Since(start).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	if _, err := check(ctx); err != nil || last != nil {
		t.Fatalf("%s: final list: %v %v", what, err, last)
	}
	return d, evs
}

// ---------------------------------------------------------------------------
// /metrics and /readyz.

var metricsAddrRE = regexp.MustCompile(`msg="serving metrics" addr=(\S+)|"msg":"serving metrics","addr":"([^"]+)"`)

// metricsAddr returns the address the bridge serves /metrics on (from its
// log).
func (b *bridge) metricsAddr(ctx context.Context) string {
	b.t.Helper()
	if err := b.waitLog(ctx, "serving metrics"); err != nil {
		b.t.Fatal(err)
	}
	m := metricsAddrRE.FindStringSubmatch(b.out.String())
	if m == nil {
		b.t.Fatalf("no metrics address in the bridge's log:\n%s", b.out.String())
	}
	return m[1] + m[2] // text or JSON log format
}

// httpGet returns the status and body of http://addr/path.
func httpGet(ctx context.Context, addr, path string) (int, string, error) {
	return httpGetTimeout(ctx, addr, path, 5*time.Second)
}

// httpGetTimeout returns the status and body of http://addr/path, waiting
// at most d (httpGet: 5s; a CPU profile takes longer).
func httpGetTimeout(ctx context.Context, addr, path string, d time.Duration) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// metricValue scrapes one sample (name with its labels as printed, e.g.
// `kube_otel_bridge_exported_total{output="otlp-logs"}`); ok is false when
// the sample is absent.
func metricValue(ctx context.Context, addr, sample string) (float64, bool, error) {
	code, body, err := httpGet(ctx, addr, "/metrics")
	if err != nil {
		return 0, false, err
	}
	if code != http.StatusOK {
		return 0, false, fmt.Errorf("/metrics: HTTP %d", code)
	}
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil, err
		}
	}
	return 0, false, nil
}
