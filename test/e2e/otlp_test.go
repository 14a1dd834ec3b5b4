package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/certs"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

// The sink's warning when an export fails (exporter/otlp/sink.go).
const exportFailedLog = "OTLP log export failed"

func TestOTLPConnection(t *testing.T) {
	needCluster(t)
	t.Parallel()
	pki := certs.New(t, "")

	// delivered starts a bridge with the flags against rcv and checks that
	// an Event of its namespace arrives.
	delivered := func(t *testing.T, rcv *otlpreceiver.Receiver, o bridgeOpts) (*bridge, []rec) {
		t.Helper()
		ctx := ctxFor(t, time.Minute)
		ns := shared.NewNamespace(t)
		o.Namespaces = ns
		b := startBridge(t, rcv.Addr(), o)
		ev := createEvent(ctx, t, ns, "hello", corev1.EventTypeNormal, "E2EConnection")
		recs := waitUIDCounts(ctx, t, rcv, string(ev.UID), 1)
		return b, recs
	}
	// refused starts a bridge that cannot export to rcv: the bridge logs
	// the failure, nothing arrives, and at SIGTERM it gives up after its
	// shutdown timeout and exits 1 saying records were not delivered.
	refused := func(t *testing.T, rcv *otlpreceiver.Receiver, o bridgeOpts) {
		t.Helper()
		ctx := ctxFor(t, time.Minute)
		ns := shared.NewNamespace(t)
		o.Namespaces = ns
		o.Args = append(o.Args, "--shutdown-timeout", "2s")
		b := startBridge(t, rcv.Addr(), o)
		createEvent(ctx, t, ns, "hello", corev1.EventTypeNormal, "E2EConnection")
		if err := b.waitLog(ctx, exportFailedLog); err != nil {
			t.Fatal(err)
		}
		if n := len(rcv.Logs()); n != 0 {
			t.Errorf("%d records arrived, want none", n)
		}
		if n := len(rcv.Requests()); n != 0 {
			t.Errorf("%d export requests reached the receiver, want none", n)
		}
		if code := b.Stop(); code != 1 {
			t.Errorf("exit code %d after SIGTERM with undeliverable records, want 1", code)
		}
		// --shutdown-timeout bounds the whole shutdown.
		if b.stopTook > b.shutdownTimeout+3*time.Second {
			t.Errorf("exit %s after SIGTERM with --shutdown-timeout %s", b.stopTook.Round(time.Millisecond), b.shutdownTimeout)
		}
		t.Logf("exit %s after SIGTERM with --shutdown-timeout %s", b.stopTook.Round(time.Millisecond), b.shutdownTimeout)
		if out := b.out.String(); !strings.Contains(out, "not delivered") {
			t.Errorf("no \"not delivered\" in the bridge's output")
		}
		t.Logf("export error as logged: %s", grepLine(b.out.String(), exportFailedLog))
	}

	t.Run("tls", func(t *testing.T) {
		t.Parallel()
		rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{TLS: pki.ServerTLSConfig(false)})
		delivered(t, rcv, bridgeOpts{TLS: true, Args: []string{"--otlp-ca-file", pki.CAFile}})
	})

	t.Run("tls-untrusted-server", func(t *testing.T) {
		t.Parallel()
		// No --otlp-ca-file: the system roots do not trust the test CA.
		rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{TLS: pki.ServerTLSConfig(false)})
		refused(t, rcv, bridgeOpts{TLS: true})
	})

	t.Run("mtls", func(t *testing.T) {
		t.Parallel()
		rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{TLS: pki.ServerTLSConfig(true)})
		delivered(t, rcv, bridgeOpts{TLS: true, Args: []string{
			"--otlp-ca-file", pki.CAFile, "--otlp-client-cert", pki.ClientCertFile, "--otlp-client-key", pki.ClientKeyFile,
		}})
		for _, r := range rcv.Requests() {
			if r.ClientCommonName != "test-client" {
				t.Errorf("request with client certificate CN %q, want test-client", r.ClientCommonName)
			}
		}
	})

	t.Run("mtls-without-client-cert", func(t *testing.T) {
		t.Parallel()
		rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{TLS: pki.ServerTLSConfig(true)})
		refused(t, rcv, bridgeOpts{TLS: true, Args: []string{"--otlp-ca-file", pki.CAFile}})
	})

	t.Run("headers", func(t *testing.T) {
		t.Parallel()
		const token = "e2e-s3cret-7f3a9c"
		rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
		b, _ := delivered(t, rcv, bridgeOpts{
			Env: []string{"E2E_TOKEN=" + token},
			Args: []string{
				"--otlp-header", "authorization=Bearer ${E2E_TOKEN}",
				"--otlp-header", "X-Scope-OrgID=team-e2e",
			},
		})
		reqs := rcv.Requests()
		for _, r := range reqs {
			if got := r.Header("authorization"); got != "Bearer "+token {
				t.Errorf("authorization header %q, want the expanded \"Bearer <E2E_TOKEN>\"", got)
			}
			if got := r.Header("x-scope-orgid"); got != "team-e2e" {
				t.Errorf("x-scope-orgid header %q, want team-e2e", got)
			}
		}
		if strings.Contains(b.out.String(), token) {
			t.Errorf("the bridge logged the header's secret value")
		}
	})

	t.Run("resource-from-env", func(t *testing.T) {
		t.Parallel()
		rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
		_, recs := delivered(t, rcv, bridgeOpts{Env: []string{
			"OTEL_SERVICE_NAME=bridge-from-env",
			"OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=e2e-env,k8s.cluster.name=cluster-from-env",
		}})
		for key, want := range map[string]string{
			"service.name":                "bridge-from-env", // no --service-name: the variable applies
			"k8s.cluster.name":            "e2e",             // --cluster-name beats the variable
			"k8s.cluster.uid":             clusterUID,
			"deployment.environment.name": "e2e-env",
			"telemetry.sdk.language":      "go",
		} {
			if got, _ := recs[0].ResourceAttr(key); got != want {
				t.Errorf("resource %s = %q, want %q", key, got, want)
			}
		}
	})

	t.Run("gzip", func(t *testing.T) {
		t.Parallel()
		rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
		delivered(t, rcv, bridgeOpts{Args: []string{"--otlp-compression", "gzip"}})
		for _, r := range rcv.Requests() {
			if r.Compression != "gzip" {
				t.Errorf("request compression %q, want gzip", r.Compression)
			}
		}
	})

	t.Run("no-compression", func(t *testing.T) {
		t.Parallel()
		rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
		delivered(t, rcv, bridgeOpts{})
		for _, r := range rcv.Requests() {
			if r.Compression != "" {
				t.Errorf("request compression %q without --otlp-compression, want none", r.Compression)
			}
		}
	})
}

func grepLine(out, s string) string {
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

func TestCollectorOutage(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	ns := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	b := startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: ns})

	first := createEvent(ctx, t, ns, "before-outage", corev1.EventTypeNormal, "E2EOutage")
	waitUIDCounts(ctx, t, rcv, string(first.UID), 1)

	const outage, n = 20 * time.Second, 30
	rcv.Stop()
	down := time.Now()
	uids := []string{string(first.UID)}
	for i := range n {
		ev := createEvent(ctx, t, ns, fmt.Sprintf("during-outage-%02d", i), corev1.EventTypeNormal, "E2EOutage")
		uids = append(uids, string(ev.UID))
		time.Sleep(500 * time.Millisecond)
	}
	select {
	case <-time.After(time.Until(down.Add(outage))):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if b.exited() {
		t.Fatalf("the bridge exited during the outage: %v", b.err)
	}
	if len(rcv.Logs()) != 1 {
		t.Fatalf("%d records while the receiver was down, want 1", len(rcv.Logs()))
	}
	if err := rcv.Start(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	t.Logf("receiver down for %s", up.Sub(down).Round(time.Millisecond))

	recs := waitRecords(ctx, t, rcv, "every occurrence after the outage", func(recs []rec) error {
		var missing []string
		for _, uid := range uids {
			if len(withUID(recs, uid)) == 0 {
				missing = append(missing, uid)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d events missing", len(missing), len(uids))
		}
		return nil
	})
	t.Logf("all %d occurrences arrived %s after the receiver came back", len(uids), time.Since(up).Round(time.Millisecond))
	// Duplicates are allowed (at-least-once: a request cut off by the
	// outage may have been stored), but counted.
	time.Sleep(2 * time.Second)
	recs = rcv.Logs()
	dups := 0
	for _, uid := range uids {
		if got := counts(withUID(recs, uid)); len(got) > 1 {
			dups += len(got) - 1
			t.Logf("duplicate: event %s has %d records (counts %v)", uid, len(got), got)
		}
	}
	if len(recs) != len(uids)+dups {
		t.Errorf("%d records, want %d (+%d duplicates)", len(recs), len(uids), dups)
	}
	t.Logf("%d duplicates after the outage", dups)
	if b.exited() {
		t.Fatalf("the bridge exited: %v", b.err)
	}
	out := b.out.String()
	if !strings.Contains(out, exportFailedLog) {
		t.Errorf("the bridge did not log the failed exports")
	}
	if !strings.Contains(out, "OTLP log export recovered") {
		t.Errorf("the bridge did not log the recovery")
	}
	// The spans made it too: after the flush at SIGTERM, every record's
	// event span is there.
	if code := b.Stop(); code != 0 {
		t.Errorf("bridge exited %d after the outage", code)
	}
	spans := map[string]bool{}
	for _, sp := range rcv.Spans() {
		spans[hex.EncodeToString(sp.Span.GetSpanId())] = true
	}
	for _, r := range rcv.Logs() {
		if !spans[hex.EncodeToString(r.Record.GetSpanId())] {
			t.Errorf("no span %x for the record of event %s", r.Record.GetSpanId(), attr(r, "k8s.event.uid"))
		}
	}
	reqs := rcv.Requests()
	t.Logf("%d export requests, %d after the outage", len(reqs), len(slices.DeleteFunc(slices.Clone(reqs), func(r otlpreceiver.Request) bool { return r.Time.Before(up) })))
}

func TestSIGTERMFlushesQueuedRecords(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	ns := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	// A slow collector: every export takes 3s (within the 10s timeout).
	const delay = 3 * time.Second
	rcv.SetDelay(delay)
	b := startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: ns, Args: []string{"--otlp-timeout", "10s"}})

	// Events over ~2.5s: the first batch (cut 1s after the first) is
	// answered ~4s after it, when the rest of them wait in the next batch.
	const n = 20
	var uids []string
	for i := range n {
		ev := createEvent(ctx, t, ns, fmt.Sprintf("burst-%02d", i), corev1.EventTypeNormal, "E2EFlush")
		uids = append(uids, string(ev.UID))
		time.Sleep(125 * time.Millisecond)
	}
	created := time.Now()
	// The first log export answered (spans go out on their own requests).
	waitLogRequests(ctx, t, rcv, 1)
	// The bridge reads an Event within milliseconds; give it a second.
	if d := time.Second - time.Since(created); d > 0 {
		time.Sleep(d)
	}
	before := len(rcv.Logs())
	sigterm := time.Now()
	code := b.Stop()
	t.Logf("%d of %d records had arrived at SIGTERM; the bridge exited %d after %s", before, n, code, b.stopTook.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if before >= n {
		t.Errorf("all records had arrived before SIGTERM: the test did not exercise the flush")
	}
	recs := rcv.Logs()
	for _, uid := range uids {
		if got := counts(withUID(recs, uid)); !slices.Equal(got, []int{1}) {
			t.Errorf("event %s: record counts %v after shutdown, want [1]", uid, got)
		}
	}
	var after int
	for _, r := range rcv.Requests() {
		if r.Signal == otlpreceiver.SignalLogs && r.Time.After(sigterm) {
			after++
		}
	}
	if after == 0 {
		t.Errorf("no log export request after SIGTERM")
	}
	if out := b.out.String(); !strings.Contains(out, "flushing queued records") {
		t.Errorf("the bridge did not log the flush")
	}
}

// waitLogRequests waits until the receiver has answered n log export
// requests.
func waitLogRequests(ctx context.Context, t *testing.T, rcv *otlpreceiver.Receiver, n int) {
	t.Helper()
	err := wait.PollUntilContextCancel(ctx, 20*time.Millisecond, true, func(context.Context) (bool, error) {
		got := 0
		for _, r := range rcv.Requests() {
			if r.Signal == otlpreceiver.SignalLogs {
				got++
			}
		}
		return got >= n, nil
	})
	if err != nil {
		t.Fatalf("waiting for %d log export requests: %v", n, err)
	}
}
