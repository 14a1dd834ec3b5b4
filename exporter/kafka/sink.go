// Package kafka is kube-otel-bridge's Kafka side-sink: every occurrence that
// passes the sink's filter becomes one record (flat JSON, see Record) keyed
// by the involved object's UID, produced with franz-go with acks=all by an
// idempotent producer, over TLS and SASL (PLAIN, SCRAM-SHA-256/512) if
// configured.
//
// Delivery is at-least-once with backpressure: an occurrence is acknowledged
// only once the brokers have it, nothing is dropped for lack of room (Emit
// blocks instead) and nothing is given up on while the bridge runs, except a
// record no broker can ever accept (too large, invalid), which is logged,
// counted and acknowledged. A record can be delivered twice (e.g. when a
// restarted bridge emits again what was produced but not yet acknowledged):
// consumers may deduplicate on eventUid+count.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/filter"
)

// ErrSinkClosed is returned by Emit after Shutdown started.
var ErrSinkClosed = errors.New("kafka: sink is shut down")

// Stats are the counters of a Sink.
type Stats struct {
	// Produced is the number of records the brokers acknowledged (and whose
	// occurrences were acknowledged).
	Produced uint64
	// FailedAttempts counts produce attempts of a record that failed with an
	// error franz-go does not retry by itself (authentication, authorization,
	// TLS, …); the sink produces such records again after a backoff.
	// Broker outages are retried inside franz-go and are not counted.
	FailedAttempts uint64
	// ConnectionErrors counts failed attempts to connect to a broker,
	// including TLS and SASL failures (franz-go retries them by itself).
	ConnectionErrors uint64
	// Rejected counts records that can never be produced (larger than the
	// broker accepts, invalid): they are logged and acknowledged.
	Rejected uint64
	// FilteredOut counts occurrences the filter did not pass (acknowledged
	// at once).
	FilteredOut uint64
	// Buffered is the number of records emitted but not yet acknowledged;
	// BufferCapacity its maximum (Config.MaxBufferedRecords), at which Emit
	// blocks.
	Buffered, BufferCapacity int
	// LastError is the last produce or connection error, "" after a
	// successful produce.
	LastError string
}

// Sink produces occurrences to a Kafka topic. It is safe for concurrent use.
type Sink struct {
	name    string
	topic   string
	cluster string
	filter  *filter.Filter
	logger  *slog.Logger
	client  *kgo.Client
	backoff func(attempt int) time.Duration

	slots   chan struct{} // one per record not yet acknowledged
	closing chan struct{} // closed when Shutdown starts
	stop    chan struct{} // closed when Shutdown gives up: the retry loop exits
	done    chan struct{} // closed when the retry loop exited
	idle    chan struct{} // signalled when the last slot is released

	// produceMu orders the calls of client.Produce between Emit and the
	// retry loop. Promises never take it.
	produceMu sync.Mutex

	mu       sync.Mutex
	retry    []*pending // records to produce again, in order
	attempt  int        // consecutive failed rounds
	lastErr  error
	retryNow chan struct{}

	shutdownOnce sync.Once
	shutdownErr  error

	hasSASL bool

	produced, failed, rejected, filtered, connErrors atomic.Uint64
}

// pending is one record on its way to the brokers.
type pending struct {
	rec *kgo.Record
	ack func()
	occ convert.Key
}

// New validates cfg and starts a sink producing to cfg.Topic. cluster is put
// in every record; logger (nil: slog.Default) gets the sink's warnings and
// franz-go's warnings and errors, never a secret. opts are appended to the
// franz-go options derived from cfg (for tests; options that weaken delivery
// guarantees must not be passed). New does not connect: see Ping.
func New(cfg Config, cluster string, logger *slog.Logger, opts ...kgo.Opt) (*Sink, error) {
	return newSink(cfg, cluster, logger, defaultBackoff, opts...)
}

func newSink(cfg Config, cluster string, logger *slog.Logger, backoff func(int) time.Duration, opts ...kgo.Opt) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka %s: %w", cfg.displayName(), err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("sink", "kafka/"+cfg.displayName())
	f, err := cfg.Filter.Compile()
	if err != nil {
		return nil, fmt.Errorf("kafka %s: filter: %w", cfg.displayName(), err)
	}
	kopts, err := cfg.clientOpts()
	if err != nil {
		return nil, fmt.Errorf("kafka %s: %w", cfg.displayName(), err)
	}
	s := &Sink{
		name:     cfg.displayName(),
		topic:    cfg.Topic,
		cluster:  cluster,
		filter:   f,
		logger:   logger,
		backoff:  backoff,
		hasSASL:  cfg.SASL != nil,
		slots:    make(chan struct{}, cfg.maxBuffered()),
		closing:  make(chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		idle:     make(chan struct{}, 1),
		retryNow: make(chan struct{}, 1),
	}
	kopts = append(kopts, kgo.WithLogger(kgoLogger{logger}), kgo.WithHooks(connectHook{s}))
	kopts = append(kopts, opts...)
	s.client, err = kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka %s: %w", cfg.displayName(), err)
	}
	if cfg.TLS != nil && cfg.TLS.InsecureSkipVerify {
		logger.Warn("kafka: TLS certificate verification is disabled (tls.insecureSkipVerify)")
	}
	if cfg.SASL != nil && cfg.TLS == nil && strings.EqualFold(cfg.SASL.Mechanism, MechanismPlain) {
		logger.Warn("kafka: SASL PLAIN without TLS sends the password in clear text")
	}
	go s.retryLoop()
	return s, nil
}

// Name is the sink's name (Config.Name, default the topic).
func (s *Sink) Name() string { return s.name }

// Emit sends the occurrence to Kafka if it passes the filter and arranges for
// ack (may be nil) to be called once the brokers acknowledged the record
// (acks=all). An occurrence the filter rejects is acknowledged before Emit
// returns. ack is called from a franz-go goroutine; it must be quick and must
// not call Emit. Records of one involved object are acknowledged in order.
//
// Emit blocks while MaxBufferedRecords records are unacknowledged (for
// instance while the brokers are unreachable) and then returns ctx's error
// if ctx ends first, or ErrSinkClosed if Shutdown starts. ctx only bounds
// that wait: a record once accepted (nil error) is retried until delivered
// or until Shutdown gives up.
func (s *Sink) Emit(ctx context.Context, o *convert.Occurrence, ack func()) error {
	select {
	case <-s.closing:
		return ErrSinkClosed
	default:
	}
	if !s.filter.Match(o) {
		s.filtered.Add(1)
		if ack != nil {
			ack()
		}
		return nil
	}
	value, err := NewRecord(s.cluster, o).Marshal()
	if err != nil {
		return fmt.Errorf("kafka %s: encoding occurrence %s/%d: %w", s.name, o.EventUID, o.Count, err)
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return ErrSinkClosed
	}
	if isClosed(s.closing) {
		s.release()
		return ErrSinkClosed
	}
	p := &pending{
		rec: &kgo.Record{
			Topic: s.topic,
			Key:   []byte(RecordKey(o)),
			Value: value,
			Headers: []kgo.RecordHeader{
				{Key: HeaderSchema, Value: []byte(SchemaVersion)},
				{Key: HeaderContentType, Value: []byte(ContentType)},
			},
		},
		ack: ack,
		occ: o.Key(),
	}
	s.produceMu.Lock()
	defer s.produceMu.Unlock()
	s.mu.Lock()
	if len(s.retry) > 0 {
		// Records waiting to be produced again go first, so that records
		// of one object are not reordered.
		s.retry = append(s.retry, p)
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	s.produce(p)
	return nil
}

// produce hands p to franz-go. Called with produceMu held.
func (s *Sink) produce(p *pending) {
	// The produce context is never canceled: franz-go would fail buffered
	// records with it. Records are only abandoned by Close in Shutdown.
	s.client.Produce(context.Background(), p.rec, func(_ *kgo.Record, err error) { s.finish(p, err) })
}

// finish is the promise of p's produce attempt.
func (s *Sink) finish(p *pending, err error) {
	switch {
	case err == nil:
		s.produced.Add(1)
		s.mu.Lock()
		s.attempt, s.lastErr = 0, nil
		s.mu.Unlock()
		s.release()
		if p.ack != nil {
			p.ack()
		}
	case errors.Is(err, kgo.ErrClientClosed):
		// Shutdown gave up on it: not acknowledged, it will be emitted
		// again after a restart.
		s.release()
	case permanent(err):
		s.rejected.Add(1)
		s.logger.Error("kafka: record can never be produced, dropping it",
			"event_uid", p.occ.EventUID, "count", p.occ.Count, "bytes", len(p.rec.Value), "err", err)
		s.release()
		if p.ack != nil {
			p.ack()
		}
	case isClosed(s.stop):
		s.release() // failed while Shutdown gave up: abandoned
	default:
		s.failed.Add(1)
		s.mu.Lock()
		s.lastErr = err
		s.retry = append(s.retry, p)
		s.mu.Unlock()
		select {
		case s.retryNow <- struct{}{}:
		default:
		}
	}
}

// permanent reports whether producing a record failed in a way that can
// never succeed on retry.
func permanent(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) ||
		errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.InvalidRecord)
}

func (s *Sink) release() {
	<-s.slots
	if len(s.slots) == 0 {
		select {
		case s.idle <- struct{}{}:
		default:
		}
	}
}

// retryLoop produces failed records again, in their original order, after a
// backoff that grows with consecutive failed rounds.
func (s *Sink) retryLoop() {
	defer close(s.done)
	for {
		select {
		case <-s.retryNow:
		case <-s.stop:
			return
		}
		s.mu.Lock()
		attempt, lastErr, n := s.attempt, s.lastErr, len(s.retry)
		if n > 0 {
			s.attempt++
		}
		s.mu.Unlock()
		if n == 0 {
			continue
		}
		wait := s.backoff(attempt)
		closing := s.closing
		if isClosed(closing) {
			// Shutting down: keep retrying, but not slower than every
			// second.
			wait, closing = min(wait, time.Second), nil
		}
		s.logger.Warn("kafka: produce failed, retrying", "records", n, "retry_in", wait, "err", s.describe(lastErr))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-closing: // Shutdown started: retry now
			t.Stop()
		case <-s.stop:
			t.Stop()
			return
		}
		s.produceMu.Lock()
		s.mu.Lock()
		batch := s.retry
		s.retry = nil
		s.mu.Unlock()
		for _, p := range batch {
			s.produce(p)
		}
		s.produceMu.Unlock()
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// connectHook records failed connection attempts (dial, TLS, SASL).
type connectHook struct{ s *Sink }

func (h connectHook) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		return
	}
	h.s.connErrors.Add(1)
	h.s.mu.Lock()
	h.s.lastErr = err
	h.s.mu.Unlock()
}

// describe adds a hint to errors operators can fix.
func (s *Sink) describe(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	switch {
	case s.hasSASL && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)):
		return msg + " (the broker closed the connection; if during authentication, check sasl.mechanism, sasl.username and sasl.passwordFile)"
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return msg + " (check sasl.username and sasl.passwordFile)"
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
		return msg + " (the user needs Write and Describe on the topic and IdempotentWrite on the cluster)"
	}
	return msg
}

// defaultBackoff is 1s, 2s, 4s, … up to 30s.
func defaultBackoff(attempt int) time.Duration {
	d := time.Second << min(attempt, 5)
	return min(d, 30*time.Second)
}

// Ping checks that a broker is reachable, authenticates (TLS, SASL) and knows
// the topic. Emit does not need it; it gives a clear error at start-up.
func (s *Sink) Ping(ctx context.Context) error {
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(s.topic)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, s.client)
	if err != nil {
		return fmt.Errorf("kafka %s: %s", s.name, s.describe(err))
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return fmt.Errorf("kafka %s: topic %q: %s", s.name, s.topic, s.describe(err))
		}
	}
	return nil
}

// Shutdown stops accepting occurrences (blocked and later Emits return
// ErrSinkClosed), waits until every record emitted before is acknowledged by
// the brokers or ctx ends, and closes the client. Records still unacknowledged
// then are abandoned, not acknowledged: the error says how many. Later calls
// return the first call's result.
func (s *Sink) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Sink) shutdown(ctx context.Context) error {
	close(s.closing)
	select { // a retry waiting for a long backoff is shortened
	case s.retryNow <- struct{}{}:
	default:
	}
	var err error
	for len(s.slots) > 0 && err == nil {
		// Flush ends lingering; it returns early when it is done with the
		// records franz-go holds, while some may be waiting for a retry.
		fctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-s.idle:
			case <-fctx.Done():
			}
			cancel()
		}()
		if ferr := s.client.Flush(fctx); ferr != nil && ctx.Err() != nil {
			err = ctx.Err()
		} else if len(s.slots) > 0 {
			select {
			case <-s.idle:
			case <-ctx.Done():
				err = ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		cancel()
	}
	left := len(s.slots)
	close(s.stop)
	<-s.done
	s.client.Close() // fails what franz-go still holds with ErrClientClosed
	s.mu.Lock()
	abandoned := len(s.retry)
	s.retry = nil
	s.mu.Unlock()
	for range abandoned {
		s.release()
	}
	if err != nil {
		return fmt.Errorf("kafka %s: shutdown: %d records not delivered (nor acknowledged): %w", s.name, left, err)
	}
	return nil
}

// Stats returns a snapshot of the sink's counters.
func (s *Sink) Stats() Stats {
	st := Stats{
		Produced:         s.produced.Load(),
		FailedAttempts:   s.failed.Load(),
		Rejected:         s.rejected.Load(),
		FilteredOut:      s.filtered.Load(),
		ConnectionErrors: s.connErrors.Load(),
		Buffered:         len(s.slots),
		BufferCapacity:   cap(s.slots),
	}
	s.mu.Lock()
	if s.lastErr != nil {
		st.LastError = s.describe(s.lastErr)
	}
	s.mu.Unlock()
	return st
}

// kgoLogger passes franz-go's warnings and errors to slog (info and debug
// only when the logger is at debug level).
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel {
	if k.l.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelInfo
	}
	return kgo.LogLevelWarn
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var l slog.Level
	switch level {
	case kgo.LogLevelError:
		l = slog.LevelError
	case kgo.LogLevelWarn:
		l = slog.LevelWarn
	case kgo.LogLevelInfo, kgo.LogLevelDebug:
		l = slog.LevelDebug
	default:
		return
	}
	k.l.Log(context.Background(), l, "franz-go: "+msg, keyvals...)
}
