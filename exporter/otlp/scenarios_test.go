package otlp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/grpc/codes"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/otlpreceiver"
)

// sink is what LogSink and TraceSink have in common.
type sink interface {
	Stats() Stats
	ForceFlush(context.Context) error
	Shutdown(context.Context) error
}

// startSink builds exporter and sink for cfg with the constructors of a
// LogSink or TraceSink and shuts the sink down at the end of the test.
func startSink[E any, S sink](t *testing.T, cfg Config, newExp func(context.Context, Config) (E, error),
	newSink func(E, *resource.Resource, Config, *slog.Logger) S) S {
	t.Helper()
	exp, err := newExp(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := newSink(exp, testResource, cfg, testLogger(t))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// sinkUnderTest drives a LogSink or a TraceSink through the delivery
// scenarios both must pass, against the real receiver. Items are numbered:
// item i is record(i) for logs and plainSpan(i) for traces.
type sinkUnderTest struct {
	r    *otlpreceiver.Receiver
	acks ackLog
	// received returns the numbers of the items the receiver stored, in
	// arrival order; wait waits until it stored n.
	received func() []int
	wait     func(ctx context.Context, n int) error
	// emit emits item i with ack (nil for none).
	emit func(ctx context.Context, i int, ack func()) error
	sink sink

	mu        sync.Mutex
	premature []int // items acknowledged before the receiver had them
}

// forEachSink runs scenario as a subtest for a LogSink and a TraceSink, each
// configured with cfg sending to a new receiver (cfg.Endpoint and
// cfg.Insecure are filled in). unit is "records" or "spans".
func forEachSink(t *testing.T, cfg Config, scenario func(t *testing.T, u *sinkUnderTest, unit string)) {
	for _, kind := range []struct {
		name, unit string
		harness    func(t *testing.T, r *otlpreceiver.Receiver, cfg Config) *sinkUnderTest
	}{
		{"logs", "records", func(t *testing.T, r *otlpreceiver.Receiver, cfg Config) *sinkUnderTest {
			return logHarness(r, startSink(t, cfg, NewLogExporter, NewLogSink))
		}},
		{"traces", "spans", func(t *testing.T, r *otlpreceiver.Receiver, cfg Config) *sinkUnderTest {
			return traceHarness(r, startSink(t, cfg, NewTraceExporter, NewTraceSink))
		}},
	} {
		t.Run(kind.name, func(t *testing.T) {
			r := otlpreceiver.NewStarted(t, otlpreceiver.Options{})
			cfg := cfg
			cfg.Endpoint, cfg.Insecure = r.Addr(), true
			scenario(t, kind.harness(t, r, cfg), kind.unit)
		})
	}
}

func TestSinkOutage(t *testing.T) {
	forEachSink(t, Config{BatchSize: 8, BatchTimeout: 20 * time.Millisecond, Timeout: 2 * time.Second},
		func(t *testing.T, u *sinkUnderTest, _ string) { scenarioOutage(t, u, 3*time.Second) })
}

// TestSinkFailures also checks, for traces, that a partial success, which
// the trace exporter reports wrapped ("traces export: OTLP partial success
// ..."), unlike the log exporter, is not retried.
func TestSinkFailures(t *testing.T) {
	forEachSink(t, Config{BatchSize: 4, BatchTimeout: time.Hour},
		func(t *testing.T, u *sinkUnderTest, _ string) { scenarioFailures(t, u) })
}

func TestSinkBackpressure(t *testing.T) {
	forEachSink(t, Config{QueueSize: 5, BatchSize: 2, BatchTimeout: 10 * time.Millisecond},
		func(t *testing.T, u *sinkUnderTest, _ string) { scenarioBackpressure(t, u, 5) })
}

func TestSinkShutdownFlushes(t *testing.T) {
	forEachSink(t, Config{BatchSize: 100, BatchTimeout: time.Hour},
		func(t *testing.T, u *sinkUnderTest, _ string) { scenarioShutdownFlushes(t, u) })
}

func TestSinkShutdownDeadline(t *testing.T) {
	forEachSink(t, Config{QueueSize: 3, BatchTimeout: 10 * time.Millisecond},
		func(t *testing.T, u *sinkUnderTest, unit string) {
			scenarioShutdownDeadline(t, u, "sink shut down with 3 "+unit+" not delivered")
		})
}

func TestSinkForceFlush(t *testing.T) {
	forEachSink(t, Config{BatchSize: 100, BatchTimeout: time.Hour},
		func(t *testing.T, u *sinkUnderTest, _ string) { scenarioForceFlush(t, u) })
}

func TestSinkBatchMinAge(t *testing.T) {
	forEachSink(t, Config{BatchSize: 100, BatchTimeout: time.Hour, BatchMinAge: 100 * time.Millisecond},
		func(t *testing.T, u *sinkUnderTest, _ string) { scenarioBatchMinAge(t, u, 100*time.Millisecond) })
}

// scenarioBatchMinAge: a batch whose oldest item is minAge old goes out with
// the next Emit, not before it (the timer is far away) and not for a newer
// batch. The sink must have BatchMinAge minAge, a long BatchTimeout and
// BatchSize > 4.
func scenarioBatchMinAge(t *testing.T, u *sinkUnderTest, minAge time.Duration) {
	ctx := testCtx(t, 20*time.Second)
	u.emitN(t, ctx, 0, 2)
	time.Sleep(minAge / 4)
	u.emitN(t, ctx, 2, 3) // younger than minAge: stays queued
	time.Sleep(minAge * 2)
	if n := len(u.received()); n != 0 {
		t.Fatalf("%d items exported without an Emit after BatchMinAge", n)
	}
	u.emitN(t, ctx, 3, 4) // the oldest is past minAge: all four go out
	u.waitDelivered(t, ctx, 0, 4)
	checkAcksInOrder(t, u.acks.get(), 4)
	u.emitN(t, ctx, 4, 5) // a new batch, young: stays queued
	time.Sleep(minAge / 2)
	if n := len(u.received()); n != 4 {
		t.Fatalf("%d items exported, want the first 4 only", n)
	}
}

// logHarness is the sinkUnderTest for s, sending to r.
func logHarness(r *otlpreceiver.Receiver, s *LogSink) *sinkUnderTest {
	return &sinkUnderTest{
		r: r,
		received: func() []int {
			var out []int
			for _, l := range r.Logs() {
				var i int
				if _, err := fmt.Sscanf(l.Record.GetBody().GetStringValue(), "event %d", &i); err == nil {
					out = append(out, i)
				}
			}
			return out
		},
		wait: func(ctx context.Context, n int) error { _, err := r.WaitLogs(ctx, n); return err },
		emit: func(ctx context.Context, i int, ack func()) error {
			return s.Emit(ctx, record(i), ack)
		},
		sink: s,
	}
}

// traceHarness is the sinkUnderTest for s, sending to r.
func traceHarness(r *otlpreceiver.Receiver, s *TraceSink) *sinkUnderTest {
	return &sinkUnderTest{
		r: r,
		received: func() []int {
			var out []int
			for _, sp := range r.Spans() {
				out = append(out, sidIndex(sp.Span.GetSpanId()))
			}
			return out
		},
		wait: func(ctx context.Context, n int) error { _, err := r.WaitSpans(ctx, n); return err },
		emit: func(ctx context.Context, i int, ack func()) error {
			return s.Emit(ctx, plainSpan(i), ack)
		},
		sink: s,
	}
}

// ack returns the acknowledgement of item i, which checks that the receiver
// already has it and records it in u.acks.
func (u *sinkUnderTest) ack(i int) func() {
	return func() {
		if !slices.Contains(u.received(), i) {
			u.mu.Lock()
			u.premature = append(u.premature, i)
			u.mu.Unlock()
		}
		u.acks.fn(i)()
	}
}

// emitN emits items from..to-1.
func (u *sinkUnderTest) emitN(t *testing.T, ctx context.Context, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := u.emit(ctx, i, u.ack(i)); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
}

// checkDelivered checks that the receiver has items from..to-1 exactly once
// and nothing else, and that no item was acknowledged before delivery.
func (u *sinkUnderTest) checkDelivered(t *testing.T, from, to int) {
	t.Helper()
	got := u.received()
	seen := map[int]int{}
	for _, i := range got {
		seen[i]++
	}
	for i := from; i < to; i++ {
		if seen[i] != 1 {
			t.Errorf("item %d delivered %d times", i, seen[i])
		}
	}
	if len(got) != to-from {
		t.Errorf("received %d items, want %d", len(got), to-from)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.premature) > 0 {
		t.Errorf("items %v acknowledged before the receiver had them", u.premature)
	}
}

// waitDelivered waits until the receiver stored to-from items and items
// 0..to-1 are acknowledged, then checks that they are items from..to-1, each
// once, and that the acks came in order.
func (u *sinkUnderTest) waitDelivered(t *testing.T, ctx context.Context, from, to int) {
	t.Helper()
	if err := u.wait(ctx, to-from); err != nil {
		t.Fatal(err)
	}
	checkAcksInOrder(t, u.acks.waitN(t, ctx, to), to)
	u.checkDelivered(t, from, to)
}

// scenarioOutage stops the collector while items are emitted: nothing is
// acknowledged while it is down, and after it comes back on the same address
// everything is delivered exactly once and acknowledged in order. The sink
// must have BatchSize 8.
func scenarioOutage(t *testing.T, u *sinkUnderTest, down time.Duration) {
	ctx := testCtx(t, 30*time.Second)
	u.emitN(t, ctx, 0, 10)
	u.waitDelivered(t, ctx, 0, 10)

	u.r.Stop()
	u.emitN(t, ctx, 10, 40)
	time.Sleep(down)
	if n := len(u.acks.get()); n != 10 {
		t.Fatalf("%d acks while the collector was down, want 10", n)
	}
	if st := u.sink.Stats(); st.FailedAttempts == 0 || st.ConsecutiveFailures == 0 || st.QueueDepth != 30 {
		t.Errorf("stats during outage = %+v", st)
	}

	restarted := time.Now()
	if err := u.r.Start(); err != nil {
		t.Fatal(err)
	}
	u.waitDelivered(t, ctx, 0, 40)
	t.Logf("delivered %v after restart", time.Since(restarted).Round(time.Millisecond))
	if st := u.sink.Stats(); st.Exported != 40 || st.QueueDepth != 0 || st.ConsecutiveFailures != 0 {
		t.Errorf("stats after recovery = %+v", st)
	}
}

// scenarioFailures: the collector answers transient errors, then rejects one
// item as invalid, then answers a partial success. The sink must have
// BatchSize 4 and a long BatchTimeout.
func scenarioFailures(t *testing.T, u *sinkUnderTest) {
	ctx := testCtx(t, 20*time.Second)

	// Transient errors: retried until accepted, acknowledged once.
	u.r.FailNext(4, codes.Unavailable)
	u.emitN(t, ctx, 0, 4)
	u.waitDelivered(t, ctx, 0, 4)
	if st := u.sink.Stats(); st.FailedAttempts != 4 || st.Exported != 4 || st.ExportedBatches != 1 || st.ConsecutiveFailures != 0 {
		t.Errorf("stats after retries = %+v", st)
	}
	// Unauthenticated (e.g. a token being rotated) is retried as well.
	u.r.FailNext(2, codes.Unauthenticated)
	u.emitN(t, ctx, 4, 8)
	u.waitDelivered(t, ctx, 0, 8)

	// An invalid item is found by splitting the batch, dropped and
	// acknowledged: [8 9 10 11] fails, [8 9] fails, [8] fails.
	u.r.Reset()
	u.r.FailNext(3, codes.InvalidArgument)
	u.emitN(t, ctx, 8, 12)
	checkAcksInOrder(t, u.acks.waitN(t, ctx, 12), 12)
	if got := u.received(); !slices.Equal(got, []int{9, 10, 11}) {
		t.Errorf("delivered %v, want [9 10 11]", got)
	}
	if st := u.sink.Stats(); st.Rejected != 1 || st.Exported != 11 || st.FailedAttempts != 9 {
		t.Errorf("stats after rejection = %+v", st)
	}

	// A partial success is final: acknowledged, not retried.
	u.r.Reset()
	u.r.PartialSuccessNext(1, "too old")
	u.emitN(t, ctx, 12, 16)
	checkAcksInOrder(t, u.acks.waitN(t, ctx, 16), 16)
	if n := len(u.r.Requests()); n != 1 {
		t.Errorf("%d requests; a partial success must not be retried", n)
	}
	if st := u.sink.Stats(); st.FailedAttempts != 9 || st.Exported != 15 {
		t.Errorf("stats after partial success = %+v", st)
	}
}

// scenarioBackpressure: with the collector down, Emit blocks once QueueSize
// items are unacknowledged, and resumes when the collector is back.
func scenarioBackpressure(t *testing.T, u *sinkUnderTest, queueSize int) {
	ctx := testCtx(t, 30*time.Second)
	u.r.Stop()

	u.emitN(t, ctx, 0, queueSize)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := u.emit(short, 99, u.ack(99))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Emit on a full queue = %v, want DeadlineExceeded", err)
	}
	if st := u.sink.Stats(); st.QueueDepth != queueSize || st.QueueCapacity != queueSize {
		t.Errorf("stats = %+v", st)
	}

	emitted := make(chan error, 1)
	go func() { emitted <- u.emit(ctx, queueSize, u.ack(queueSize)) }()
	select {
	case err := <-emitted:
		t.Fatalf("Emit returned %v while the queue is full", err)
	case <-time.After(500 * time.Millisecond):
	}

	if err := u.r.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-emitted:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("Emit still blocked after the collector came back")
	}
	u.waitDelivered(t, ctx, 0, queueSize+1)
}

// scenarioShutdownFlushes: Shutdown exports what is queued even though the
// batch is not due; later Emits fail. The sink must have a long BatchTimeout
// and BatchSize > 7.
func scenarioShutdownFlushes(t *testing.T, u *sinkUnderTest) {
	ctx := testCtx(t, 20*time.Second)
	u.emitN(t, ctx, 0, 7)
	if n := len(u.received()); n != 0 {
		t.Fatalf("%d items exported before the batch was due", n)
	}
	if err := u.sink.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	u.checkDelivered(t, 0, 7)
	checkAcksInOrder(t, u.acks.get(), 7)
	if err := u.emit(ctx, 7, nil); !errors.Is(err, ErrSinkClosed) {
		t.Fatalf("Emit after Shutdown = %v", err)
	}
	if err := u.sink.ForceFlush(ctx); err != nil {
		t.Fatalf("ForceFlush after Shutdown with nothing pending = %v", err)
	}
	if err := u.sink.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown = %v", err)
	}
}

// scenarioShutdownDeadline: with the collector down, Shutdown gives up at
// its deadline, reports what was not delivered (wantErr), acknowledges
// nothing and unblocks waiting emitters. The sink must have QueueSize 3.
func scenarioShutdownDeadline(t *testing.T, u *sinkUnderTest, wantErr string) {
	ctx := testCtx(t, 20*time.Second)
	u.r.Stop()
	u.emitN(t, ctx, 0, 3)
	blocked := make(chan error, 1)
	go func() { blocked <- u.emit(ctx, 3, u.ack(3)) }()

	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := u.sink.Shutdown(sctx)
	if err == nil || !strings.Contains(err.Error(), wantErr) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want %q", err, wantErr)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if err := <-blocked; !errors.Is(err, ErrSinkClosed) {
		t.Errorf("blocked Emit = %v, want ErrSinkClosed", err)
	}
	if n := len(u.acks.get()); n != 0 {
		t.Errorf("%d acks for undelivered items", n)
	}
}

// scenarioForceFlush: ForceFlush exports at once and returns after the acks.
// The sink must have a long BatchTimeout and BatchSize > 3.
func scenarioForceFlush(t *testing.T, u *sinkUnderTest) {
	ctx := testCtx(t, 20*time.Second)
	u.emitN(t, ctx, 0, 3)
	if err := u.sink.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	checkAcksInOrder(t, u.acks.get(), 3)
	u.checkDelivered(t, 0, 3)
	// Nothing queued: returns at once.
	if err := u.sink.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
}
