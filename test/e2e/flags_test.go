package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

// normalize lower-cases s and drops dashes and underscores, so that a flag
// (--otlp-client-key) and the setting behind it (ClientKeyFile) compare.
func normalize(s string) string {
	return strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(s))
}

func TestBadFlags(t *testing.T) {
	needCluster(t)
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  []string
		// flag is the offending flag; want are further strings the message
		// must contain.
		flag string
		want []string
		// setting is what the message must name at least (normalized):
		// the flag or the configuration field behind it.
		setting string
		code    int // 0: any non-zero code
	}{
		{"compression", []string{"--otlp-insecure", "--otlp-compression", "zstd"}, nil, "--otlp-compression", []string{"zstd"}, "compression", 0},
		{"client cert without key", []string{"--otlp-client-cert", "x"}, nil, "--otlp-client-key", nil, "clientkey", 0},
		{"client key without cert", []string{"--otlp-client-key", "x"}, nil, "--otlp-client-cert", nil, "clientcert", 0},
		{"header with unset variable", []string{"--otlp-insecure", "--otlp-header", "authorization=Bearer ${E2E_UNSET_TOKEN}"}, nil, "--otlp-header", []string{"E2E_UNSET_TOKEN"}, "header", 0},
		{"endpoint with scheme", []string{"--otlp-insecure", "--otlp-endpoint", "http://collector:4317"}, nil, "--otlp-endpoint", []string{"http://collector:4317"}, "endpoint", 0},
		{"ca file with insecure", []string{"--otlp-insecure", "--otlp-ca-file", "/nonexistent/ca.pem"}, nil, "--otlp-ca-file", nil, "cafile", 0},
		{"log format", []string{"--otlp-insecure", "--log-format", "xml"}, nil, "--log-format", []string{"xml"}, "logformat", 0},
		{"namespace included and excluded", []string{"--otlp-insecure", "--namespaces", "a,b", "--exclude-namespaces", "b"}, nil, "--exclude-namespaces", []string{`"b"`}, "excluded", 0},
		{"checkpoint entries past a ConfigMap", []string{"--otlp-insecure", "--checkpoint-max-events", "100000"}, nil, "--checkpoint-max-events", []string{"100000"}, "checkpointmaxevents", 0},
		{"unknown flag", []string{"--no-such-flag"}, nil, "-no-such-flag", nil, "nosuchflag", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := append([]string{"run", "--kubeconfig", shared.Kubeconfig, "--otlp-endpoint", "127.0.0.1:4317"}, tt.args...)
			cmd := exec.CommandContext(ctx, bridgeBin, args...)
			cmd.Env = append(hermeticEnv(), tt.env...)
			start := time.Now()
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("%v: %v, want a non-zero exit\n%s", args, err, out)
			}
			msg := string(out)
			t.Logf("exit %d after %s: %s", ee.ExitCode(), time.Since(start).Round(time.Millisecond), strings.TrimSpace(msg))
			if tt.code != 0 && ee.ExitCode() != tt.code {
				t.Errorf("exit code %d, want %d", ee.ExitCode(), tt.code)
			}
			if !strings.Contains(normalize(msg), tt.setting) {
				t.Errorf("message does not name the setting %s (%s)", tt.flag, tt.setting)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q", w)
				}
			}
			if strings.Contains(msg, "watching events") {
				t.Errorf("the bridge started watching despite the bad flags")
			}
			if !strings.Contains(msg, tt.flag) {
				t.Errorf("message does not name the flag %s", tt.flag)
			}
		})
	}
}

// The bridge runs with its timer slack (--timer-slack, applied by executing
// itself again at start: same PID), or the kernel's default with 0; a bad
// value is refused.
func TestTimerSlack(t *testing.T) {
	needCluster(t)
	t.Parallel()
	rcv := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	ns := shared.NewNamespace(t)
	ctx := ctxFor(t, time.Minute)
	slackOf := func(pid int) string {
		t.Helper()
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/timerslack_ns", pid))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(data))
	}
	for _, c := range []struct {
		args []string
		want string
	}{{nil, "5000000"}, {[]string{"--timer-slack", "2ms"}, "2000000"}, {[]string{"--timer-slack", "0"}, slackOf(os.Getpid())}} {
		b := startBridge(t, rcv.Addr(), bridgeOpts{Namespaces: ns, Args: c.args})
		_ = b.metricsAddr(ctx) // up and serving: past the start
		if got := slackOf(b.cmd.Process.Pid); got != c.want {
			t.Errorf("%v: timer slack %s ns, want %s", c.args, got, c.want)
		}
	}
	cmd := exec.CommandContext(ctx, bridgeBin, "run", "--kubeconfig", shared.Kubeconfig, "--otlp-insecure", "--otlp-endpoint", "127.0.0.1:4317", "--timer-slack", "2s")
	cmd.Env = hermeticEnv()
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "--timer-slack") {
		t.Errorf("--timer-slack 2s: %v, %s; want it refused", err, out)
	}
}
