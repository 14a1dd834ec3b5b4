package kafka

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

var update = flag.Bool("update", false, "rewrite testdata/record.golden.json from the current output")

const goldenFile = "testdata/record.golden.json"

// goldenOccurrence is the occurrence of the documented example record.
func goldenOccurrence() *convert.Occurrence {
	pod := convert.Ref{Kind: "Pod", APIVersion: "v1", Namespace: "shop", Name: "web-7bc89-vz4hj",
		UID: "8d2f6a1c-3b4e-4f5a-9c7d-1e2f3a4b5c6d", ResourceVersion: "48121", FieldPath: "spec.containers{app}"}
	return &convert.Occurrence{
		EventUID:  "5c1b4d3e-8f3a-4c52-9d6e-0b1f2a3c4d5e",
		EventName: "web-7bc89-vz4hj.17f2a9c1d3e4b5a6",
		Namespace: "shop",
		Count:     3,
		Type:      "Warning",
		Reason:    "BackOff",
		Note:      "Back-off restarting failed container app in pod web-7bc89-vz4hj_shop(8d2f6a1c-3b4e-4f5a-9c7d-1e2f3a4b5c6d)",
		Time:      time.Date(2026, 3, 14, 10, 26, 53, 589793000, time.FixedZone("CET", 3600)),
		FirstTime: time.Date(2026, 3, 14, 9, 21, 40, 0, time.UTC),
		Observed:  time.Date(2026, 3, 14, 9, 26, 53, 712000000, time.UTC),
		Regarding: pod,
		Chain: []convert.Ref{pod,
			{Kind: "ReplicaSet", APIVersion: "apps/v1", Namespace: "shop", Name: "web-7bc89", UID: "b7e1c2d3-4a5b-4c6d-8e9f-0a1b2c3d4e5f"},
			{Kind: "Deployment", APIVersion: "apps/v1", Namespace: "shop", Name: "web", UID: "0f1e2d3c-4b5a-4968-8776-655443322110"}},
		ReportingController: "kubelet",
		ReportingInstance:   "node-2",
		SourceHost:          "node-2",
		TraceID:             [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:              [8]byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
	}
}

// goldenValue is the record value (compact JSON) of goldenOccurrence, checked
// against (or, with -update, written to) the golden file.
func goldenValue(t *testing.T) []byte {
	t.Helper()
	got, err := NewRecord("prod-eu-1", goldenOccurrence()).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, got, "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenFile, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Fatalf("record differs from %s (go test -update rewrites it):\n got: %s\nwant: %s", goldenFile, pretty.Bytes(), want)
	}
	return got
}

func TestRecordGolden(t *testing.T) {
	v := goldenValue(t)
	if !json.Valid(v) || bytes.Contains(v, []byte("\n")) {
		t.Errorf("value must be one compact JSON object: %s", v)
	}
	// Flat JSON with real types, not JSON in a string.
	var m map[string]any
	if err := json.Unmarshal(v, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["count"].(float64); !ok {
		t.Errorf("count is %T, want a number", m["count"])
	}
	if _, ok := m["involvedObject"].(map[string]any); !ok {
		t.Errorf("involvedObject is %T, want an object", m["involvedObject"])
	}
	chain := m["ownerChain"].([]any)
	if root := chain[0].(map[string]any); root["kind"] != "Deployment" {
		t.Errorf("ownerChain must start at the root, got %v", chain)
	}
	if last := chain[len(chain)-1].(map[string]any); last["kind"] != "Pod" {
		t.Errorf("ownerChain must end at the involved object, got %v", chain)
	}
	if m["time"] != "2026-03-14T09:26:53.589793000Z" {
		t.Errorf("time %v: want RFC 3339 UTC with fraction", m["time"])
	}
}

// TestSchemaDocMatchesGolden keeps the example in Record's doc comment equal
// to the golden file.
func TestSchemaDocMatchesGolden(t *testing.T) {
	src, err := os.ReadFile("record.go")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc strings.Builder
	for _, line := range strings.SplitAfter(string(golden), "\n") {
		if line != "" {
			doc.WriteString("//\t" + line)
		}
	}
	if !strings.Contains(string(src), doc.String()) {
		t.Errorf("the example in Record's doc comment must be %s, indented by a tab:\n%s", goldenFile, doc.String())
	}
}

func TestRecordOptionalFields(t *testing.T) {
	o := &convert.Occurrence{
		EventUID: "e", EventName: "n", Namespace: "default", Count: 1, Type: "Warning", Reason: "R",
		Note:      "<b>&</b>",
		Observed:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Regarding: convert.Ref{Kind: "Node", Name: "node-1"},
	}
	v, err := NewRecord("c", o).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cluster":"c","eventUid":"e","eventName":"n","namespace":"default","count":1,"type":"Warning","reason":"R",` +
		`"action":"","message":"<b>&</b>","time":"2026-01-02T03:04:05.000000000Z","observedTime":"2026-01-02T03:04:05.000000000Z",` +
		`"involvedObject":{"kind":"Node","name":"node-1"},"ownerChain":[{"kind":"Node","name":"node-1"}]}`
	if string(v) != want {
		t.Errorf("got  %s\nwant %s", v, want)
	}

	o.NoteTruncated, o.NoteOriginalBytes = true, 70000
	o.Related = &convert.Ref{Kind: "Pod", Name: "p", Namespace: "default", UID: "u"}
	r := NewRecord("c", o)
	if !r.MessageTruncated || r.MessageOriginalBytes != 70000 || r.Related == nil || r.Related.UID != "u" {
		t.Errorf("truncation/related not carried: %+v", r)
	}
}

func TestRecordKey(t *testing.T) {
	for _, tc := range []struct {
		o    convert.Occurrence
		want string
	}{
		{convert.Occurrence{EventUID: "e", Namespace: "ns", Regarding: convert.Ref{Kind: "Pod", Namespace: "ns", Name: "p", UID: "u"}}, "u"},
		{convert.Occurrence{EventUID: "e", Namespace: "ns", Regarding: convert.Ref{Kind: "Pod", Namespace: "ns", Name: "p"}}, "ns/Pod/p"},
		{convert.Occurrence{EventUID: "e", Namespace: "default", Regarding: convert.Ref{Kind: "Node", Name: "n1"}}, "default/Node/n1"},
		{convert.Occurrence{EventUID: "e", Namespace: "ns"}, "e"},
	} {
		if got := RecordKey(&tc.o); got != tc.want {
			t.Errorf("%+v: key %q, want %q", tc.o.Regarding, got, tc.want)
		}
	}
}
