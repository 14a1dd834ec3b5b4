// Package cluster runs a real Kubernetes control plane on loopback for tests:
// etcd, kube-apiserver, kube-controller-manager and kube-scheduler, built from
// their Go modules by `make cluster-bins`, plus kwok fake kubelets whose stages
// (stages.go) emit the events a real kubelet does. Events seen by tests come
// from the real controllers.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options configure a mini cluster. The zero value is usable.
type Options struct {
	// Nodes is how many kwok fake nodes to create (default 3).
	Nodes int
	// BinDir holds the binaries (default: $KOB_CLUSTER_BIN, else <repo>/bin).
	BinDir string
	// Dir is where data, certificates, kubeconfigs and logs go (default: a
	// new temporary directory, removed by Stop).
	Dir string
	// Detach starts the processes in their own sessions so that they outlive
	// the calling program (`make cluster-up`); Stop or StopDir ends them.
	Detach bool
	// StartTimeout bounds Start (default 2m).
	StartTimeout time.Duration
}

// Cluster is a running mini cluster.
type Cluster struct {
	// Config is an admin *rest.Config (system:masters).
	Config *rest.Config
	// Kubeconfig is the path of an admin kubeconfig file.
	Kubeconfig string
	// Client is an admin clientset.
	Client kubernetes.Interface
	// Dir holds the cluster's data, logs and kubeconfigs.
	Dir string
	// Nodes are the names of the fake nodes.
	Nodes []string

	opts    Options
	ownsDir bool
	procsMu sync.Mutex // guards procs: parallel tests add kubelets while others wait for nodes
	procs   []*process
	ports   ports
	caData  []byte
	tokens  map[string]string // user → bearer token
	apiURL  string
	stopped bool
}

type ports struct{ etcdClient, etcdPeer, apiserver, kwok int }

// Component names, also the binaries' names.
const (
	Etcd              = "etcd"
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	Scheduler         = "kube-scheduler"
	Kwok              = "kwok"
)

// Binaries are the programs a mini cluster needs in BinDir.
var Binaries = []string{Etcd, APIServer, ControllerManager, Scheduler, Kwok}

// DefaultBinDir is where `make cluster-bins` puts the binaries.
func DefaultBinDir() string {
	if d := os.Getenv("KOB_CLUSTER_BIN"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "bin")
}

// Start starts a mini cluster and waits until it is ready: API server healthy,
// controllers running, every fake node Ready.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Nodes < 0 {
		return nil, fmt.Errorf("cluster: Nodes must not be negative, got %d", opts.Nodes)
	}
	if opts.BinDir == "" {
		opts.BinDir = DefaultBinDir()
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 2 * time.Minute
	}
	for _, b := range Binaries {
		if _, err := os.Stat(filepath.Join(opts.BinDir, b)); err != nil {
			return nil, fmt.Errorf("cluster: binary %s missing in %s (run `make cluster-bins`): %w", b, opts.BinDir, err)
		}
	}
	c = &Cluster{opts: opts, Dir: opts.Dir}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "kob-cluster-"); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		c.ownsDir = true
	}
	if c.Dir, err = filepath.Abs(c.Dir); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("cluster: %w%s", err, c.logTails())
			_ = c.Stop()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	for _, d := range []string{"etcd", "pki", "logs"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	if err := c.allocatePorts(); err != nil {
		return nil, err
	}
	if err := c.writeSecrets(); err != nil {
		return nil, err
	}
	if err := c.start(Etcd, Etcd, c.etcdArgs()); err != nil {
		return nil, err
	}
	if err := waitTCP(ctx, c.ports.etcdClient); err != nil {
		return nil, fmt.Errorf("etcd did not listen: %w", err)
	}
	if err := c.start(APIServer, APIServer, c.apiserverArgs()); err != nil {
		return nil, err
	}
	if err := c.waitAPIServer(ctx); err != nil {
		return nil, err
	}
	if err := c.writeKubeconfigs(); err != nil {
		return nil, err
	}
	if err := c.startComponents(); err != nil {
		return nil, err
	}
	if err := c.createNodes(ctx); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) allocatePorts() error {
	ps, err := FreePorts(4)
	if err != nil {
		return err
	}
	c.ports = ports{etcdClient: ps[0], etcdPeer: ps[1], apiserver: ps[2], kwok: ps[3]}
	c.apiURL = "https://127.0.0.1:" + strconv.Itoa(c.ports.apiserver)
	return nil
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1.
func FreePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	out := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func (c *Cluster) path(parts ...string) string {
	return filepath.Join(append([]string{c.Dir}, parts...)...)
}

func (c *Cluster) writeSecrets() error {
	c.tokens = map[string]string{}
	users := []struct{ name, groups string }{
		{"admin", "system:masters"},
		{"system:kube-controller-manager", ""},
		{"system:kube-scheduler", ""},
		{"kwok", "system:masters"},
	}
	var csv []byte
	for i, u := range users {
		tok := randomToken()
		c.tokens[u.name] = tok
		csv = fmt.Appendf(csv, "%s,%s,%d,%q\n", tok, u.name, 1000+i, u.groups)
	}
	if err := os.WriteFile(c.path("pki", "tokens.csv"), csv, 0o600); err != nil {
		return err
	}
	key, pub, err := serviceAccountKeys()
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.path("pki", "sa.key"), key, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(c.path("pki", "sa.pub"), pub, 0o600); err != nil {
		return err
	}
	stages, err := StagesYAML()
	if err != nil {
		return err
	}
	return os.WriteFile(c.path("kwok-stages.yaml"), stages, 0o600)
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (c *Cluster) etcdArgs() []string {
	client := "http://127.0.0.1:" + strconv.Itoa(c.ports.etcdClient)
	peer := "http://127.0.0.1:" + strconv.Itoa(c.ports.etcdPeer)
	return []string{
		"--name=default",
		"--data-dir=" + c.path("etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=default=" + peer,
		// A test cluster's data is thrown away: skip fsync, it is the slow part.
		"--unsafe-no-fsync=true",
		"--quota-backend-bytes=4294967296",
		"--log-level=warn",
	}
}

func (c *Cluster) apiserverArgs() []string {
	return []string{
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(c.ports.etcdClient),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.ports.apiserver),
		// No --tls-cert-file: the API server writes a self-signed serving
		// certificate (and its CA) into --cert-dir.
		"--cert-dir=" + c.path("pki"),
		"--token-auth-file=" + c.path("pki", "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + c.path("pki", "sa.pub"),
		"--service-account-signing-key-file=" + c.path("pki", "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	}
}

func (c *Cluster) kubeconfigPath(user string) string {
	if user == "admin" {
		return c.path("kubeconfig")
	}
	return c.path("kubeconfig-" + filepath.Base(user))
}

func (c *Cluster) waitAPIServer(ctx context.Context) error {
	crt := c.path("pki", "apiserver.crt")
	var lastErr error
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := c.exited(); err != nil {
			return false, err
		}
		data, err := os.ReadFile(crt)
		if err != nil || len(data) == 0 {
			lastErr = fmt.Errorf("no serving certificate yet: %v", err)
			return false, nil
		}
		c.caData = data
		c.Config = c.restConfig("admin")
		cs, err := kubernetes.NewForConfig(c.Config)
		if err != nil {
			return false, err
		}
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			lastErr = fmt.Errorf("readyz: %v: %s", err, body)
			return false, nil
		}
		c.Client = cs
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("kube-apiserver not ready: %w (last: %v)", err, lastErr)
	}
	return nil
}

func (c *Cluster) restConfig(user string) *rest.Config {
	return &rest.Config{
		Host:            c.apiURL,
		BearerToken:     c.tokens[user],
		TLSClientConfig: rest.TLSClientConfig{CAData: c.caData},
		QPS:             200,
		Burst:           400,
	}
}

func (c *Cluster) writeKubeconfigs() error {
	for user := range c.tokens {
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters["mini"] = &clientcmdapi.Cluster{Server: c.apiURL, CertificateAuthorityData: c.caData}
		cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: c.tokens[user]}
		cfg.Contexts["mini"] = &clientcmdapi.Context{Cluster: "mini", AuthInfo: user, Namespace: "default"}
		cfg.CurrentContext = "mini"
		if err := clientcmd.WriteToFile(*cfg, c.kubeconfigPath(user)); err != nil {
			return err
		}
	}
	c.Kubeconfig = c.kubeconfigPath("admin")
	return nil
}

func (c *Cluster) controllerManagerArgs() []string {
	kc := c.kubeconfigPath("system:kube-controller-manager")
	return []string{
		"--kubeconfig=" + kc,
		"--secure-port=0",
		"--leader-elect=false",
		// Each controller gets its own service account, as in a real cluster.
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + c.path("pki", "sa.key"),
		"--root-ca-file=" + c.path("pki", "apiserver.crt"),
		"--kube-api-qps=200",
		"--kube-api-burst=400",
		// Notice a lost node (no lease renewal) after 20s instead of 50s.
		"--node-monitor-period=2s",
		"--node-monitor-grace-period=20s",
		"--v=1",
	}
}

func (c *Cluster) schedulerArgs() []string {
	return []string{
		"--kubeconfig=" + c.kubeconfigPath("system:kube-scheduler"),
		"--secure-port=0",
		"--leader-elect=false",
		"--v=1",
	}
}

func (c *Cluster) kwokArgs() []string {
	return []string{
		"--kubeconfig=" + c.kubeconfigPath("kwok"),
		"--config=" + c.path("kwok-stages.yaml"),
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + nodeAnnotation + "=" + nodeAnnotationValue,
		"--node-lease-duration-seconds=10",
		"--cidr=10.244.0.0/16",
		"--node-ip=10.0.0.1",
		"--server-address=127.0.0.1:" + strconv.Itoa(c.ports.kwok),
	}
}

func (c *Cluster) startComponents() error {
	for _, s := range []struct {
		name string
		args []string
	}{
		{ControllerManager, c.controllerManagerArgs()},
		{Scheduler, c.schedulerArgs()},
		{Kwok, c.kwokArgs()},
	} {
		if err := c.start(s.name, s.name, s.args); err != nil {
			return err
		}
	}
	return nil
}

// NodeName is the name of the i-th fake node.
func NodeName(i int) string { return fmt.Sprintf("kwok-node-%d", i) }

func (c *Cluster) createNodes(ctx context.Context) error {
	for i := range c.opts.Nodes {
		name := NodeName(i)
		if err := c.addNode(ctx, name, nodeAnnotationValue, false); err != nil {
			return err
		}
	}
	return nil
}

// TaintDedicated keeps the scheduler off nodes that a test adds for itself;
// such a test places its pods with spec.nodeName.
const TaintDedicated = "fake.kube-otel-bridge.io/dedicated"

// AddNode creates one more fake node that kwok manages, tainted with
// TaintDedicated so other tests' pods stay off it. It becomes Ready by
// itself; use WaitNodesReady to wait.
func (c *Cluster) AddNode(ctx context.Context, name string) error {
	return c.addNode(ctx, name, nodeAnnotationValue, true)
}

func (c *Cluster) addNode(ctx context.Context, name, managedBy string, dedicated bool) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{nodeAnnotation: managedBy},
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
		},
	}
	if dedicated {
		node.Spec.Taints = []corev1.Taint{{Key: TaintDedicated, Value: "true", Effect: corev1.TaintEffectNoSchedule}}
	}
	_, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	c.Nodes = append(c.Nodes, name)
	return nil
}

func (c *Cluster) waitReady(ctx context.Context) error {
	if err := c.WaitNodesReady(ctx, c.Nodes...); err != nil {
		return err
	}
	// The default service account appears once the controller manager runs its
	// controllers; pods cannot be created before.
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := c.exited(); err != nil {
			return false, err
		}
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("controller manager not running controllers: %w", err)
	}
	return nil
}

// WaitNodesReady waits until every named node reports Ready=True.
func (c *Cluster) WaitNodesReady(ctx context.Context, names ...string) error {
	return c.waitNodes(ctx, corev1.ConditionTrue, names...)
}

// WaitNodesNotReady waits until every named node reports Ready other than True.
func (c *Cluster) WaitNodesNotReady(ctx context.Context, names ...string) error {
	return c.waitNodes(ctx, corev1.ConditionFalse, names...)
}

func (c *Cluster) waitNodes(ctx context.Context, want corev1.ConditionStatus, names ...string) error {
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := c.exited(); err != nil {
			return false, err
		}
		for _, n := range names {
			node, err := c.Client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			if nodeReady(node) != want {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("nodes %v not Ready=%s: %w", names, want, err)
	}
	return nil
}

func nodeReady(n *corev1.Node) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

// SetNodeNotReady makes the node's fake kubelet report Ready=False (notReady
// true) or Ready=True again (false). It does not wait.
func (c *Cluster) SetNodeNotReady(ctx context.Context, name string, notReady bool) error {
	val := `"true"`
	if !notReady {
		val = "null"
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, AnnotationNodeNotReady, val)
	_, err := c.Client.CoreV1().Nodes().Patch(ctx, name, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("patch node %s: %w", name, err)
	}
	return nil
}

// AddNodeWithOwnKubelet creates a fake node managed by a kwok process of its
// own, so that SetNodeLost can make just this node's kubelet vanish.
func (c *Cluster) AddNodeWithOwnKubelet(ctx context.Context, name string) error {
	ps, err := FreePorts(1)
	if err != nil {
		return err
	}
	args := c.kwokArgs()
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "--manage-nodes-with-annotation-selector="):
			args[i] = "--manage-single-node=" + name
		case strings.HasPrefix(a, "--server-address="):
			args[i] = "--server-address=127.0.0.1:" + strconv.Itoa(ps[0])
		}
	}
	if err := c.start("kwok-"+name, Kwok, args); err != nil {
		return err
	}
	return c.addNode(ctx, name, "own", true)
}

// SetNodeLost freezes (lost true) or resumes the kwok process of a node made
// by AddNodeWithOwnKubelet. A frozen kubelet renews no lease and posts no
// status, so after the grace period (20s here) the node lifecycle controller
// marks the node NotReady and its pods not ready, as when a machine dies.
func (c *Cluster) SetNodeLost(name string, lost bool) error {
	for _, p := range c.processes() {
		if p.name != "kwok-"+name {
			continue
		}
		sig := syscall.SIGCONT
		if lost {
			sig = syscall.SIGSTOP
		}
		if err := syscall.Kill(-p.pid(), sig); err != nil {
			return fmt.Errorf("signal kubelet of node %s: %w", name, err)
		}
		return nil
	}
	return fmt.Errorf("cluster: node %s has no kubelet of its own (use AddNodeWithOwnKubelet)", name)
}

// RestConfig returns a config authenticated as the cluster admin.
func (c *Cluster) RestConfig() *rest.Config { return rest.CopyConfig(c.Config) }

// Stop ends every process the cluster started and, unless Options.Dir was
// given, removes its data. It is safe to call more than once.
func (c *Cluster) Stop() error {
	if c == nil || c.stopped {
		return nil
	}
	c.stopped = true
	var errs []error
	procs := c.processes()
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].stop(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if c.ownsDir {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PIDs returns the process IDs of the running components.
func (c *Cluster) PIDs() []int {
	procs := c.processes()
	out := make([]int, 0, len(procs))
	for _, p := range procs {
		out = append(out, p.pid())
	}
	return out
}
