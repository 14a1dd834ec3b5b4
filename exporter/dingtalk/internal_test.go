package dingtalk

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestSignKnownVector(t *testing.T) {
	// Computed independently with Python's hmac/hashlib/base64.
	const want = "WNCWXbFdjud4R4PTc485ZqU4r9DNCWbtIxKx5ay/W9M="
	if got := Sign(1700000000000, "SECb8c0a6b6d6e1f7a4c3b2a1"); got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
	// In the URL: escaped once (/ → %2F, = → %3D), the token kept.
	s := &Sink{c: &compiled{secret: "SECb8c0a6b6d6e1f7a4c3b2a1"}}
	s.c.webhook, _ = url.Parse("https://oapi.dingtalk.com/robot/send?access_token=abc123")
	u := s.signedURL(time.UnixMilli(1700000000000))
	if !strings.Contains(u, "sign=WNCWXbFdjud4R4PTc485ZqU4r9DNCWbtIxKx5ay%2FW9M%3D") ||
		!strings.Contains(u, "timestamp=1700000000000") || !strings.Contains(u, "access_token=abc123") {
		t.Errorf("signed URL %q", u)
	}
}

// TestLimiterSlidingWindow: never more than limit posts in any window, burst
// of limit at once, tokens come back one window after they were spent.
func TestLimiterSlidingWindow(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(3, time.Minute)
	now := t0
	var posts []time.Time
	for range 50 {
		if w := l.wait(now); w > 0 {
			now = now.Add(w)
		}
		l.spend(now)
		posts = append(posts, now)
		now = now.Add(7 * time.Second)
	}
	for i := range posts {
		n := 0
		for _, p := range posts[i:] {
			if p.Sub(posts[i]) < time.Minute {
				n++
			}
		}
		if n > 3 {
			t.Fatalf("%d posts within a minute from %s", n, posts[i].Sub(t0))
		}
	}
	if posts[2].Sub(posts[0]) != 14*time.Second || posts[3].Sub(posts[0]) != time.Minute {
		t.Errorf("burst then refill: %v %v", posts[2].Sub(t0), posts[3].Sub(t0))
	}
	l.exhaust(now)
	if l.available(now) != 0 || l.wait(now) != time.Minute {
		t.Errorf("after exhaust: %d available, wait %v", l.available(now), l.wait(now))
	}
}

func TestFlattenAndEscape(t *testing.T) {
	r := &renderer{msgType: MsgTypeMarkdown}
	cases := map[string]string{
		"a\n\n\nb":              "a ↵ b",
		"  lead\ttab  trail  ":  "lead tab trail",
		"x\u202Eevil\u200By":    "xevily",
		"bell\x07":              "bell",
		"[a](b) @all":           "［a］(b) ＠all",
		"see http://x.y/z":      "see http：//x.y/z",
		"<b>&amp;</b>":          "＜b＞＆amp;＜/b＞",
		"\xff\xfeinvalid utf-8": "\uFFFDinvalid utf-8",
	}
	for in, want := range cases {
		if got := r.esc(in, 100); got != want {
			t.Errorf("esc(%q) = %q, want %q", in, got, want)
		}
	}
	if got := r.esc(strings.Repeat("é", 20), 10); got != strings.Repeat("é", 9)+"…" {
		t.Errorf("truncate: %q", got)
	}
	text := &renderer{msgType: MsgTypeText}
	if got := text.esc("[a](b) @all\n*x*", 100); got != "[a](b) ＠all ↵ *x*" {
		t.Errorf("text esc: %q", got)
	}
}

func TestSpan(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "second", 12 * time.Second: "12 seconds", time.Minute: "minute", 58 * time.Second: "minute",
		3 * time.Minute: "3 minutes", 90 * time.Second: "1m30s",
	} {
		if got := span(d); got != want {
			t.Errorf("span(%v) = %q, want %q", d, got, want)
		}
	}
}
