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
