package dingtalkserver

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type answer struct {
	Errcode int    `json:"errcode"`
	Errmsg  string `json:"errmsg"`
}

// post sends body signed with secret at ts to webhook.
func post(t *testing.T, webhook, secret string, ts time.Time, contentType, body string) (int, answer) {
	t.Helper()
	u, err := url.Parse(webhook)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if secret != "" {
		ms := ts.UnixMilli()
		q.Set("timestamp", strconv.FormatInt(ms, 10))
		q.Set("sign", Sign(ms, secret))
	}
	u.RawQuery = q.Encode()
	resp, err := http.Post(u.String(), contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var a answer
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("answer %q: %v", raw, err)
		}
	}
	return resp.StatusCode, a
}

const (
	jsonCT   = "application/json;charset=utf-8"
	textBody = `{"msgtype":"text","text":{"content":"hello"},"at":{"atMobiles":["13800000000"],"isAtAll":false}}`
	mdBody   = `{"msgtype":"markdown","markdown":{"title":"t","text":"### hi @13800000000"},"at":{"atMobiles":["13800000000"]}}`
)

func TestAcceptsSignedMessages(t *testing.T) {
	c := &clock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := New(Config{Now: c.Now})
	defer s.Close()
	for _, body := range []string{textBody, mdBody} {
		if st, a := post(t, s.Webhook(), s.Secret(), c.Now(), jsonCT, body); st != 200 || a.Errcode != 0 {
			t.Fatalf("status %d answer %+v", st, a)
		}
	}
	msgs := s.Messages()
	if len(msgs) != 2 {
		t.Fatalf("got %d messages", len(msgs))
	}
	if msgs[0].MsgType != "text" || msgs[0].Text != "hello" || msgs[0].At.AtMobiles[0] != "13800000000" {
		t.Errorf("text message parsed as %+v", msgs[0])
	}
	if msgs[1].MsgType != "markdown" || msgs[1].Title != "t" || msgs[1].Text != "### hi @13800000000" {
		t.Errorf("markdown message parsed as %+v", msgs[1])
	}
	// The sign (base64: may hold + / =) is escaped exactly once.
	for _, r := range s.Requests() {
		if strings.Contains(r.RawQuery, "%25") {
			t.Errorf("double escaping in %q", r.RawQuery)
		}
	}
}

func TestRefusals(t *testing.T) {
	c := &clock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := New(Config{Now: c.Now, Keywords: []string{"hello", "hi"}})
	defer s.Close()
	cases := []struct {
		name     string
		webhook  string
		secret   string
		ts       time.Time
		ct, body string
		want     int
	}{
		{"wrong token", s.WebhookWithToken("nope"), s.Secret(), c.Now(), jsonCT, textBody, ErrTokenNotExist},
		{"no token", s.URL(), s.Secret(), c.Now(), jsonCT, textBody, ErrTokenNotExist},
		{"wrong secret", s.Webhook(), "SECwrong", c.Now(), jsonCT, textBody, ErrSecurity},
		{"unsigned", s.Webhook(), "", c.Now(), jsonCT, textBody, ErrSecurity},
		{"timestamp too old", s.Webhook(), s.Secret(), c.Now().Add(-61 * time.Minute), jsonCT, textBody, ErrSecurity},
		{"timestamp in the future", s.Webhook(), s.Secret(), c.Now().Add(61 * time.Minute), jsonCT, textBody, ErrSecurity},
		{"content type", s.Webhook(), s.Secret(), c.Now(), "text/plain", textBody, ErrContentType},
		{"invalid json", s.Webhook(), s.Secret(), c.Now(), jsonCT, `{"msgtype":`, ErrMissingParam},
		{"no msgtype", s.Webhook(), s.Secret(), c.Now(), jsonCT, `{"text":{"content":"hello"}}`, ErrMissingParam},
		{"no content", s.Webhook(), s.Secret(), c.Now(), jsonCT, `{"msgtype":"text","text":{}}`, ErrMissingParam},
		{"no markdown title", s.Webhook(), s.Secret(), c.Now(), jsonCT, `{"msgtype":"markdown","markdown":{"text":"hello"}}`, ErrMissingParam},
		{"unknown msgtype", s.Webhook(), s.Secret(), c.Now(), jsonCT, `{"msgtype":"video"}`, ErrMissingParam},
		{"no keyword", s.Webhook(), s.Secret(), c.Now(), jsonCT, `{"msgtype":"text","text":{"content":"bye"}}`, ErrSecurity},
	}
	for _, tc := range cases {
		st, a := post(t, tc.webhook, tc.secret, tc.ts, tc.ct, tc.body)
		if st != 200 || a.Errcode != tc.want {
			t.Errorf("%s: status %d answer %+v, want errcode %d", tc.name, st, a, tc.want)
		}
	}
	if n := len(s.Messages()); n != 0 {
		t.Errorf("%d messages accepted", n)
	}
	if st, a := post(t, s.Webhook(), s.Secret(), c.Now().Add(-59*time.Minute), jsonCT, textBody); st != 200 || a.Errcode != 0 {
		t.Errorf("timestamp within the hour: status %d answer %+v", st, a)
	}
}

func TestRateLimitSlidingMinute(t *testing.T) {
	c := &clock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := New(Config{Now: c.Now})
	defer s.Close()
	for i := range 20 {
		if _, a := post(t, s.Webhook(), s.Secret(), c.Now(), jsonCT, textBody); a.Errcode != 0 {
			t.Fatalf("post %d: %+v", i, a)
		}
		c.Add(time.Second)
	}
	// 20 posts at 0s..19s: the 21st at 20s is too fast, and so is one at
	// 59s; at 60s the first post has left the window: one more fits.
	if _, a := post(t, s.Webhook(), s.Secret(), c.Now(), jsonCT, textBody); a.Errcode != ErrTooFast {
		t.Fatalf("21st post: %+v", a)
	}
	c.Add(39 * time.Second)
	if _, a := post(t, s.Webhook(), s.Secret(), c.Now(), jsonCT, textBody); a.Errcode != ErrTooFast {
		t.Fatalf("post at 59s: %+v", a)
	}
	c.Add(time.Second)
	if _, a := post(t, s.Webhook(), s.Secret(), c.Now(), jsonCT, textBody); a.Errcode != 0 {
		t.Fatalf("post at 60s: %+v", a)
	}
	if _, a := post(t, s.Webhook(), s.Secret(), c.Now(), jsonCT, textBody); a.Errcode != ErrTooFast {
		t.Fatalf("second post at 60s: %+v", a)
	}
	if got := s.CountErrcode(ErrTooFast); got != 3 {
		t.Errorf("CountErrcode(130101) = %d, want 3", got)
	}
	if got := len(s.Messages()); got != 21 {
		t.Errorf("%d messages accepted, want 21", got)
	}
}

func TestFailNext(t *testing.T) {
	s := New(Config{})
	defer s.Close()
	s.FailNext(2, http.StatusServiceUnavailable)
	s.FailNextErrcode(1, ErrSystemBusy, "system busy")
	for i, want := range []int{503, 503} {
		if st, _ := post(t, s.Webhook(), s.Secret(), time.Now(), jsonCT, textBody); st != want {
			t.Errorf("request %d: status %d, want %d", i, st, want)
		}
	}
	if _, a := post(t, s.Webhook(), s.Secret(), time.Now(), jsonCT, textBody); a.Errcode != ErrSystemBusy {
		t.Errorf("third request: %+v", a)
	}
	if _, a := post(t, s.Webhook(), s.Secret(), time.Now(), jsonCT, textBody); a.Errcode != 0 {
		t.Errorf("fourth request: %+v", a)
	}
	if n := len(s.WaitMessages(1, time.Second)); n != 1 {
		t.Errorf("%d messages", n)
	}
	if n := len(s.Requests()); n != 4 {
		t.Errorf("%d requests", n)
	}
}
