package main

import "testing"

// Budgets halve on each refusal down to nothing, and grow back one step
// after regrowAfter saves that fitted.
func TestCheckpointFit(t *testing.T) {
	f := checkpointFit{marks: 1 << 19, open: 1 << 20}
	if m, o := f.budgets(); m != 1<<19 || o != 1<<20 {
		t.Fatalf("full budgets %d, %d", m, o)
	}
	steps := 0
	for f.shrink() {
		steps++
	}
	if steps != maxFitShift+1 {
		t.Errorf("%d shrinks before giving up, want %d", steps, maxFitShift+1)
	}
	if m, o := f.budgets(); m != 0 || o != 0 {
		t.Errorf("smallest budgets %d, %d, want 0, 0", m, o)
	}
	for i := 0; i < regrowAfter-1; i++ {
		f.saved()
	}
	if m, _ := f.budgets(); m != 0 {
		t.Error("grew back before regrowAfter saves")
	}
	f.saved()
	if m, _ := f.budgets(); m != 1<<19>>maxFitShift {
		t.Errorf("after regrowAfter saves the marks' budget is %d, want %d", m, 1<<19>>maxFitShift)
	}
	for i := 0; i < regrowAfter*(maxFitShift+2); i++ {
		f.saved()
	}
	if m, o := f.budgets(); m != 1<<19 || o != 1<<20 {
		t.Errorf("did not grow back to full budgets: %d, %d", m, o)
	}
}
