package filter

import (
	"strings"
	"testing"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

func occ(typ, ns, kind, reason string, count int32) *convert.Occurrence {
	return &convert.Occurrence{Type: typ, Namespace: ns, Reason: reason, Count: count,
		Regarding: convert.Ref{Kind: kind, Namespace: ns, Name: "x"}}
}

func TestMatch(t *testing.T) {
	c := Config{ExcludeNamespaces: []string{"kube-system"}, Kinds: []string{"Pod"}, Reasons: []string{"BackOff|Failed.*"}, MinCount: 2}
	f, err := c.Compile()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		o    *convert.Occurrence
		want bool
	}{
		{occ("Warning", "shop", "Pod", "BackOff", 2), true},
		{occ("Warning", "shop", "Pod", "FailedMount", 3), true},
		{occ("Warning", "shop", "Pod", "BackOff", 1), false},        // minCount
		{occ("Normal", "shop", "Pod", "BackOff", 5), false},         // level
		{occ("Warning", "kube-system", "Pod", "BackOff", 5), false}, // excluded namespace
		{occ("Warning", "shop", "Node", "BackOff", 5), false},       // kind
		{occ("Warning", "shop", "Pod", "ImageBackOff", 5), false},   // anchored: no substring match
		{occ("Warning", "shop", "Pod", "BackOffExtra", 5), false},   // anchored at the end too
		{occ("warning", "shop", "Pod", "BackOff", 5), true},         // type case-insensitive
	} {
		if got := f.Match(tc.o); got != tc.want {
			t.Errorf("%s %s/%s %s ×%d: got %v, want %v", tc.o.Type, tc.o.Namespace, tc.o.Regarding.Kind, tc.o.Reason, tc.o.Count, got, tc.want)
		}
	}
}

func TestZeroValueIsWarningsOnly(t *testing.T) {
	f, err := Config{}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if f.Match(occ("Normal", "a", "Pod", "Started", 1)) || !f.Match(occ("Warning", "a", "Pod", "BackOff", 1)) {
		t.Error("zero filter must pass exactly the warnings")
	}
	all, _ := Config{MinLevel: "Normal", Namespaces: []string{"a"}}.Compile()
	if !all.Match(occ("Normal", "a", "Pod", "Started", 1)) || all.Match(occ("Normal", "b", "Pod", "Started", 1)) {
		t.Error("minLevel Normal with namespaces [a]")
	}
}

func TestInvalidFiltersNameTheField(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{Reasons: []string{"Back(Off"}}, "reasons[0]"},
		{Config{MinLevel: "Error"}, "minLevel"},
		{Config{MinCount: -1}, "minCount"},
		{Config{Namespaces: []string{"a"}, ExcludeNamespaces: []string{"a"}}, "namespaces"},
		{Config{Kinds: []string{" "}}, "kinds"},
	} {
		err := tc.c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %s", tc.c, err, tc.want)
		}
	}
}
