package main

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

type kubeClients struct {
	config   *rest.Config
	client   kubernetes.Interface
	metadata metadata.Interface
}

// loadKube finds the cluster: --kubeconfig, else in-cluster, else $KUBECONFIG,
// else ~/.kube/config.
func loadKube(kubeconfig string, qps float32, burst int) (*kubeClients, error) {
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
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	md, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &kubeClients{config: cfg, client: cs, metadata: md}, nil
}

// clusterUID is the UID of the kube-system namespace, the customary stable
// identity of a cluster (k8s.cluster.uid).
func clusterUID(ctx context.Context, cs kubernetes.Interface) (string, error) {
	ns, err := cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read kube-system namespace for k8s.cluster.uid: %w", err)
	}
	return string(ns.UID), nil
}
