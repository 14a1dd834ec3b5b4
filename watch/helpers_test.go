package watch

import (
	"sync"
	"testing"
	"time"
)

// testT0 is the reference time of the tests' fake clocks.
var testT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is an injectable clock that only moves when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// waitFor polls cond every few milliseconds until it holds or the timeout
// passes, then fails the test with msg.
func waitFor(t *testing.T, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// objects returns every object in c.
func (c *ObjectCache) objects() []*Object {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*Object
	for e := range c.uuids.all() {
		out = append(out, c.objectLocked(e, "", ""))
	}
	for uid, e := range c.byStr {
		out = append(out, c.objectLocked(e, uid, ""))
	}
	return out
}
