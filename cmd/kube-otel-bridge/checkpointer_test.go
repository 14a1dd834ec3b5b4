package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
	"github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

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

// limitStore is a checkpoint store that refuses, like ConfigMapStore, what
// encodes to more than limit bytes, and keeps what it saved.
type limitStore struct {
	limit int
	saved []*watch.Checkpoint
	size  int
}

func (s *limitStore) Size() int { return s.size }

func (s *limitStore) Save(_ context.Context, cp *watch.Checkpoint) error {
	data, err := cp.Encode()
	if err != nil {
		return err
	}
	s.size = len(data)
	if len(data) > s.limit {
		return fmt.Errorf("%w: %d bytes", watch.ErrCheckpointTooLarge, len(data))
	}
	c := *cp
	s.saved = append(s.saved, &c)
	return nil
}

// An engine state too large for the store is cut until it fits: every
// save succeeds, with fewer marks (and the time of those left out, so trace
// IDs stay new); the final save drops the open episodes only when nothing
// smaller fits; a store that fits nothing gets an error, never a panic or a
// silent skip.
func TestCheckpointerFitsTheStore(t *testing.T) {
	engine, err := causality.New(causality.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// 2,000 roots with marks closed in the last hour: ≈ 250 KB of JSON.
	now := time.Now()
	var marks []string
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		marks = append(marks, fmt.Sprintf(`{"r":"Deployment/ns/web-%d","g":1,"t":"%016x%016x","i":"%016x","c":%d}`,
			i, rng.Uint64(), rng.Uint64(), rng.Uint64(), now.Add(-time.Duration(i)*time.Second).Unix()))
	}
	if err := engine.RestoreState([]byte("[" + strings.Join(marks, ",") + "]")); err != nil {
		t.Fatal(err)
	}
	tracker := watch.NewTracker(nil, 1000)
	tracker.SetReady()
	rv := uint64(0)
	event := func() {
		rv++
		tracker.Begin(fmt.Sprintf("uid-%d", rv), rv, now, 1, 1)()
	}
	store := &limitStore{limit: 20 << 10}
	var mu sync.Mutex
	clock := now
	newC := func(s checkpointStore) *checkpointer {
		c := newCheckpointer(s, tracker, engine, &mu, slog.New(slog.DiscardHandler), nil)
		c.now = func() time.Time { return clock }
		return c
	}
	c := newC(store)

	savedMarks := func(cp *watch.Checkpoint) (n int, forgot int64, open json.RawMessage) {
		t.Helper()
		var st engineState
		if err := json.Unmarshal(cp.Extra, &st); err != nil {
			t.Fatal(err)
		}
		var m struct {
			Forgot int64             `json:"forgot"`
			Marks  []json.RawMessage `json:"marks"`
		}
		if err := json.Unmarshal(st.Marks, &m); err != nil {
			t.Fatal(err)
		}
		return len(m.Marks), m.Forgot, st.Open
	}
	for i := range regrowAfter + 2 {
		event()
		clock = clock.Add(5 * time.Second)
		if err := c.save(context.Background(), nil, false); err != nil {
			t.Fatalf("save %d: %v", i, err)
		}
		if len(store.saved) != i+1 {
			t.Fatalf("%d saves after %d intervals", len(store.saved), i+1)
		}
		cp := store.saved[len(store.saved)-1]
		n, forgot, _ := savedMarks(cp)
		if n == 0 || n >= 2000 || forgot == 0 {
			t.Fatalf("save %d: %d marks, forgot %d; want some but not all, and the time of those left out", i, n, forgot)
		}
	}
	if c.fit.shift == 0 {
		t.Error("the budgets grew back to a size that does not fit")
	}

	// The final save: open episodes that fit only without marks keep their
	// place; ones that fit in no case go.
	final := func(open json.RawMessage, limit int) (json.RawMessage, error) {
		t.Helper()
		c := newC(&limitStore{limit: limit})
		event()
		err := c.save(context.Background(), open, true)
		if err != nil {
			return nil, err
		}
		_, _, o := savedMarks(c.store.(*limitStore).saved[0])
		return o, nil
	}
	random := func(n int) json.RawMessage {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + rng.IntN(26))
		}
		return json.RawMessage(`["` + string(b) + `"]`)
	}
	open := random(30 << 10) // ≈ 18.5 KB compressed: only without marks
	if o, err := final(open, 20<<10); err != nil || !bytes.Equal(o, open) {
		t.Errorf("final save: %v; open episodes kept: %d bytes of %d", err, len(o), len(open))
	}
	if o, err := final(random(40<<10), 20<<10); err != nil || len(o) != 0 {
		t.Errorf("final save: %v; %d bytes of open episodes that cannot fit kept", err, len(o))
	}
	event()
	if err := c.save(context.Background(), nil, true); err != nil {
		t.Fatal(err)
	}
	n := len(store.saved)
	event()
	if err := c.save(context.Background(), nil, false); err != nil || len(store.saved) != n {
		t.Errorf("a save after the final one wrote (%v)", err)
	}

	// Nothing fits: an error that says so.
	c2 := newC(&limitStore{limit: 10})
	event()
	if err := c2.save(context.Background(), nil, false); !errors.Is(err, watch.ErrCheckpointTooLarge) {
		t.Errorf("a store that fits nothing: %v, want ErrCheckpointTooLarge", err)
	}
}

// A large checkpoint is written less often: after a save of n bytes the
// periodic saves wait n/maxWriteRate; the final save never waits.
func TestCheckpointerBoundsTheWriteRate(t *testing.T) {
	engine, err := causality.New(causality.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tracker := watch.NewTracker(nil, 50000)
	tracker.SetReady()
	now := time.Unix(1764000000, 0)
	rv := uint64(0)
	event := func() {
		rv++
		tracker.Begin(fmt.Sprintf("%08x-0000-4000-8000-%012x", rv, rv), rv, now, 2, 1)()
	}
	for range 20000 { // repeaters: all kept, ≈ 360 KB
		event()
	}
	store := &limitStore{limit: 1 << 20}
	var mu sync.Mutex
	clock := now
	c := newCheckpointer(store, tracker, engine, &mu, slog.New(slog.DiscardHandler), nil)
	c.now = func() time.Time { return clock }
	if err := c.save(context.Background(), nil, false); err != nil || len(store.saved) != 1 {
		t.Fatalf("first save: %v, %d saved", err, len(store.saved))
	}
	wait := time.Duration(float64(store.size) / maxWriteRate * float64(time.Second))
	if wait < 5*time.Second {
		t.Fatalf("a %d-byte checkpoint waits only %s: the test needs a larger one", store.size, wait)
	}
	event()
	clock = clock.Add(wait - time.Second)
	if err := c.save(context.Background(), nil, false); err != nil || len(store.saved) != 1 {
		t.Errorf("saved again after %s of the %s a %d-byte checkpoint waits (%v)", wait-time.Second, wait, store.size, err)
	}
	clock = clock.Add(time.Second)
	if err := c.save(context.Background(), nil, false); err != nil || len(store.saved) != 2 {
		t.Errorf("not saved after the wait (%v)", err)
	}
	event()
	if err := c.save(context.Background(), nil, true); err != nil || len(store.saved) != 3 {
		t.Errorf("the final save waited (%v)", err)
	}
}
