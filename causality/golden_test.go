package causality

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"math/rand/v2"
	"testing"
	"time"
)

// goldenOutputs is the SHA-256 of everything the engine returned, in the
// order it returned it, for a rollout storm (with and without Advance per
// occurrence) and a set of fuzz scenarios. It pins the output byte for byte,
// so optimisations of the hot path cannot change a span, an attribute, an ID
// or which call returns it. Update it only for an intended change.
const goldenOutputs = "c18e823069b536d59b6c0369f2acab0c11aca5dcbff796e08d8cea89d5e3f867"

func TestGoldenOutputs(t *testing.T) {
	h := sha256.New()
	for _, advance := range []bool{false, true} {
		stormOutputs(t, h, advance)
	}
	rng := rand.New(rand.NewPCG(20261204, 7))
	for i := 0; i < 60; i++ {
		data := make([]byte, 64+rng.IntN(4096))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		d := runFuzzEngine(t, data)
		writeSpans(h, d.spans)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != goldenOutputs {
		t.Errorf("engine outputs changed: digest %s, want %s", got, goldenOutputs)
	}
}

func stormOutputs(t *testing.T, h hash.Hash, advance bool) {
	stream := rolloutStorm(60, 10)
	e, err := New(Config{ClusterName: "golden", MaxOpenEpisodes: 40})
	if err != nil {
		t.Fatal(err)
	}
	for i := range stream {
		o := stream[i].occurrence()
		if advance {
			writeSpans(h, e.Advance(o.Observed.Add(time.Duration(i%7)*time.Minute)))
		}
		res := e.Observe(Input{Occ: o, Now: o.Observed, RootGeneration: int64(1 + i/400)})
		fmt.Fprintf(h, "result %s %s %d\n", res.TraceID, res.SpanID, len(res.Spans))
		writeSpans(h, res.Spans)
	}
	writeSpans(h, e.Flush())
}

// writeSpans writes one batch of spans in canonical order: the order of
// object spans with equal start times within a batch follows map iteration.
func writeSpans(h hash.Hash, spans []Span) {
	fmt.Fprintf(h, "%s\n", canonical(spans))
}
