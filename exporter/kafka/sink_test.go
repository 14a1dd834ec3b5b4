package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/filter"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/certs"
)

func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// TestRecordsKeyedAndOrderedPerObject emits interleaved occurrences of three
// objects and checks, with a franz-go consumer, that each object's records
// are in one partition, keyed by its UID, in order, with the headers and the
// documented value.
func TestRecordsKeyedAndOrderedPerObject(t *testing.T) {
	c := newCluster(t, 6)
	s, _ := startSink(t, testConfig(c.ListenAddrs()))
	objects := []string{"web-a", "web-b", "web-c"}
	const perObject = 40
	var a acks
	ctx := context.Background()
	for count := int32(1); count <= perObject; count++ {
		for _, name := range objects {
			if err := s.Emit(ctx, warning(name, count), a.fn()); err != nil {
				t.Fatal(err)
			}
		}
	}
	total := len(objects) * perObject
	a.wait(t, int64(total), 10*time.Second)

	recs := consume(t, c.ListenAddrs(), testTopic, total)
	if len(recs) != total {
		t.Fatalf("consumed %d records, want %d", len(recs), total)
	}
	partitions := map[string]map[int32]bool{}
	counts := map[string][]int32{}
	for _, r := range recs {
		if v, _ := header(r, "schema"); v != "kube-otel-bridge.event/v1" {
			t.Fatalf("schema header %q", v)
		}
		if v, _ := header(r, "content-type"); v != "application/json" {
			t.Fatalf("content-type header %q", v)
		}
		var rec Record
		if err := jsonUnmarshalStrict(r.Value, &rec); err != nil {
			t.Fatalf("value %s: %v", r.Value, err)
		}
		key := string(r.Key)
		if key != rec.InvolvedObject.UID || !strings.HasPrefix(key, "uid-web-") {
			t.Fatalf("key %q, involved object uid %q", key, rec.InvolvedObject.UID)
		}
		want, _ := NewRecord("test-cluster", warning(rec.InvolvedObject.Name, rec.Count)).Marshal()
		if !bytes.Equal(r.Value, want) {
			t.Fatalf("value\n got %s\nwant %s", r.Value, want)
		}
		if partitions[key] == nil {
			partitions[key] = map[int32]bool{}
		}
		partitions[key][r.Partition] = true
		counts[key] = append(counts[key], rec.Count)
	}
	// franz-go's consumer returns each partition in offset order; records
	// of one key must all be in one partition with counts 1..perObject.
	used := map[int32]bool{}
	for key, ps := range partitions {
		if len(ps) != 1 {
			t.Errorf("%s spread over partitions %v", key, ps)
		}
		for p := range ps {
			used[p] = true
		}
		for i, cnt := range counts[key] {
			if cnt != int32(i+1) {
				t.Fatalf("%s: counts out of order: %v", key, counts[key])
			}
		}
	}
	if len(partitions) != 3 {
		t.Errorf("got %d keys, want 3", len(partitions))
	}
	t.Logf("3 objects landed in partitions %v", used)
	st := s.Stats()
	if st.Produced != uint64(total) || st.Buffered != 0 || st.FailedAttempts != 0 || st.LastError != "" {
		t.Errorf("stats %+v", st)
	}
}

// TestGoldenRecordThroughKafka: the value a consumer reads is exactly the
// documented golden record.
func TestGoldenRecordThroughKafka(t *testing.T) {
	c := newCluster(t, 1)
	want := goldenValue(t)
	s, err := newSink(testConfig(c.ListenAddrs()), "prod-eu-1", nil, fastRetry)
	if err != nil {
		t.Fatal(err)
	}
	var a acks
	if err := s.Emit(context.Background(), goldenOccurrence(), a.fn()); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.n.Load() != 1 {
		t.Fatal("Shutdown returned before the record was acknowledged")
	}
	recs := consume(t, c.ListenAddrs(), testTopic, 1)
	if len(recs) != 1 || !bytes.Equal(recs[0].Value, want) {
		t.Fatalf("consumed %q, want %s", recs[0].Value, want)
	}
	if string(recs[0].Key) != "8d2f6a1c-3b4e-4f5a-9c7d-1e2f3a4b5c6d" {
		t.Errorf("key %q", recs[0].Key)
	}
}

// TestAcksAllAndIdempotent inspects the produce requests the broker receives.
func TestAcksAllAndIdempotent(t *testing.T) {
	c := newCluster(t, 3)
	w := watchProduce(c)
	s, _ := startSink(t, testConfig(c.ListenAddrs()))
	var a acks
	for i := int32(1); i <= 10; i++ {
		if err := s.Emit(context.Background(), warning(fmt.Sprintf("p%d", i%3), i), a.fn()); err != nil {
			t.Fatal(err)
		}
	}
	a.wait(t, 10, 10*time.Second)
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.acks) == 0 {
		t.Fatal("no produce request seen")
	}
	for _, acks := range w.acks {
		if acks != -1 {
			t.Errorf("produce request with acks=%d, want -1 (all ISR)", acks)
		}
	}
	for _, pid := range w.pids {
		if pid < 0 {
			t.Errorf("record batch with producer id %d: the producer is not idempotent", pid)
		}
	}
	if w.codecs[2] == 0 {
		t.Errorf("batches by codec %v, want snappy (2) by default", w.codecs)
	}
}

func TestCompressionCodecs(t *testing.T) {
	for codec, attr := range map[string]int8{"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4} {
		t.Run(codec, func(t *testing.T) {
			c := newCluster(t, 2)
			w := watchProduce(c)
			cfg := testConfig(c.ListenAddrs())
			cfg.Compression = codec
			s, _ := startSink(t, cfg)
			var a acks
			for i := int32(1); i <= 20; i++ {
				if err := s.Emit(context.Background(), warning("web-a", i), a.fn()); err != nil {
					t.Fatal(err)
				}
			}
			a.wait(t, 20, 10*time.Second)
			recs := consume(t, c.ListenAddrs(), testTopic, 20)
			for i, r := range recs {
				var rec Record
				if err := jsonUnmarshalStrict(r.Value, &rec); err != nil || rec.Count != int32(i+1) {
					t.Fatalf("record %d: count %d, err %v", i, rec.Count, err)
				}
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if len(w.codecs) != 1 || w.codecs[attr] == 0 {
				t.Errorf("batches by codec attribute %v, want only %d", w.codecs, attr)
			}
		})
	}
}

func TestSASL(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			const password = "correct-horse-battery-staple"
			c := newCluster(t, 1, kfake.EnableSASL(), kfake.Superuser(mech, "bridge", password))
			dir := t.TempDir()
			cfg := testConfig(c.ListenAddrs())
			cfg.SASL = &SASLConfig{Mechanism: mech, Username: "bridge", PasswordFile: writeFile(t, dir, "password", password+"\n")}
			s, logs := startSink(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.Ping(ctx); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			var a acks
			if err := s.Emit(ctx, warning("web-a", 1), a.fn()); err != nil {
				t.Fatal(err)
			}
			a.wait(t, 1, 10*time.Second)
			if strings.Contains(logs.String(), password) {
				t.Error("the password appears in the logs")
			}
		})
	}
}

// TestSASLWrongPassword: the failure is clear (Ping, Stats, logs), nothing is
// acknowledged, the password is never shown, and once the password file is
// corrected (a rotated Secret) the waiting record is delivered.
//
// kfake closes the connection on bad credentials, where Kafka answers
// SASL_AUTHENTICATION_FAILED; the "kafka-like" case makes kfake answer as
// Kafka does (for PLAIN, whose password the test can read off the wire).
func TestSASLWrongPassword(t *testing.T) {
	for _, tc := range []struct {
		name, mech string
		kafkaLike  bool
	}{
		{"kafka-like PLAIN", "PLAIN", true},
		{"kfake SCRAM-SHA-256", "SCRAM-SHA-256", false},
		{"kfake SCRAM-SHA-512", "SCRAM-SHA-512", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const password, wrong = "correct-horse-battery-staple", "Tr0ub4dor&3"
			c := newCluster(t, 1, kfake.EnableSASL(), kfake.Superuser(tc.mech, "bridge", password))
			if tc.kafkaLike {
				c.ControlKey(int16(kmsg.SASLAuthenticate), func(kr kmsg.Request) (kmsg.Response, error, bool) {
					c.KeepControl()
					req := kr.(*kmsg.SASLAuthenticateRequest)
					if strings.HasSuffix(string(req.SASLAuthBytes), "\x00"+password) {
						return nil, nil, false // kfake accepts it
					}
					resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
					resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
					resp.ErrorMessage = kmsg.StringPtr("Authentication failed: Invalid username or password")
					return resp, nil, true
				})
			}
			dir := t.TempDir()
			cfg := testConfig(c.ListenAddrs())
			cfg.SASL = &SASLConfig{Mechanism: tc.mech, Username: "bridge", PasswordFile: writeFile(t, dir, "password", wrong)}
			s, logs := startSink(t, cfg)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := s.Ping(ctx)
			if err == nil || !strings.Contains(err.Error(), "sasl.passwordFile") {
				t.Fatalf("Ping with a wrong password: %v, want an authentication error with a hint", err)
			}
			t.Logf("Ping: %v", err)
			var a acks
			if err := s.Emit(ctx, warning("web-a", 1), a.fn()); err != nil {
				t.Fatal(err)
			}
			// franz-go retries authentication by itself (every metadata
			// refresh) and logs it; the sink counts it and shows it.
			eventually(t, 10*time.Second, func() bool { return s.Stats().ConnectionErrors >= 2 },
				func() string { return fmt.Sprintf("stats %+v", s.Stats()) })
			if tc.kafkaLike && !strings.Contains(logs.String(), `level=ERROR msg="franz-go: unable to initialize sasl"`) {
				t.Errorf("the failure is not logged as an error:\n%s", logs.String())
			}
			st := s.Stats()
			if a.n.Load() != 0 || st.Produced != 0 || st.Buffered != 1 || !strings.Contains(st.LastError, "sasl.passwordFile") {
				t.Fatalf("after failed attempts: acks %d, stats %+v", a.n.Load(), st)
			}
			if tc.kafkaLike && !strings.Contains(st.LastError, "SASL_AUTHENTICATION_FAILED") {
				t.Errorf("LastError %q does not name SASL_AUTHENTICATION_FAILED", st.LastError)
			}
			t.Logf("LastError: %s", st.LastError)
			for _, secret := range []string{password, wrong} {
				if strings.Contains(logs.String(), secret) || strings.Contains(st.LastError, secret) || strings.Contains(err.Error(), secret) {
					t.Errorf("a password appears in the logs or errors")
				}
			}

			writeFile(t, dir, "password", password+"\n")
			a.wait(t, 1, 15*time.Second)
			if st := s.Stats(); st.Produced != 1 || st.LastError != "" || st.Buffered != 0 {
				t.Errorf("after fixing the password: %+v", st)
			}
			consume(t, c.ListenAddrs(), testTopic, 1, kgo.SASL(mustMechanism(t, cfg.SASL)))
		})
	}
}

func mustMechanism(t *testing.T, c *SASLConfig) sasl.Mechanism {
	t.Helper()
	m, err := c.mechanism()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTLS(t *testing.T) {
	pki := certs.New(t, "")
	c := newCluster(t, 1, kfake.TLS(pki.ServerTLSConfig(true))) // mutual TLS
	addrs := c.ListenAddrs()

	cfg := testConfig(addrs)
	cfg.TLS = &TLSConfig{CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile}
	s, _ := startSink(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping over mutual TLS: %v", err)
	}
	var a acks
	if err := s.Emit(ctx, warning("web-a", 1), a.fn()); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 1, 10*time.Second)
	consume(t, addrs, testTopic, 1, kgo.DialTLSConfig(pki.ClientTLSConfig(true)))

	// Without the CA the broker is not trusted; without a client
	// certificate the broker refuses the connection.
	for name, tc := range map[string]*TLSConfig{
		"system roots":   {CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile},
		"no client cert": {CAFile: pki.CAFile},
	} {
		cfg := testConfig(addrs)
		cfg.TLS = tc
		s, _ := startSink(t, cfg, kgo.RequestRetries(1))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := s.Ping(ctx)
		cancel()
		if err == nil {
			t.Errorf("%s: Ping succeeded", name)
		}
		t.Logf("%s: %v", name, err)
	}
}

// TestBrokerUnavailableAtStart: records emitted while no broker listens are
// kept, not acknowledged, and delivered (then acknowledged) once a broker
// starts on the address; every ack comes after the broker received the
// record.
func TestBrokerUnavailableAtStart(t *testing.T) {
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s, _ := startSink(t, testConfig([]string{addr}))
	w := newProduceWatch()
	var a acks
	var mu sync.Mutex
	var early []string
	const n = 30
	for i := int32(1); i <= n; i++ {
		ack := a.fn()
		err := s.Emit(context.Background(), warning(fmt.Sprintf("p%d", i%3), i), func() {
			// At-least-once: by the time the k-th ack happens, the
			// broker must have received at least k records.
			mu.Lock()
			if got, k := w.records.Load(), a.n.Load()+1; got < k {
				early = append(early, fmt.Sprintf("ack %d with %d records at the broker", k, got))
			}
			mu.Unlock()
			ack()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	if a.n.Load() != 0 || s.Stats().Buffered != n {
		t.Fatalf("with no broker: %d acks, stats %+v", a.n.Load(), s.Stats())
	}

	c := newCluster(t, 3, kfake.Ports(port))
	w.attach(c)
	a.wait(t, n, 30*time.Second)
	mu.Lock()
	if len(early) > 0 {
		t.Errorf("acks before the broker had the records: %v", early)
	}
	mu.Unlock()
	checkDelivered(t, c.ListenAddrs(), n)
	if st := s.Stats(); st.Produced != n || st.Buffered != 0 {
		t.Errorf("stats %+v", st)
	}
}

// checkDelivered consumes the topic and checks that it holds counts 1..n
// (duplicates allowed: delivery is at-least-once) and that each object's
// counts never go backwards.
func checkDelivered(t *testing.T, addrs []string, n int) {
	t.Helper()
	recs := consume(t, addrs, testTopic, n)
	seen := map[int32]int{}
	last := map[string]int32{}
	for _, r := range recs {
		var rec Record
		if err := jsonUnmarshalStrict(r.Value, &rec); err != nil {
			t.Fatal(err)
		}
		seen[rec.Count]++
		key := string(r.Key)
		if rec.Count < last[key] {
			t.Errorf("%s: count %d after %d", key, rec.Count, last[key])
		}
		last[key] = rec.Count
	}
	for i := int32(1); i <= int32(n); i++ {
		if seen[i] == 0 {
			t.Errorf("count %d never reached the topic", i)
		}
	}
	if len(recs) != n {
		t.Logf("%d records for %d occurrences (duplicates: at-least-once)", len(recs), n)
	}
}

// TestBrokerRestart: the broker goes away mid-stream and comes back (same
// port, same data directory, as a restarted Kafka would): records emitted
// meanwhile wait, unacknowledged, and nothing is lost.
func TestBrokerRestart(t *testing.T) {
	port := freePort(t)
	dataDir := t.TempDir()
	start := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dataDir), kfake.SeedTopics(3, testTopic))
		if err != nil {
			t.Fatalf("kfake: %v", err)
		}
		return c
	}
	c := start()
	s, _ := startSink(t, testConfig(c.ListenAddrs()))
	var a acks
	emit := func(from, to int32) {
		for i := from; i <= to; i++ {
			if err := s.Emit(context.Background(), warning(fmt.Sprintf("p%d", i%3), i), a.fn()); err != nil {
				t.Fatal(err)
			}
		}
	}
	emit(1, 20)
	a.wait(t, 20, 10*time.Second)

	c.Close()
	emit(21, 40)
	time.Sleep(time.Second)
	if got := a.n.Load(); got != 20 {
		t.Fatalf("%d acks while the broker was down, want 20", got)
	}

	c = start()
	defer c.Close()
	a.wait(t, 40, 30*time.Second)
	checkDelivered(t, c.ListenAddrs(), 40)
}

// TestEmitBlocksWhenBufferFull: with MaxBufferedRecords unacknowledged
// records, Emit blocks until its context ends (backpressure) and resumes
// when the broker is back.
func TestEmitBlocksWhenBufferFull(t *testing.T) {
	port := freePort(t)
	cfg := testConfig([]string{fmt.Sprintf("127.0.0.1:%d", port)})
	cfg.MaxBufferedRecords = 5
	s, _ := startSink(t, cfg)
	var a acks
	for i := int32(1); i <= 5; i++ {
		if err := s.Emit(context.Background(), warning("web-a", i), a.fn()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	start := time.Now()
	err := s.Emit(ctx, warning("web-a", 6), a.fn())
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("Emit on a full buffer returned %v after %s, want to block until the deadline", err, time.Since(start))
	}
	if st := s.Stats(); st.Buffered != 5 || st.BufferCapacity != 5 {
		t.Fatalf("stats %+v", st)
	}

	blocked := make(chan error, 1)
	go func() { blocked <- s.Emit(context.Background(), warning("web-a", 6), a.fn()) }()
	select {
	case err := <-blocked:
		t.Fatalf("Emit returned %v with a full buffer", err)
	case <-time.After(200 * time.Millisecond):
	}
	c := newCluster(t, 1, kfake.Ports(port))
	select {
	case err := <-blocked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Emit still blocked after the broker came back")
	}
	a.wait(t, 6, 10*time.Second)
	checkDelivered(t, c.ListenAddrs(), 6)
}

func TestFilter(t *testing.T) {
	c := newCluster(t, 1)
	cfg := testConfig(c.ListenAddrs())
	cfg.Filter = filter.Config{ExcludeNamespaces: []string{"kube-system"}, Reasons: []string{"BackOff"}}
	s, _ := startSink(t, cfg)

	normal := warning("web-a", 1)
	normal.Type = "Normal"
	system := warning("coredns", 1)
	system.Namespace, system.Regarding.Namespace = "kube-system", "kube-system"
	other := warning("web-b", 1)
	other.Reason = "FailedMount"
	for _, o := range []*convert.Occurrence{normal, system, other} {
		acked := false
		if err := s.Emit(context.Background(), o, func() { acked = true }); err != nil {
			t.Fatal(err)
		}
		if !acked {
			t.Errorf("%s %s/%s: filtered out but not acknowledged at once", o.Type, o.Namespace, o.Reason)
		}
	}
	var a acks
	if err := s.Emit(context.Background(), warning("web-c", 7), a.fn()); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 1, 10*time.Second)
	recs := consume(t, c.ListenAddrs(), testTopic, 1)
	if len(recs) != 1 || string(recs[0].Key) != "uid-web-c" {
		t.Errorf("topic holds %d records (first key %q), want only web-c", len(recs), recs[0].Key)
	}
	if st := s.Stats(); st.FilteredOut != 3 || st.Produced != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestShutdownFlushes: Shutdown delivers what franz-go still lingers on
// before closing, and later Emits fail.
func TestShutdownFlushes(t *testing.T) {
	c := newCluster(t, 1)
	s, err := newSink(testConfig(c.ListenAddrs()), "c", nil, fastRetry, kgo.ProducerLinger(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var a acks
	for i := int32(1); i <= 10; i++ {
		if err := s.Emit(context.Background(), warning("web-a", i), a.fn()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if a.n.Load() != 10 || time.Since(start) > 5*time.Second {
		t.Fatalf("Shutdown returned after %s with %d of 10 acks", time.Since(start), a.n.Load())
	}
	if err := s.Emit(context.Background(), warning("web-a", 11), nil); !errors.Is(err, ErrSinkClosed) {
		t.Errorf("Emit after Shutdown: %v", err)
	}
	checkDelivered(t, c.ListenAddrs(), 10)
}

// TestShutdownGivesUp: with the broker down, Shutdown ends with its context,
// reports the undelivered records and acknowledges none.
func TestShutdownGivesUp(t *testing.T) {
	cfg := testConfig([]string{fmt.Sprintf("127.0.0.1:%d", freePort(t))})
	cfg.MaxBufferedRecords = 3
	s, err := newSink(cfg, "c", nil, fastRetry)
	if err != nil {
		t.Fatal(err)
	}
	var a acks
	for i := int32(1); i <= 3; i++ {
		if err := s.Emit(context.Background(), warning("web-a", i), a.fn()); err != nil {
			t.Fatal(err)
		}
	}
	blocked := make(chan error, 1)
	go func() { blocked <- s.Emit(context.Background(), warning("web-a", 4), a.fn()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = s.Shutdown(ctx)
	select {
	case err := <-blocked:
		if !errors.Is(err, ErrSinkClosed) {
			t.Errorf("blocked Emit returned %v, want ErrSinkClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Emit still blocked after Shutdown")
	}
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "3 records not delivered") {
		t.Fatalf("Shutdown: %v", err)
	}
	if a.n.Load() != 0 {
		t.Errorf("%d records acknowledged without delivery", a.n.Load())
	}
	if err2 := s.Shutdown(context.Background()); err2 != err {
		t.Errorf("second Shutdown: %v, want the first result", err2)
	}
}

// TestTooLargeRecordIsRejected: a record no broker can take is logged,
// counted and acknowledged, and does not hold up the others.
func TestTooLargeRecordIsRejected(t *testing.T) {
	c := newCluster(t, 1)
	s, logs := startSink(t, testConfig(c.ListenAddrs()))
	big := warning("web-a", 1)
	big.Note = strings.Repeat("x", 2<<20)
	var a acks
	if err := s.Emit(context.Background(), big, a.fn()); err != nil {
		t.Fatal(err)
	}
	if err := s.Emit(context.Background(), warning("web-a", 2), a.fn()); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 2, 10*time.Second)
	if st := s.Stats(); st.Rejected != 1 || st.Produced != 1 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "can never be produced") {
		t.Errorf("rejection not logged:\n%s", logs.String())
	}
}

// failProduce makes the cluster answer the next n produce requests with code
// for every partition.
func failProduce(c *kfake.Cluster, n int, code int16) {
	var left = n
	c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		if left == 0 {
			return nil, nil, false
		}
		left--
		c.KeepControl()
		req := kr.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

// TestNonRetriableErrorsAreRetried: records franz-go gives up on (an error it
// does not retry, here TOPIC_AUTHORIZATION_FAILED while ACLs are being fixed)
// are produced again by the sink, in order, and acknowledged only once
// delivered.
func TestNonRetriableErrorsAreRetried(t *testing.T) {
	c := newCluster(t, 2)
	failProduce(c, 3, kerr.TopicAuthorizationFailed.Code)
	s, logs := startSink(t, testConfig(c.ListenAddrs()))
	var a acks
	const n = 30
	for i := int32(1); i <= n; i++ {
		if err := s.Emit(context.Background(), warning(fmt.Sprintf("p%d", i%3), i), a.fn()); err != nil {
			t.Fatal(err)
		}
	}
	a.wait(t, n, 20*time.Second)
	st := s.Stats()
	if st.FailedAttempts == 0 || st.Produced != n || st.Buffered != 0 || st.LastError != "" {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "TOPIC_AUTHORIZATION_FAILED") || !strings.Contains(logs.String(), "IdempotentWrite") {
		t.Errorf("the failure and its hint are not logged:\n%s", logs.String())
	}
	checkDelivered(t, c.ListenAddrs(), n)
}

// TestMissingTopic: Ping names a missing topic; records wait for it (no
// loss, no ack) and are delivered once it is created.
func TestMissingTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, _ := startSink(t, testConfig(c.ListenAddrs()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Ping(ctx); err == nil || !strings.Contains(err.Error(), "UNKNOWN_TOPIC_OR_PARTITION") {
		t.Fatalf("Ping without the topic: %v", err)
	}
	var a acks
	if err := s.Emit(ctx, warning("web-a", 1), a.fn()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // franz-go's own limit would have failed the record by now
	if a.n.Load() != 0 || s.Stats().Buffered != 1 {
		t.Fatalf("without the topic: %d acks, stats %+v", a.n.Load(), s.Stats())
	}

	admin, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = testTopic, 1, 1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, admin)
	if err != nil || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("CreateTopics: %v %+v", err, resp)
	}
	a.wait(t, 1, 15*time.Second)
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping with the topic: %v", err)
	}
	checkDelivered(t, c.ListenAddrs(), 1)
}
