// Package racebuild tells tests whether the race detector is on: its runtime
// allocates on its own, so allocation counts (testing.AllocsPerRun) only hold
// in a normal build.
package racebuild

// SkipAllocs skips the calling test in a -race build.
func SkipAllocs(t interface{ Skip(args ...any) }) {
	if Enabled {
		t.Skip("allocation counts do not hold under the race detector")
	}
}
