package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/cluster"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

// bridgeNS is the namespace of deploy/base (kustomization.yaml).
const bridgeNS = "kube-otel-bridge"

// kubectl runs bin/kubectl against the shared cluster.
func kubectl(ctx context.Context, t *testing.T, stdin []byte, args ...string) ([]byte, error) {
	t.Helper()
	return runTool(ctx, t, "kubectl", nil, stdin, append([]string{"--kubeconfig", shared.Kubeconfig}, args...)...)
}

// runTool runs a binary of `make cluster-bins` in the repository with the
// hermetic environment plus env; what it says on stderr goes to the test log
// (or into the error).
func runTool(ctx context.Context, t *testing.T, name string, env []string, stdin []byte, args ...string) ([]byte, error) {
	t.Helper()
	bin := filepath.Join(cluster.DefaultBinDir(), name)
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s missing (make cluster-bins): %v", bin, err)
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = root
	cmd.Env = append(hermeticEnv(), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("%s %s (stderr): %s", name, strings.Join(args, " "), strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// manifest is one rendered object.
type manifest struct {
	Kind string
	Name string
	YAML []byte
}

func splitManifests(t *testing.T, rendered []byte) []manifest {
	t.Helper()
	var out []manifest
	for _, doc := range bytes.Split(rendered, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("rendered manifest: %v\n%s", err, doc)
		}
		out = append(out, manifest{Kind: meta.Kind, Name: meta.Metadata.Name, YAML: doc})
	}
	return out
}

// saName is the ServiceAccount the manifests bind.
const saUser = "system:serviceaccount:" + bridgeNS + ":kube-otel-bridge"

// waitAccess waits until the ServiceAccount may (allowed) or may not do verb
// on resource, as the API server's authorizer sees it (RBAC changes reach it
// through a watch).
func waitAccess(ctx context.Context, t *testing.T, ra authzv1.ResourceAttributes, allowed bool) {
	t.Helper()
	var last *authzv1.SubjectAccessReview
	var lastErr error
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		last, lastErr = shared.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{
			Spec: authzv1.SubjectAccessReviewSpec{User: saUser, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + bridgeNS, "system:authenticated"},
				ResourceAttributes: &ra},
		}, metav1.CreateOptions{})
		return lastErr == nil && last.Status.Allowed == allowed, nil
	})
	if err != nil {
		t.Fatalf("%s %s/%s %s in %q: allowed never became %v (%v, %+v)", saUser, ra.Group, ra.Resource, ra.Verb, ra.Namespace, allowed, lastErr, last)
	}
}

// saKubeconfig writes a kubeconfig authenticating as the ServiceAccount with
// a fresh token; server and CA come from the admin config.
func saKubeconfig(ctx context.Context, t *testing.T) string {
	t.Helper()
	exp := int64(3600)
	tr, err := shared.Client.CoreV1().ServiceAccounts(bridgeNS).CreateToken(ctx, "kube-otel-bridge",
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for the ServiceAccount: %v", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["mini"] = &clientcmdapi.Cluster{Server: shared.Config.Host, CertificateAuthorityData: shared.Config.TLSClientConfig.CAData}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["mini"] = &clientcmdapi.Context{Cluster: "mini", AuthInfo: "sa", Namespace: bridgeNS}
	cfg.CurrentContext = "mini"
	path := filepath.Join(t.TempDir(), "sa.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// The kustomize base renders and the API server accepts it (dry run); the
// bridge runs with exactly the ServiceAccount's permissions (events, object
// cache, Lease, checkpoint); and without one of them it says what is
// forbidden.
func TestDeployManifestsRBAC(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, 3*time.Minute)

	rendered, err := kubectl(ctx, t, nil, "kustomize", "deploy/base")
	if err != nil {
		t.Fatal(err)
	}
	docs := splitManifests(t, rendered)
	var kinds []string
	for _, m := range docs {
		kinds = append(kinds, m.Kind+"/"+m.Name)
	}
	t.Logf("deploy/base renders %d objects: %v", len(docs), kinds)

	// The namespace for real, then everything as a server-side dry run.
	if _, err := shared.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: bridgeNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", bridgeNS, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = shared.Client.CoreV1().Namespaces().Delete(ctx, bridgeNS, metav1.DeleteOptions{})
		_ = shared.Client.RbacV1().ClusterRoles().Delete(ctx, "kube-otel-bridge", metav1.DeleteOptions{})
		_ = shared.Client.RbacV1().ClusterRoleBindings().Delete(ctx, "kube-otel-bridge", metav1.DeleteOptions{})
	})
	out, err := kubectl(ctx, t, rendered, "apply", "--dry-run=server", "-f", "-")
	if err != nil {
		t.Fatalf("server-side dry run of deploy/base: %v", err)
	}
	t.Logf("dry run:\n%s", strings.TrimSpace(string(out)))
	for _, m := range docs {
		if !strings.Contains(string(out), m.Name) {
			t.Errorf("dry run did not mention %s/%s", m.Kind, m.Name)
		}
	}

	// RBAC for real.
	var rbacDocs [][]byte
	var clusterRole, role []byte
	for _, m := range docs {
		switch m.Kind {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			rbacDocs = append(rbacDocs, m.YAML)
		}
		switch m.Kind {
		case "ClusterRole":
			clusterRole = m.YAML
		case "Role":
			role = m.YAML
		}
	}
	if len(rbacDocs) != 5 || clusterRole == nil || role == nil {
		t.Fatalf("deploy/base lacks some of ServiceAccount, ClusterRole, ClusterRoleBinding, Role, RoleBinding: %v", kinds)
	}
	if out, err := kubectl(ctx, t, bytes.Join(rbacDocs, []byte("\n---\n")), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("applied:\n%s", strings.TrimSpace(string(out)))
	}
	waitAccess(ctx, t, authzv1.ResourceAttributes{Namespace: bridgeNS, Verb: "create", Resource: "configmaps"}, true)
	waitAccess(ctx, t, authzv1.ResourceAttributes{Verb: "watch", Group: "apps", Resource: "replicasets"}, true)
	kc := saKubeconfig(ctx, t)

	ns := shared.NewNamespace(t)
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	opts := bridgeOpts{Namespaces: ns, Args: []string{"--kubeconfig", kc, "--state-namespace", bridgeNS, "--leader-elect", "--checkpoint-interval", "500ms"}}

	t.Run("exact permissions", func(t *testing.T) {
		b := startBridge(t, rcv.Addr(), opts)
		createDeployment(ctx, t, shared.Client, ns, "web", 2)
		createEvent(ctx, t, ns, "plain", corev1.EventTypeWarning, "E2ERBAC")
		d, evs := waitDelivered(ctx, t, shared.Client, ns, rcv, "with the ServiceAccount's permissions")
		t.Logf("tally: %s", d)
		if d.Duplicates > 0 {
			t.Errorf("duplicates: %s", d)
		}
		// The object cache works: pod events carry the Deployment.
		pods := 0
		for _, r := range rcv.Logs() {
			if attr(r, "k8s.object.kind") == "Pod" {
				pods++
				if attr(r, "k8s.deployment.name") != "web" {
					t.Errorf("%s about pod %s: k8s.deployment.name %q, want web (owner chain through the object cache)",
						attr(r, "k8s.event.reason"), attr(r, "k8s.object.name"), attr(r, "k8s.deployment.name"))
				}
			}
		}
		if pods == 0 {
			t.Errorf("no pod events among %d events", len(evs))
		}
		// Lease acquired, checkpoint written.
		l, err := shared.Client.CoordinationV1().Leases(bridgeNS).Get(ctx, "kube-otel-bridge", metav1.GetOptions{})
		if err != nil {
			t.Errorf("lease %s/kube-otel-bridge: %v", bridgeNS, err)
		} else if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			t.Errorf("lease %s/kube-otel-bridge has no holder", bridgeNS)
		} else {
			t.Logf("lease held by %s", *l.Spec.HolderIdentity)
		}
		var cmErr error
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := wait.PollUntilContextCancel(pctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			cm, err := shared.Client.CoreV1().ConfigMaps(bridgeNS).Get(ctx, "kube-otel-bridge-checkpoint", metav1.GetOptions{})
			cmErr = err
			return err == nil && len(cm.BinaryData["checkpoint"]) > 0, nil
		}); err != nil {
			t.Errorf("checkpoint ConfigMap %s/kube-otel-bridge-checkpoint not written: %v (%v)", bridgeNS, err, cmErr)
		}
		for _, line := range strings.Split(b.out.String(), "\n") {
			if strings.Contains(strings.ToLower(line), "forbidden") {
				t.Errorf("bridge logged a permission error: %s", line)
			}
		}
		if code := b.Stop(); code != 0 {
			t.Errorf("bridge exited %d after SIGTERM", code)
		}
		// SIGTERM released the Lease for the next run.
	})
	if t.Failed() {
		return
	}

	// Without list/watch on replicasets: the object cache cannot list them.
	t.Run("no replicasets", func(t *testing.T) {
		var cr rbacv1.ClusterRole
		if err := yaml.Unmarshal(clusterRole, &cr); err != nil {
			t.Fatal(err)
		}
		orig := cr.DeepCopy()
		found := false
		for i, r := range cr.Rules {
			if i := slices.Index(r.Resources, "replicasets"); i >= 0 {
				r.Resources = slices.Delete(slices.Clone(r.Resources), i, i+1)
				found = true
			}
			cr.Rules[i] = r
		}
		if !found {
			t.Fatalf("the ClusterRole has no replicasets rule: %s", clusterRole)
		}
		updateClusterRole(ctx, t, &cr)
		t.Cleanup(func() { updateClusterRole(context.Background(), t, orig) })
		waitAccess(ctx, t, authzv1.ResourceAttributes{Namespace: ns, Verb: "list", Group: "apps", Resource: "replicasets"}, false)

		b := launchBridge(t, rcv.Addr(), opts)
		b.stopped.Store(true) // this test checks the exit itself
		describeFailure(ctx, t, b, []string{"replicasets", "forbidden"}, "watching events", func() {
			// With --leader-elect, a replica stuck like this holds the Lease:
			// a standby with the same permissions cannot take over anyway,
			// but one whose problem is local (a network policy) could.
			if l, err := shared.Client.CoordinationV1().Leases(bridgeNS).Get(ctx, "kube-otel-bridge", metav1.GetOptions{}); err == nil && l.Spec.HolderIdentity != nil {
				t.Logf("meanwhile the Lease is held by %s (became leader: %v)", *l.Spec.HolderIdentity, strings.Contains(b.out.String(), "became leader"))
			}
		})
	})

	// Without configmaps in the Role: no checkpoint.
	t.Run("no configmaps", func(t *testing.T) {
		var r rbacv1.Role
		if err := yaml.Unmarshal(role, &r); err != nil {
			t.Fatal(err)
		}
		r.Namespace = bridgeNS
		orig := r.DeepCopy()
		r.Rules = slices.DeleteFunc(r.Rules, func(p rbacv1.PolicyRule) bool { return slices.Contains(p.Resources, "configmaps") })
		if len(r.Rules) == len(orig.Rules) {
			t.Fatalf("the Role has no configmaps rule: %s", role)
		}
		updateRole(ctx, t, &r)
		t.Cleanup(func() { updateRole(context.Background(), t, orig) })
		waitAccess(ctx, t, authzv1.ResourceAttributes{Namespace: bridgeNS, Verb: "get", Resource: "configmaps", Name: "kube-otel-bridge-checkpoint"}, false)

		b := launchBridge(t, rcv.Addr(), opts)
		b.stopped.Store(true)
		describeFailure(ctx, t, b, []string{"configmaps", "forbidden"}, "watching events", nil)
	})
}

func updateClusterRole(ctx context.Context, t *testing.T, cr *rbacv1.ClusterRole) {
	t.Helper()
	cur, err := shared.Client.RbacV1().ClusterRoles().Get(ctx, cr.Name, metav1.GetOptions{})
	if err != nil {
		t.Errorf("get ClusterRole %s: %v", cr.Name, err)
		return
	}
	cur.Rules = cr.Rules
	if _, err := shared.Client.RbacV1().ClusterRoles().Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Errorf("update ClusterRole %s: %v", cr.Name, err)
	}
}

func updateRole(ctx context.Context, t *testing.T, r *rbacv1.Role) {
	t.Helper()
	cur, err := shared.Client.RbacV1().Roles(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Errorf("get Role %s: %v", r.Name, err)
		return
	}
	cur.Rules = r.Rules
	if _, err := shared.Client.RbacV1().Roles(r.Namespace).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Errorf("update Role %s: %v", r.Name, err)
	}
}

// describeFailure watches a bridge that lacks a permission for up to 30s: it
// must say, in its output, what is forbidden (every string of want), and
// must not claim to work (notWant, /readyz 200). It logs what the bridge
// did: exit with its message, or keep running and what it logged.
func describeFailure(ctx context.Context, t *testing.T, b *bridge, want []string, notWant string, whileRunning func()) {
	t.Helper()
	maddr := ""
	if m := metricsAddrRE.FindStringSubmatch(b.out.String()); m != nil {
		maddr = m[1]
	}
	deadline := time.Now().Add(30 * time.Second)
	var said bool
wait:
	for time.Now().Before(deadline) && !b.exited() {
		low := strings.ToLower(b.out.String())
		said = true
		for _, w := range want {
			said = said && strings.Contains(low, w)
		}
		if said {
			// Give it a few seconds more to exit (or not).
			select {
			case <-b.done:
			case <-time.After(5 * time.Second):
			}
			break wait
		}
		time.Sleep(200 * time.Millisecond)
	}
	if maddr == "" {
		if m := metricsAddrRE.FindStringSubmatch(b.out.String()); m != nil {
			maddr = m[1]
		}
	}
	var lines []string
	for _, line := range strings.Split(b.out.String(), "\n") {
		low := strings.ToLower(line)
		if strings.Contains(low, "forbidden") || strings.Contains(low, "kube-otel-bridge run:") || strings.Contains(low, "level=error") {
			lines = append(lines, line)
		}
	}
	if len(lines) > 6 {
		lines = append(lines[:6], fmt.Sprintf("... %d more such lines", len(lines)-6))
	}
	if b.exited() {
		t.Logf("the bridge exited with code %d; its error lines:\n  %s", exitCode(b.err), strings.Join(lines, "\n  "))
		if exitCode(b.err) == 0 {
			t.Errorf("the bridge exited 0 without the permission")
		}
	} else {
		ready := "unknown"
		if maddr != "" {
			code, body, err := httpGet(ctx, maddr, "/readyz")
			ready = fmt.Sprintf("HTTP %d %q %v", code, strings.TrimSpace(body), err)
			if code == http.StatusOK {
				t.Errorf("/readyz answers 200 without the permission")
			}
		}
		t.Logf("the bridge keeps running (readyz: %s); its error lines:\n  %s", ready, strings.Join(lines, "\n  "))
		if whileRunning != nil {
			whileRunning()
		}
		code := b.Stop()
		t.Logf("it exited %d after SIGTERM", code)
	}
	low := strings.ToLower(b.out.String())
	for _, w := range want {
		if !strings.Contains(low, w) {
			t.Errorf("the bridge's output does not name %q", w)
		}
	}
	if strings.Contains(b.out.String(), notWant) {
		t.Errorf("the bridge logged %q without the permission", notWant)
	}
	if t.Failed() {
		t.Logf("bridge output:\n%s", b.out.String())
	}
}
