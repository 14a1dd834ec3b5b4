package main

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "off": 0, "0": 0, "1000": 1000, "512B": 512, "64KiB": 64 << 10, "48MiB": 48 << 20, " 2GiB ": 2 << 30, "1TiB": 1 << 40} {
		got, err := parseBytes(in)
		if err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"48MB", "-1", "1.5GiB", "MiB", "lots", "99999999999TiB"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q): no error", in)
		}
	}
}

func TestApplyMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	debug.SetMemoryLimit(math.MaxInt64)
	if got := applyMemoryLimit(48<<20, ""); got != 48<<20 || debug.SetMemoryLimit(-1) != 48<<20 {
		t.Errorf("limit %d, runtime %d; want 48 MiB", got, debug.SetMemoryLimit(-1))
	}
	debug.SetMemoryLimit(math.MaxInt64)
	// $GOMEMLIMIT (applied by the runtime at start) wins; 0 leaves it.
	if got := applyMemoryLimit(48<<20, "100MiB"); got != math.MaxInt64 {
		t.Errorf("with $GOMEMLIMIT: limit %d, want the runtime's", got)
	}
	if got := applyMemoryLimit(0, ""); got != math.MaxInt64 {
		t.Errorf("off: limit %d, want none", got)
	}
}

// The GC target is lowered while the caches sync and restored after; a
// target already lower, or GC off, is left alone.
func TestLowGCWhileSyncing(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	for _, c := range []struct{ before, during int }{{50, syncGCPercent}, {100, syncGCPercent}, {5, 5}, {syncGCPercent, syncGCPercent}, {-1, -1}} {
		debug.SetGCPercent(c.before)
		restore := lowGCWhileSyncing()
		if got := debug.SetGCPercent(-1); got != c.during {
			t.Errorf("GOGC %d: %d while syncing, want %d", c.before, got, c.during)
		}
		debug.SetGCPercent(c.during)
		restore()
		if got := debug.SetGCPercent(100); got != c.before {
			t.Errorf("GOGC %d: %d after the sync", c.before, got)
		}
	}
}
