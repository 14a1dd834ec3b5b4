// Package dingtalkserver is a DingTalk custom-robot endpoint for tests: an
// httptest server that answers like oapi.dingtalk.com/robot/send. It checks
// the access token, the signature (HMAC-SHA256 of "timestamp\nsecret",
// base64, URL-encoded once) and its one-hour timestamp window, the
// Content-Type, the JSON body and the fields of each msgtype, and the limit of
// 20 posts per sliding minute per robot. Like the real one it answers HTTP
// 200 with {"errcode":N,"errmsg":...} for all of these. It records every
// request with its answer and the accepted messages, parsed, and can be told
// to fail the next requests with an HTTP status or an errcode.
package dingtalkserver

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Path is the robot endpoint's path.
const Path = "/robot/send"

// Errcodes the server answers with.
const (
	ErrOK            = 0
	ErrSystemBusy    = -1
	ErrMissingParam  = 40035  // invalid or incomplete JSON body
	ErrContentType   = 43004  // Content-Type is not application/json
	ErrTooFast       = 130101 // more than RatePerMinute posts in a sliding Window
	ErrTokenNotExist = 300001
	ErrSecurity      = 310000 // sign not match, timestamp invalid, keywords not in content
)

// Config configures a Server. Zero values get the defaults.
type Config struct {
	// TLS, if set, serves https with this configuration (like the real
	// robot endpoint); otherwise plain http.
	TLS *tls.Config
	// Token is the robot's access_token (default "test-token").
	Token string
	// Secret is the signing secret (default "SECtest-secret"). Set
	// NoSignature to accept unsigned posts instead.
	Secret      string
	NoSignature bool
	// Keywords, if any: the message must contain one (310000 otherwise).
	Keywords []string
	// RatePerMinute posts are accepted per Window (defaults 20, one
	// minute); the next ones get 130101 until the window slides.
	RatePerMinute int
	Window        time.Duration
	// TimestampTolerance is how far the request timestamp may be from Now
	// (default one hour).
	TimestampTolerance time.Duration
	// Now is the server's clock (default time.Now). Share a fake clock with
	// the client under test to test the minute windows quickly.
	Now func() time.Time
}

// At is the "at" object of a message.
type At struct {
	AtMobiles []string `json:"atMobiles"`
	AtUserIDs []string `json:"atUserIds"`
	IsAtAll   bool     `json:"isAtAll"`
}

// Message is an accepted post, parsed.
type Message struct {
	Received time.Time // server clock
	MsgType  string    // "text" or "markdown"
	Title    string    // markdown title
	Text     string    // text content or markdown text
	At       At
	Raw      json.RawMessage
}

// Request is any request the server answered.
type Request struct {
	Received time.Time
	Method   string
	Path     string
	RawQuery string // as sent, to check the escaping
	Header   http.Header
	Body     []byte
	// Status is the HTTP status answered; Errcode and Errmsg the body when
	// Status is 200.
	Status  int
	Errcode int
	Errmsg  string
}

// Server is a running DingTalk robot endpoint.
type Server struct {
	cfg Config
	srv *httptest.Server

	mu          sync.Mutex
	requests    []Request
	messages    []Message
	accepted    []time.Time // accepted posts, for the rate limit
	failStatus  []int       // HTTP statuses for the next requests
	failErrcode []failure   // errcodes for the next requests
	notify      chan struct{}
}

type failure struct {
	code int
	msg  string
}

// New starts a server; Close it when done.
func New(cfg Config) *Server {
	if cfg.Token == "" {
		cfg.Token = "test-token"
	}
	if cfg.Secret == "" {
		cfg.Secret = "SECtest-secret"
	}
	if cfg.RatePerMinute <= 0 {
		cfg.RatePerMinute = 20
	}
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	if cfg.TimestampTolerance <= 0 {
		cfg.TimestampTolerance = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, notify: make(chan struct{})}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.handle))
	if cfg.TLS != nil {
		s.srv.TLS = cfg.TLS
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// URL is the endpoint without query: http://127.0.0.1:port/robot/send.
func (s *Server) URL() string { return s.srv.URL + Path }

// Webhook is the endpoint with the configured access token.
func (s *Server) Webhook() string { return s.WebhookWithToken(s.cfg.Token) }

// WebhookWithToken is the endpoint with another access token.
func (s *Server) WebhookWithToken(token string) string {
	return s.URL() + "?access_token=" + token
}

// Secret is the configured signing secret.
func (s *Server) Secret() string { return s.cfg.Secret }

// FailNext makes the next n requests fail with HTTP status (e.g. 503),
// before any check.
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failStatus = append(s.failStatus, status)
	}
}

// FailNextErrcode makes the next n requests answer HTTP 200 with errcode and
// errmsg (e.g. -1 "system busy"), before any check.
func (s *Server) FailNextErrcode(n, errcode int, errmsg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failErrcode = append(s.failErrcode, failure{errcode, errmsg})
	}
}

// Requests returns every request answered so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Messages returns the accepted messages.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// CountErrcode returns how many HTTP 200 answers carried errcode.
func (s *Server) CountErrcode(errcode int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if r.Status == http.StatusOK && r.Errcode == errcode {
			n++
		}
	}
	return n
}

// WaitMessages waits until at least n messages were accepted and returns
// them, or returns what there is after timeout.
func (s *Server) WaitMessages(n int, timeout time.Duration) []Message {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		if len(s.messages) >= n {
			out := append([]Message(nil), s.messages...)
			s.mu.Unlock()
			return out
		}
		ch := s.notify
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			return s.Messages()
		}
	}
}

// Sign computes the signature the server expects for timestamp (ms).
func Sign(timestampMillis int64, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%d\n%s", timestampMillis, secret)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	req := Request{
		Received: now, Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Header: r.Header.Clone(), Body: body, Status: http.StatusOK,
	}
	defer func() {
		s.requests = append(s.requests, req)
		close(s.notify)
		s.notify = make(chan struct{})
	}()
	httpFail := func(status int) {
		req.Status = status
		http.Error(w, http.StatusText(status), status)
	}
	answer := func(code int, msg string) {
		req.Errcode, req.Errmsg = code, msg
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"errcode": code, "errmsg": msg})
	}

	if len(s.failStatus) > 0 {
		st := s.failStatus[0]
		s.failStatus = s.failStatus[1:]
		httpFail(st)
		return
	}
	if len(s.failErrcode) > 0 {
		f := s.failErrcode[0]
		s.failErrcode = s.failErrcode[1:]
		answer(f.code, f.msg)
		return
	}
	if r.URL.Path != Path {
		httpFail(http.StatusNotFound)
		return
	}
	if r.Method != http.MethodPost {
		httpFail(http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	if q.Get("access_token") != s.cfg.Token {
		answer(ErrTokenNotExist, "token is not exist")
		return
	}
	if !s.cfg.NoSignature {
		tsRaw, sign := q.Get("timestamp"), q.Get("sign")
		ts, err := strconv.ParseInt(tsRaw, 10, 64)
		if err != nil {
			answer(ErrSecurity, "timestamp is invalid")
			return
		}
		if d := now.Sub(time.UnixMilli(ts)); d > s.cfg.TimestampTolerance || d < -s.cfg.TimestampTolerance {
			answer(ErrSecurity, "timestamp is invalid")
			return
		}
		if sign == "" || !hmac.Equal([]byte(sign), []byte(Sign(ts, s.cfg.Secret))) {
			answer(ErrSecurity, "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]")
			return
		}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		answer(ErrContentType, "invalid HTTP HEADER Content-Type")
		return
	}
	msg, code, errmsg := parse(body)
	if code != ErrOK {
		answer(code, errmsg)
		return
	}
	if len(s.cfg.Keywords) > 0 {
		ok := false
		for _, k := range s.cfg.Keywords {
			if strings.Contains(msg.Title+msg.Text, k) {
				ok = true
				break
			}
		}
		if !ok {
			answer(ErrSecurity, "keywords not in content, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]")
			return
		}
	}
	// Sliding window of accepted posts.
	from := now.Add(-s.cfg.Window)
	i := 0
	for i < len(s.accepted) && !s.accepted[i].After(from) {
		i++
	}
	s.accepted = s.accepted[i:]
	if len(s.accepted) >= s.cfg.RatePerMinute {
		answer(ErrTooFast, fmt.Sprintf("send too fast, exceed %d times per minute", s.cfg.RatePerMinute))
		return
	}
	s.accepted = append(s.accepted, now)
	msg.Received = now
	s.messages = append(s.messages, msg)
	answer(ErrOK, "ok")
}

// parse checks a body like DingTalk does and returns the message.
func parse(body []byte) (Message, int, string) {
	var p struct {
		MsgType string `json:"msgtype"`
		Text    *struct {
			Content *string `json:"content"`
		} `json:"text"`
		Markdown *struct {
			Title *string `json:"title"`
			Text  *string `json:"text"`
		} `json:"markdown"`
		At *At `json:"at"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return Message{}, ErrMissingParam, "missing param: invalid json"
	}
	m := Message{MsgType: p.MsgType, Raw: append(json.RawMessage(nil), body...)}
	if p.At != nil {
		m.At = *p.At
	}
	switch p.MsgType {
	case "":
		return Message{}, ErrMissingParam, "missing param: msgtype"
	case "text":
		if p.Text == nil || p.Text.Content == nil || strings.TrimSpace(*p.Text.Content) == "" {
			return Message{}, ErrMissingParam, "missing param: text.content"
		}
		m.Text = *p.Text.Content
	case "markdown":
		if p.Markdown == nil || p.Markdown.Title == nil || strings.TrimSpace(*p.Markdown.Title) == "" {
			return Message{}, ErrMissingParam, "missing param: markdown.title"
		}
		if p.Markdown.Text == nil || strings.TrimSpace(*p.Markdown.Text) == "" {
			return Message{}, ErrMissingParam, "missing param: markdown.text"
		}
		m.Title, m.Text = *p.Markdown.Title, *p.Markdown.Text
	default:
		return Message{}, ErrMissingParam, fmt.Sprintf("msgtype %q is not supported", p.MsgType)
	}
	return m, ErrOK, ""
}
