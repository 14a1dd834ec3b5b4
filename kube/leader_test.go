package kube

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// leaseServer is an API server holding Leases in memory, with the API
// server's optimistic concurrency (resourceVersion) on updates.
func leaseServer(t *testing.T) (*rest.Config, func(name string) *coordinationv1.Lease) {
	t.Helper()
	cfg, get, _ := leaseServerFailing(t)
	return cfg, get
}

// leaseServerFailing is leaseServer with a switch that makes it answer
// every request with 500 (an API server that is down for the leader).
func leaseServerFailing(t *testing.T) (*rest.Config, func(name string) *coordinationv1.Lease, *atomic.Bool) {
	t.Helper()
	var failing atomic.Bool
	var mu sync.Mutex
	leases := map[string]*coordinationv1.Lease{}
	rv := 0
	status := func(w http.ResponseWriter, code int, reason metav1.StatusReason) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: "Failure", Reason: reason, Code: int32(code)})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if failing.Load() {
			status(w, 500, metav1.StatusReasonInternalError)
			return
		}
		const prefix = "/apis/coordination.k8s.io/v1/namespaces/ns/leases"
		var l coordinationv1.Lease
		switch r.Method {
		case http.MethodGet:
			cur, ok := leases[r.URL.Path[len(prefix)+1:]]
			if !ok {
				status(w, 404, metav1.StatusReasonNotFound)
				return
			}
			l = *cur
		case http.MethodPost, http.MethodPut:
			if err := json.NewDecoder(r.Body).Decode(&l); err != nil {
				status(w, 400, metav1.StatusReasonBadRequest)
				return
			}
			cur, ok := leases[l.Name]
			switch {
			case r.Method == http.MethodPost && ok:
				status(w, 409, metav1.StatusReasonAlreadyExists)
				return
			case r.Method == http.MethodPut && (!ok || cur.ResourceVersion != l.ResourceVersion):
				status(w, 409, metav1.StatusReasonConflict)
				return
			}
			rv++
			l.ResourceVersion = strconv.Itoa(rv)
			l.TypeMeta = metav1.TypeMeta{Kind: "Lease", APIVersion: "coordination.k8s.io/v1"}
			leases[l.Name] = l.DeepCopy()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&l)
	}))
	t.Cleanup(srv.Close)
	cfg := &rest.Config{Host: srv.URL}
	cfg.ContentType = "application/json"
	return cfg, func(name string) *coordinationv1.Lease {
		mu.Lock()
		defer mu.Unlock()
		if l, ok := leases[name]; ok {
			return l.DeepCopy()
		}
		return nil
	}, &failing
}

type candidate struct {
	le      *LeaderElector
	leading chan struct{} // closed when it starts leading
	ledAt   time.Time     // when it started leading; read after leading is closed
	stopped chan struct{} // closed when Run returned
	mu      sync.Mutex
	leaders []string // OnNewLeader calls
}

// waitLeading fails the test unless cd leads within d.
func waitLeading(t *testing.T, cd *candidate, d time.Duration) {
	t.Helper()
	select {
	case <-cd.leading:
	case <-time.After(d):
		t.Fatalf("%s did not lead within %s", cd.le.cfg.Identity, d)
	}
}

func startCandidate(t *testing.T, ctx context.Context, c *Client, id string) *candidate {
	t.Helper()
	return startCandidateWork(t, ctx, c, id, nil)
}

// startCandidateWork is startCandidate whose leader, once it leads, runs
// work (if not nil) with OnStartedLeading's context.
func startCandidateWork(t *testing.T, ctx context.Context, c *Client, id string, work func(context.Context)) *candidate {
	t.Helper()
	cd := &candidate{leading: make(chan struct{}), stopped: make(chan struct{})}
	le, err := NewLeaderElector(c, LeaderConfig{
		Namespace: "ns", Name: "lease", Identity: id,
		LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 50 * time.Millisecond,
		ReleaseOnCancel: true,
		OnStartedLeading: func(ctx context.Context) {
			cd.ledAt = time.Now()
			close(cd.leading)
			if work != nil {
				work(ctx)
			}
		},
		OnStoppedLeading: func() {},
		OnNewLeader: func(l string) {
			cd.mu.Lock()
			cd.leaders = append(cd.leaders, l)
			cd.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cd.le = le
	go func() { defer close(cd.stopped); le.Run(ctx) }()
	return cd
}

func TestLeaderElection(t *testing.T) {
	cfg, lease := leaseServer(t)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	actx, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	a := startCandidate(t, actx, c, "a")
	waitLeading(t, a, 5*time.Second)
	bctx, cancelB := context.WithCancel(context.Background())
	defer cancelB()
	b := startCandidate(t, bctx, c, "b")
	// b follows while a renews (well past the lease duration).
	time.Sleep(2500 * time.Millisecond)
	select {
	case <-b.leading:
		t.Fatal("b leads while a holds the Lease")
	default:
	}
	l := lease("lease")
	if l == nil || *l.Spec.HolderIdentity != "a" || *l.Spec.LeaseDurationSeconds != 2 || *l.Spec.LeaseTransitions != 0 {
		t.Fatalf("lease %+v, want held by a for 2s, no transitions", l)
	}
	if !l.Spec.RenewTime.After(l.Spec.AcquireTime.Time) {
		t.Errorf("renew time %s not after acquire time %s: a did not renew", l.Spec.RenewTime, l.Spec.AcquireTime)
	}

	// a stops: it releases the Lease, and b takes it at its next retry,
	// long before the lease duration.
	cancelA()
	<-a.stopped
	released := time.Now()
	select {
	case <-b.leading:
	case <-time.After(time.Second):
		t.Fatal("b did not take the released Lease within a second")
	}
	t.Logf("b leads %s after a released", time.Since(released).Round(time.Millisecond))
	l = lease("lease")
	if *l.Spec.HolderIdentity != "b" || *l.Spec.LeaseTransitions != 1 {
		t.Errorf("lease holder %q, transitions %d; want b, 1", *l.Spec.HolderIdentity, *l.Spec.LeaseTransitions)
	}
	time.Sleep(100 * time.Millisecond) // OnNewLeader runs in its own goroutine
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.leaders) < 2 || b.leaders[0] != "a" || b.leaders[len(b.leaders)-1] != "b" {
		t.Errorf("b saw leaders %v, want a first and b last", b.leaders)
	}
}

// A leader told to stop (SIGTERM) finishes its work first (the bridge
// flushes and saves its last checkpoint): Run does not return, and the
// Lease stays held and renewed, even past its duration, until the work
// returned; only then is it released and a follower leads.
func TestLeaderKeepsTheLeaseUntilItsWorkIsDone(t *testing.T) {
	cfg, _ := leaseServer(t)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const flush = 3 * time.Second // longer than the 2s lease
	var workDone time.Time
	actx, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	a := startCandidateWork(t, actx, c, "a", func(ctx context.Context) {
		<-ctx.Done()
		time.Sleep(flush)
		workDone = time.Now() // read after a.stopped: Run must wait for this
	})
	waitLeading(t, a, 5*time.Second)
	bctx, cancelB := context.WithCancel(context.Background())
	defer cancelB()
	b := startCandidate(t, bctx, c, "b")
	time.Sleep(200 * time.Millisecond)
	cancelA()
	select {
	case <-b.leading:
		t.Fatal("b leads while a still finishes its work")
	case <-a.stopped:
		t.Fatal("Run returned before the leader's work did")
	case <-time.After(flush - 500*time.Millisecond):
	}
	<-a.stopped
	if workDone.IsZero() {
		t.Fatal("Run returned before the leader's work did")
	}
	select {
	case <-b.leading:
		if b.ledAt.Before(workDone) {
			t.Errorf("b led %s before a's work was done", workDone.Sub(b.ledAt))
		}
	case <-time.After(time.Second):
		t.Fatal("b did not take the released Lease within a second of a's work being done")
	}
}

// A leader whose renewals fail stops its work at once, and the work can
// tell (ErrLeaseLost) from a stop it was asked for: the bridge then saves
// no final checkpoint over the next leader's.
func TestLeaderLostLeaseHasItsCause(t *testing.T) {
	cfg, _, failing := leaseServerFailing(t)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	causes := make(chan error, 1)
	a := startCandidateWork(t, context.Background(), c, "a", func(ctx context.Context) {
		<-ctx.Done()
		causes <- context.Cause(ctx)
	})
	waitLeading(t, a, 5*time.Second)
	failing.Store(true)
	select {
	case cause := <-causes:
		if !errors.Is(cause, ErrLeaseLost) {
			t.Errorf("work stopped with cause %v, want ErrLeaseLost", cause)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the work did not stop after renewals failed for the renew deadline (1s)")
	}
	select {
	case <-a.stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after the Lease was lost")
	}

	// Asked to stop: the cause is the context's own.
	failing.Store(false)
	time.Sleep(2100 * time.Millisecond) // a's Lease expires (2s)
	bctx, cancelB := context.WithCancel(context.Background())
	b := startCandidateWork(t, bctx, c, "b", func(ctx context.Context) {
		<-ctx.Done()
		causes <- context.Cause(ctx)
	})
	waitLeading(t, b, 10*time.Second)
	cancelB()
	if cause := <-causes; !errors.Is(cause, context.Canceled) {
		t.Errorf("work stopped with cause %v, want context.Canceled", cause)
	}
	<-b.stopped
}

func TestLeaderConfigChecked(t *testing.T) {
	ok := LeaderConfig{Namespace: "ns", Name: "l", Identity: "i", LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second,
		RetryPeriod: 2 * time.Second, OnStartedLeading: func(context.Context) {}, OnStoppedLeading: func() {}}
	if _, err := NewLeaderElector(nil, ok); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for name, mutate := range map[string]func(*LeaderConfig){
		"lease not above deadline": func(c *LeaderConfig) { c.LeaseDuration = c.RenewDeadline },
		"deadline within jitter":   func(c *LeaderConfig) { c.RetryPeriod = 9 * time.Second },
		"no identity":              func(c *LeaderConfig) { c.Identity = "" },
		"no callbacks":             func(c *LeaderConfig) { c.OnStartedLeading = nil },
		"no namespace":             func(c *LeaderConfig) { c.Namespace = "" },
	} {
		c := ok
		mutate(&c)
		if _, err := NewLeaderElector(nil, c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
