package causality

import "fmt"

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
