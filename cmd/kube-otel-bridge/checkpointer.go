package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
	"github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

// checkpointer saves the checkpoint: the tracker's watermark and entries,
// and the causality engine's marks and open episodes, cut to what fits.
type checkpointer struct {
	store   checkpointStore
	tracker *watch.Tracker
	engine  *causality.Engine
	// engineMu guards engine (the pipeline's lock).
	engineMu sync.Locker
	log      *slog.Logger
	// saved is told of every checkpoint written (metrics).
	saved func(cp *watch.Checkpoint)
	now   func() time.Time

	mu sync.Mutex // one save at a time
	// final: the final save is done; no periodic save still running may
	// overwrite it.
	final bool
	fit   checkpointFit
	// next is the earliest time of the next periodic save: a large
	// checkpoint is written less often (see maxWriteRate).
	next time.Time
}

// maxWriteRate bounds what the periodic saves write to the API server (and
// etcd, which keeps every revision until compaction), averaged: a
// checkpoint of 1 MiB is written every 16 s at most, one of 100 KB at every
// interval. A crash re-reads at most that much more; a graceful stop always
// saves.
const maxWriteRate = 64 << 10 // bytes per second

// checkpointStore is where checkpoints go (watch.ConfigMapStore).
type checkpointStore interface {
	Save(ctx context.Context, cp *watch.Checkpoint) error
	// Size is the size of the last checkpoint saved.
	Size() int
}

func newCheckpointer(store checkpointStore, tracker *watch.Tracker, engine *causality.Engine, engineMu sync.Locker, log *slog.Logger, saved func(*watch.Checkpoint)) *checkpointer {
	return &checkpointer{store: store, tracker: tracker, engine: engine, engineMu: engineMu, log: log, saved: saved, now: time.Now,
		fit: checkpointFit{marks: marksBudget, open: snapshotEpisodesBudget}}
}

// openBudget is the budget for the open episodes the final save carries:
// the one the periodic saves found to fit.
func (c *checkpointer) openBudget() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, open := c.fit.budgets()
	return open
}

// save writes the checkpoint. Periodic saves (final false, open nil) take a
// snapshot of the open episodes; the final one carries open, the episodes
// SaveOpen took out of the engine, and is the last.
func (c *checkpointer) save(ctx context.Context, open []byte, final bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.final {
		return nil
	}
	now := c.now()
	if !final && now.Before(c.next) {
		return nil
	}
	c.final = final
	cp, changed := c.tracker.Snapshot(now)
	if cp == nil || (!changed && !final) {
		return nil // initial list not processed yet, or nothing new
	}
	dropOpen := false
	for {
		marksBudget, openBudget := c.fit.budgets()
		c.engineMu.Lock()
		marks, err := c.engine.SaveState(c.now(), markHorizon, marksBudget)
		saveOpen := open
		if err == nil && !final {
			// Taken after the watermark: every occurrence it covers is in
			// the engine already, so after a crash the open episodes continue
			// and the occurrences read again add nothing twice.
			saveOpen, err = c.engine.SnapshotOpen(openBudget)
		}
		c.engineMu.Unlock()
		if err != nil {
			return err
		}
		if dropOpen {
			saveOpen = nil
		}
		cp.Extra = engineState{Marks: marks, Open: saveOpen}.appendJSON(make([]byte, 0, len(marks)+len(saveOpen)+len(`{"marks":,"open":}`)))
		err = c.store.Save(ctx, cp)
		if errors.Is(err, watch.ErrCheckpointTooLarge) {
			if c.fit.shrink() {
				m, o := c.fit.budgets()
				c.log.Warn("checkpoint too large for its ConfigMap: saving fewer episode marks and open episodes",
					"err", err, "marks_budget_bytes", m, "open_budget_bytes", o)
				continue
			}
			if final && len(saveOpen) > 0 {
				// The final save's open episodes were taken out of the
				// engine already, at the budget that last fitted: they go
				// only when nothing else is left to cut (their object
				// spans are then lost).
				c.log.Error("checkpoint too large for its ConfigMap even without episode marks: open episodes not carried over",
					"err", err, "open_bytes", len(saveOpen))
				dropOpen = true
				continue
			}
		}
		if err != nil {
			return err
		}
		c.fit.saved()
		c.next = now.Add(time.Duration(float64(c.store.Size()) / maxWriteRate * float64(time.Second)))
		if c.saved != nil {
			c.saved(cp)
		}
		return nil
	}
}

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
