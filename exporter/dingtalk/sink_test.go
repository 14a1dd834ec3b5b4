package dingtalk_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/dingtalk"
	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/filter"
	"github.com/kube-otel-bridge/kube-otel-bridge/test/dingtalkserver"
)

func TestSignedMarkdownAccepted(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.emit(warning())
	msgs := e.srv.WaitMessages(1, 10*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("server accepted %d messages; requests: %+v", len(msgs), e.srv.Requests())
	}
	waitFor(t, "ack", func() bool { return e.acks.Load() == 1 })
	m := msgs[0]
	t.Logf("title: %s\n%s", m.Title, m.Text)
	if m.MsgType != "markdown" {
		t.Errorf("msgtype %q", m.MsgType)
	}
	if want := "[prod-1] BackOff: Pod shop/web-777-a"; m.Title != want {
		t.Errorf("title %q, want %q", m.Title, want)
	}
	for _, want := range []string{
		"### ⚠️ Warning BackOff on Pod web-777-a\n\n",
		"**Cluster:** prod-1\n\n",
		"**Namespace:** shop\n\n",
		"**Object:** Pod web-777-a\n\n",
		"**Owner chain:** Deployment web → ReplicaSet web-777 → Pod web-777-a\n\n",
		"**Reason:** BackOff\n\n",
		"**Message:** Back-off restarting failed container app in pod web-777-a＿shop(1234)\n\n",
		"**Count:** 3\n\n",
		"**Time:** 2025-03-04T05:06:07Z\n\n",
		"**Reported by:** kubelet on node-1\n\n",
		"**Trace:** [" + traceHex + "](https://jaeger.example.com/trace/" + traceHex + "?uiFind=00f067aa0ba902b7)",
	} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("text lacks %q", want)
		}
	}
	if strings.Contains(m.Text, "@") {
		t.Errorf("mention without atMobiles:\n%s", m.Text)
	}
	st := e.sink.Stats()
	if st.Posted != 1 || st.Rejected != 0 || st.Retries != 0 || st.Pending != 0 {
		t.Errorf("stats %+v", st)
	}
	// The signature is computed per request and escaped exactly once.
	r := e.srv.Requests()[0]
	q, err := url.ParseQuery(r.RawQuery)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.RawQuery, "%25") || q.Get("timestamp") == "" || q.Get("sign") == "" {
		t.Errorf("query %q", r.RawQuery)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
}

func TestWrongSecretRejectedNotRetriedLoggedOnce(t *testing.T) {
	const secret = "SECwrong-secret-0123456789"
	e := newEnv(t, envOpts{secret: secret})
	e.emit(warning())
	waitFor(t, "ack", func() bool { return e.acks.Load() == 1 })
	if n := len(e.srv.Requests()); n != 1 {
		t.Fatalf("server saw %d requests, want 1", n)
	}
	st := e.sink.Stats()
	if st.Rejected != 1 || st.RejectedPosts != 1 || st.Posted != 0 || st.Retries != 0 || st.Pending != 0 {
		t.Errorf("stats %+v", st)
	}
	for range 4 {
		e.emit(warning())
	}
	waitFor(t, "5 acks", func() bool { return e.acks.Load() == 5 })
	if n := len(e.srv.Requests()); n != 5 {
		t.Errorf("server saw %d requests, want 5 (one per message, none retried)", n)
	}
	if n := e.srv.CountErrcode(dingtalkserver.ErrSecurity); n != 5 {
		t.Errorf("%d answers 310000", n)
	}
	if st := e.sink.Stats(); st.Rejected != 5 || st.Retries != 0 {
		t.Errorf("stats %+v", st)
	}
	logs := e.logs.String()
	if n := countLines(logs, "errcode=310000"); n != 1 {
		t.Errorf("310000 logged %d times, want once:\n%s", n, logs)
	}
	if strings.Contains(logs, secret) || strings.Contains(logs, "test-token") {
		t.Errorf("a secret is in the logs:\n%s", logs)
	}
	if len(e.srv.Messages()) != 0 {
		t.Error("server accepted a message signed with the wrong secret")
	}
}

func TestWrongTokenRejectedNotRetriedLoggedOnce(t *testing.T) {
	e := newEnv(t, envOpts{token: "not-the-token"})
	for range 5 {
		e.emit(warning())
	}
	waitFor(t, "5 acks", func() bool { return e.acks.Load() == 5 })
	if n := e.srv.CountErrcode(dingtalkserver.ErrTokenNotExist); n != 5 || len(e.srv.Requests()) != 5 {
		t.Errorf("%d answers 300001 of %d requests, want 5 of 5", n, len(e.srv.Requests()))
	}
	if st := e.sink.Stats(); st.Rejected != 5 || st.Retries != 0 || st.Posted != 0 {
		t.Errorf("stats %+v", st)
	}
	logs := e.logs.String()
	if n := countLines(logs, "errcode=300001"); n != 1 {
		t.Errorf("300001 logged %d times, want once:\n%s", n, logs)
	}
	if strings.Contains(logs, "not-the-token") {
		t.Errorf("the token is in the logs:\n%s", logs)
	}
}

func TestBurstIsDigestedWithinRateLimit(t *testing.T) {
	e := newEnv(t, envOpts{fakeClock: true})
	// 100 warnings at once: 60 BackOff in shop, 40 FailedScheduling in web.
	for i := range 100 {
		if i%5 < 3 {
			e.emit(warningN(i, "shop", "BackOff"))
		} else {
			e.emit(warningN(i, "web", "FailedScheduling"))
		}
	}
	waitFor(t, "19 posts and 81 warnings in the digest", func() bool {
		st := e.sink.Stats()
		return st.Posted == 19 && st.InDigest == 81 && e.clock.Timers() == 1
	})
	if n := len(e.srv.Messages()); n != 19 {
		t.Fatalf("%d messages before the window ended", n)
	}
	e.clock.Advance(time.Minute)
	msgs := e.srv.WaitMessages(20, 10*time.Second)
	waitFor(t, "100 acks", func() bool { return e.acks.Load() == 100 })

	reqs := e.srv.Requests()
	if len(reqs) > 20 {
		t.Errorf("%d posts for a burst of 100, want at most 20", len(reqs))
	}
	if n := e.srv.CountErrcode(dingtalkserver.ErrTooFast); n != 0 {
		t.Errorf("%d answers 130101", n)
	}
	ind, dig, digests := accounted(t, msgs)
	if ind+dig != 100 {
		t.Errorf("individual %d + digested %d = %d, want 100", ind, dig, ind+dig)
	}
	if ind != 19 || dig != 81 || digests != 1 {
		t.Errorf("individual %d, digested %d in %d digests; want 19, 81, 1", ind, dig, digests)
	}
	st := e.sink.Stats()
	if st.Posted != 19 || st.Digested != 81 || st.Digests != 1 || st.Pending != 0 || st.InDigest != 0 || st.TooFast != 0 {
		t.Errorf("stats %+v", st)
	}
	d := msgs[len(msgs)-1]
	t.Logf("digest title: %s\n%s", d.Title, d.Text)
	for _, want := range []string{
		"### ⚠️ 81 warnings in the last minute",
		"- 48× BackOff in ns shop",
		"- 33× FailedScheduling in ns web",
		"**Top objects:**",
		"(https://jaeger.example.com/trace/" + traceHex[:30],
		"**Cluster:** prod-1",
	} {
		if !strings.Contains(d.Text, want) {
			t.Errorf("digest lacks %q", want)
		}
	}
	if !strings.Contains(d.Title, "81 warnings") {
		t.Errorf("digest title %q", d.Title)
	}

	// The storm goes on with a new window; a window that collects a single
	// warning posts it alone and ends the storm.
	e.emit(warningN(200, "shop", "BackOff"))
	waitFor(t, "one warning in the new window", func() bool {
		return e.sink.Stats().InDigest == 1 && e.clock.Timers() == 1
	})
	e.clock.Advance(time.Minute)
	waitFor(t, "101 acks", func() bool { return e.acks.Load() == 101 })
	e.emit(warningN(201, "shop", "BackOff"))
	waitFor(t, "102 acks", func() bool { return e.acks.Load() == 102 })
	if st := e.sink.Stats(); st.Posted != 21 || st.Digests != 1 {
		t.Errorf("after the storm: %+v", st)
	}
	if n := e.srv.CountErrcode(dingtalkserver.ErrTooFast); n != 0 {
		t.Errorf("%d answers 130101", n)
	}
}

func TestSustainedStormOneDigestPerMinute(t *testing.T) {
	e := newEnv(t, envOpts{fakeClock: true})
	total := 0
	// 5 minutes, 200 warnings each.
	for minute := range 5 {
		for i := range 200 {
			e.emit(warningN(i, "shop", "BackOff"))
			total++
		}
		waitFor(t, "the minute's warnings handled", func() bool {
			st := e.sink.Stats()
			return int(st.Posted+st.Digested)+st.InDigest == total && e.clock.Timers() == 1
		})
		if minute < 4 {
			e.clock.Advance(time.Minute)
			waitFor(t, "the minute's digest", func() bool { return e.sink.Stats().Digests == uint64(minute+1) })
		}
	}
	e.shutdown()
	msgs := e.srv.Messages()
	ind, dig, digests := accounted(t, msgs)
	if ind+dig != total || int64(total) != e.acks.Load() {
		t.Errorf("individual %d + digested %d != %d (acks %d)", ind, dig, total, e.acks.Load())
	}
	if digests != 5 || ind != 19 {
		t.Errorf("%d digests and %d individual posts in a 5-minute storm, want 5 and 19", digests, ind)
	}
	if n := e.srv.CountErrcode(dingtalkserver.ErrTooFast); n != 0 {
		t.Errorf("%d answers 130101", n)
	}
}

func TestHostileMessageEscaped(t *testing.T) {
	hostile := "# pwned\n**bold** [click](https://evil.example/x) <script>alert(1)</script>\r\n" +
		"`rm -rf /` @all @13900000000 ![img](https://evil.example/i.png) _it_ ~~gone~~ &#64;all \\\n> quoted\n- item"
	e := newEnv(t, envOpts{})
	o := warning()
	o.Note = hostile
	o.Reason = "Bad#Reason[x](y)"
	e.emit(o)
	long := warning()
	long.Note = strings.Repeat("0123456789", 600)
	e.emit(long)
	msgs := e.srv.WaitMessages(2, 10*time.Second)
	if len(msgs) != 2 {
		t.Fatalf("%d messages; requests %+v", len(msgs), e.srv.Requests())
	}
	text := msgs[0].Text
	t.Logf("%s\n%s", msgs[0].Title, text)
	for _, bad := range []string{
		"# pwned", "[click]", "](https://evil", "](y)", "<script>", "`rm", "**bold**", "![img]", "@all", "&#64;",
		"@13900000000", "_it_", "~~gone~~", "\n> quoted", "\n- item", "https://evil",
	} {
		if strings.Contains(text, bad) {
			t.Errorf("text contains raw %q", bad)
		}
	}
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "### ⚠️ Warning Bad＃Reason") {
			t.Errorf("heading injected: %q", l)
		}
	}
	for _, want := range []string{
		"**Message:** ＃ pwned ↵ ＊＊bold＊＊ ［click］(https：//evil.example/x) ＜script＞alert(1)＜/script＞ ↵ ｀rm -rf /｀ ＠all ＠13900000000",
		"＆＃64;all ＼ ↵ ＞ quoted ↵ - item\n\n",
		"**Count:** 3\n\n", "**Reason:** Bad＃Reason［x］(y)\n\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q", want)
		}
	}
	if strings.Contains(msgs[0].Title, "@") || strings.Contains(msgs[0].Title, "\n") {
		t.Errorf("title %q", msgs[0].Title)
	}
	lt := msgs[1].Text
	if !strings.Contains(lt, "… (truncated, 6000 bytes in all)") || len(lt) > 2500 {
		t.Errorf("long message not truncated (%d bytes)", len(lt))
	}
	if !strings.Contains(lt, "**Count:** 3") {
		t.Error("fields after a long message lost")
	}
}

func TestMentions(t *testing.T) {
	for _, msgType := range []string{"markdown", "text"} {
		t.Run(msgType, func(t *testing.T) {
			e := newEnv(t, envOpts{config: func(c *dingtalk.Config) {
				c.MsgType = msgType
				c.AtMobiles = []string{"13800000000", "+86-13700000000"}
				c.AtUserIDs = []string{"manager4220"}
			}})
			e.emit(warning())
			msgs := e.srv.WaitMessages(1, 10*time.Second)
			if len(msgs) != 1 {
				t.Fatalf("%d messages", len(msgs))
			}
			m := msgs[0]
			if m.MsgType != msgType {
				t.Errorf("msgtype %q", m.MsgType)
			}
			if strings.Join(m.At.AtMobiles, ",") != "13800000000,+86-13700000000" ||
				strings.Join(m.At.AtUserIDs, ",") != "manager4220" || m.At.IsAtAll {
				t.Errorf("at %+v", m.At)
			}
			if !strings.HasSuffix(m.Text, "@13800000000 @+86-13700000000 @manager4220") {
				t.Errorf("text does not end with the mentions:\n%s", m.Text)
			}
		})
	}
}

func TestTextMessage(t *testing.T) {
	e := newEnv(t, envOpts{config: func(c *dingtalk.Config) { c.MsgType = "text"; c.IsAtAll = true }})
	o := warning()
	o.Note = "line one\nline two @all [x](y)"
	e.emit(o)
	msgs := e.srv.WaitMessages(1, 10*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	t.Logf("\n%s", m.Text)
	want := "⚠️ Warning BackOff on Pod web-777-a\n" +
		"Cluster: prod-1\n" +
		"Namespace: shop\n" +
		"Object: Pod web-777-a\n" +
		"Owner chain: Deployment web → ReplicaSet web-777 → Pod web-777-a\n" +
		"Reason: BackOff\n" +
		"Message: line one ↵ line two ＠all [x](y)\n" +
		"Count: 3\n" +
		"Time: 2025-03-04T05:06:07Z\n" +
		"Reported by: kubelet on node-1\n" +
		"Trace: https://jaeger.example.com/trace/" + traceHex + "?uiFind=00f067aa0ba902b7"
	if m.MsgType != "text" || m.Text != want {
		t.Errorf("got %s message:\n%s\nwant:\n%s", m.MsgType, m.Text, want)
	}
	if !m.At.IsAtAll {
		t.Error("isAtAll not sent")
	}
}

func TestServerErrorsRetried(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.srv.FailNext(2, http.StatusServiceUnavailable)
	e.emit(warning())
	waitFor(t, "ack", func() bool { return e.acks.Load() == 1 })
	if n := len(e.srv.Messages()); n != 1 {
		t.Errorf("%d messages delivered, want 1", n)
	}
	if n := len(e.srv.Requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	if st := e.sink.Stats(); st.Retries != 2 || st.Posted != 1 || st.Rejected != 0 {
		t.Errorf("stats %+v", st)
	}
	// errcode -1 (system busy) is retried too.
	e.srv.FailNextErrcode(1, dingtalkserver.ErrSystemBusy, "system busy")
	e.emit(warning())
	waitFor(t, "second ack", func() bool { return e.acks.Load() == 2 })
	if st := e.sink.Stats(); st.Retries != 3 || st.Posted != 2 {
		t.Errorf("stats %+v", st)
	}
	// Each attempt was signed anew (the server checked every signature).
	if n := len(e.srv.Messages()); n != 2 {
		t.Errorf("%d messages delivered, want 2", n)
	}
}

func TestTooFastBacksOffAndRetries(t *testing.T) {
	// Someone else posts with the same robot: the server allows only 2 per
	// minute to us although we may send 20.
	e := newEnv(t, envOpts{fakeClock: true, server: dingtalkserver.Config{RatePerMinute: 2}})
	for i := range 3 {
		e.emit(warningN(i, "shop", "BackOff"))
	}
	waitFor(t, "a 130101 answer and a pause", func() bool {
		return e.sink.Stats().TooFast == 1 && e.clock.Timers() == 1
	})
	if e.acks.Load() != 2 {
		t.Errorf("%d acks before the pause", e.acks.Load())
	}
	e.clock.Advance(time.Minute)
	waitFor(t, "3 acks", func() bool { return e.acks.Load() == 3 })
	if n := len(e.srv.Messages()); n != 3 {
		t.Errorf("%d messages", n)
	}
	if n := e.srv.CountErrcode(dingtalkserver.ErrTooFast); n != 1 {
		t.Errorf("%d answers 130101, want 1", n)
	}
	if st := e.sink.Stats(); st.Posted != 3 || st.Retries != 1 || st.TooFast != 1 {
		t.Errorf("stats %+v", st)
	}
	if n := countLines(e.logs.String(), "too fast"); n != 1 {
		t.Errorf("too fast logged %d times", n)
	}
}

func TestShutdownFlushesPendingDigest(t *testing.T) {
	e := newEnv(t, envOpts{fakeClock: true, config: func(c *dingtalk.Config) { c.RatePerMinute = 5 }})
	for i := range 8 {
		e.emit(warningN(i, "shop", "BackOff"))
	}
	waitFor(t, "4 posts and 4 in the digest", func() bool {
		st := e.sink.Stats()
		return st.Posted == 4 && st.InDigest == 4
	})
	e.shutdown() // the clock does not move: the digest goes out at once
	if e.acks.Load() != 8 {
		t.Errorf("%d acks, want 8", e.acks.Load())
	}
	msgs := e.srv.Messages()
	ind, dig, digests := accounted(t, msgs)
	if ind != 4 || dig != 4 || digests != 1 || len(e.srv.Requests()) != 5 {
		t.Errorf("individual %d, digested %d in %d digests, %d requests", ind, dig, digests, len(e.srv.Requests()))
	}
	if err := e.sink.Emit(context.Background(), warning(), nil); !errors.Is(err, dingtalk.ErrClosed) {
		t.Errorf("Emit after Shutdown: %v", err)
	}
}

func TestShutdownDeadlineReportsUndelivered(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.srv.Close() // connection refused from now on
	e.emit(warning())
	e.emit(warning())
	waitFor(t, "a retry", func() bool { return e.sink.Stats().Retries > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := e.sink.Shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), "2 warnings not delivered") {
		t.Errorf("Shutdown: %v", err)
	}
	if e.acks.Load() != 0 {
		t.Errorf("%d undelivered warnings acknowledged", e.acks.Load())
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "DingTalk post failed, retrying") || countLines(logs, "retrying") != 1 {
		t.Errorf("want the failure logged once:\n%s", logs)
	}
	if strings.Contains(logs, "test-token") || strings.Contains(logs, "sign=") {
		t.Errorf("token or signature in the logs:\n%s", logs)
	}
}

func TestFilterRespected(t *testing.T) {
	e := newEnv(t, envOpts{config: func(c *dingtalk.Config) {
		c.Filter = filter.Config{ExcludeNamespaces: []string{"kube-system"}}
	}})
	normal := warning()
	normal.Type, normal.Reason = "Normal", "Pulled"
	excluded := warning()
	excluded.Namespace, excluded.Regarding.Namespace = "kube-system", "kube-system"
	e.emit(normal)
	e.emit(excluded)
	if e.acks.Load() != 2 {
		t.Errorf("filtered occurrences not acknowledged at once: %d acks", e.acks.Load())
	}
	e.emit(warning())
	waitFor(t, "third ack", func() bool { return e.acks.Load() == 3 })
	e.shutdown()
	if n := len(e.srv.Requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if st := e.sink.Stats(); st.Filtered != 2 || st.Posted != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestEmitBlocksWhenQueueFull(t *testing.T) {
	e := newEnv(t, envOpts{
		config: func(c *dingtalk.Config) { c.QueueSize = 2 },
		opts:   []dingtalk.Option{dingtalk.WithRetryBackoff(100*time.Millisecond, 100*time.Millisecond)},
	})
	e.srv.FailNext(3, http.StatusBadGateway)
	e.emit(warning())
	e.emit(warning())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := e.sink.Emit(ctx, warning(), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Emit on a full queue: %v", err)
	}
	e.emit(warning()) // blocks until the first one is delivered
	waitFor(t, "3 acks", func() bool { return e.acks.Load() == 3 })
	if n := len(e.srv.Messages()); n != 3 {
		t.Errorf("%d messages", n)
	}
}

func TestPermanentHTTPStatusAndDigestRejection(t *testing.T) {
	e := newEnv(t, envOpts{fakeClock: true, config: func(c *dingtalk.Config) { c.RatePerMinute = 2 }})
	e.emit(warningN(0, "shop", "BackOff"))
	waitFor(t, "first post", func() bool { return e.sink.Stats().Posted == 1 })
	// Two warnings go into a digest (1 token reserved); the digest is refused.
	e.emit(warningN(1, "shop", "BackOff"))
	e.emit(warningN(2, "web", "Failed"))
	waitFor(t, "digest", func() bool { return e.sink.Stats().InDigest == 2 && e.clock.Timers() == 1 })
	e.srv.FailNext(1, http.StatusNotFound)
	e.clock.Advance(time.Minute)
	waitFor(t, "3 acks", func() bool { return e.acks.Load() == 3 })
	if st := e.sink.Stats(); st.Rejected != 2 || st.RejectedPosts != 1 || st.Retries != 0 || st.Digests != 0 {
		t.Errorf("stats %+v", st)
	}
	if n := countLines(e.logs.String(), "HTTP 404"); n != 1 {
		t.Errorf("HTTP 404 logged %d times", n)
	}
}

func TestTextDigestWithClusterScopedObject(t *testing.T) {
	e := newEnv(t, envOpts{fakeClock: true, config: func(c *dingtalk.Config) {
		c.RatePerMinute = 2
		c.MsgType = "text"
		c.AtMobiles = []string{"13800000000"}
	}})
	e.emit(warningN(0, "shop", "BackOff"))
	waitFor(t, "first post", func() bool { return e.sink.Stats().Posted == 1 })
	node := warning()
	node.Namespace, node.Reason, node.Note = "", "NodeNotReady", "Node node-1 status is now: NodeNotReady"
	node.Regarding = convertRef("Node", "", "node-1")
	node.Chain = nil
	e.emit(node)
	e.emit(warningN(1, "shop", "BackOff"))
	e.emit(warningN(2, "shop", "BackOff"))
	waitFor(t, "3 in the digest", func() bool { return e.sink.Stats().InDigest == 3 })
	e.clock.Advance(20 * time.Second)
	e.shutdown()
	msgs := e.srv.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	d := msgs[1]
	t.Logf("%s\n%s", d.Title, d.Text)
	want := "⚠️ 3 warnings in the last 20 seconds\n" +
		"Cluster: prod-1\n" +
		"Period: 2025-03-04T05:06:07Z\n" +
		"Why a digest: more warnings than this robot may post (2 messages per minute)\n" +
		"By reason:\n" +
		"- 2× BackOff in ns shop\n" +
		"- 1× NodeNotReady cluster-scoped\n" +
		"Top objects:\n" +
		"- 1× Node node-1: NodeNotReady · Node node-1 status is now: NodeNotReady · https://jaeger.example.com/trace/" + traceHex + "?uiFind=00f067aa0ba902b7\n" +
		"- 1× Pod shop/web-777-1: BackOff · Back-off restarting failed container app in pod web-777-a_shop(1234) · https://jaeger.example.com/trace/4bf92f3577b34da6a3ce929d0e0e4701?uiFind=00f067aa0ba902b7\n" +
		"- 1× Pod shop/web-777-2: BackOff · Back-off restarting failed container app in pod web-777-a_shop(1234) · https://jaeger.example.com/trace/4bf92f3577b34da6a3ce929d0e0e4702?uiFind=00f067aa0ba902b7\n" +
		"@13800000000"
	if d.MsgType != "text" || d.Text != want {
		t.Errorf("digest:\n%s\nwant:\n%s", d.Text, want)
	}
	if d.At.AtMobiles[0] != "13800000000" {
		t.Errorf("at %+v", d.At)
	}
}
