// Package convert turns Kubernetes Events into normalized occurrences and
// occurrences into OTLP log records. It never touches the network or the
// wall clock: every time it uses is passed in.
package convert

import "time"

// Ref identifies one Kubernetes object taking part in an occurrence.
type Ref struct {
	Kind            string
	APIVersion      string
	Namespace       string
	Name            string
	UID             string
	ResourceVersion string
	FieldPath       string
}

// IsZero reports whether the reference names no object at all (no kind,
// name or UID), as for an Event without a regarding object.
func (r Ref) IsZero() bool { return r.Kind == "" && r.Name == "" && r.UID == "" }

// Occurrence is one emission of an Event: an Event object seen with a count
// (core/v1 count or events.k8s.io series.count) that the bridge has not
// emitted before. Its key is EventUID + Count.
type Occurrence struct {
	EventUID  string
	EventName string
	Namespace string
	// Count is the 1-based number of this occurrence of the Event.
	Count int32
	// Type is the raw Event type (Normal, Warning, or whatever the API held).
	Type   string
	Reason string
	Action string
	Note   string // the message
	// NoteTruncated is set when Note was cut to Options.MaxMessageBytes;
	// NoteOriginalBytes is then the length in bytes of the message as the
	// API held it.
	NoteTruncated     bool
	NoteOriginalBytes int
	// Time is when the occurrence happened (see DESIGN.md for the precedence).
	Time time.Time
	// TimeFromObserved is set when the Event carried no usable time at all
	// and Time is a copy of Observed.
	TimeFromObserved bool
	// FirstTime is when the Event was first seen by its reporter.
	FirstTime time.Time
	// Observed is when the bridge saw the occurrence.
	Observed time.Time

	Regarding Ref
	Related   *Ref

	ReportingController string
	ReportingInstance   string
	// SourceHost is the node the reporter ran on (core/v1 source.host or
	// deprecatedSource.host), if any.
	SourceHost string

	// Chain is the owner chain of Regarding, starting with Regarding itself
	// and ending at the root (e.g. Pod, ReplicaSet, Deployment).
	Chain []Ref

	// TraceID and SpanID link the occurrence to its event span; zero until
	// the causality engine assigns them.
	TraceID [16]byte
	SpanID  [8]byte
}

// Key is the occurrence's identity: the Event UID and the count.
type Key struct {
	EventUID string
	Count    int32
}

// Key returns the occurrence's identity.
func (o *Occurrence) Key() Key { return Key{EventUID: o.EventUID, Count: o.Count} }
