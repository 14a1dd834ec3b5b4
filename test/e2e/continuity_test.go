package e2e

import (
	"fmt"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/cluster"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

// A graceful restart carries open episodes over: a crash-looping pod's
// BackOff warnings before and after the restart are one trace, whose root
// and object spans are exported once, with no orphan and no doubled span.
func TestOpenEpisodeContinuesAcrossGracefulRestart(t *testing.T) { testContinuity(t, false, "") }

// After kill -9 the periodic checkpoint's snapshot of the open episodes
// carries them over: the trace continues and no span is left without its
// parent (spans of the last batch may come twice: at-least-once).
func TestOpenEpisodeContinuesAfterKill(t *testing.T) { testContinuity(t, true, "") }

// An upgrade continues what an earlier release checkpointed (its format,
// its engine state): E2E_UPGRADE_FROM_BIN names that release's binary,
// which runs first; the binary under test takes over, after a graceful
// stop and after kill -9. Skipped without it (CI builds only this one).
func TestUpgradeContinuesTheCheckpoint(t *testing.T) {
	from := os.Getenv("E2E_UPGRADE_FROM_BIN")
	if from == "" {
		t.Skip("E2E_UPGRADE_FROM_BIN (an earlier release's binary) not set")
	}
	t.Run("graceful", func(t *testing.T) { testContinuity(t, false, from) })
	t.Run("kill", func(t *testing.T) { testContinuity(t, true, from) })
}

// testContinuity runs a crash-looping pod's episode through a bridge (the
// binary firstBin, "" for the one under test), stops it and checks that the
// bridge under test continues the same trace.
func testContinuity(t *testing.T, kill bool, firstBin string) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	ns := shared.NewNamespace(t)
	state := shared.NewNamespace(t)
	recv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	args := deliveryArgs(state, "--episode-idle", "1m")

	b1 := startBridge(t, recv.Addr(), bridgeOpts{Namespaces: ns, Args: args, Bin: firstBin})
	p := createPod(ctx, t, ns, "crasher", map[string]string{cluster.AnnotationFailure: cluster.FailureCrashLoop, cluster.AnnotationRepeatInterval: "400ms"})
	backoffs := func(recs []rec) []rec {
		var out []rec
		for _, r := range recs {
			if attr(r, "k8s.event.reason") == "BackOff" && attr(r, "k8s.object.name") == p.Name {
				out = append(out, r)
			}
		}
		return out
	}
	waitRecords(ctx, t, recv, "3 BackOff before the restart", func(recs []rec) error {
		if n := len(backoffs(recs)); n < 3 {
			return fmt.Errorf("%d BackOff records", n)
		}
		return nil
	})
	if kill {
		time.Sleep(time.Second) // a periodic checkpoint (500ms) holds the episode
		b1.kill()
	} else if code := b1.Stop(); code != 0 {
		t.Fatalf("first bridge exited %d", code)
	}
	before := len(backoffs(recordsOf(recv)))
	if hasSpan(recv, "Pod crasher") {
		t.Fatalf("the open episode was closed at shutdown (its Pod span was exported) instead of carried over")
	}

	b2 := startBridge(t, recv.Addr(), bridgeOpts{Namespaces: ns, Args: args})
	if ok, _ := b2.out.contains("continuing open episodes"); !ok {
		t.Errorf("second bridge did not say it continues the open episode")
	}
	waitRecords(ctx, t, recv, "3 more BackOff after the restart", func(recs []rec) error {
		if n := len(backoffs(recs)); n < before+3 {
			return fmt.Errorf("%d BackOff records, %d before the restart", n, before)
		}
		return nil
	})
	// Deleting the pod (the root) closes the episode: its spans go out now.
	if err := shared.Client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for !hasSpan(recv, "Pod crasher") && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if code := b2.Stop(); code != 0 {
		t.Fatalf("second bridge exited %d", code)
	}

	recs := backoffs(recordsOf(recv))
	tid := hexID(recs[0].Record.GetTraceId())
	for _, r := range recs {
		if got := hexID(r.Record.GetTraceId()); got != tid {
			t.Fatalf("BackOff #%s in trace %s, the first in %s: the restart forked the trace", attr(r, "k8s.event.count"), got, tid)
		}
	}
	f := buildForest(recv.Spans())
	for _, d := range f.dups {
		if !kill {
			t.Errorf("span exported twice: %s", d)
		}
	}
	for _, o := range f.orphans {
		t.Errorf("orphan: %q (trace %s) has parent %s, never exported", o.name(), o.tid, o.parentID)
	}
	root := f.trace(tid)
	if root == nil {
		t.Fatalf("no root span for trace %s:\n%s", tid, f.render())
	}
	pods := root.findNamed("Pod crasher")
	counts := map[int]bool{}
	for _, r := range recs {
		counts[count(r)] = true
	}
	if len(pods) != 1 || len(pods[0].eventKids("Pod.BackOff", "")) != len(counts) {
		t.Errorf("want one Pod span holding all %d BackOff spans:\n%s", len(counts), f.render())
	}
}

func recordsOf(r *otlpreceiver.Receiver) []rec { return r.Logs() }

func hasSpan(r *otlpreceiver.Receiver, name string) bool {
	for _, s := range r.Spans() {
		if s.Span.GetName() == name {
			return true
		}
	}
	return false
}
