package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// LeaderConfig configures a LeaderElector.
type LeaderConfig struct {
	// Namespace and Name of the Lease; Identity of this candidate.
	Namespace, Name, Identity string
	// LeaseDuration is how long followers wait after the last renewal
	// before they take the Lease; the leader gives up when it could not
	// renew for RenewDeadline; candidates retry every RetryPeriod (with
	// jitter).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// ReleaseOnCancel: when Run's context ends, the leader empties the
	// Lease (once OnStartedLeading returned) so that a follower takes it at
	// once.
	ReleaseOnCancel bool
	// OnStartedLeading runs in its own goroutine when the Lease is won; its
	// context ends when leadership is lost (its cause is then ErrLeaseLost)
	// or Run's context ends. Run keeps (and renews) the Lease until it
	// returned, then returns.
	OnStartedLeading func(context.Context)
	// OnStoppedLeading runs when Run returns (also if it never led).
	OnStoppedLeading func()
	// OnNewLeader, if set, runs in its own goroutine whenever another
	// holder (or this one) is observed.
	OnNewLeader func(identity string)
	Logger      *slog.Logger
}

// ErrLeaseLost is the cause (context.Cause) of the end of OnStartedLeading's
// context when a renewal failed: another candidate may lead already, so the
// work should stop without writing shared state one last time.
var ErrLeaseLost = errors.New("leader Lease lost")

// jitterFactor spreads the candidates' retries (client-go's value).
const jitterFactor = 1.2

// LeaderElector is leader election on a coordination.k8s.io/v1 Lease. It is
// client-go's tools/leaderelection (LeaseLock, uncoordinated) ported onto
// Client, with the same algorithm and timing: that package imports
// client-go's whole typed clientset and its informers.
type LeaderElector struct {
	client *Client
	cfg    LeaderConfig

	mu             sync.RWMutex
	observed       leaderRecord
	observedTime   time.Time
	observedRead   leaderRecord          // the Lease as last read (client-go's observedRawRecord)
	lease          *coordinationv1.Lease // as last read or written
	reportedLeader string
}

// leaderRecord is what a Lease says about its holder (client-go's
// LeaderElectionRecord); comparable, so that a change can be seen.
type leaderRecord struct {
	holder          string
	durationSeconds int
	acquire, renew  int64 // Unix nanoseconds, 0 for the zero time
	transitions     int
	strategy        coordinationv1.CoordinatedLeaseStrategy
	preferredHolder string
}

// NewLeaderElector checks cfg as client-go does.
func NewLeaderElector(c *Client, cfg LeaderConfig) (*LeaderElector, error) {
	switch {
	case cfg.LeaseDuration <= cfg.RenewDeadline:
		return nil, errors.New("leader election: lease duration must be greater than the renew deadline")
	case cfg.RenewDeadline <= time.Duration(jitterFactor*float64(cfg.RetryPeriod)):
		return nil, errors.New("leader election: renew deadline must be greater than retry period × 1.2")
	case cfg.LeaseDuration < 1 || cfg.RenewDeadline < 1 || cfg.RetryPeriod < 1:
		return nil, errors.New("leader election: durations must be positive")
	case cfg.OnStartedLeading == nil || cfg.OnStoppedLeading == nil:
		return nil, errors.New("leader election: OnStartedLeading and OnStoppedLeading must be set")
	case cfg.Identity == "":
		return nil, errors.New("leader election: identity is empty")
	case cfg.Name == "" || cfg.Namespace == "":
		return nil, errors.New("leader election: Lease namespace and name must be set")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &LeaderElector{client: c, cfg: cfg}, nil
}

// Run campaigns until it wins the Lease or ctx ends; once leading it renews
// the Lease until ctx ended and OnStartedLeading returned (or a renewal
// failed), then (ReleaseOnCancel) releases it and returns.
//
// OnStartedLeading's context ends when ctx ends or a renewal fails, and the
// leader's work usually goes on a little after that: on SIGTERM the bridge
// flushes its open episodes and queued records and saves its last
// checkpoint. The Lease stays held (and renewed) until that is done, so that
// no follower starts on a checkpoint the leader is still writing, and Run
// does not return before it (the process would exit in the middle of it).
// After a failed renewal another candidate may lead already; the work is
// stopped at once all the same, and waited for.
func (le *LeaderElector) Run(ctx context.Context) {
	defer le.cfg.OnStoppedLeading()
	if !le.acquire(ctx) {
		return // ctx ended
	}
	work, stopWork := context.WithCancelCause(ctx)
	defer stopWork(nil)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		le.cfg.OnStartedLeading(work)
	}()
	// Renewals outlive ctx: they go on until ctx ended and the work
	// finished (or until one fails).
	renewCtx, stopRenewing := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-ctx.Done():
		case <-renewCtx.Done():
		}
		<-finished
		stopRenewing()
	}()
	le.renew(renewCtx, func() { stopWork(ErrLeaseLost) })
	stopRenewing()
	stopWork(nil)
	<-finished
	if le.cfg.ReleaseOnCancel {
		le.release()
	}
}

func (le *LeaderElector) describe() string { return le.cfg.Namespace + "/" + le.cfg.Name }

// acquire tries every RetryPeriod (jittered) until it holds the Lease.
func (le *LeaderElector) acquire(ctx context.Context) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	succeeded := false
	le.cfg.Logger.Info("attempting to acquire the leader Lease", "lease", le.describe())
	wait.JitterUntilWithContext(ctx, func(ctx context.Context) {
		succeeded = le.tryAcquireOrRenew(ctx)
		le.maybeReportTransition()
		if !succeeded {
			return
		}
		le.cfg.Logger.Info("acquired the leader Lease", "lease", le.describe())
		cancel()
	}, le.cfg.RetryPeriod, jitterFactor, true)
	return succeeded
}

// renew renews every RetryPeriod; it returns when ctx ends, or calls lost
// and returns when a renewal did not succeed within RenewDeadline.
func (le *LeaderElector) renew(ctx context.Context, lost func()) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		err := wait.PollUntilContextTimeout(ctx, le.cfg.RetryPeriod, le.cfg.RenewDeadline, true, func(ctx context.Context) (bool, error) {
			if err := ctx.Err(); err != nil {
				return false, err
			}
			return le.tryAcquireOrRenew(ctx), nil
		})
		le.maybeReportTransition()
		if err == nil || ctx.Err() != nil {
			return
		}
		le.cfg.Logger.Info("failed to renew the leader Lease", "lease", le.describe(), "err", err)
		lost()
		cancel()
	}, le.cfg.RetryPeriod)
}

// release empties the Lease if this candidate holds it.
func (le *LeaderElector) release() bool {
	ctx, cancel := context.WithTimeout(context.Background(), le.cfg.RenewDeadline)
	defer cancel()
	old, err := le.get(ctx)
	if err != nil {
		if !apierrors.IsNotFound(err) {
			le.cfg.Logger.Error("reading the leader Lease to release it", "lease", le.describe(), "err", err)
			return false
		}
		le.cfg.Logger.Info("leader Lease not found", "lease", le.describe())
		return false
	}
	if !le.isLeader() {
		return true
	}
	now := time.Now()
	rec := leaderRecord{transitions: old.transitions, durationSeconds: 1, renew: nanos(now), acquire: nanos(now)}
	if err := le.update(ctx, rec); err != nil {
		le.cfg.Logger.Error("failed to release the leader Lease", "lease", le.describe(), "err", err)
		return false
	}
	le.setObserved(rec)
	return true
}

// tryAcquireOrRenew takes the Lease if it is free or expired, or renews it
// if held; it reports whether this candidate holds it now.
func (le *LeaderElector) tryAcquireOrRenew(ctx context.Context) bool {
	now := time.Now()
	rec := leaderRecord{
		holder:          le.cfg.Identity,
		durationSeconds: int(le.cfg.LeaseDuration / time.Second),
		renew:           nanos(now),
		acquire:         nanos(now),
	}
	// Fast path: the leader renews the Lease it last wrote without reading
	// it first.
	if le.isLeader() && le.isLeaseValid(now) {
		old := le.getObserved()
		rec.acquire, rec.transitions = old.acquire, old.transitions
		if err := le.update(ctx, rec); err == nil {
			le.setObserved(rec)
			return true
		}
	}
	old, err := le.get(ctx)
	if err != nil {
		if !apierrors.IsNotFound(err) {
			le.cfg.Logger.Error("reading the leader Lease", "lease", le.describe(), "err", err)
			return false
		}
		if err := le.create(ctx, rec); err != nil {
			le.cfg.Logger.Error("creating the leader Lease", "lease", le.describe(), "err", err)
			return false
		}
		le.setObserved(rec)
		return true
	}
	// The observed time moves only when the Lease read changed.
	if le.observedRead != old {
		le.setObserved(old)
		le.observedRead = old
	}
	if old.holder != "" && le.isLeaseValid(now) && !le.isLeader() {
		return false // held by another and not expired
	}
	if le.isLeader() {
		rec.acquire, rec.transitions = old.acquire, old.transitions
	} else {
		rec.transitions = old.transitions + 1
	}
	if err := le.update(ctx, rec); err != nil {
		le.cfg.Logger.Error("failed to update the leader Lease", "lease", le.describe(), "err", err)
		return false
	}
	le.setObserved(rec)
	return true
}

func (le *LeaderElector) maybeReportTransition() {
	holder := le.getObserved().holder
	if holder == le.reportedLeader {
		return
	}
	le.reportedLeader = holder
	if le.cfg.OnNewLeader != nil {
		go le.cfg.OnNewLeader(holder)
	}
}

func (le *LeaderElector) isLeader() bool { return le.getObserved().holder == le.cfg.Identity }

func (le *LeaderElector) isLeaseValid(now time.Time) bool {
	le.mu.RLock()
	defer le.mu.RUnlock()
	return le.observedTime.Add(time.Second * time.Duration(le.observed.durationSeconds)).After(now)
}

func (le *LeaderElector) setObserved(r leaderRecord) {
	le.mu.Lock()
	defer le.mu.Unlock()
	le.observed, le.observedTime = r, time.Now()
}

func (le *LeaderElector) getObserved() leaderRecord {
	le.mu.RLock()
	defer le.mu.RUnlock()
	return le.observed
}

// get reads the Lease (and keeps it for the next update).
func (le *LeaderElector) get(ctx context.Context) (leaderRecord, error) {
	l, err := le.client.GetLease(ctx, le.cfg.Namespace, le.cfg.Name)
	if err != nil {
		return leaderRecord{}, err
	}
	le.lease = l
	return recordOf(&l.Spec), nil
}

func (le *LeaderElector) create(ctx context.Context, r leaderRecord) error {
	l, err := le.client.CreateLease(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: le.cfg.Name, Namespace: le.cfg.Namespace},
		Spec:       r.spec(),
	})
	if err != nil {
		return err
	}
	le.lease = l
	return nil
}

func (le *LeaderElector) update(ctx context.Context, r leaderRecord) error {
	if le.lease == nil {
		return fmt.Errorf("lease %s not read yet", le.describe())
	}
	l := le.lease.DeepCopy()
	l.Spec = r.spec()
	l, err := le.client.UpdateLease(ctx, l)
	if err != nil {
		return err
	}
	le.lease = l
	return nil
}

func recordOf(s *coordinationv1.LeaseSpec) leaderRecord {
	var r leaderRecord
	if s.HolderIdentity != nil {
		r.holder = *s.HolderIdentity
	}
	if s.LeaseDurationSeconds != nil {
		r.durationSeconds = int(*s.LeaseDurationSeconds)
	}
	if s.LeaseTransitions != nil {
		r.transitions = int(*s.LeaseTransitions)
	}
	if s.AcquireTime != nil {
		r.acquire = nanos(s.AcquireTime.Time)
	}
	if s.RenewTime != nil {
		r.renew = nanos(s.RenewTime.Time)
	}
	if s.PreferredHolder != nil {
		r.preferredHolder = *s.PreferredHolder
	}
	if s.Strategy != nil {
		r.strategy = *s.Strategy
	}
	return r
}

func (r leaderRecord) spec() coordinationv1.LeaseSpec {
	holder := r.holder
	duration := int32(r.durationSeconds)
	transitions := int32(r.transitions)
	s := coordinationv1.LeaseSpec{
		HolderIdentity:       &holder,
		LeaseDurationSeconds: &duration,
		AcquireTime:          &metav1.MicroTime{Time: fromNanos(r.acquire)},
		RenewTime:            &metav1.MicroTime{Time: fromNanos(r.renew)},
		LeaseTransitions:     &transitions,
	}
	if r.preferredHolder != "" {
		p := r.preferredHolder
		s.PreferredHolder = &p
	}
	if r.strategy != "" {
		st := r.strategy
		s.Strategy = &st
	}
	return s
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
