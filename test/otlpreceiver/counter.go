package otlpreceiver

import (
	"context"
	"errors"
	"sync"
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// Counter is an OTLP/gRPC logs and traces receiver that keeps nothing it
// receives: it counts records, spans and requests, and per record key (a
// function of the record, e.g. "uid#count") how many records carried it. Its
// memory is bounded by the number of distinct keys, not by the records, so a
// long soak or load test can use it where Receiver would hold every record.
type Counter struct {
	key func(LogRecordWithResource) string

	lifeMu sync.Mutex
	srv    *grpc.Server
	served chan struct{}
	addr   string

	mu                                  sync.Mutex
	logs, spans, requests, spanRequests int64
	resentRequests, dupResent, dupFresh int64
	byKey                               map[string]int32
}

// NewCounter returns a counter that is not listening yet; call Start. key,
// if not nil, maps each log record to the key it is counted under ("": not
// counted per key).
func NewCounter(key func(LogRecordWithResource) string) *Counter {
	return &Counter{key: key, byKey: map[string]int32{}}
}

// NewStartedCounter returns a started counter that is stopped when the test
// ends.
func NewStartedCounter(t testing.TB, key func(LogRecordWithResource) string) *Counter {
	t.Helper()
	c := NewCounter(key)
	if err := c.Start(); err != nil {
		t.Fatalf("otlpreceiver: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

// Start listens on 127.0.0.1 on a free port and serves.
func (c *Counter) Start() error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.srv != nil {
		return errors.New("otlpreceiver: counter already started")
	}
	addr := c.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := listen(addr)
	if err != nil {
		return err
	}
	c.addr = lis.Addr().String()
	srv := grpc.NewServer()
	collogspb.RegisterLogsServiceServer(srv, counterLogs{c: c})
	coltracepb.RegisterTraceServiceServer(srv, counterTraces{c: c})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	c.srv, c.served = srv, served
	return nil
}

// Stop closes the listener and every connection; the counts are kept.
func (c *Counter) Stop() {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.srv == nil {
		return
	}
	c.srv.Stop()
	<-c.served
	c.srv, c.served = nil, nil
}

// Addr is the host:port the counter listens on.
func (c *Counter) Addr() string {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	return c.addr
}

// CounterTotals are a counter's totals.
type CounterTotals struct {
	Logs, Spans int64
	// LogRequests and SpanRequests are the Export calls per signal.
	LogRequests, SpanRequests int64
	// Keys is the number of distinct keys seen.
	Keys int
	// ResentRequests are log requests every keyed record of which had been
	// received before: an exporter's retry of a request whose first attempt
	// arrived but whose answer did not (e.g. its deadline passed), which
	// OTLP's at-least-once delivery allows. DuplicatesResent are the records
	// they repeated; DuplicatesFresh are repeated records in requests that
	// also carried new ones (an exporter sending the same record twice of
	// its own accord).
	ResentRequests, DuplicatesResent, DuplicatesFresh int64
}

// Totals returns the counts so far.
func (c *Counter) Totals() CounterTotals {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CounterTotals{Logs: c.logs, Spans: c.spans, LogRequests: c.requests, SpanRequests: c.spanRequests, Keys: len(c.byKey),
		ResentRequests: c.resentRequests, DuplicatesResent: c.dupResent, DuplicatesFresh: c.dupFresh}
}

// Count is how many records carried key.
func (c *Counter) Count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.byKey[key])
}

// EachKey calls f with every key seen and its record count (under the
// counter's lock: f must not call the counter).
func (c *Counter) EachKey(f func(key string, n int)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, n := range c.byKey {
		f(k, int(n))
	}
}

type counterLogs struct {
	collogspb.UnimplementedLogsServiceServer
	c *Counter
}

func (s counterLogs) Export(_ context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	c := s.c
	var keys []string
	n := int64(0)
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			for _, lr := range sl.GetLogRecords() {
				n++
				if c.key == nil {
					continue
				}
				if k := c.key(LogRecordWithResource{Resource: rl.GetResource(), ResourceSchemaURL: rl.GetSchemaUrl(),
					Scope: sl.GetScope(), ScopeSchemaURL: sl.GetSchemaUrl(), Record: lr}); k != "" {
					keys = append(keys, k)
				}
			}
		}
	}
	c.mu.Lock()
	c.requests++
	c.logs += n
	resent := len(keys) > 0
	for _, k := range keys {
		resent = resent && c.byKey[k] > 0
	}
	if resent {
		c.resentRequests++
	}
	for _, k := range keys {
		if c.byKey[k] > 0 {
			if resent {
				c.dupResent++
			} else {
				c.dupFresh++
			}
		}
		c.byKey[k]++
	}
	c.mu.Unlock()
	return &collogspb.ExportLogsServiceResponse{}, nil
}

type counterTraces struct {
	coltracepb.UnimplementedTraceServiceServer
	c *Counter
}

func (s counterTraces) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	n := int64(0)
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += int64(len(ss.GetSpans()))
		}
	}
	s.c.mu.Lock()
	s.c.spanRequests++
	s.c.spans += n
	s.c.mu.Unlock()
	return &coltracepb.ExportTraceServiceResponse{}, nil
}
