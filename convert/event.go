package convert

import (
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
)

// DefaultMaxMessageBytes is the message size limit used when
// Options.MaxMessageBytes is 0.
const DefaultMaxMessageBytes = 64 << 10

// Options tune FromEvent. The zero value is valid and uses the defaults.
type Options struct {
	// MaxMessageBytes is the largest message (Note) kept, in bytes. Longer
	// messages are cut on a UTF-8 boundary and the occurrence records the
	// original length. 0 means DefaultMaxMessageBytes; negative is invalid.
	MaxMessageBytes int
}

// Validate reports whether the options are usable.
func (o Options) Validate() error {
	if o.MaxMessageBytes < 0 {
		return errors.New("convert: MaxMessageBytes must not be negative, got " + strconv.Itoa(o.MaxMessageBytes))
	}
	return nil
}

func (o Options) maxMessageBytes() int {
	if o.MaxMessageBytes == 0 {
		return DefaultMaxMessageBytes
	}
	return o.MaxMessageBytes
}

// EventCount returns how many times the Event has happened: series.count when
// the Event has a series, else deprecatedCount; never less than 1. A series
// with a non-positive count (invalid per API validation) is ignored.
func EventCount(ev *eventsv1.Event) int32 {
	if ev == nil {
		return 1
	}
	if ev.Series != nil && ev.Series.Count > 0 {
		return ev.Series.Count
	}
	if ev.DeprecatedCount > 1 {
		return ev.DeprecatedCount
	}
	return 1
}

// OccurrenceTime returns when the Event's latest occurrence happened, with the
// precedence series.lastObservedTime > eventTime > deprecatedLastTimestamp >
// deprecatedFirstTimestamp > creationTimestamp. Sub-second precision is kept
// as the API gives it (microseconds for MicroTime fields). The result is in
// UTC; it is the zero time if the Event carries no time at all.
func OccurrenceTime(ev *eventsv1.Event) time.Time {
	if ev == nil {
		return time.Time{}
	}
	switch {
	case ev.Series != nil && !ev.Series.LastObservedTime.IsZero():
		return ev.Series.LastObservedTime.UTC()
	case !ev.EventTime.IsZero():
		return ev.EventTime.UTC()
	case !ev.DeprecatedLastTimestamp.IsZero():
		return ev.DeprecatedLastTimestamp.UTC()
	case !ev.DeprecatedFirstTimestamp.IsZero():
		return ev.DeprecatedFirstTimestamp.UTC()
	case !ev.CreationTimestamp.IsZero():
		return ev.CreationTimestamp.UTC()
	}
	return time.Time{}
}

// FirstTime returns when the Event first happened: deprecatedFirstTimestamp >
// eventTime > creationTimestamp > series.lastObservedTime. Creation comes
// before the series time because the Event object is created at the first
// occurrence, while lastObservedTime is the latest one.
func FirstTime(ev *eventsv1.Event) time.Time {
	switch {
	case !ev.DeprecatedFirstTimestamp.IsZero():
		return ev.DeprecatedFirstTimestamp.UTC()
	case !ev.EventTime.IsZero():
		return ev.EventTime.UTC()
	case !ev.CreationTimestamp.IsZero():
		return ev.CreationTimestamp.UTC()
	case ev.Series != nil && !ev.Series.LastObservedTime.IsZero():
		return ev.Series.LastObservedTime.UTC()
	}
	return time.Time{}
}

// FromEvent normalizes one occurrence of an events.k8s.io/v1 Event.
//
// count is the occurrence's count (its key together with the Event UID); a
// value below 1 means EventCount(ev). observed is when the bridge saw the
// occurrence; it also stands in for the occurrence time when the Event has
// none (Occurrence.TimeFromObserved is then set).
//
// FromEvent never panics on odd input: every string is made valid UTF-8
// (invalid bytes become U+FFFD), the message is cut to opts.MaxMessageBytes,
// and an Event without a regarding object still yields an occurrence (with an
// empty Regarding). Chain is [Regarding]; the caller appends the owners.
func FromEvent(ev *eventsv1.Event, count int32, observed time.Time, opts Options) (Occurrence, error) {
	var o Occurrence
	if err := FromEventInto(&o, nil, ev, count, observed, opts); err != nil {
		return Occurrence{}, err
	}
	return o, nil
}

// FromEventInto is FromEvent writing the occurrence to *o, with its Chain
// ([Regarding]) in chain's backing array when chain has room: a caller that
// allocates that array together with *o saves FromEvent's allocation of it.
// Without room (e.g. nil), Chain gets an array of its own. On error *o is
// left as it was.
func FromEventInto(o *Occurrence, chain []Ref, ev *eventsv1.Event, count int32, observed time.Time, opts Options) error {
	if ev == nil {
		return errors.New("convert: nil Event")
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	if count < 1 {
		count = EventCount(ev)
	}

	*o = Occurrence{
		EventUID:            validUTF8(string(ev.UID)),
		EventName:           validUTF8(ev.Name),
		Namespace:           validUTF8(ev.Namespace),
		Count:               count,
		Type:                validUTF8(ev.Type),
		Reason:              validUTF8(ev.Reason),
		Action:              validUTF8(ev.Action),
		Time:                OccurrenceTime(ev),
		FirstTime:           FirstTime(ev),
		Observed:            observed,
		Regarding:           refFrom(&ev.Regarding),
		ReportingController: validUTF8(ev.ReportingController),
		ReportingInstance:   validUTF8(ev.ReportingInstance),
		SourceHost:          validUTF8(ev.DeprecatedSource.Host),
	}
	if o.ReportingController == "" {
		o.ReportingController = validUTF8(ev.DeprecatedSource.Component)
	}
	if o.Time.IsZero() {
		o.Time = observed
		o.TimeFromObserved = true
	}
	if ev.Related != nil {
		rel := refFrom(ev.Related)
		o.Related = &rel
	}
	o.Note, o.NoteTruncated = truncateMessage(validUTF8(ev.Note), opts.maxMessageBytes())
	if o.NoteTruncated {
		o.NoteOriginalBytes = len(ev.Note)
	}

	if cap(chain) == 0 {
		// Room for a typical owner chain (Pod, ReplicaSet, Deployment) so
		// the caller's appends do not reallocate.
		chain = make([]Ref, 0, 4)
	}
	o.Chain = append(chain[:0], o.Regarding)
	return nil
}

func refFrom(r *corev1.ObjectReference) Ref {
	return Ref{
		Kind:            validUTF8(r.Kind),
		APIVersion:      validUTF8(r.APIVersion),
		Namespace:       validUTF8(r.Namespace),
		Name:            validUTF8(r.Name),
		UID:             validUTF8(string(r.UID)),
		ResourceVersion: validUTF8(r.ResourceVersion),
		FieldPath:       validUTF8(r.FieldPath),
	}
}

// validUTF8 returns s with every run of invalid UTF-8 bytes replaced by
// U+FFFD. Valid strings (the normal case) are returned without allocating.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// truncateMessage cuts the valid UTF-8 string s to at most limit bytes
// without splitting a rune. The cut copy is detached from s so that a huge
// original message is not kept alive by the occurrence.
func truncateMessage(s string, limit int) (string, bool) {
	if len(s) <= limit {
		return s, false
	}
	cut := limit
	// Back up to the start of a rune; at most utf8.UTFMax-1 steps for valid
	// input.
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.Clone(s[:cut]), true
}
