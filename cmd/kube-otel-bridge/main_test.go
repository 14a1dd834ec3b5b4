package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := mainErr([]string{"version"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "kube-otel-bridge ") || !strings.Contains(out.String(), "go1.") {
		t.Errorf("version output %q", out.String())
	}
}

// The README's first command (`make run`) replays the bundled recording.
func TestReplayBundledRecordingShowsPodEvents(t *testing.T) {
	var out, errb bytes.Buffer
	if code := mainErr([]string{"replay", "../../examples/recordings/rollout.jsonl", "--output", "tree"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	s := out.String()
	for _, want := range []string{"Deployment ", "ReplicaSet ", "Pod ", "ScalingReplicaSet", "SuccessfulCreate", "Scheduled", "Pulling", "Started", "Killing"} {
		if !strings.Contains(s, want) {
			t.Errorf("replay output lacks %q:\n%s", want, s)
		}
	}
}

func TestReplayJSONIsDeterministic(t *testing.T) {
	run := func() string {
		var out, errb bytes.Buffer
		if code := mainErr([]string{"replay", "--output", "json", "../../examples/recordings/rollout.jsonl"}, &out, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		return out.String()
	}
	a, b := run(), run()
	if a != b || a == "" {
		t.Fatalf("two replays differ or are empty")
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"replay"},
		{"replay", "x.jsonl", "--output", "yaml"},
		{"replay", "/nonexistent.jsonl"},
		{"run", "--otlp-compression", "zstd"},
		{"run", "--otlp-client-cert", "/tmp/x.crt"},
		{"run", "--otlp-header", "novalue"},
		{"run", "--max-message-bytes", "0"},
		{"record"},
	} {
		var out, errb bytes.Buffer
		if code := mainErr(args, &out, &errb); code == 0 {
			t.Errorf("%v: exit 0, want an error", args)
		} else if errb.Len() == 0 {
			t.Errorf("%v: no message on stderr", args)
		}
	}
}

// The run options' checks name the flag (and config key) at fault; the
// defaults pass them.
func TestRunOptionsErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" : valid
	}{
		{nil, ""},
		{[]string{"--otlp-batch-timeout", "50ms", "--otlp-batch-size", "2048", "--otlp-queue-size", "2048"}, ""},
		{[]string{"--otlp-batch-timeout", "0"}, "--otlp-batch-timeout (otlp.batchTimeout)"},
		{[]string{"--otlp-batch-timeout", "1m"}, "--otlp-batch-timeout (otlp.batchTimeout)"},
		{[]string{"--otlp-batch-size", "0"}, "--otlp-batch-size (otlp.batchSize)"},
		{[]string{"--otlp-queue-size", "0"}, "--otlp-queue-size (otlp.queueSize)"},
		{[]string{"--otlp-queue-size", "100"}, "--otlp-batch-size (otlp.batchSize): 512 is larger than --otlp-queue-size (otlp.queueSize) 100"},
		{[]string{"--otlp-timeout", "-1s"}, "--otlp-timeout (otlp.timeout)"},
		{[]string{"--pprof", "--pprof-mem-rate", "4096"}, ""},
		{[]string{"--pprof-mem-rate", "4096"}, "--pprof-mem-rate 4096"},
		{[]string{"--pprof", "--pprof-mem-rate", "-1"}, "--pprof-mem-rate -1"},
	} {
		var o runOptions
		fs := runFlags(&o)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := o.validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want one naming %q", tc.args, err, tc.want)
		}
	}
}

func TestShards(t *testing.T) {
	for _, bad := range []string{"1", "2/2", "-1/3", "a/b", "0/0"} {
		if _, _, err := parseShard(bad); err == nil {
			t.Errorf("--shard %q accepted", bad)
		}
	}
	counts := make([]int, 4)
	for i := range 400 {
		counts[shardOf("ns-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26)), 4)]++
	}
	for i, c := range counts {
		if c == 0 {
			t.Errorf("shard %d got no namespace of 400", i)
		}
	}
	if shardOf("", 4) != 0 {
		t.Error("cluster-scoped objects must go to shard 0")
	}
	if a, b := shardOf("shop", 4), shardOf(string([]byte("shop")), 4); a != b {
		t.Error("shard of a namespace must be stable")
	}
}

func TestReplayToOTLPReceiver(t *testing.T) {
	r := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
	var out, errb bytes.Buffer
	if code := mainErr([]string{"replay", "../../examples/recordings/rollout.jsonl", "--output", "otlp",
		"--otlp-endpoint", r.Addr(), "--otlp-insecure", "--cluster-name", "replay"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	spans, logs := r.Spans(), r.Logs()
	if len(logs) != 49 || len(spans) < 49 {
		t.Fatalf("receiver got %d logs and %d spans; want 49 logs (one per occurrence) and their spans", len(logs), len(spans))
	}
	ids := map[string]bool{}
	for _, s := range spans {
		ids[string(s.Span.SpanId)] = true
	}
	for _, l := range logs {
		if !ids[string(l.Record.SpanId)] {
			t.Fatalf("log record %q links to a span that was not sent", l.Record.Body.GetStringValue())
		}
	}
}
