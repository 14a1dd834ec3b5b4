// Command capture plays a scenario on a fresh mini cluster while
// `kube-otel-bridge record` records it, producing the recordings bundled in
// examples/recordings/:
//
//	make build cluster-bins
//	go run ./test/scenarios/cmd/capture -scenario rollout -out examples/recordings/rollout.jsonl
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/cluster"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/scenarios"
)

func main() {
	name := flag.String("scenario", "rollout", "scenario to play")
	out := flag.String("out", "", "recording to write (default examples/recordings/SCENARIO.jsonl)")
	bridge := flag.String("bridge", filepath.Join(cluster.DefaultBinDir(), "kube-otel-bridge"), "kube-otel-bridge binary")
	settle := flag.Duration("settle", 3*time.Second, "keep recording this long after the scenario finished")
	flag.Parse()
	sc, ok := scenarios.Find(*name)
	if !ok {
		fail(fmt.Errorf("unknown scenario %q", *name))
	}
	if *out == "" {
		*out = filepath.Join("examples", "recordings", sc.Name+".jsonl")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Nodes: 3})
	if err != nil {
		fail(err)
	}
	defer c.Stop()
	ns, err := c.CreateNamespace(ctx, "demo-")
	if err != nil {
		fail(err)
	}
	rec := exec.CommandContext(ctx, *bridge, "record", "--kubeconfig", c.Kubeconfig, "--namespaces", ns,
		"--cluster-name", "mini", "--out", *out)
	rec.Stdout, rec.Stderr = os.Stderr, os.Stderr
	if err := rec.Start(); err != nil {
		fail(err)
	}
	time.Sleep(2 * time.Second) // let the recorder's informers sync
	if err := sc.Play(ctx, c.Client, ns); err != nil {
		_ = rec.Process.Kill()
		fail(err)
	}
	time.Sleep(*settle)
	_ = rec.Process.Signal(syscall.SIGINT)
	if err := rec.Wait(); err != nil {
		fail(fmt.Errorf("recorder: %w", err))
	}
	fmt.Fprintf(os.Stderr, "recorded scenario %s into %s\n", sc.Name, *out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "capture:", err)
	os.Exit(1)
}
