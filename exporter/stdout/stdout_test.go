package stdout

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
)

var t0 = time.Date(2026, 11, 23, 16, 40, 44, 0, time.UTC)

func tid(b byte) trace.TraceID { return trace.TraceID{15: b} }
func sid(b byte) trace.SpanID  { return trace.SpanID{7: b} }

// sample is two traces: a rollout-like tree and a single warning.
func sample() []causality.Span {
	ms := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Millisecond) }
	return []causality.Span{
		{TraceID: tid(1), SpanID: sid(1), Name: "Deployment web", Kind: causality.KindRoot, Start: ms(0), End: ms(1500), Service: "kube-otel-bridge",
			Attributes: []attribute.KeyValue{attribute.Int("k8s.episode.events", 4), attribute.Int("k8s.episode.warnings", 1), attribute.String("k8s.episode.close_reason", "idle")},
			Links:      []causality.Link{{TraceID: tid(9), SpanID: sid(9)}}},
		{TraceID: tid(1), SpanID: sid(2), Parent: sid(1), Name: "Deployment.ScalingReplicaSet", Kind: causality.KindEvent, Start: ms(0), End: ms(1500), Seq: 1, Service: "deployment-controller",
			Attributes: []attribute.KeyValue{attribute.String("k8s.event.note", "Scaled up replica set web-1 from 0 to 1")}},
		{TraceID: tid(1), SpanID: sid(3), Parent: sid(2), Name: "Pod web-1-a", Kind: causality.KindObject, Start: ms(20), End: ms(1500), Service: "kube-otel-bridge"},
		{TraceID: tid(1), SpanID: sid(5), Parent: sid(3), Name: "Pod.BackOff", Kind: causality.KindEvent, Start: ms(1500), End: ms(1500), Seq: 4, Service: "kubelet",
			Error: true, StatusMessage: "Back-off", Attributes: []attribute.KeyValue{attribute.Int("k8s.event.count", 3),
				attribute.String("k8s.event.note", "Back-off restarting failed container app in pod web-1-a\nwith a second line and a very long tail that must be cut somewhere")}},
		{TraceID: tid(1), SpanID: sid(4), Parent: sid(3), Name: "Pod.Scheduled", Kind: causality.KindEvent, Start: ms(20), End: ms(20), Seq: 2, Service: "default-scheduler",
			Attributes: []attribute.KeyValue{attribute.Int("k8s.event.count", 1), attribute.String("k8s.event.note", "Successfully assigned ns/web-1-a to node-1")}},
		{TraceID: tid(2), SpanID: sid(1), Name: "Pod huge", Kind: causality.KindRoot, Start: ms(-5000), End: ms(-5000), Service: "kube-otel-bridge"},
		{TraceID: tid(2), SpanID: sid(2), Parent: sid(1), Name: "Pod.FailedScheduling", Kind: causality.KindEvent, Start: ms(-5000), End: ms(-5000), Seq: 3, Service: "default-scheduler", Error: true},
	}
}

const wantTree = `trace 00000000000000000000000000000002  Pod huge  0.000s
Pod huge                                                         +0.000s  0.000s
└─ ! Pod.FailedScheduling                                        +0.000s  

trace 00000000000000000000000000000001  Deployment web  1.500s  4 events, 1 warnings  (closed: idle)  → follows trace 00000000000000000000000000000009
Deployment web                                                   +0.000s  1.500s
└─   Deployment.ScalingReplicaSet                                +0.000s  Scaled up replica set web-1 from 0 to 1
   └─ Pod web-1-a                                                +0.020s  1.480s
      ├─   Pod.Scheduled                                         +0.020s  Successfully assigned ns/web-1-a to node-1
      └─ ! Pod.BackOff ×3                                        +1.500s  Back-off restarting failed container app in pod web-1-a with a second line and a very l...

`

func TestTree(t *testing.T) {
	var b bytes.Buffer
	if err := Tree(&b, sample()); err != nil {
		t.Fatal(err)
	}
	if b.String() != wantTree {
		t.Errorf("tree:\n%s\nwant:\n%s", b.String(), wantTree)
	}
}

// The writers' output depends on the spans, not on the order they came in
// (the engine exports event spans before their parents).
func TestOutputIndependentOfSpanOrder(t *testing.T) {
	var wantT, wantJ bytes.Buffer
	if err := Tree(&wantT, sample()); err != nil {
		t.Fatal(err)
	}
	if err := JSON(&wantJ, sample()); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 50; i++ {
		spans := sample()
		rng.Shuffle(len(spans), func(i, j int) { spans[i], spans[j] = spans[j], spans[i] })
		var gotT, gotJ bytes.Buffer
		_ = Tree(&gotT, spans)
		_ = JSON(&gotJ, spans)
		if gotT.String() != wantT.String() || gotJ.String() != wantJ.String() {
			t.Fatalf("order %d changed the output:\n%s\n%s", i, gotT.String(), gotJ.String())
		}
	}
}

// JSON lines: parents before children, trace by trace, every field set.
func TestJSON(t *testing.T) {
	var b bytes.Buffer
	if err := JSON(&b, sample()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != len(sample()) {
		t.Fatalf("%d lines for %d spans", len(lines), len(sample()))
	}
	seen := map[string]bool{}
	for _, l := range lines {
		var s jsonSpan
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatal(err)
		}
		if s.Parent != "" && !seen[s.TraceID+s.Parent] {
			t.Errorf("%q before its parent", s.Name)
		}
		seen[s.TraceID+s.SpanID] = true
		if s.Service == "" || s.Start.IsZero() || s.Kind == "" {
			t.Errorf("incomplete line %s", l)
		}
	}
	if !strings.Contains(lines[2], `"links":[{"traceId":"00000000000000000000000000000009","spanId":"0000000000000009"}]`) {
		t.Errorf("root line %s", lines[2])
	}
	if !strings.Contains(lines[6], `"error":true,"status":"Back-off"`) {
		t.Errorf("warning line %s", lines[6])
	}
}

// A span whose parent is missing is shown as an extra root, not dropped.
func TestOrphansShown(t *testing.T) {
	spans := sample()
	spans[2].Parent = sid(77) // Pod web-1-a loses its parent
	var tree, js bytes.Buffer
	_ = Tree(&tree, spans)
	_ = JSON(&js, spans)
	if !strings.Contains(tree.String(), "\nPod web-1-a ") || !strings.Contains(tree.String(), "Pod.Scheduled") {
		t.Errorf("orphan hidden:\n%s", tree.String())
	}
	if n := strings.Count(js.String(), "\n"); n != len(spans) {
		t.Errorf("%d JSON lines for %d spans", n, len(spans))
	}
}
