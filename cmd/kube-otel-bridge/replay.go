package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
	"github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

func replayCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	output := fs.String("output", "tree", "tree (readable, grouped by owner chain) or json (one occurrence per line)")
	maxMsg := fs.Int("max-message-bytes", convert.DefaultMaxMessageBytes, "longer event messages are truncated")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: kube-otel-bridge replay FILE [--output tree|json]")
		fs.PrintDefaults()
	}
	// The file may come before or after the flags.
	var file string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		file, args = args[0], args[1:]
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	}
	if file == "" {
		fs.Usage()
		return errUsage
	}
	if *output != "tree" && *output != "json" {
		return fmt.Errorf("--output must be tree or json, got %q", *output)
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	entries, err := watch.ReadRecording(f)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	occs, err := replay(entries, convert.Options{MaxMessageBytes: *maxMsg})
	if err != nil {
		return err
	}
	if *output == "json" {
		return writeJSON(stdout, occs)
	}
	return writeTree(stdout, occs)
}

// replay runs the watch stage (dedup, owner chains) on a recording with a
// virtual clock: the times written in the recording.
func replay(entries []watch.Entry, opts convert.Options) ([]convert.Occurrence, error) {
	var now time.Time
	objects, err := watch.NewObjectCache(watch.CacheOptions{Now: func() time.Time { return now }})
	if err != nil {
		return nil, err
	}
	dedup := watch.NewDedup()
	var out []convert.Occurrence
	for _, e := range entries {
		now = e.At
		switch {
		case e.Object != nil && !e.Object.Deleted.IsZero():
			if _, ok := objects.Get(e.Object.UID); !ok {
				objects.Upsert(e.Object)
			}
			objects.MarkDeleted(e.Object.UID, e.Object.Deleted)
		case e.Object != nil:
			objects.Upsert(e.Object)
		case e.Event != nil:
			occs, err := watch.Occurrences(dedup, e.Event, e.At, opts)
			if err != nil {
				return nil, err
			}
			for i := range occs {
				occs[i].Chain, _ = objects.Chain(occs[i].Chain)
			}
			out = append(out, occs...)
		}
	}
	return out, nil
}

type jsonRef struct {
	Kind      string `json:"kind,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	UID       string `json:"uid,omitempty"`
}

type jsonOccurrence struct {
	Time      time.Time `json:"time"`
	EventUID  string    `json:"eventUID"`
	Count     int32     `json:"count"`
	Type      string    `json:"type"`
	Reason    string    `json:"reason"`
	Note      string    `json:"note"`
	Reporter  string    `json:"reporter,omitempty"`
	Regarding jsonRef   `json:"regarding"`
	Chain     []jsonRef `json:"chain"`
}

func writeJSON(w io.Writer, occs []convert.Occurrence) error {
	enc := json.NewEncoder(w)
	for i := range occs {
		o := &occs[i]
		j := jsonOccurrence{Time: o.Time, EventUID: o.EventUID, Count: o.Count, Type: o.Type, Reason: o.Reason, Note: o.Note,
			Reporter: o.ReportingController, Regarding: ref(o.Regarding)}
		for _, r := range o.Chain {
			j.Chain = append(j.Chain, ref(r))
		}
		if err := enc.Encode(j); err != nil {
			return err
		}
	}
	return nil
}

func ref(r convert.Ref) jsonRef {
	return jsonRef{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, UID: r.UID}
}

// node is one object in the grouped view: its events and its owned objects.
type node struct {
	ref      convert.Ref
	events   []*convert.Occurrence
	children []*node
	index    map[string]*node
	first    time.Time
}

func (n *node) child(r convert.Ref, at time.Time) *node {
	key := r.UID
	if key == "" {
		key = r.Kind + "/" + r.Namespace + "/" + r.Name
	}
	if c, ok := n.index[key]; ok {
		return c
	}
	c := &node{ref: r, index: map[string]*node{}, first: at}
	n.index[key] = c
	n.children = append(n.children, c)
	return c
}

// writeTree prints occurrences grouped by owner chain, root first, with times
// relative to the root's first occurrence. (The span tree of the causality
// engine will replace this view.)
func writeTree(w io.Writer, occs []convert.Occurrence) error {
	root := &node{index: map[string]*node{}}
	sorted := make([]*convert.Occurrence, len(occs))
	for i := range occs {
		sorted[i] = &occs[i]
	}
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Time.Before(sorted[j].Time) })
	for _, o := range sorted {
		n := root
		for i := len(o.Chain) - 1; i >= 0; i-- {
			n = n.child(o.Chain[i], o.Time)
		}
		n.events = append(n.events, o)
	}
	var b strings.Builder
	for _, r := range root.children {
		warnings := 0
		total := countEvents(r, &warnings)
		fmt.Fprintf(&b, "%s  (%d events, %d warnings)\n", label(r.ref), total, warnings)
		printChildren(&b, r, "", r.first)
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func countEvents(n *node, warnings *int) int {
	total := len(n.events)
	for _, e := range n.events {
		if e.Type == "Warning" {
			*warnings++
		}
	}
	for _, c := range n.children {
		total += countEvents(c, warnings)
	}
	return total
}

func label(r convert.Ref) string {
	name := r.Name
	if r.Namespace != "" {
		name = r.Namespace + "/" + r.Name
	}
	if r.Kind == "" {
		return "(no object) " + name
	}
	return r.Kind + " " + name
}

func printChildren(b *strings.Builder, n *node, indent string, t0 time.Time) {
	type line struct {
		at    time.Time
		event *convert.Occurrence
		child *node
	}
	var lines []line
	for _, e := range n.events {
		lines = append(lines, line{at: e.Time, event: e})
	}
	for _, c := range n.children {
		lines = append(lines, line{at: c.first, child: c})
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at.Before(lines[j].at) })
	for i, l := range lines {
		branch, next := "├─ ", "│  "
		if i == len(lines)-1 {
			branch, next = "└─ ", "   "
		}
		if l.child != nil {
			fmt.Fprintf(b, "%s%s%s\n", indent, branch, label(l.child.ref))
			printChildren(b, l.child, indent+next, t0)
			continue
		}
		e := l.event
		mark := " "
		if e.Type == "Warning" {
			mark = "!"
		}
		count := ""
		if e.Count > 1 {
			count = fmt.Sprintf(" (×%d)", e.Count)
		}
		note := strings.ReplaceAll(e.Note, "\n", " ")
		if len(note) > 100 {
			note = note[:97] + "..."
		}
		fmt.Fprintf(b, "%s%s%s+%7.3fs %s%s  %s\n", indent, branch, mark, e.Time.Sub(t0).Seconds(), e.Reason, count, note)
	}
}
