package causality

import (
	"bytes"
	"testing"
	"time"
)

// restoreSeed is a real checkpoint part: the marks and open episodes of an
// engine halfway through a rollout storm.
func restoreSeed(tb testing.TB) (marks, open []byte) {
	tb.Helper()
	e, err := New(Config{ClusterName: "fuzz", MaxOpenEpisodes: 40})
	if err != nil {
		tb.Fatal(err)
	}
	stream := rolloutStorm(6, 4)
	for i := range stream[:len(stream)/2] {
		o := stream[i].occurrence()
		e.Observe(Input{Occ: o, Now: o.Observed, RootGeneration: 1})
	}
	if open, err = e.SnapshotOpen(1 << 20); err != nil {
		tb.Fatal(err)
	}
	if marks, err = e.SaveState(time.Date(2026, 11, 23, 17, 0, 0, 0, time.UTC), 24*time.Hour, 1<<20); err != nil {
		tb.Fatal(err)
	}
	return marks, open
}

// FuzzRestore: the engine's part of the checkpoint is cluster data (a
// ConfigMap anyone with write access to it can change). Whatever it holds,
// restoring either refuses it with an error or yields an engine that goes on
// without panicking and closes everything at a flush.
func FuzzRestore(f *testing.F) {
	marks, open := restoreSeed(f)
	sep := []byte("\x00--\x00")
	f.Add(append(append(append([]byte{}, marks...), sep...), open...))
	f.Add(append(append([]byte{}, sep...), open...))
	f.Add([]byte(`{}` + string(sep) + `[{"root":{"kind":"Pod"}}]`))
	f.Add([]byte(`null` + string(sep) + `[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, o, _ := bytes.Cut(data, sep)
		e, err := New(Config{ClusterName: "fuzz", MaxOpenEpisodes: 40})
		if err != nil {
			t.Fatal(err)
		}
		if e.RestoreState(m) != nil || e.RestoreOpen(o) != nil {
			return
		}
		stream := rolloutStorm(6, 4)
		for i := len(stream) / 2; i < len(stream); i++ {
			occ := stream[i].occurrence()
			e.Observe(Input{Occ: occ, Now: occ.Observed, RootGeneration: 1})
			if i%5 == 0 {
				e.Advance(occ.Observed)
			}
			if i%17 == 0 && len(occ.Chain) > 0 {
				e.RootDeleted(occ.Chain[len(occ.Chain)-1].UID, occ.Observed)
			}
		}
		if _, _, err := e.SaveOpen(1 << 20); err != nil {
			t.Fatalf("SaveOpen after a restore: %v", err)
		}
		e.Flush()
		if n := e.Stats().OpenEpisodes; n != 0 {
			t.Fatalf("%d episodes open after a flush", n)
		}
	})
}
