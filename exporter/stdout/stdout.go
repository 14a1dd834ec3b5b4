// Package stdout writes spans for people and for diffs: a waterfall tree per
// trace, or deterministic JSON lines.
package stdout

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	"github.com/kube-otel-bridge/kube-otel-bridge/causality"
)

type node struct {
	span     *causality.Span
	children []*node
}

// forest groups spans by trace and builds each tree; traces are ordered by
// their root's start, children by start time then span ID. Spans whose parent
// is missing (never expected) become extra roots so nothing is hidden.
func forest(spans []causality.Span) [][]*node {
	byTrace := map[trace.TraceID]map[trace.SpanID]*node{}
	var traces []trace.TraceID
	for i := range spans {
		s := &spans[i]
		m, ok := byTrace[s.TraceID]
		if !ok {
			m = map[trace.SpanID]*node{}
			byTrace[s.TraceID] = m
			traces = append(traces, s.TraceID)
		}
		m[s.SpanID] = &node{span: s}
	}
	var out [][]*node
	for _, tid := range traces {
		m := byTrace[tid]
		var roots []*node
		for _, n := range m {
			if p, ok := m[n.span.Parent]; ok && n.span.Parent.IsValid() {
				p.children = append(p.children, n)
			} else {
				roots = append(roots, n)
			}
		}
		for _, n := range m {
			sortNodes(n.children)
		}
		sortNodes(roots)
		out = append(out, roots)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i][0].span, out[j][0].span
		if !a.Start.Equal(b.Start) {
			return a.Start.Before(b.Start)
		}
		return a.TraceID.String() < b.TraceID.String()
	})
	return out
}

func sortNodes(ns []*node) {
	sort.Slice(ns, func(i, j int) bool {
		a, b := ns[i].span, ns[j].span
		if (a.Kind == causality.KindRoot) != (b.Kind == causality.KindRoot) {
			return a.Kind == causality.KindRoot
		}
		if !a.Start.Equal(b.Start) {
			return a.Start.Before(b.Start)
		}
		if a.Seq != b.Seq {
			return a.Seq < b.Seq
		}
		return a.SpanID.String() < b.SpanID.String()
	})
}

// Tree writes one waterfall per trace: indentation for parentage, the offset
// from the trace's start, durations of object spans, "!" on warnings.
func Tree(w io.Writer, spans []causality.Span) error {
	var b strings.Builder
	for _, roots := range forest(spans) {
		t0 := roots[0].span.Start
		r := roots[0].span
		fmt.Fprintf(&b, "trace %s  %s  %s", r.TraceID, r.Name, dur(r.End.Sub(r.Start)))
		if v, ok := attr(r, "k8s.episode.events"); ok {
			fmt.Fprintf(&b, "  %s events", v)
		}
		if v, ok := attr(r, "k8s.episode.warnings"); ok && v != "0" {
			fmt.Fprintf(&b, ", %s warnings", v)
		}
		if v, ok := attr(r, "k8s.episode.close_reason"); ok {
			fmt.Fprintf(&b, "  (closed: %s)", v)
		}
		for _, l := range r.Links {
			fmt.Fprintf(&b, "  → follows trace %s", l.TraceID)
		}
		b.WriteString("\n")
		for i, n := range roots {
			printNode(&b, n, "", i == len(roots)-1, t0, true)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func printNode(b *strings.Builder, n *node, indent string, last bool, t0 time.Time, top bool) {
	branch, next := "├─ ", "│  "
	if last {
		branch, next = "└─ ", "   "
	}
	if top {
		branch, next = "", ""
	}
	s := n.span
	off := fmt.Sprintf("+%.3fs", s.Start.Sub(t0).Seconds())
	if s.Kind == causality.KindEvent {
		mark := " "
		if s.Error {
			mark = "!"
		}
		count := ""
		if v, ok := attr(s, "k8s.event.count"); ok && v != "1" {
			count = " ×" + v
		}
		note, _ := attr(s, "k8s.event.note")
		note = strings.ReplaceAll(note, "\n", " ")
		if len(note) > 90 {
			cut := 87
			for cut > 0 && !utf8.RuneStart(note[cut]) {
				cut--
			}
			note = note[:cut] + "..."
		}
		line := fmt.Sprintf("%s%s%s %s%s", indent, branch, mark, s.Name, count)
		fmt.Fprintf(b, "%-62s %9s  %s\n", line, off, note)
	} else {
		line := fmt.Sprintf("%s%s%s", indent, branch, s.Name)
		fmt.Fprintf(b, "%-62s %9s  %s\n", line, off, dur(s.End.Sub(s.Start)))
	}
	for i, c := range n.children {
		printNode(b, c, indent+next, i == len(n.children)-1, t0, false)
	}
}

func dur(d time.Duration) string {
	return fmt.Sprintf("%.3fs", d.Seconds())
}

func attr(s *causality.Span, key string) (string, bool) {
	for _, a := range s.AllAttributes() {
		if string(a.Key) == key {
			return a.Value.String(), true
		}
	}
	return "", false
}

type jsonLink struct {
	TraceID string `json:"traceId"`
	SpanID  string `json:"spanId"`
}

type jsonSpan struct {
	TraceID    string            `json:"traceId"`
	SpanID     string            `json:"spanId"`
	Parent     string            `json:"parentSpanId,omitempty"`
	Name       string            `json:"name"`
	Kind       string            `json:"kind"`
	Start      time.Time         `json:"start"`
	End        time.Time         `json:"end"`
	Error      bool              `json:"error,omitempty"`
	Status     string            `json:"status,omitempty"`
	Service    string            `json:"service"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Links      []jsonLink        `json:"links,omitempty"`
}

// JSON writes one span per line, trace by trace, parents before children:
// the same spans always give the same bytes.
func JSON(w io.Writer, spans []causality.Span) error {
	enc := json.NewEncoder(w)
	var err error
	for _, roots := range forest(spans) {
		for _, r := range roots {
			visit(r, func(s *causality.Span) {
				if err != nil {
					return
				}
				j := jsonSpan{TraceID: s.TraceID.String(), SpanID: s.SpanID.String(), Name: s.Name, Kind: s.Kind.String(),
					Start: s.Start.UTC(), End: s.End.UTC(), Error: s.Error, Status: s.StatusMessage, Service: s.Service}
				if s.Parent.IsValid() {
					j.Parent = s.Parent.String()
				}
				if attrs := s.AllAttributes(); len(attrs) > 0 {
					j.Attributes = map[string]string{}
					for _, a := range attrs {
						j.Attributes[string(a.Key)] = a.Value.String()
					}
				}
				for _, l := range s.Links {
					j.Links = append(j.Links, jsonLink{TraceID: l.TraceID.String(), SpanID: l.SpanID.String()})
				}
				err = enc.Encode(j)
			})
		}
	}
	return err
}

func visit(n *node, f func(*causality.Span)) {
	f(n.span)
	for _, c := range n.children {
		visit(c, f)
	}
}
