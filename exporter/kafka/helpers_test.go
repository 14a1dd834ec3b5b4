package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

const testTopic = "k8s-warnings"

// newCluster starts a one-broker kfake cluster holding testTopic with
// partitions partitions (plus opts) and closes it at the end of the test.
func newCluster(t *testing.T, partitions int32, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(partitions, testTopic)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// freePort returns a loopback port nothing listens on (for a broker that
// starts later).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testConfig is a sink config for the cluster at addrs passing everything.
func testConfig(addrs []string) Config {
	return Config{Name: "test", Brokers: addrs, Topic: testTopic}
}

// fastRetry is the sink's re-produce backoff in tests.
func fastRetry(int) time.Duration { return 100 * time.Millisecond }

// startSink creates a sink with a fast retry backoff, logging into a buffer,
// and shuts it down at the end of the test.
func startSink(t *testing.T, cfg Config, opts ...kgo.Opt) (*Sink, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// franz-go's own retry backoff, for quicker reconnects in tests.
	opts = append([]kgo.Opt{
		kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }),
		kgo.MetadataMinAge(250 * time.Millisecond),
	}, opts...)
	s, err := newSink(cfg, "test-cluster", logger, fastRetry, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sink log:\n%s", logs.String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s, logs
}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// warning returns a Warning occurrence about Pod name (uid "uid-<name>")
// owned by a ReplicaSet and a Deployment.
func warning(name string, count int32) *convert.Occurrence {
	t0 := time.Date(2026, 3, 14, 9, 26, 53, 589793000, time.UTC)
	pod := convert.Ref{Kind: "Pod", APIVersion: "v1", Namespace: "shop", Name: name, UID: "uid-" + name}
	return &convert.Occurrence{
		EventUID:  "ev-" + name,
		EventName: name + ".17f2a9c1d3e4b5a6",
		Namespace: "shop",
		Count:     count,
		Type:      "Warning",
		Reason:    "BackOff",
		Note:      fmt.Sprintf("Back-off restarting failed container (%d)", count),
		Time:      t0.Add(time.Duration(count) * time.Second),
		FirstTime: t0,
		Observed:  t0.Add(time.Duration(count)*time.Second + 100*time.Millisecond),
		Regarding: pod,
		Chain: []convert.Ref{pod,
			{Kind: "ReplicaSet", Name: "web-7bc89", UID: "uid-rs"},
			{Kind: "Deployment", Name: "web", UID: "uid-deploy"}},
		ReportingController: "kubelet",
		SourceHost:          "node-2",
		TraceID:             [16]byte{1, 2, 3},
		SpanID:              [8]byte{4, 5, byte(count)},
	}
}

// acks counts acknowledgements and remembers when they happened.
type acks struct {
	n    atomic.Int64
	mu   sync.Mutex
	when []time.Time
}

func (a *acks) fn() func() {
	return func() {
		a.mu.Lock()
		a.when = append(a.when, time.Now())
		a.mu.Unlock()
		a.n.Add(1)
	}
}

// wait waits until n acks arrived.
func (a *acks) wait(t *testing.T, n int64, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() bool { return a.n.Load() >= n },
		func() string { return fmt.Sprintf("%d of %d acks", a.n.Load(), n) })
}

func eventually(t *testing.T, timeout time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %s", timeout, msg())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// consume reads n records of topic from the start with a plain franz-go
// consumer (plus opts, e.g. TLS or SASL).
func consume(t *testing.T, addrs []string, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	opts = append([]kgo.Opt{
		kgo.SeedBrokers(addrs...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the timeout", len(recs), n)
		}
		for _, e := range fs.Errors() {
			t.Fatalf("fetch %s/%d: %v", e.Topic, e.Partition, e.Err)
		}
		recs = append(recs, fs.Records()...)
	}
	// Nothing more should arrive.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	recs = append(recs, cl.PollFetches(ctx2).Records()...)
	return recs
}

// produceWatch observes the produce requests a cluster receives.
type produceWatch struct {
	mu       sync.Mutex
	acks     []int16
	pids     []int64
	codecs   map[int8]int
	records  atomic.Int64
	requests atomic.Int64
}

func watchProduce(c *kfake.Cluster) *produceWatch {
	w := newProduceWatch()
	w.attach(c)
	return w
}

func newProduceWatch() *produceWatch { return &produceWatch{codecs: map[int8]int{}} }

// attach starts observing c's produce requests.
func (w *produceWatch) attach(c *kfake.Cluster) {
	c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.ProduceRequest)
		w.requests.Add(1)
		w.mu.Lock()
		defer w.mu.Unlock()
		w.acks = append(w.acks, req.Acks)
		for _, tp := range req.Topics {
			for _, p := range tp.Partitions {
				var b kmsg.RecordBatch
				if err := b.ReadFrom(p.Records); err != nil {
					continue
				}
				w.pids = append(w.pids, b.ProducerID)
				w.codecs[int8(b.Attributes&0x07)]++
				w.records.Add(int64(b.NumRecords))
			}
		}
		return nil, nil, false // observe only: the cluster handles it
	})
}

// jsonUnmarshalStrict decodes a record value, failing on unknown fields.
func jsonUnmarshalStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// writeFile writes content to dir/name and returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
