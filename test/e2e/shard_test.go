package e2e

import (
	"fmt"
	"hash/fnv"
	"testing"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

// shardOf mirrors the bridge's namespace hash (FNV-1a mod N), so the test can
// pick namespaces that land on different shards.
func shardOf(ns string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(ns))
	return int(h.Sum32() % uint32(n))
}

// Two shards (--shard 0/2 and 1/2) split the namespaces between them: each
// exports only its own namespaces' events, together all of them, none twice.
func TestShardsSplitNamespaces(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	// Namespaces until both shards have one.
	byShard := map[int]string{}
	for i := 0; len(byShard) < 2 && i < 20; i++ {
		ns := shared.NewNamespace(t)
		if _, ok := byShard[shardOf(ns, 2)]; !ok {
			byShard[shardOf(ns, 2)] = ns
		}
	}
	if len(byShard) < 2 {
		t.Fatal("no namespace for one of the shards")
	}
	watched := byShard[0] + "," + byShard[1]
	var recvs [2]*otlpreceiver.Receiver
	for i := range 2 {
		recvs[i] = otlpreceiver.NewStarted(t, otlpreceiver.Options{})
		startBridge(t, recvs[i].Addr(), bridgeOpts{Namespaces: watched, Args: []string{"--shard", fmt.Sprintf("%d/2", i)}})
	}
	for i := range 2 {
		for j := range 5 {
			createEvent(ctx, t, byShard[i], fmt.Sprintf("shard-ev-%d", j), "Warning", "Probe")
		}
	}
	for i := range 2 {
		d, _ := waitDelivered(ctx, t, shared.Client, byShard[i], recvs[i], fmt.Sprintf("shard %d", i))
		if d.Duplicates != 0 || d.Occurrences < 5 {
			t.Errorf("shard %d: %s", i, d)
		}
		// The other shard never exported this namespace.
		for _, r := range recvs[1-i].Logs() {
			if attr(r, "k8s.namespace.name") == byShard[i] {
				t.Fatalf("shard %d exported an event of namespace %s, which belongs to shard %d", 1-i, byShard[i], i)
			}
		}
	}
}
