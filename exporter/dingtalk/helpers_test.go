package dingtalk_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/dingtalk"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/dingtalkserver"
)

// fakeClock is a dingtalk.Clock that only moves when told to.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c  *fakeClock
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) dingtalk.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	i := slices.Index(t.c.timers, t)
	if i < 0 {
		return false
	}
	t.c.timers = slices.Delete(t.c.timers, i, i+1)
	return true
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
			continue
		}
		t.ch <- c.now
	}
	c.timers = kept
}

// Timers is the number of timers waiting.
func (c *fakeClock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// logBuffer collects log output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a sink posting to a test server.
type env struct {
	t     *testing.T
	srv   *dingtalkserver.Server
	sink  *dingtalk.Sink
	clock *fakeClock // nil: wall clock
	logs  *logBuffer
	acks  atomic.Int64
}

type envOpts struct {
	server    dingtalkserver.Config
	config    func(*dingtalk.Config)
	fakeClock bool
	secret    string // default: the server's
	token     string // default: the server's
	opts      []dingtalk.Option
}

func writeSecret(t *testing.T, secret string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{t: t, logs: &logBuffer{}}
	opts := append([]dingtalk.Option{dingtalk.WithRetryBackoff(5*time.Millisecond, 20*time.Millisecond)}, o.opts...)
	if o.fakeClock {
		e.clock = newFakeClock()
		o.server.Now = e.clock.Now
		opts = append(opts, dingtalk.WithClock(e.clock))
	}
	e.srv = dingtalkserver.New(o.server)
	t.Cleanup(e.srv.Close)
	secret := o.secret
	if secret == "" {
		secret = e.srv.Secret()
	}
	webhook := e.srv.Webhook()
	if o.token != "" {
		webhook = e.srv.WebhookWithToken(o.token)
	}
	cfg := dingtalk.Config{
		Name:                 "oncall",
		Webhook:              webhook,
		SecretFile:           writeSecret(t, secret),
		TraceURL:             "https://jaeger.example.com/trace/{trace_id}?uiFind={span_id}",
		AllowInsecureWebhook: true,
	}
	if o.config != nil {
		o.config(&cfg)
	}
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := dingtalk.New(cfg, "prod-1", logger, opts...)
	if err != nil {
		t.Fatal(err)
	}
	e.sink = s
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return e
}

func (e *env) emit(o *convert.Occurrence) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.sink.Emit(ctx, o, func() { e.acks.Add(1) }); err != nil {
		e.t.Fatalf("Emit: %v", err)
	}
}

func (e *env) shutdown() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.sink.Shutdown(ctx); err != nil {
		e.t.Fatalf("Shutdown: %v", err)
	}
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

var traceID = [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}

const traceHex = "4bf92f3577b34da6a3ce929d0e0e4736"

// warning is a BackOff warning about Pod web-777-a in ns shop, owned by
// ReplicaSet web-777, owned by Deployment web.
func warning() *convert.Occurrence {
	return &convert.Occurrence{
		EventUID:  "ev-1",
		EventName: "web-777-a.17f",
		Namespace: "shop",
		Count:     3,
		Type:      "Warning",
		Reason:    "BackOff",
		Note:      "Back-off restarting failed container app in pod web-777-a_shop(1234)",
		Time:      time.Date(2025, 3, 4, 5, 6, 7, 123000000, time.UTC),
		Regarding: convert.Ref{Kind: "Pod", APIVersion: "v1", Namespace: "shop", Name: "web-777-a", UID: "pod-uid"},
		Chain: []convert.Ref{
			{Kind: "Pod", Namespace: "shop", Name: "web-777-a", UID: "pod-uid"},
			{Kind: "ReplicaSet", Namespace: "shop", Name: "web-777", UID: "rs-uid"},
			{Kind: "Deployment", Namespace: "shop", Name: "web", UID: "deploy-uid"},
		},
		ReportingController: "kubelet",
		SourceHost:          "node-1",
		TraceID:             traceID,
		SpanID:              [8]byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
	}
}

// warningN is the i-th of a burst: varying pods, namespaces and reasons.
func warningN(i int, ns, reason string) *convert.Occurrence {
	o := warning()
	pod := fmt.Sprintf("web-777-%d", i%7)
	o.EventUID = fmt.Sprintf("ev-%d", i)
	o.Namespace, o.Reason = ns, reason
	o.Regarding = convert.Ref{Kind: "Pod", Namespace: ns, Name: pod, UID: "uid-" + pod}
	o.Chain = []convert.Ref{o.Regarding, {Kind: "ReplicaSet", Namespace: ns, Name: "web-777"}, {Kind: "Deployment", Namespace: ns, Name: "web"}}
	o.TraceID[15] = byte(i)
	return o
}

var digestRE = regexp.MustCompile(`(\d+) warnings in the last`)

// accounted parses the accepted messages: individual warnings and the sum of
// the counts announced by the digests, and checks each digest's
// "N× reason" lines add up to its count.
func accounted(t *testing.T, msgs []dingtalkserver.Message) (individual, digested, digests int) {
	t.Helper()
	lineRE := regexp.MustCompile(`(?m)^- (\d+)× \S+ (?:in ns \S+|cluster-scoped)$`)
	for _, m := range msgs {
		sm := digestRE.FindStringSubmatch(m.Text)
		if sm == nil {
			individual++
			continue
		}
		n, _ := strconv.Atoi(sm[1])
		digests++
		digested += n
		sum := 0
		for _, l := range lineRE.FindAllStringSubmatch(m.Text, -1) {
			k, _ := strconv.Atoi(l[1])
			sum += k
		}
		if sum != n {
			t.Errorf("digest announces %d warnings but its reasons add up to %d:\n%s", n, sum, m.Text)
		}
	}
	return
}

func countLines(s, substr string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

func convertRef(kind, ns, name string) convert.Ref {
	return convert.Ref{Kind: kind, Namespace: ns, Name: name, UID: "uid-" + name}
}
