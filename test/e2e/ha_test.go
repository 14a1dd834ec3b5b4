package e2e

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

var leaderIdentityRE = regexp.MustCompile(`msg="became leader" lease=\S+ identity=(\S+)`)

// haSetup is what the leader-election tests share: a namespace of Events,
// one for the checkpoint and the Lease, a receiver, and the options of
// every replica.
type haSetup struct {
	ctx       context.Context
	ns, state string
	rcv       *otlpreceiver.Receiver
	opts      bridgeOpts
}

// newHA marks the test parallel and sets up replicas sharing lease.
func newHA(t *testing.T, lease string) haSetup {
	t.Helper()
	needCluster(t)
	t.Parallel()
	h := haSetup{ctx: ctxFor(t, 2*time.Minute), ns: shared.NewNamespace(t), state: shared.NewNamespace(t),
		rcv: otlpreceiver.NewStarted(t, otlpreceiver.Options{})}
	h.opts = bridgeOpts{Namespaces: h.ns, Args: deliveryArgs(h.state, "--leader-elect", "--lease-name", lease)}
	return h
}

// leader launches a replica and waits until it leads (it watches Events).
func (h haSetup) leader(t *testing.T) *bridge { return h.launch(t, "watching events") }

// follower launches a replica and waits until it follows the leader.
func (h haSetup) follower(t *testing.T) *bridge { return h.launch(t, "following") }

func (h haSetup) launch(t *testing.T, until string) *bridge {
	t.Helper()
	b := launchBridge(t, h.rcv.Addr(), h.opts)
	ctx, cancel := context.WithTimeout(h.ctx, 60*time.Second)
	defer cancel()
	if err := b.waitLog(ctx, until); err != nil {
		t.Fatalf("replica (%q): %v", until, err)
	}
	return b
}

// waitReadyz waits until /readyz of the bridge answers 200.
func waitReadyz(ctx context.Context, t *testing.T, name, addr string) {
	t.Helper()
	var (
		code int
		body string
		err  error
	)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if werr := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		code, body, err = httpGet(ctx, addr, "/readyz")
		return err == nil && code == http.StatusOK, nil
	}); werr != nil {
		t.Errorf("%s /readyz: HTTP %d %q (%v), want 200", name, code, strings.TrimSpace(body), err)
	}
}

// wantLeader checks a replica's kube_otel_bridge_leader sample.
func wantLeader(ctx context.Context, t *testing.T, name, addr, sample string, want float64) {
	t.Helper()
	v, ok, err := metricValue(ctx, addr, sample)
	if err != nil || !ok || v != want {
		t.Errorf("%s: %s = %v (present %v, %v), want %v", name, sample, v, ok, err, want)
	}
}

// Two replicas with --leader-elect share a Lease and a checkpoint: while both
// run only the leader emits (nothing doubled) and both are ready; when the
// leader is killed (-9) the follower takes over within the lease duration
// and resumes from the checkpoint, losing nothing.
func TestDeliveryLeaderFailover(t *testing.T) {
	const lease = "e2e-ha"
	h := newHA(t, lease)
	ctx, ns, state, rcv := h.ctx, h.ns, h.state, h.rcv
	a := h.leader(t)
	m := leaderIdentityRE.FindStringSubmatch(a.out.String())
	if m == nil {
		t.Fatalf("first replica watches without logging \"became leader\" with its identity")
	}
	leaderID := m[1]
	b := h.follower(t)
	aAddr, bAddr := a.metricsAddr(ctx), b.metricsAddr(ctx)
	waitReadyz(ctx, t, "leader", aAddr)
	waitReadyz(ctx, t, "follower", bAddr)
	l, err := shared.Client.CoordinationV1().Leases(state).Get(ctx, lease, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("lease %s/%s: %v", state, lease, err)
	}
	if got := l.Spec.HolderIdentity; got == nil || *got != leaderID {
		t.Errorf("lease holder %v, want the first replica %s", got, leaderID)
	}

	// Both run: events flow, nothing doubled.
	createDeployment(ctx, t, shared.Client, ns, "web", 2)
	s := startStream(ctx, shared.Client, ns, "both", 100*time.Millisecond)
	time.Sleep(4 * time.Second)
	s.stop()
	d, _ := waitDelivered(ctx, t, shared.Client, ns, rcv, "with two replicas")
	t.Logf("with both replicas: %s", d)
	if d.Duplicates > 0 {
		t.Errorf("doubled occurrences while both replicas ran: %s", d)
	}
	if strings.Contains(b.out.String(), "became leader") || strings.Contains(b.out.String(), "watching events") {
		t.Errorf("the follower became active while the leader ran")
	}
	if v, ok, _ := metricValue(ctx, bAddr, `kube_otel_bridge_occurrences_total`); ok && v != 0 {
		t.Errorf("the follower handled %v occurrences", v)
	}
	leaderSample := fmt.Sprintf(`kube_otel_bridge_leader{lease="%s/%s"}`, state, lease)
	wantLeader(ctx, t, "leader", aAddr, leaderSample, 1)
	wantLeader(ctx, t, "follower", bAddr, leaderSample, 0)

	// Kill the leader mid-stream.
	s2 := startStream(ctx, shared.Client, ns, "failover", 100*time.Millisecond)
	defer s2.stop()
	time.Sleep(2 * time.Second)
	a.kill()
	killed := time.Now()
	t.Logf("leader killed (SIGKILL)")
	tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
	defer tcancel()
	if err := b.waitLog(tctx, "became leader"); err != nil {
		t.Fatalf("the follower did not take over: %v", err)
	}
	took := time.Since(killed)
	if err := b.waitLog(tctx, "watching events"); err != nil {
		t.Fatalf("the new leader did not start watching: %v", err)
	}
	t.Logf("the follower became leader %s after the kill, watching %s after it", took.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	// LeaseDuration 15s, RetryPeriod 2s with client-go's 1.2 jitter
	// (leader.go): the follower sees the lease expire 15s after it last saw
	// it renewed (up to one retry period before the kill) and notices at its
	// next retry; plus a margin for a busy 2-core machine.
	if took > 26*time.Second {
		t.Errorf("takeover took %s, want within the lease duration (15s) + 2 jittered retry periods (4.8s) + 6s", took)
	}
	if !strings.Contains(b.out.String(), "resuming from checkpoint") {
		t.Errorf("the new leader did not resume from the checkpoint")
	}
	time.Sleep(3 * time.Second)
	s2.stop()
	t.Logf("stream before the kill: %s; across the failover: %s", s, s2)
	d, evs := waitDelivered(ctx, t, shared.Client, ns, rcv, "after the failover")
	s.checkAgainst(t, evs)
	s2.checkAgainst(t, evs)
	t.Logf("after the failover: %s", d)
	t.Logf("duplicates after the leader's kill -9: %d", d.Duplicates)
	if d.Duplicates > 512 {
		t.Errorf("%d duplicates after the failover, want at most one batch (512)", d.Duplicates)
	}
	waitReadyz(ctx, t, "new leader", bAddr)
	wantLeader(ctx, t, "new leader", bAddr, leaderSample, 1)
	if l, err := shared.Client.CoordinationV1().Leases(state).Get(ctx, lease, metav1.GetOptions{}); err != nil {
		t.Errorf("lease: %v", err)
	} else if got := l.Spec.HolderIdentity; got == nil || *got == leaderID || *got == "" {
		t.Errorf("lease holder %v after the failover, want the second replica", got)
	}
}

// A leader stopped with SIGTERM (a rolling update) hands over cleanly: it
// keeps the Lease until it has flushed and saved its last checkpoint, then
// releases it, and the follower takes over at its next retry from that
// checkpoint: nothing lost, nothing doubled. (Before, the Lease was
// released, and the process exited, while the leader was still flushing.)
func TestDeliveryLeaderHandover(t *testing.T) {
	h := newHA(t, "e2e-handover")
	ctx, ns, rcv := h.ctx, h.ns, h.rcv
	a := h.leader(t)
	b := h.follower(t)

	createDeployment(ctx, t, shared.Client, ns, "web", 2)
	s := startStream(ctx, shared.Client, ns, "handover", 100*time.Millisecond)
	defer s.stop()
	time.Sleep(3 * time.Second)
	if code := a.Stop(); code != 0 {
		t.Errorf("the leader exited with %d after SIGTERM, want 0", code)
	}
	stopped := time.Now()
	out := a.out.String()
	saved := strings.Index(out, `msg="final checkpoint saved"`)
	if saved < 0 {
		t.Errorf("the leader exited without saving its final checkpoint")
	}
	tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
	defer tcancel()
	if err := b.waitLog(tctx, "became leader"); err != nil {
		t.Fatalf("the follower did not take over: %v", err)
	}
	// Released at the leader's exit: the follower notices at its next
	// retry (2s, jittered ×1.2), not after the 15s lease duration.
	if took := time.Since(stopped); took > 8*time.Second {
		t.Errorf("the follower took over %s after the leader exited, want at its next retry", took.Round(time.Millisecond))
	}
	if err := b.waitLog(tctx, "resuming from checkpoint"); err != nil {
		t.Errorf("the new leader did not resume from the checkpoint: %v", err)
	}
	time.Sleep(2 * time.Second)
	s.stop()
	d, evs := waitDelivered(ctx, t, shared.Client, ns, rcv, "after the handover")
	s.checkAgainst(t, evs)
	t.Logf("across the handover: %s; %s", s, d)
	if d.Duplicates > 0 {
		t.Errorf("%d occurrences doubled across a graceful handover, want none", d.Duplicates)
	}
}

// A leader that loses its Lease (here: another holder takes it over) stops
// at once and exits with an error to restart as a follower, without a last
// checkpoint save: the new leader may be saving its own already.
func TestLeaderLostLeaseSavesNoFinalCheckpoint(t *testing.T) {
	const lease = "e2e-lost"
	h := newHA(t, lease)
	ctx, state := h.ctx, h.state
	a := h.leader(t)
	time.Sleep(1500 * time.Millisecond) // a few checkpoint saves (every 500ms)
	// Another holder takes the Lease (as a replica would after a network
	// partition left this one unable to renew).
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := shared.Client.CoordinationV1().Leases(state).Get(ctx, lease, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		thief, dur, now := "thief", int32(60), metav1.NowMicro()
		l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.AcquireTime, l.Spec.RenewTime = &thief, &dur, &now, &now
		_, err = shared.Client.CoordinationV1().Leases(state).Update(ctx, l, metav1.UpdateOptions{})
		return err == nil, nil
	}); err != nil {
		t.Fatalf("taking the Lease: %v", err)
	}
	// RenewDeadline is 10s; then the shutdown.
	select {
	case <-a.done:
	case <-time.After(45 * time.Second):
		t.Fatal("the leader did not exit after losing its Lease")
	}
	code := a.Stop()
	out := a.out.String()
	if code == 0 {
		t.Errorf("exit code 0 after losing the Lease, want an error (restart as a follower)")
	}
	if !strings.Contains(out, "lost the leader Lease") {
		t.Errorf("no \"lost the leader Lease\" error in the output")
	}
	if !strings.Contains(out, `msg="not saving a final checkpoint: the leader Lease was lost"`) || strings.Contains(out, `msg="final checkpoint saved"`) {
		t.Errorf("the leader saved a final checkpoint after losing its Lease")
	}
}
