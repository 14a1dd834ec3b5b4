package causality

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// savedEpisode is what a restarted engine needs to know of a root's latest
// episode: its generation and sequence (so the next episode gets a new key,
// never a trace ID used before) and its IDs (for the link to it).
type savedEpisode struct {
	Root    string `json:"r"`
	Gen     int64  `json:"g,omitempty"`
	Seq     int    `json:"s,omitempty"`
	TraceID string `json:"t"`
	RootID  string `json:"i"`
	Closed  int64  `json:"c"`
}

// savedState is the marks' JSON: the marks kept, and Forgot, the latest
// close time (Unix seconds) of a mark left out for the size budget (0:
// none). Before Forgot existed the marks were saved as a bare array, which
// RestoreState still reads.
type savedState struct {
	Forgot int64          `json:"forgot,omitempty"`
	Marks  []savedEpisode `json:"marks"`
}

// SaveState returns the episode marks of every root active within keep
// (open episodes count as closing now), as JSON, for the checkpoint.
// Past budget bytes of JSON it keeps the open and most recently closed
// roots and records when the latest one left out closed: a restored engine
// then gives a root without a mark keys no earlier episode had (see
// openEpisode), where a mark lost silently could repeat a trace ID.
func (e *Engine) SaveState(now time.Time, keep time.Duration, budget int) ([]byte, error) {
	marks := make([]savedEpisode, 0, len(e.last)+len(e.open))
	for rk, l := range e.last {
		if _, open := e.open[rk]; open || now.Sub(l.closed) > keep {
			continue
		}
		marks = append(marks, saveMark(rk, l, l.closed))
	}
	for rk, ep := range e.open {
		marks = append(marks, saveMark(rk, lastEpisode{traceID: ep.traceID, rootID: ep.rootID, gen: ep.gen, seq: ep.seq}, now))
	}
	st := savedState{Forgot: e.forgot}
	if e.forgot != 0 && now.Sub(time.Unix(e.forgot, 0)) > keep {
		// Roots left out that long ago are as safe as forgotten ones:
		// their next episode opens on another day.
		st.Forgot = 0
	}
	size := 0
	for _, m := range marks {
		size += m.jsonSize()
	}
	if size > budget {
		// Most recently closed first (open ones count as closing now).
		sort.Slice(marks, func(i, j int) bool {
			if marks[i].Closed != marks[j].Closed {
				return marks[i].Closed > marks[j].Closed
			}
			return marks[i].Root < marks[j].Root
		})
		size = 0
		for i, m := range marks {
			if size += m.jsonSize(); size > budget {
				st.Forgot = max(st.Forgot, m.Closed)
				marks = marks[:i]
				break
			}
		}
	}
	sort.Slice(marks, func(i, j int) bool { return marks[i].Root < marks[j].Root })
	st.Marks = marks
	// Plain JSON: the checkpoint compresses the engine's part as a whole
	// (compressing the marks here too cost a second compressor's ≈ 1 MB of
	// tables per save and base64 in the checkpoint's JSON).
	return json.Marshal(st)
}

func saveMark(rk string, l lastEpisode, closed time.Time) savedEpisode {
	return savedEpisode{Root: rk, Gen: l.gen, Seq: l.seq, TraceID: l.traceID.String(), RootID: l.rootID.String(), Closed: closed.Unix()}
}

// jsonSize is about the mark's size in JSON: the root, the IDs, the
// numbers and the punctuation (budgets need no exact figure).
func (s *savedEpisode) jsonSize() int {
	return len(s.Root) + len(s.TraceID) + len(s.RootID) + 60
}

// RestoreState loads what SaveState wrote, before any occurrence.
func (e *Engine) RestoreState(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	raw := data
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		// Saved compressed, as before the checkpoint compressed it whole.
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("causality state: %w", err)
		}
		if raw, err = io.ReadAll(io.LimitReader(zr, 256<<20)); err != nil {
			return fmt.Errorf("causality state: %w", err)
		}
	}
	var st savedState
	var err error
	if trimmed := bytes.TrimLeft(raw, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '[' {
		err = json.Unmarshal(raw, &st.Marks) // saved before Forgot existed
	} else {
		err = json.Unmarshal(raw, &st)
	}
	if err != nil {
		return fmt.Errorf("causality state: %w", err)
	}
	if st.Forgot < 0 {
		return fmt.Errorf("causality state: bad forgot time %d", st.Forgot)
	}
	for _, s := range st.Marks {
		tid, err1 := trace.TraceIDFromHex(s.TraceID)
		sid, err2 := trace.SpanIDFromHex(s.RootID)
		if err1 != nil || err2 != nil || s.Seq < 0 {
			return fmt.Errorf("causality state: bad entry for root %q", s.Root)
		}
		e.last[s.Root] = lastEpisode{traceID: tid, rootID: sid, gen: s.Gen, seq: s.Seq, closed: time.Unix(s.Closed, 0)}
	}
	e.forgot = max(e.forgot, st.Forgot)
	return nil
}

// ForgetBefore drops the marks of roots whose latest episode closed before
// t, bounding memory (their next episode starts a new sequence).
func (e *Engine) ForgetBefore(t time.Time) int {
	n := 0
	for rk, l := range e.last {
		if _, open := e.open[rk]; !open && l.closed.Before(t) {
			delete(e.last, rk)
			n++
		}
	}
	return n
}
