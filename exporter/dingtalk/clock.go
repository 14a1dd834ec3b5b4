package dingtalk

import "time"

// Clock is the time source of a Sink: the rate limit, the digest windows,
// the backoffs and the request signatures all use it. Tests inject a fake
// one with WithClock; the default is the wall clock.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer made by a Clock.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time                 { return time.Now() }
func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// limiter is a token bucket of limit tokens (burst = limit) in which every
// token spent comes back exactly window later. Unlike a bucket refilled at a
// constant rate, it never allows more than limit posts in any sliding window,
// which is what DingTalk enforces (a constant-rate bucket would allow 21
// posts within a few seconds of a burst of 20).
//
// Posts are recorded when their response arrived, which is after the server
// counted them, and checked when the next one starts, which is before the
// server counts it: network latency can only make the limiter stricter than
// the server, never looser.
type limiter struct {
	limit  int
	window time.Duration
	spent  []time.Time // ascending; at most limit entries
}

func newLimiter(limit int, window time.Duration) *limiter {
	return &limiter{limit: limit, window: window, spent: make([]time.Time, 0, limit)}
}

func (l *limiter) prune(now time.Time) {
	i := 0
	for i < len(l.spent) && !now.Before(l.spent[i].Add(l.window)) {
		i++
	}
	if i > 0 {
		l.spent = append(l.spent[:0], l.spent[i:]...)
	}
}

// available returns the number of tokens at now.
func (l *limiter) available(now time.Time) int {
	l.prune(now)
	return l.limit - len(l.spent)
}

// wait returns how long until a token is available (0: now).
func (l *limiter) wait(now time.Time) time.Duration {
	l.prune(now)
	if len(l.spent) < l.limit {
		return 0
	}
	return l.spent[0].Add(l.window).Sub(now)
}

// spend records a post at t.
func (l *limiter) spend(t time.Time) {
	if n := len(l.spent); n > 0 && t.Before(l.spent[n-1]) {
		t = l.spent[n-1] // keep ascending if the clock stepped back
	}
	if len(l.spent) == l.limit {
		l.spent = append(l.spent[:0], l.spent[1:]...)
	}
	l.spent = append(l.spent, t)
}

// exhaust spends every token at t: the server told us we are too fast
// (another client posts with the same robot, or its window differs).
func (l *limiter) exhaust(t time.Time) {
	l.spent = l.spent[:0]
	for range l.limit {
		l.spent = append(l.spent, t)
	}
}
