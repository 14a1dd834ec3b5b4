package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/dingtalk"
	"github.com/kube-otel-bridge/kube-otel-bridge/exporter/kafka"
)

// fileConfig is the --config file (YAML). Flags given on the command line
// override its OTLP settings and cluster name.
type fileConfig struct {
	ClusterName string     `json:"clusterName,omitempty"`
	OTLP        otlpConfig `json:"otlp,omitempty"`
	Sinks       sinks      `json:"sinks,omitempty"`
}

type otlpConfig struct {
	Endpoint    string            `json:"endpoint,omitempty"`
	Insecure    *bool             `json:"insecure,omitempty"`
	Compression string            `json:"compression,omitempty"`
	CAFile      string            `json:"caFile,omitempty"`
	ClientCert  string            `json:"clientCert,omitempty"`
	ClientKey   string            `json:"clientKey,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Timeout     string            `json:"timeout,omitempty"`
	// Batching: see the --otlp-batch-* and --otlp-queue-size flags.
	BatchTimeout string `json:"batchTimeout,omitempty"`
	BatchSize    int    `json:"batchSize,omitempty"`
	QueueSize    int    `json:"queueSize,omitempty"`
}

type sinks struct {
	DingTalk []dingtalk.Config `json:"dingtalk,omitempty"`
	Kafka    []kafka.Config    `json:"kafka,omitempty"`
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandValues replaces ${VAR} in every string value of a parsed document;
// unset variables are collected by name (never their would-be values).
func expandValues(v any, lookup func(string) (string, bool), missing *[]string) any {
	switch t := v.(type) {
	case string:
		return envRef.ReplaceAllStringFunc(t, func(m string) string {
			name := envRef.FindStringSubmatch(m)[1]
			val, ok := lookup(name)
			if !ok {
				*missing = append(*missing, name)
				return m
			}
			return val
		})
	case map[string]any:
		for k, e := range t {
			t[k] = expandValues(e, lookup, missing)
		}
	case []any:
		for i, e := range t {
			t[i] = expandValues(e, lookup, missing)
		}
	}
	return v
}

// loadConfig reads, expands and strictly parses the config file, then
// validates every part, naming the field at fault.
func loadConfig(path string) (*fileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parseConfig(path, data, os.LookupEnv)
}

func parseConfig(path string, data []byte, lookup func(string) (string, bool)) (*fileConfig, error) {
	// ${VAR} is expanded in values only, after parsing, so comments may
	// mention variables and a value can never inject YAML structure.
	var tree any
	if err := yaml.Unmarshal(data, &tree); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	var missing []string
	tree = expandValues(tree, lookup, &missing)
	if len(missing) > 0 {
		return nil, fmt.Errorf("config %s: environment variables not set: %v", path, missing)
	}
	expanded, err := json.Marshal(tree)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	var c fileConfig
	if err := yaml.UnmarshalStrict(expanded, &c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

func (c *fileConfig) validate() error {
	var errs []error
	for _, d := range []struct{ key, v string }{
		{"otlp.timeout", c.OTLP.Timeout}, {"otlp.batchTimeout", c.OTLP.BatchTimeout},
	} {
		if d.v == "" {
			continue
		}
		if v, err := time.ParseDuration(d.v); err != nil || v <= 0 {
			errs = append(errs, fmt.Errorf("%s: want a positive duration, got %q", d.key, d.v))
		}
	}
	if c.OTLP.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("otlp.batchSize: want a positive number, got %d", c.OTLP.BatchSize))
	}
	if c.OTLP.QueueSize < 0 {
		errs = append(errs, fmt.Errorf("otlp.queueSize: want a positive number, got %d", c.OTLP.QueueSize))
	}
	names := map[string]bool{}
	for i := range c.Sinks.DingTalk {
		s := &c.Sinks.DingTalk[i]
		if err := s.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("sinks.dingtalk[%d] (%s): %w", i, s.Name, err))
		}
		if names["dingtalk/"+s.Name] {
			errs = append(errs, fmt.Errorf("sinks.dingtalk[%d]: name %q used twice", i, s.Name))
		}
		names["dingtalk/"+s.Name] = true
	}
	for i := range c.Sinks.Kafka {
		s := &c.Sinks.Kafka[i]
		if err := s.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("sinks.kafka[%d] (%s): %w", i, s.Name, err))
		}
		if names["kafka/"+s.Name] {
			errs = append(errs, fmt.Errorf("sinks.kafka[%d]: name %q used twice", i, s.Name))
		}
		names["kafka/"+s.Name] = true
	}
	return errors.Join(errs...)
}

// apply fills run options from the file where no flag was given.
func (c *fileConfig) apply(o *runOptions, set map[string]bool) error {
	str := func(flag string, dst *string, v string) {
		if !set[flag] && v != "" {
			*dst = v
		}
	}
	str("cluster-name", &o.clusterName, c.ClusterName)
	str("otlp-endpoint", &o.otlp.Endpoint, c.OTLP.Endpoint)
	str("otlp-compression", &o.otlp.Compression, c.OTLP.Compression)
	str("otlp-ca-file", &o.otlp.CAFile, c.OTLP.CAFile)
	str("otlp-client-cert", &o.otlp.ClientCertFile, c.OTLP.ClientCert)
	str("otlp-client-key", &o.otlp.ClientKeyFile, c.OTLP.ClientKey)
	if !set["otlp-insecure"] && c.OTLP.Insecure != nil {
		o.otlp.Insecure = *c.OTLP.Insecure
	}
	dur := func(flag, key string, dst *time.Duration, v string) error {
		if set[flag] || v == "" {
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		*dst = d
		return nil
	}
	if err := dur("otlp-timeout", "otlp.timeout", &o.otlp.Timeout, c.OTLP.Timeout); err != nil {
		return err
	}
	if err := dur("otlp-batch-timeout", "otlp.batchTimeout", &o.otlp.BatchTimeout, c.OTLP.BatchTimeout); err != nil {
		return err
	}
	num := func(flag string, dst *int, v int) {
		if !set[flag] && v != 0 {
			*dst = v
		}
	}
	num("otlp-batch-size", &o.otlp.BatchSize, c.OTLP.BatchSize)
	num("otlp-queue-size", &o.otlp.QueueSize, c.OTLP.QueueSize)
	if !set["otlp-header"] && len(c.OTLP.Headers) > 0 {
		o.otlp.Headers = c.OTLP.Headers
	}
	return nil
}
