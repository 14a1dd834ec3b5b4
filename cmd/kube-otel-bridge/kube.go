package main

import (
	"context"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kube-otel-bridge/kube-otel-bridge/kube"
)

// loadKube finds the cluster: --kubeconfig, else in-cluster, else $KUBECONFIG,
// else ~/.kube/config.
func loadKube(kubeconfig string, qps float32, burst int, ko kube.Options) (*kube.Client, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	}
	if kubeconfig != "" || err != nil {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = kubeconfig
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("no cluster: not in a pod and no usable kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config): %w", err)
		}
	}
	cfg.QPS, cfg.Burst = qps, burst
	cfg.UserAgent = "kube-otel-bridge/" + version
	return kube.NewWithOptions(cfg, ko)
}

// clusterUID is the UID of the kube-system namespace, the customary stable
// identity of a cluster (k8s.cluster.uid).
func clusterUID(ctx context.Context, c *kube.Client) (string, error) {
	ns, err := c.GetNamespace(ctx, "kube-system")
	if err != nil {
		return "", fmt.Errorf("read kube-system namespace for k8s.cluster.uid: %w", err)
	}
	return string(ns.UID), nil
}
