//go:build !linux

package main

import "time"

// applyTimerSlack: only Linux has a per-thread timer slack (prctl).
func applyTimerSlack(time.Duration) error { return nil }

// timerSlack is unknown outside Linux.
func timerSlack() (time.Duration, error) { return 0, nil }
