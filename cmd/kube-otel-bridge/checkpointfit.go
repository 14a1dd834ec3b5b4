package main

// checkpointFit scales the causality engine's part of the checkpoint (its
// episode marks and open episodes) to what a ConfigMap holds beside the
// Event entries. A save refused as too large halves both budgets and tries
// again; after regrowAfter saves that fitted it tries the next larger step,
// so a burst of roots does not cut the state for good. Budgets are JSON
// bytes before compression.
type checkpointFit struct {
	marks, open int // the budgets at full size
	shift       int // the budgets in use are divided by 1<<shift
	fitted      int // saves that fitted since shift last changed
}

const (
	// maxFitShift: past it the engine's part is left empty but for the
	// mark that keeps trace IDs new (SaveState with budget 0).
	maxFitShift = 6
	// regrowAfter: a minute of saves at the default 5 s interval.
	regrowAfter = 12
)

// budgets returns the marks' and open episodes' budgets to save with now.
func (f *checkpointFit) budgets() (marks, open int) {
	if f.shift > maxFitShift {
		return 0, 0
	}
	return f.marks >> f.shift, f.open >> f.shift
}

// shrink is called when a save was too large; it reports false when there
// is nothing smaller left to try.
func (f *checkpointFit) shrink() bool {
	if f.shift > maxFitShift {
		return false
	}
	f.shift++
	f.fitted = 0
	return true
}

// saved is called after a save that fitted.
func (f *checkpointFit) saved() {
	if f.shift == 0 {
		return
	}
	if f.fitted++; f.fitted >= regrowAfter {
		f.shift--
		f.fitted = 0
	}
}
