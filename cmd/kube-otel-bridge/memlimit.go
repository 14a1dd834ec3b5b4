package main

import (
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
)

// parseBytes reads a size as $GOMEMLIMIT writes it: a number of bytes with
// an optional unit B, KiB, MiB, GiB or TiB; "off" or "" is 0 (no limit).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "off" {
		return 0, nil
	}
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("want a size such as 64MiB, 500000000 or off, got %q", s)
	}
	return n * mult, nil
}

// applyMemoryLimit sets the Go runtime's soft memory limit to limit bytes
// (0: none) unless $GOMEMLIMIT is set, which the runtime applied already and
// which wins. It returns the limit in force (math.MaxInt64: none).
func applyMemoryLimit(limit int64, gomemlimit string) int64 {
	if gomemlimit != "" || limit <= 0 {
		return debug.SetMemoryLimit(-1) // -1 only reads it
	}
	debug.SetMemoryLimit(limit)
	return limit
}

// syncGCPercent is the GC target while the caches sync at start-up: the
// initial list or watch-list of every watched object passes through the
// heap in a few seconds (decoded metadata, then garbage), and at the
// steady-state GOGC (50 in the manifests) the heap would grow half as much
// again as the peak live heap before collecting. Collecting at 10 % keeps
// the start-up spike close to the live peak for a few seconds of GC work
// (BenchmarkObjectCacheStartup).
const syncGCPercent = 10

// lowGCWhileSyncing lowers the GC target to syncGCPercent and returns the
// function that restores the one in force before. A lower one (GOGC=5) or
// none (GOGC=off) is left alone.
func lowGCWhileSyncing() (restore func()) {
	prev := debug.SetGCPercent(syncGCPercent)
	if prev < 0 || prev <= syncGCPercent {
		debug.SetGCPercent(prev)
		return func() {}
	}
	return func() { debug.SetGCPercent(prev) }
}
