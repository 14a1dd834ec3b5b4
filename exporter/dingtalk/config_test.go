package dingtalk_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/dingtalk"
	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/filter"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(secret, []byte("  SECabc123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "f00dfeed0123"
	good := dingtalk.Config{
		Name:       "oncall",
		Webhook:    "https://oapi.dingtalk.com/robot/send?access_token=" + token,
		SecretFile: secret,
		TraceURL:   "https://jaeger.example.com/trace/{trace_id}",
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(*dingtalk.Config)
		want   string
	}{
		{"no webhook", func(c *dingtalk.Config) { c.Webhook = "" }, "webhook: required"},
		{"unexpanded", func(c *dingtalk.Config) {
			c.Webhook = "https://oapi.dingtalk.com/robot/send?access_token=${DINGTALK_TOKEN}"
		}, "webhook: contains an unexpanded"},
		{"http", func(c *dingtalk.Config) { c.Webhook = "http://oapi.dingtalk.com/robot/send?access_token=" + token }, "webhook: must be an https URL"},
		{"bad url", func(c *dingtalk.Config) { c.Webhook = "https://oapi.ding talk.com/?access_token=" + token }, "webhook: not a valid URL"},
		{"no token", func(c *dingtalk.Config) { c.Webhook = "https://oapi.dingtalk.com/robot/send" }, "webhook: the access_token query parameter"},
		{"empty token", func(c *dingtalk.Config) { c.Webhook = "https://oapi.dingtalk.com/robot/send?access_token=" }, "webhook: the access_token"},
		{"preset sign", func(c *dingtalk.Config) { c.Webhook += "&sign=x" }, "webhook: must not contain timestamp or sign"},
		{"no secret file", func(c *dingtalk.Config) { c.SecretFile = "" }, "secretFile: required"},
		{"missing secret file", func(c *dingtalk.Config) { c.SecretFile = filepath.Join(dir, "nope") }, "secretFile: open"},
		{"empty secret file", func(c *dingtalk.Config) { c.SecretFile = empty }, "secretFile: " + empty + " is empty"},
		{"trace url without id", func(c *dingtalk.Config) { c.TraceURL = "https://jaeger.example.com/trace/" }, "traceURL: must contain {trace_id}"},
		{"trace url scheme", func(c *dingtalk.Config) { c.TraceURL = "ftp://x/{trace_id}" }, "traceURL: must be an http or https URL"},
		{"msg type", func(c *dingtalk.Config) { c.MsgType = "actionCard" }, `msgType: want markdown or text, got "actionCard"`},
		{"rate negative", func(c *dingtalk.Config) { c.RatePerMinute = -1 }, "ratePerMinute: must be between 1 and 20"},
		{"rate too high", func(c *dingtalk.Config) { c.RatePerMinute = 21 }, "ratePerMinute: must be between 1 and 20"},
		{"queue size", func(c *dingtalk.Config) { c.QueueSize = -5 }, "queueSize: must not be negative"},
		{"filter", func(c *dingtalk.Config) { c.Filter = filter.Config{Reasons: []string{"Back("}} }, "filter: reasons[0]"},
		{"mobile", func(c *dingtalk.Config) { c.AtMobiles = []string{"138 [x](y)"} }, "atMobiles[0]"},
		{"user id", func(c *dingtalk.Config) { c.AtUserIDs = []string{"a@b"} }, "atUserIds[0]"},
	}
	for _, tc := range cases {
		c := good
		tc.mutate(&c)
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `dingtalk "oncall"`) {
			t.Errorf("%s: error %q, want it to contain %q", tc.name, err, tc.want)
		}
		if strings.Contains(err.Error(), token) || strings.Contains(err.Error(), "SECabc123") {
			t.Errorf("%s: error leaks a secret: %q", tc.name, err)
		}
	}
	// All problems at once, each named.
	err := dingtalk.Config{MsgType: "x", RatePerMinute: 99}.Validate()
	for _, field := range []string{"webhook:", "secretFile:", "msgType:", "ratePerMinute:"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("combined error %v lacks %s", err, field)
		}
	}
	// http is fine for a test server when allowed from Go.
	c := good
	c.Webhook = "http://127.0.0.1:1234/robot/send?access_token=" + token
	c.AllowInsecureWebhook = true
	if err := c.Validate(); err != nil {
		t.Errorf("AllowInsecureWebhook: %v", err)
	}
}

func TestConfigFromYAML(t *testing.T) {
	doc := `
name: oncall
webhook: https://oapi.dingtalk.com/robot/send?access_token=abc
secretFile: /etc/dingtalk/secret
traceURL: https://jaeger.example.com/trace/{trace_id}
msgType: text
atMobiles: ["13800000000"]
atUserIds: [manager4220]
isAtAll: true
ratePerMinute: 10
queueSize: 50
filter:
  excludeNamespaces: [kube-system]
  reasons: ["Back.*", Failed]
  minCount: 2
allowInsecureWebhook: true
`
	var c dingtalk.Config
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "oncall" || c.Webhook != "https://oapi.dingtalk.com/robot/send?access_token=abc" ||
		c.SecretFile != "/etc/dingtalk/secret" || c.TraceURL != "https://jaeger.example.com/trace/{trace_id}" ||
		c.MsgType != "text" || len(c.AtMobiles) != 1 || c.AtUserIDs[0] != "manager4220" || !c.IsAtAll ||
		c.RatePerMinute != 10 || c.QueueSize != 50 || c.Filter.MinCount != 2 || len(c.Filter.Reasons) != 2 ||
		c.Filter.ExcludeNamespaces[0] != "kube-system" {
		t.Errorf("parsed %+v", c)
	}
	if c.AllowInsecureWebhook {
		t.Error("allowInsecureWebhook was settable from YAML")
	}
	if err := yaml.UnmarshalStrict([]byte(doc), &c); err == nil || !strings.Contains(err.Error(), "allowInsecureWebhook") {
		t.Errorf("strict parsing: %v", err)
	}
}
