// Package filter decides which occurrences a side-sink (DingTalk, Kafka)
// receives: level, namespaces, kinds, reasons, minimum count. An invalid
// filter is an error at start, never a silent no-match.
package filter

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// Config is a filter as written in the configuration file. The zero value
// matches Warnings only (the side-sinks are for alerts).
type Config struct {
	// MinLevel is Normal (everything) or Warning (default).
	MinLevel string `json:"minLevel,omitempty"`
	// Namespaces, when not empty, are the only namespaces that pass.
	Namespaces []string `json:"namespaces,omitempty"`
	// ExcludeNamespaces never pass.
	ExcludeNamespaces []string `json:"excludeNamespaces,omitempty"`
	// Kinds, when not empty, are the involved-object kinds that pass.
	Kinds []string `json:"kinds,omitempty"`
	// Reasons, when not empty, are regular expressions, anchored at both
	// ends, one of which the reason must match.
	Reasons []string `json:"reasons,omitempty"`
	// MinCount: occurrences with a lower count do not pass (default 1).
	MinCount int32 `json:"minCount,omitempty"`
}

// Filter is a compiled Config.
type Filter struct {
	warningsOnly bool
	include      map[string]bool
	exclude      map[string]bool
	kinds        map[string]bool
	reasons      []*regexp.Regexp
	minCount     int32
}

// Validate reports every problem of the configuration, naming the field.
func (c Config) Validate() error {
	_, err := c.Compile()
	return err
}

// Compile checks and compiles the filter.
func (c Config) Compile() (*Filter, error) {
	var errs []error
	f := &Filter{minCount: c.MinCount}
	switch strings.ToLower(c.MinLevel) {
	case "", "warning":
		f.warningsOnly = true
	case "normal":
	default:
		errs = append(errs, fmt.Errorf("minLevel: want Normal or Warning, got %q", c.MinLevel))
	}
	f.include = set(c.Namespaces)
	f.exclude = set(c.ExcludeNamespaces)
	for ns := range f.include {
		if f.exclude[ns] {
			errs = append(errs, fmt.Errorf("namespaces: %q is also in excludeNamespaces", ns))
		}
	}
	for field, list := range map[string][]string{"namespaces": c.Namespaces, "excludeNamespaces": c.ExcludeNamespaces, "kinds": c.Kinds} {
		for _, v := range list {
			if strings.TrimSpace(v) == "" {
				errs = append(errs, fmt.Errorf("%s: empty entry", field))
			}
		}
	}
	f.kinds = set(c.Kinds)
	for i, r := range c.Reasons {
		re, err := regexp.Compile(`^(?:` + r + `)$`)
		if err != nil {
			errs = append(errs, fmt.Errorf("reasons[%d]: %q is not a valid regular expression: %w", i, r, err))
			continue
		}
		f.reasons = append(f.reasons, re)
	}
	if c.MinCount < 0 {
		errs = append(errs, fmt.Errorf("minCount: must not be negative, got %d", c.MinCount))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return f, nil
}

func set(list []string) map[string]bool {
	if len(list) == 0 {
		return nil
	}
	m := make(map[string]bool, len(list))
	for _, v := range list {
		m[strings.TrimSpace(v)] = true
	}
	return m
}

// Match reports whether the occurrence passes.
func (f *Filter) Match(o *convert.Occurrence) bool {
	if f.warningsOnly && !strings.EqualFold(o.Type, "Warning") {
		return false
	}
	ns := o.Regarding.Namespace
	if ns == "" {
		ns = o.Namespace
	}
	if f.include != nil && !f.include[ns] {
		return false
	}
	if f.exclude[ns] {
		return false
	}
	if f.kinds != nil && !f.kinds[o.Regarding.Kind] {
		return false
	}
	if len(f.reasons) > 0 {
		ok := false
		for _, re := range f.reasons {
			if re.MatchString(o.Reason) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return o.Count >= f.minCount
}
