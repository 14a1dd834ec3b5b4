package convert

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestGolden converts every testdata/events/*.yaml Event and compares the
// rendered log record with testdata/golden/<name>.json byte for byte.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "events", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no inputs in testdata/events")
	}
	want := map[string]bool{}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		golden := filepath.Join("testdata", "golden", name+".json")
		want[golden] = true
		t.Run(name, func(t *testing.T) {
			ev, chain, err := loadEvent(in)
			if err != nil {
				t.Fatal(err)
			}
			o, err := FromEvent(ev, EventCount(ev), goldenObserved, Options{})
			if err != nil {
				t.Fatalf("FromEvent: %v", err)
			}
			o.Chain = append(o.Chain, chain...)
			rec := LogRecord(&o)
			got, err := renderRecord(&rec)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			exp, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./convert/ -run TestGolden -update to create it)", err)
			}
			if !bytes.Equal(got, exp) {
				t.Errorf("record for %s differs from %s (rerun with -update if intended)\n--- got\n%s\n--- want\n%s", in, golden, got, exp)
			}
		})
	}
	// No stale golden files without an input.
	goldens, err := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range goldens {
		if !want[g] {
			if *update {
				if err := os.Remove(g); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("stale golden file %s has no input in testdata/events", g)
		}
	}
}
