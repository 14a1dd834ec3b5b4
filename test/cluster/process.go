package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one component: a binary with its arguments and log file.
type process struct {
	name string // component name, unique in the cluster
	bin  string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}

	mu  sync.Mutex
	err error // set when the process has exited
}

func (c *Cluster) start(name, bin string, args []string) error {
	p, err := c.spawn(name, bin, args)
	if err != nil {
		return err
	}
	c.procsMu.Lock()
	c.procs = append(c.procs, p)
	c.procsMu.Unlock()
	return nil
}

// processes returns the components started so far.
func (c *Cluster) processes() []*process {
	c.procsMu.Lock()
	defer c.procsMu.Unlock()
	return slices.Clone(c.procs)
}

func (c *Cluster) spawn(name, bin string, args []string) (*process, error) {
	logf, err := os.OpenFile(c.path("logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(c.opts.BinDir, bin), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = c.Dir
	attr := &syscall.SysProcAttr{Setpgid: true}
	if c.opts.Detach {
		attr = &syscall.SysProcAttr{Setsid: true}
	} else {
		// If the test binary dies without calling Stop, the kernel ends the
		// components too, so no test leaves a control plane behind.
		attr.Pdeathsig = syscall.SIGKILL
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, bin: bin, cmd: cmd, log: logf, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		if err == nil {
			err = errors.New("exited")
		}
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		_ = logf.Close()
		close(p.done)
	}()
	if c.opts.Detach {
		if err := os.WriteFile(c.path(name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *process) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	_ = syscall.Kill(pgid, syscall.SIGCONT) // in case it was frozen
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, p.pid())
	}
}

// exited reports the first component that is no longer running.
func (c *Cluster) exited() error {
	for _, p := range c.processes() {
		if err := p.exitErr(); err != nil {
			return fmt.Errorf("%s stopped: %w", p.name, err)
		}
	}
	return nil
}

// Restart stops one component (SIGTERM, or SIGKILL when kill is true) and
// starts it again with the same arguments and ports, e.g. to test what a
// client does when the API server goes away. It does not wait for readiness.
func (c *Cluster) Restart(name string, kill bool) error {
	for _, p := range c.processes() {
		if p.name != name {
			continue
		}
		grace := 10 * time.Second
		if kill {
			grace = 0
		}
		if err := p.stop(grace); err != nil {
			return err
		}
		_ = syscall.Kill(-p.pid(), syscall.SIGCONT) // a frozen process cannot handle SIGTERM
		np, err := c.spawn(name, p.bin, p.cmd.Args[1:])
		if err != nil {
			return err
		}
		c.procsMu.Lock()
		if i := slices.Index(c.procs, p); i >= 0 {
			c.procs[i] = np
		}
		c.procsMu.Unlock()
		return nil
	}
	return fmt.Errorf("cluster: no component %q", name)
}

// WaitAPIServer waits until the API server answers /readyz again.
func (c *Cluster) WaitAPIServer(ctx context.Context) error { return c.waitAPIServer(ctx) }

// logTails returns the last lines of every component's log, for errors.
func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, p := range c.processes() {
		data, err := os.ReadFile(c.path("logs", p.name+".log"))
		if err != nil {
			continue
		}
		lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "\n--- %s (last lines of %s):\n%s", p.name, c.path("logs", p.name+".log"), bytes.Join(lines, []byte("\n")))
	}
	return b.String()
}

func waitTCP(ctx context.Context, port int) error {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", addr, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// serviceAccountKeys returns a PEM private key and public key for signing
// service-account tokens.
func serviceAccountKeys() (keyPEM, pubPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), nil
}

// StopDir ends the processes of a detached cluster started with Dir (see
// `make cluster-down`) and removes the directory.
func StopDir(dir string) error {
	var errs []error
	// Reverse start order: kwok and controllers before the API server and etcd.
	for i := len(Binaries) - 1; i >= 0; i-- {
		pidFile := filepath.Join(dir, Binaries[i]+".pid")
		data, err := os.ReadFile(pidFile)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 {
			errs = append(errs, fmt.Errorf("bad pid file %s", pidFile))
			continue
		}
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil {
			time.Sleep(100 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// CompactEtcd compacts etcd's history up to its current revision (through
// etcd's JSON gateway), as the API server does every 5 minutes: a watch
// that resumes at an earlier resourceVersion then fails with 410 Gone and
// its client lists again. It returns the revision compacted to.
func (c *Cluster) CompactEtcd(ctx context.Context) (int64, error) {
	base := "http://127.0.0.1:" + strconv.Itoa(c.ports.etcdClient)
	post := func(path, body string, out any) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			return fmt.Errorf("etcd %s: %s: %s", path, resp.Status, b)
		}
		return json.NewDecoder(resp.Body).Decode(out)
	}
	var rng struct {
		Header struct {
			Revision string `json:"revision"` // int64 as a string (gRPC gateway JSON)
		} `json:"header"`
	}
	// Any key: only the header's revision is wanted ("/" base64).
	if err := post("/v3/kv/range", `{"key":"Lw==","limit":1}`, &rng); err != nil {
		return 0, err
	}
	rev, err := strconv.ParseInt(rng.Header.Revision, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("etcd revision %q: %w", rng.Header.Revision, err)
	}
	var done struct{}
	if err := post("/v3/kv/compaction", fmt.Sprintf(`{"revision":"%d","physical":true}`, rev), &done); err != nil {
		return 0, err
	}
	return rev, nil
}
