// Package dingtalk is kube-otel-bridge's DingTalk side-sink: it posts Warning
// occurrences to a DingTalk custom robot as signed markdown (or text)
// messages with the cluster, namespace, object, owner chain, reason, message,
// count, time and a link to the occurrence's trace.
//
// DingTalk accepts at most 20 messages per minute per robot (and throttles a
// robot that sends more). The sink never sends more than RatePerMinute
// messages in any sliding minute; warnings that come faster are collected
// into one digest message per minute instead of being dropped. Every warning
// that passes the filter is either posted individually or counted in exactly
// one digest (see Stats).
//
// DingTalk answers HTTP 200 even when it refuses a message; the sink parses
// {"errcode":N,"errmsg":...} and treats any errcode other than 0 as a
// failure. Only what can succeed is retried: network errors, HTTP 5xx,
// errcode -1 (system busy) with capped exponential backoff, and 130101
// (send too fast) after a pause of a minute. Other errcodes (310000 signature
// / keyword / IP / timestamp mismatch, 300001 invalid token, ...) are
// permanent: the warnings are acknowledged, counted in Stats.Rejected and the
// reason is logged once.
package dingtalk

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/filter"
)

// Defaults and limits.
const (
	// DefaultRatePerMinute and MaxRatePerMinute: DingTalk allows 20
	// messages per minute per robot.
	DefaultRatePerMinute = 20
	MaxRatePerMinute     = 20
	// DefaultQueueSize is the default number of warnings a sink holds that
	// are not yet acknowledged (queued, in a digest being collected, or
	// being posted). Emit blocks when it is reached.
	DefaultQueueSize = 10000
	// DefaultTooFastBackoff is how long the sink pauses after DingTalk
	// answered 130101 (send too fast): the next minute window.
	DefaultTooFastBackoff = time.Minute
	// DefaultRetryInitial and DefaultRetryMax bound the exponential backoff
	// after network errors, HTTP 5xx and errcode -1.
	DefaultRetryInitial = time.Second
	DefaultRetryMax     = time.Minute
	// DefaultRequestTimeout bounds one HTTP request.
	DefaultRequestTimeout = 10 * time.Second
	// MaxMessageRunes is the longest event message put in a post; longer
	// ones are cut and marked as truncated.
	MaxMessageRunes = 1000
)

// Message types.
const (
	MsgTypeMarkdown = "markdown"
	MsgTypeText     = "text"
)

// Config is one DingTalk robot as written in the configuration file (YAML
// through sigs.k8s.io/yaml, hence the json tags).
type Config struct {
	// Name identifies the sink in logs and errors (default "dingtalk").
	Name string `json:"name,omitempty"`
	// Webhook is the robot's URL,
	// https://oapi.dingtalk.com/robot/send?access_token=..., with ${ENV}
	// references already expanded by the config loader. The access token is
	// a secret: it is never logged or put in errors.
	Webhook string `json:"webhook"`
	// SecretFile holds the robot's signing secret (SEC...), read once by
	// New and trimmed. The secret is never logged.
	SecretFile string `json:"secretFile"`
	// TraceURL is a link template for the occurrence's trace, e.g.
	// https://jaeger.example.com/trace/{trace_id}; {span_id} is replaced too.
	// Optional; without it the trace ID is shown as text.
	TraceURL string `json:"traceURL,omitempty"`
	// MsgType is markdown (default) or text.
	MsgType string `json:"msgType,omitempty"`
	// AtMobiles and AtUserIDs are mentioned in every message; IsAtAll
	// mentions everyone in the group.
	AtMobiles []string `json:"atMobiles,omitempty"`
	AtUserIDs []string `json:"atUserIds,omitempty"`
	IsAtAll   bool     `json:"isAtAll,omitempty"`
	// RatePerMinute is the most messages posted in any sliding minute,
	// 1..20; 0 means DefaultRatePerMinute.
	RatePerMinute int `json:"ratePerMinute,omitempty"`
	// Filter selects the occurrences this robot receives (default: Warnings).
	Filter filter.Config `json:"filter,omitempty"`
	// QueueSize is the most warnings held unacknowledged; 0 means
	// DefaultQueueSize.
	QueueSize int `json:"queueSize,omitempty"`

	// CAFile, if set, is a PEM bundle of extra CAs to trust for the webhook
	// (a private gateway or proxy in front of DingTalk).
	CAFile string `json:"caFile,omitempty"`

	// AllowInsecureWebhook accepts an http:// webhook. Only for tests
	// against a local server; it cannot be set from the configuration file.
	AllowInsecureWebhook bool `json:"-"`
}

// compiled is a validated Config with defaults applied.
type compiled struct {
	name      string
	webhook   *url.URL
	token     string
	secret    string
	traceURL  string
	msgType   string
	rate      int
	queueSize int
	filter    *filter.Filter
}

// Validate reports every problem of the configuration, each naming its
// field. It reads SecretFile (the secret itself never appears in errors).
func (c Config) Validate() error {
	_, err := c.compile()
	return err
}

var (
	mobileRE = regexp.MustCompile(`^\+?[0-9][0-9-]{2,30}$`)
	// userIDBad are characters that must not appear in a DingTalk user ID
	// we put into the message text as @userId.
	userIDBad = "[]()<>*#`@\\|&"
)

func (c Config) compile() (*compiled, error) {
	name := strings.TrimSpace(c.Name)
	if name == "" {
		name = "dingtalk"
	}
	out := &compiled{name: name}
	var errs []error
	fail := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("dingtalk %q: %s: %s", name, field, fmt.Sprintf(format, args...)))
	}

	// webhook. Never echo the URL: its query holds the access token.
	switch wh := strings.TrimSpace(c.Webhook); {
	case wh == "":
		fail("webhook", "required (https://oapi.dingtalk.com/robot/send?access_token=...)")
	case strings.Contains(wh, "${"):
		fail("webhook", "contains an unexpanded ${...} reference (is the environment variable set?)")
	default:
		u, err := url.Parse(wh)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // url.Error would print the URL and its token
			}
			fail("webhook", "not a valid URL: %v", err)
			break
		}
		q := u.Query()
		switch {
		case u.Scheme == "https":
		case u.Scheme == "http" && c.AllowInsecureWebhook:
		case u.Scheme == "http":
			fail("webhook", "must be an https URL, got http")
		default:
			fail("webhook", "must be an https URL, got scheme %q", u.Scheme)
		}
		switch {
		case u.Host == "" || u.Hostname() == "":
			fail("webhook", "has no host")
		case u.User != nil:
			fail("webhook", "must not contain user information")
		case strings.TrimSpace(q.Get("access_token")) == "":
			fail("webhook", "the access_token query parameter is missing or empty")
		case q.Has("timestamp") || q.Has("sign"):
			fail("webhook", "must not contain timestamp or sign (they are computed for every request)")
		default:
			out.webhook = u
			out.token = q.Get("access_token")
		}
	}

	// secretFile
	if strings.TrimSpace(c.SecretFile) == "" {
		fail("secretFile", "required (a file holding the robot's SEC... signing secret)")
	} else if b, err := os.ReadFile(c.SecretFile); err != nil {
		fail("secretFile", "%v", err)
	} else if s := strings.TrimSpace(string(b)); s == "" {
		fail("secretFile", "%s is empty", c.SecretFile)
	} else if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		fail("secretFile", "%s holds more than one word; want only the secret", c.SecretFile)
	} else {
		out.secret = s
	}

	// traceURL
	if t := strings.TrimSpace(c.TraceURL); t != "" {
		if !strings.Contains(t, "{trace_id}") {
			fail("traceURL", "must contain {trace_id}")
		} else {
			u, err := url.Parse(strings.NewReplacer("{trace_id}", strings.Repeat("0", 32), "{span_id}", strings.Repeat("0", 16)).Replace(t))
			switch {
			case err != nil:
				fail("traceURL", "not a valid URL: %v", err)
			case u.Scheme != "http" && u.Scheme != "https":
				fail("traceURL", "must be an http or https URL, got scheme %q", u.Scheme)
			case u.Host == "":
				fail("traceURL", "has no host")
			default:
				out.traceURL = t
			}
		}
	}

	// msgType
	switch strings.ToLower(strings.TrimSpace(c.MsgType)) {
	case "", MsgTypeMarkdown:
		out.msgType = MsgTypeMarkdown
	case MsgTypeText:
		out.msgType = MsgTypeText
	default:
		fail("msgType", "want markdown or text, got %q", c.MsgType)
	}

	// mentions: they are written into the message text, so keep them plain.
	for i, m := range c.AtMobiles {
		if !mobileRE.MatchString(m) {
			fail(fmt.Sprintf("atMobiles[%d]", i), "%q is not a phone number (digits, optional leading + and dashes)", m)
		}
	}
	for i, id := range c.AtUserIDs {
		if id == "" || len(id) > 64 || strings.ContainsAny(id, userIDBad) ||
			strings.ContainsFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
			fail(fmt.Sprintf("atUserIds[%d]", i), "%q is not a valid user ID", id)
		}
	}

	// ratePerMinute
	switch {
	case c.RatePerMinute == 0:
		out.rate = DefaultRatePerMinute
	case c.RatePerMinute < 0 || c.RatePerMinute > MaxRatePerMinute:
		fail("ratePerMinute", "must be between 1 and %d (DingTalk's limit per robot), got %d", MaxRatePerMinute, c.RatePerMinute)
	default:
		out.rate = c.RatePerMinute
	}

	// queueSize
	switch {
	case c.QueueSize < 0:
		fail("queueSize", "must not be negative, got %d", c.QueueSize)
	case c.QueueSize == 0:
		out.queueSize = DefaultQueueSize
	default:
		out.queueSize = c.QueueSize
	}

	// filter
	f, err := c.Filter.Compile()
	if err != nil {
		fail("filter", "%v", err)
	}
	out.filter = f

	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}
