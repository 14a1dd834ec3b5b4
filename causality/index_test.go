package causality

import (
	"fmt"
	"testing"
)

// namedIndexError reports how the by-name index of open episodes differs
// from the open episodes themselves, if it does.
func namedIndexError(e *Engine) error {
	n := 0
	for name, eps := range e.named {
		if len(eps) == 0 {
			return fmt.Errorf("index entry %v without episodes", name)
		}
		for _, ep := range eps {
			if e.open[ep.rootKey] != ep || (rootName{ep.root.Kind, ep.root.Name}) != name {
				return fmt.Errorf("index entry %v holds %s, not open under that name", name, ep.rootKey)
			}
			n++
		}
	}
	want := 0
	for _, ep := range e.open {
		if isLinkTarget(ep.root.Kind) {
			want++
		}
	}
	if n != want {
		return fmt.Errorf("index holds %d episodes, %d open nodes and scale targets", n, want)
	}
	return nil
}

// dueBoundError reports an open episode due before the engine's nextDue,
// which Advance would then miss.
func dueBoundError(e *Engine) error {
	if !e.dueKnown {
		return nil
	}
	for _, ep := range e.open {
		if d := e.deadline(ep); d.Before(e.nextDue) {
			return fmt.Errorf("episode %s due at %s, before nextDue %s", ep.rootKey, d, e.nextDue)
		}
	}
	return nil
}

func TestParseCauseKey(t *testing.T) {
	for _, c := range []struct {
		key, kind, name string
		want            causeID
		bad             bool
	}{
		{key: "Pod/ns/web-1", kind: "Pod", name: "web-1", want: causeID{"Pod", "ns", "web-1"}},
		{key: "Pod//web-1", kind: "Pod", name: "web-1", want: causeID{"Pod", "", "web-1"}},
		{key: "Pod/a/b/c", kind: "Pod", name: "c", want: causeID{"Pod", "a/b", "c"}},
		{key: "Job/ns/x", kind: "Pod", name: "y", want: causeID{"Job", "ns", "x"}}, // not the target's: split
		{key: "Pod/x", kind: "Pod", name: "x", bad: true},
		{key: "", bad: true},
	} {
		got, err := parseCauseKey(c.key, c.kind, c.name)
		if (err != nil) != c.bad || (!c.bad && got != c.want) {
			t.Errorf("parseCauseKey(%q, %q, %q) = %+v, %v", c.key, c.kind, c.name, got, err)
		}
	}
}
