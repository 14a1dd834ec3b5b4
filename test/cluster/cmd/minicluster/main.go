// Command minicluster starts and stops a mini cluster for a person to use
// (`make cluster-up`, `make cluster-down`).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/cluster"
)

func main() {
	dir := flag.String("dir", ".cluster", "directory for the cluster's data, logs and kubeconfig")
	nodes := flag.Int("nodes", 3, "number of fake nodes")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: minicluster [-dir DIR] [-nodes N] up|down\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fail(err)
	}
	switch flag.Arg(0) {
	case "up":
		if _, err := os.Stat(filepath.Join(abs, "kube-apiserver.pid")); err == nil {
			fail(fmt.Errorf("a cluster seems to run in %s already; run `make cluster-down` first", abs))
		}
		start := time.Now()
		c, err := cluster.Start(context.Background(), cluster.Options{Dir: abs, Nodes: *nodes, Detach: true})
		if err != nil {
			fail(err)
		}
		fmt.Printf("mini cluster ready in %s with %d fake nodes; logs in %s/logs\n", time.Since(start).Round(time.Millisecond), len(c.Nodes), abs)
		fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
	case "down":
		if err := cluster.StopDir(abs); err != nil {
			fail(err)
		}
		fmt.Println("mini cluster stopped")
	default:
		flag.Usage()
		os.Exit(2)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "minicluster:", err)
	os.Exit(1)
}
