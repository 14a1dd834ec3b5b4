package main

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
)

// The prctl(2) options for a thread's timer slack.
const (
	prSetTimerSlack = 29
	prGetTimerSlack = 30
)

// envTimerSlackExec marks the process the bridge re-executed itself into
// (applyTimerSlack), so that it never does so twice.
const envTimerSlackExec = "KOB_TIMER_SLACK_EXEC"

// applyTimerSlack gives every thread of the process a timer slack of
// slack: the kernel may then delay its timed wake-ups by up to that much
// and serve several with one wake-up. The reason is the Go runtime's
// sysmon thread, which polls every 20µs while the process is busy: on a
// virtual machine each of those wake-ups is a context switch costing more
// than handling an event, and sysmon was a sixth of the bridge's CPU
// (perf, README). The slack is per thread and inherited by the threads a
// thread starts, and sysmon starts before main runs, so it is set on this
// thread and the binary executed again in place (same PID, arguments and
// environment): every thread of the new image inherits it. Once the slack
// is in force (the re-executed process, or a parent that set it) nothing
// happens. It returns an error if the slack cannot be set; the bridge then
// runs with the kernel's default (50µs).
func applyTimerSlack(slack time.Duration) error {
	if slack <= 0 || len(os.Args) < 2 || os.Args[1] != "run" {
		return nil // not the daemon's own process (e.g. a test binary)
	}
	// prctl and exec on the same thread: the slack is a thread's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cur, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prGetTimerSlack, 0, 0)
	if errno != 0 {
		return fmt.Errorf("reading the timer slack: %w", errno)
	}
	if time.Duration(cur) >= slack {
		return nil
	}
	if os.Getenv(envTimerSlackExec) != "" {
		return fmt.Errorf("the timer slack is %s after re-executing, want %s", time.Duration(cur), slack)
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, uintptr(slack.Nanoseconds()), 0); errno != 0 {
		return fmt.Errorf("setting the timer slack: %w", errno)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("re-executing with the timer slack: %w", err)
	}
	err = syscall.Exec(exe, os.Args, append(os.Environ(), envTimerSlackExec+"=1"))
	// Still here: the exec failed. Leave this thread's slack as it was.
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, cur, 0)
	return fmt.Errorf("re-executing with the timer slack: %w", err)
}

// timerSlack is the calling thread's timer slack.
func timerSlack() (time.Duration, error) {
	cur, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prGetTimerSlack, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return time.Duration(cur), nil
}
