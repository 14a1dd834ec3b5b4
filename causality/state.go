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

// SaveState returns the episode marks of every root active within keep
// (open episodes count as closing now), compressed, for the checkpoint.
func (e *Engine) SaveState(now time.Time, keep time.Duration) ([]byte, error) {
	var out []savedEpisode
	add := func(rk string, l lastEpisode, closed time.Time) {
		out = append(out, savedEpisode{Root: rk, Gen: l.gen, Seq: l.seq, TraceID: l.traceID.String(), RootID: l.rootID.String(), Closed: closed.Unix()})
	}
	for rk, l := range e.last {
		if _, open := e.open[rk]; open || now.Sub(l.closed) > keep {
			continue
		}
		add(rk, l, l.closed)
	}
	for rk, ep := range e.open {
		add(rk, lastEpisode{traceID: ep.traceID, rootID: ep.rootID, gen: ep.gen, seq: ep.seq}, now)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Root < out[j].Root })
	var buf bytes.Buffer
	// The fastest level: the marks are small and saved every few seconds.
	// A new writer each time: one kept would hold 1.8 MB of tables.
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err := json.NewEncoder(zw).Encode(out); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// RestoreState loads what SaveState wrote, before any occurrence.
func (e *Engine) RestoreState(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("causality state: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, 256<<20))
	if err != nil {
		return fmt.Errorf("causality state: %w", err)
	}
	var in []savedEpisode
	if err := json.Unmarshal(raw, &in); err != nil {
		return fmt.Errorf("causality state: %w", err)
	}
	for _, s := range in {
		tid, err1 := trace.TraceIDFromHex(s.TraceID)
		sid, err2 := trace.SpanIDFromHex(s.RootID)
		if err1 != nil || err2 != nil || s.Seq < 0 {
			return fmt.Errorf("causality state: bad entry for root %q", s.Root)
		}
		e.last[s.Root] = lastEpisode{traceID: tid, rootID: sid, gen: s.Gen, seq: s.Seq, closed: time.Unix(s.Closed, 0)}
	}
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
