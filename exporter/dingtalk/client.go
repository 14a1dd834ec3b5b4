package dingtalk

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Sign returns DingTalk's request signature for a timestamp in milliseconds:
// base64(HMAC-SHA256(key=secret, msg="timestamp\nsecret")), not yet
// URL-encoded.
func Sign(timestampMillis int64, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(timestampMillis, 10) + "\n" + secret))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// outcome classifies one attempt.
type outcome int

const (
	delivered outcome = iota
	transient         // retry with exponential backoff
	tooFast           // retry after TooFastBackoff
	permanent         // cannot succeed: acknowledge and count as rejected
)

// result is the outcome of one attempt and why.
type result struct {
	outcome outcome
	// reason is safe to log (no token, no signature, no secret); key groups
	// reasons for logging once.
	reason, key string
	errcode     int
	errmsg      string
}

// signedURL is the webhook with timestamp and sign added, each escaped once.
func (s *Sink) signedURL(now time.Time) string {
	ts := now.UnixMilli()
	u := *s.c.webhook
	q := u.Query()
	q.Set("timestamp", strconv.FormatInt(ts, 10))
	q.Set("sign", Sign(ts, s.c.secret))
	u.RawQuery = q.Encode()
	return u.String()
}

// redactedWebhook is the webhook without its query (token) for logs.
func (s *Sink) redactedWebhook() string {
	u := *s.c.webhook
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}

// redact removes the token and the signature from an error text.
func (s *Sink) redact(err error) string {
	var ue *url.Error
	msg := err.Error()
	if errors.As(err, &ue) {
		msg = fmt.Sprintf("%s %s: %v", ue.Op, s.redactedWebhook(), ue.Err)
	}
	if s.c.token != "" {
		msg = strings.ReplaceAll(msg, s.c.token, "REDACTED")
	}
	if s.c.secret != "" {
		msg = strings.ReplaceAll(msg, s.c.secret, "REDACTED")
	}
	return msg
}

// post makes one signed request with body.
func (s *Sink) post(body []byte) result {
	ctx, cancel := context.WithTimeout(s.reqCtx, s.o.requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.signedURL(s.o.clock.Now()), bytes.NewReader(body))
	if err != nil {
		return result{outcome: permanent, reason: "cannot build request: " + s.redact(err), key: "request"}
	}
	req.Header.Set("Content-Type", "application/json;charset=utf-8")
	resp, err := s.o.httpClient.Do(req)
	if err != nil {
		return result{outcome: transient, reason: "request failed: " + s.redact(err), key: "network"}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return result{outcome: transient, reason: "reading the response: " + s.redact(err), key: "network"}
	}
	status := fmt.Sprintf("HTTP %d", resp.StatusCode)
	switch c := resp.StatusCode; {
	case c == http.StatusTooManyRequests:
		return result{outcome: tooFast, reason: status, key: status}
	case c >= 500 || c == http.StatusRequestTimeout:
		return result{outcome: transient, reason: status, key: status}
	case c >= 300:
		// Redirects are not followed (they could take the token elsewhere);
		// a 4xx means the URL is wrong: neither can succeed.
		return result{outcome: permanent, reason: status, key: status}
	}
	var ans struct {
		Errcode *int   `json:"errcode"`
		Errmsg  string `json:"errmsg"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil || ans.Errcode == nil {
		return result{outcome: transient, reason: status + " with a body that is not a DingTalk answer", key: "body"}
	}
	r := result{errcode: *ans.Errcode, errmsg: ans.Errmsg}
	r.reason = fmt.Sprintf("errcode %d: %s", r.errcode, r.errmsg)
	r.key = r.reason
	switch r.errcode {
	case 0:
		r.outcome = delivered
	case -1: // system busy
		r.outcome = transient
	case 130101, 130102: // send too fast
		r.outcome = tooFast
	default:
		// 310000 sign/keyword/IP/timestamp, 300001 token, 400xxx bad
		// message, ...: the same post would get the same answer.
		r.outcome = permanent
	}
	return r
}
