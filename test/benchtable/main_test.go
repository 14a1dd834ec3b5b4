package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/bench.golden.md")

// TestTable pins the table made of a bench output with repeated runs
// (medians), custom units (kept as written: cpu-ns/occ stays ns), log lines
// in between and a benchmark without -benchmem columns.
func TestTable(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{filepath.Join("testdata", "bench.txt")}, nil, &out); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "bench.golden.md")
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(want) {
		t.Errorf("table:\n%s\nwant (go test ./test/benchtable -update to accept):\n%s", out.String(), want)
	}
}

func TestNoResultsIsAnError(t *testing.T) {
	err := run(nil, strings.NewReader("PASS\nok  \tx\t0.1s\n"), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "no benchmark results") {
		t.Fatalf("err = %v, want no benchmark results", err)
	}
}
