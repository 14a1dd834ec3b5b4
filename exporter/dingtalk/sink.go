package dingtalk

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// ErrClosed is returned by Emit after Shutdown started.
var ErrClosed = errors.New("dingtalk: sink is shut down")

// Option changes how a Sink works; meant mostly for tests.
type Option func(*options)

type options struct {
	clock          Clock
	httpClient     *http.Client
	window         time.Duration
	tooFastBackoff time.Duration
	retryInitial   time.Duration
	retryMax       time.Duration
	requestTimeout time.Duration
}

// WithClock sets the clock used for the rate limit, digest windows, backoffs
// and signature timestamps (default: the wall clock).
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// WithHTTPClient sets the HTTP client. The default client does not follow
// redirects.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.httpClient = c } }

// WithRateWindow sets the period RatePerMinute applies to, which is also the
// digest window (default one minute, DingTalk's). For tests only.
func WithRateWindow(d time.Duration) Option { return func(o *options) { o.window = d } }

// WithTooFastBackoff sets the pause after errcode 130101 or HTTP 429
// (default DefaultTooFastBackoff).
func WithTooFastBackoff(d time.Duration) Option {
	return func(o *options) { o.tooFastBackoff = d }
}

// WithRetryBackoff sets the first and the largest pause between retries
// after network errors and HTTP 5xx (defaults DefaultRetryInitial,
// DefaultRetryMax).
func WithRetryBackoff(initial, maxBackoff time.Duration) Option {
	return func(o *options) { o.retryInitial, o.retryMax = initial, maxBackoff }
}

// WithRequestTimeout bounds one HTTP request (default DefaultRequestTimeout).
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) { o.requestTimeout = d }
}

// Stats are the counters of a Sink. Every occurrence accepted by Emit ends in
// exactly one of Filtered, Posted, Digested or Rejected (or stays Pending).
type Stats struct {
	// Filtered: did not pass the filter, acknowledged at once.
	Filtered uint64
	// Posted: delivered in a message of its own.
	Posted uint64
	// Digested: delivered counted in a digest; Digests: digests delivered.
	Digested, Digests uint64
	// Rejected: refused by DingTalk permanently (bad signature, token,
	// message...), acknowledged without being delivered.
	Rejected uint64
	// RejectedPosts is the number of posts (messages or digests) refused.
	RejectedPosts uint64
	// Retries counts repeated attempts; TooFast the 130101 (or HTTP 429)
	// answers among the failures.
	Retries, TooFast uint64
	// Pending: accepted by Emit and not yet acknowledged. InDigest: of
	// these, the ones in the digest being collected or posted.
	Pending, InDigest int
}

// Sink posts warnings to one DingTalk robot. See the package documentation.
type Sink struct {
	c       *compiled
	o       options
	log     *slog.Logger
	render  renderer
	reserve int // tokens kept for digests

	mu      sync.RWMutex // guards closed against Emit's send on in
	closed  bool
	slots   chan struct{} // one per unacknowledged occurrence
	in      chan item
	closing chan struct{} // closed when Shutdown starts
	abort   chan struct{} // closed when Shutdown's ctx ended
	done    chan struct{} // closed when the worker returned

	reqCtx    context.Context // canceled on abort
	reqCancel context.CancelFunc

	shutdownOnce sync.Once
	shutdownErr  error

	// worker state
	lim   *limiter
	storm bool    // collecting a digest
	dig   *digest // when storm

	filtered, posted, digested, digests, rejected, rejectedPosts, retries, tooFast atomic.Uint64
	pending, inDigest                                                              atomic.Int64

	logMu   sync.Mutex
	logged  map[string]bool // permanent rejection reasons already logged
	failing map[string]bool // transient failure reasons logged since the last success
}

type item struct {
	o   *convert.Occurrence
	ack func()
}

// New validates cfg, reads the signing secret and starts the sink. cluster
// is the cluster name shown in messages.
func New(cfg Config, cluster string, logger *slog.Logger, opts ...Option) (*Sink, error) {
	c, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	o := options{
		clock:          realClock{},
		window:         time.Minute,
		tooFastBackoff: DefaultTooFastBackoff,
		retryInitial:   DefaultRetryInitial,
		retryMax:       DefaultRetryMax,
		requestTimeout: DefaultRequestTimeout,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.httpClient == nil {
		o.httpClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		if cfg.CAFile != "" {
			pool, err := caPool(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("dingtalk %q: caFile: %w", cfg.Name, err)
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			o.httpClient.Transport = tr
		}
	}
	if o.clock == nil {
		o.clock = realClock{}
	}
	if o.window <= 0 {
		o.window = time.Minute
	}
	o.retryInitial = max(o.retryInitial, time.Millisecond)
	o.retryMax = max(o.retryMax, o.retryInitial)
	s := &Sink{
		c:   c,
		o:   o,
		log: logger.With("sink", "dingtalk", "name", c.name),
		render: renderer{
			cluster: cluster, msgType: c.msgType, traceURL: c.traceURL,
			atMobiles: slices.Clone(cfg.AtMobiles), atUserIDs: slices.Clone(cfg.AtUserIDs), isAtAll: cfg.IsAtAll,
		},
		slots:   make(chan struct{}, c.queueSize),
		in:      make(chan item, c.queueSize),
		closing: make(chan struct{}),
		abort:   make(chan struct{}),
		done:    make(chan struct{}),
		lim:     newLimiter(c.rate, o.window),
		logged:  map[string]bool{},
		failing: map[string]bool{},
	}
	if c.rate > 1 {
		s.reserve = 1
	}
	s.reqCtx, s.reqCancel = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

// Name is the sink's configured name.
func (s *Sink) Name() string { return s.c.name }

// Emit hands o to the sink. An occurrence that does not pass the filter is
// acknowledged at once. Otherwise ack (may be nil) is called once DingTalk
// accepted the message or digest that contains it, or refused it
// permanently; it is called from the sink's goroutine and must be quick.
//
// Emit blocks while QueueSize occurrences are unacknowledged and then returns
// ctx's error if ctx ends first, or ErrClosed if Shutdown starts. The sink
// keeps a copy of o.
func (s *Sink) Emit(ctx context.Context, o *convert.Occurrence, ack func()) error {
	if o == nil {
		return errors.New("dingtalk: Emit: nil occurrence")
	}
	if !s.c.filter.Match(o) {
		s.filtered.Add(1)
		if ack != nil {
			ack()
		}
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return ErrClosed
	}
	cp := *o
	cp.Chain = slices.Clone(o.Chain)
	if o.Related != nil {
		r := *o.Related
		cp.Related = &r
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		<-s.slots
		return ErrClosed
	}
	s.pending.Add(1)
	s.in <- item{o: &cp, ack: ack} // never blocks: cap(in) == cap(slots)
	return nil
}

// Shutdown stops accepting occurrences and delivers everything pending,
// including a final digest, still respecting the rate limit. If ctx ends
// first, the post in progress is abandoned and the error tells how many
// warnings were neither delivered nor acknowledged. Later calls return the
// first call's result.
func (s *Sink) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.closing)
		s.mu.Unlock()
		select {
		case <-s.done:
		case <-ctx.Done():
			close(s.abort)
			s.reqCancel()
			<-s.done
		}
		s.reqCancel()
		if n := s.pending.Load(); n > 0 {
			s.shutdownErr = fmt.Errorf("dingtalk %q: shutdown: %d warnings not delivered: %w", s.c.name, n, ctx.Err())
		}
	})
	return s.shutdownErr
}

// Stats returns a snapshot of the counters.
func (s *Sink) Stats() Stats {
	return Stats{
		Filtered:      s.filtered.Load(),
		Posted:        s.posted.Load(),
		Digested:      s.digested.Load(),
		Digests:       s.digests.Load(),
		Rejected:      s.rejected.Load(),
		RejectedPosts: s.rejectedPosts.Load(),
		Retries:       s.retries.Load(),
		TooFast:       s.tooFast.Load(),
		Pending:       int(s.pending.Load()),
		InDigest:      int(s.inDigest.Load()),
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// run is the worker: it posts warnings one by one while the rate limit
// allows (keeping s.reserve tokens for digests) and otherwise collects them
// into a digest posted once per window.
func (s *Sink) run() {
	defer close(s.done)
	for !closed(s.abort) {
		var more bool
		if s.storm {
			more = s.stormStep()
		} else {
			more = s.calmStep()
		}
		if !more {
			return
		}
	}
}

// calmStep takes the next warning and posts it, or starts a digest when the
// tokens (beyond the reserve) are spent. It returns false when the sink is
// shut down and empty, or aborted.
func (s *Sink) calmStep() bool {
	var it item
	select {
	case it = <-s.in:
	case <-s.closing:
		select {
		case it = <-s.in:
		default:
			return false
		}
	case <-s.abort:
		return false
	}
	now := s.o.clock.Now()
	if s.lim.available(now) > s.reserve {
		s.deliverOne(it)
		return true
	}
	s.storm = true
	s.dig = newDigest(now)
	s.addToDigest(it)
	return true
}

func (s *Sink) addToDigest(it item) {
	s.dig.add(it.o, it.ack)
	s.inDigest.Add(1)
}

// drainIntoDigest adds every queued warning to the digest.
func (s *Sink) drainIntoDigest() {
	for {
		select {
		case it := <-s.in:
			s.addToDigest(it)
		default:
			return
		}
	}
}

// stormStep collects warnings into the digest until its window ended (or the
// sink is shutting down) and a token is available, then posts it. A window
// that collected one warning posts it alone and ends the storm; one that
// collected none ends it too.
func (s *Sink) stormStep() bool {
	now := s.o.clock.Now()
	draining := closed(s.closing)
	end := s.dig.since.Add(s.o.window)
	var wait time.Duration
	if draining || !now.Before(end) {
		s.drainIntoDigest()
		switch s.dig.total {
		case 0:
			s.storm, s.dig = false, nil
			return true
		case 1:
			it := item{o: s.dig.first, ack: s.dig.acks[0]}
			s.storm, s.dig = false, nil
			s.inDigest.Add(-1)
			s.deliverOne(it)
			return true
		}
		if wait = s.lim.wait(now); wait <= 0 {
			d := s.dig
			s.deliverDigest(d, now)
			s.dig = newDigest(s.o.clock.Now())
			return true
		}
	} else {
		wait = end.Sub(now)
	}
	t := s.o.clock.NewTimer(wait)
	defer t.Stop()
	closingCh := s.closing
	if draining {
		closingCh = nil
	}
	select {
	case it := <-s.in:
		s.addToDigest(it)
	case <-t.C():
	case <-closingCh:
	case <-s.abort:
		return false
	}
	return true
}

func (s *Sink) finish(acks []func()) {
	for _, ack := range acks {
		if ack != nil {
			ack()
		}
		s.pending.Add(-1)
		<-s.slots
	}
}

func (s *Sink) deliverOne(it item) {
	switch s.deliver(s.render.occurrence(it.o), "message", 1) {
	case delivered:
		s.posted.Add(1)
	case permanent:
		s.rejected.Add(1)
		s.rejectedPosts.Add(1)
	default: // aborted: stays pending, not acknowledged
		return
	}
	s.finish([]func(){it.ack})
}

func (s *Sink) deliverDigest(d *digest, now time.Time) {
	n := uint64(d.total)
	res := s.deliver(s.render.digest(d, now, s.c.rate), "digest", d.total)
	if res != delivered && res != permanent {
		return // aborted: stays pending, not acknowledged
	}
	s.inDigest.Add(-int64(d.total))
	if res == delivered {
		s.digests.Add(1)
		s.digested.Add(n)
	} else {
		s.rejected.Add(n)
		s.rejectedPosts.Add(1)
	}
	s.finish(d.acks)
}

// sleep waits d on the sink's clock; false if the sink was aborted.
func (s *Sink) sleep(d time.Duration) bool {
	if closed(s.abort) {
		return false
	}
	if d <= 0 {
		return true
	}
	t := s.o.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-s.abort:
		return false
	}
}

// deliver posts body until DingTalk accepts it (delivered), refuses it for
// good (permanent) or the sink is aborted (transient). Every attempt waits
// for a token.
func (s *Sink) deliver(body []byte, kind string, warnings int) outcome {
	backoff := s.o.retryInitial
	for attempt := 0; ; attempt++ {
		for {
			w := s.lim.wait(s.o.clock.Now())
			if w <= 0 {
				break
			}
			if !s.sleep(w) {
				return transient
			}
		}
		if closed(s.abort) {
			return transient
		}
		r := s.post(body)
		s.lim.spend(s.o.clock.Now())
		var pause time.Duration
		switch r.outcome {
		case delivered:
			s.recovered(attempt)
			return delivered
		case permanent:
			s.recovered(0)
			s.logRejected(r, kind, warnings)
			return permanent
		case tooFast:
			s.tooFast.Add(1)
			s.lim.exhaust(s.o.clock.Now())
			pause = s.o.tooFastBackoff
		default:
			pause = backoff
			backoff = min(2*backoff, s.o.retryMax)
		}
		if closed(s.abort) {
			return transient
		}
		s.logFailing(r, pause)
		s.retries.Add(1)
		if !s.sleep(pause) {
			return transient
		}
	}
}

// logRejected logs a permanent rejection once per distinct reason: the
// counter Stats.Rejected is the signal for the ones that follow.
func (s *Sink) logRejected(r result, kind string, warnings int) {
	s.logMu.Lock()
	seen := s.logged[r.key]
	if !seen && len(s.logged) < 100 {
		s.logged[r.key] = true
	}
	s.logMu.Unlock()
	if seen {
		return
	}
	attrs := []any{"reason", r.reason, "post", kind, "warnings", warnings}
	if r.errcode != 0 {
		attrs = append(attrs, "errcode", r.errcode, "errmsg", r.errmsg)
	}
	s.log.Error("DingTalk refused a post; it cannot succeed, its warnings are acknowledged undelivered. "+
		"Later refusals for this reason are only counted (Stats.Rejected). Check the webhook token, the secret, "+
		"the robot's security settings (keywords, IP allow-list) and the clock.", attrs...)
}

// logFailing logs a transient failure once per reason until a post succeeds.
func (s *Sink) logFailing(r result, pause time.Duration) {
	s.logMu.Lock()
	seen := s.failing[r.key]
	s.failing[r.key] = true
	s.logMu.Unlock()
	if seen {
		return
	}
	msg := "DingTalk post failed, retrying"
	if r.outcome == tooFast {
		msg = "DingTalk says the robot sends too fast, pausing"
	}
	s.log.Warn(msg, "reason", r.reason, "retry_in", pause)
}

func (s *Sink) recovered(retries int) {
	s.logMu.Lock()
	was := len(s.failing) > 0
	clear(s.failing)
	s.logMu.Unlock()
	if was && retries > 0 {
		s.log.Info("DingTalk post delivered after retries", "retries", retries)
	}
}

// caPool is the system roots plus the PEM bundle in file.
func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %s", file)
	}
	return pool, nil
}
