package main

import (
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
)

// An occurrence's done runs exactly once, after the last of its outputs
// acked (whatever goroutine acks, in whatever order), even though the
// joins are pooled and reused by the next occurrences meanwhile.
func TestAckJoin(t *testing.T) {
	var p pipeline
	const occurrences = 2000
	calls := make([]atomic.Int32, occurrences)
	acked := make([]atomic.Int32, occurrences)
	outputs := make([]int32, occurrences)
	var wg sync.WaitGroup
	for i := range occurrences {
		outputs[i] = int32(1 + rand.Intn(4))
		j := p.join(func() {
			if got := acked[i].Load(); got != outputs[i] {
				t.Errorf("occurrence %d: done after %d of %d acks", i, got, outputs[i])
			}
			calls[i].Add(1)
		})
		ack := j.ack
		for range outputs[i] {
			j.left.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				acked[i].Add(1)
				ack()
			}()
		}
		acked[i].Add(1) // the caller's own count (see occurrence)
		outputs[i]++
		ack()
	}
	wg.Wait()
	for i := range calls {
		if n := calls[i].Load(); n != 1 {
			t.Fatalf("occurrence %d: done ran %d times, want 1", i, n)
		}
	}
}
