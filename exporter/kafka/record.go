package kafka

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// SchemaVersion is the value of the "schema" header of every record. It
// changes only when a field is removed or changes meaning; new optional
// fields may appear within a version.
const SchemaVersion = "kube-otel-bridge.event/v1"

// ContentType is the value of the "content-type" header of every record.
const ContentType = "application/json"

// Header names.
const (
	HeaderSchema      = "schema"
	HeaderContentType = "content-type"
)

// TimeFormat is the format of every time in a record: RFC 3339 in UTC with
// nanoseconds, always 9 digits (fixed width, so that times sort as strings).
const TimeFormat = "2006-01-02T15:04:05.000000000Z"

// Record is the value of a Kafka record: one occurrence of a Kubernetes Event
// as one flat JSON object (schema SchemaVersion). Fields are written in this
// order; optional ones are left out when empty.
//
// The record key is the involved object's UID (involvedObject.uid), so all
// records about one object land in one partition, in order. An object
// without a UID is keyed by "namespace/kind/name", an Event about no object
// at all by its event UID.
//
// Headers: "schema" = SchemaVersion, "content-type" = "application/json".
//
// Example, indented here (values are compact JSON; testdata/record.golden.json):
//
//	{
//	  "cluster": "prod-eu-1",
//	  "eventUid": "5c1b4d3e-8f3a-4c52-9d6e-0b1f2a3c4d5e",
//	  "eventName": "web-7bc89-vz4hj.17f2a9c1d3e4b5a6",
//	  "namespace": "shop",
//	  "count": 3,
//	  "type": "Warning",
//	  "reason": "BackOff",
//	  "action": "",
//	  "message": "Back-off restarting failed container app in pod web-7bc89-vz4hj_shop(8d2f6a1c-3b4e-4f5a-9c7d-1e2f3a4b5c6d)",
//	  "time": "2026-03-14T09:26:53.589793000Z",
//	  "firstTime": "2026-03-14T09:21:40.000000000Z",
//	  "observedTime": "2026-03-14T09:26:53.712000000Z",
//	  "involvedObject": {
//	    "kind": "Pod",
//	    "name": "web-7bc89-vz4hj",
//	    "namespace": "shop",
//	    "uid": "8d2f6a1c-3b4e-4f5a-9c7d-1e2f3a4b5c6d",
//	    "apiVersion": "v1",
//	    "fieldPath": "spec.containers{app}"
//	  },
//	  "ownerChain": [
//	    {
//	      "kind": "Deployment",
//	      "name": "web",
//	      "uid": "0f1e2d3c-4b5a-4968-8776-655443322110"
//	    },
//	    {
//	      "kind": "ReplicaSet",
//	      "name": "web-7bc89",
//	      "uid": "b7e1c2d3-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
//	    },
//	    {
//	      "kind": "Pod",
//	      "name": "web-7bc89-vz4hj",
//	      "uid": "8d2f6a1c-3b4e-4f5a-9c7d-1e2f3a4b5c6d"
//	    }
//	  ],
//	  "reportingController": "kubelet",
//	  "reportingInstance": "node-2",
//	  "node": "node-2",
//	  "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
//	  "span_id": "00f067aa0ba902b7"
//	}
//
// Fields:
//
//   - cluster: the cluster name the bridge was started with.
//   - eventUid, eventName: the Event object; with count they identify the
//     occurrence (consumers may deduplicate on eventUid+count: delivery is
//     at-least-once).
//   - namespace: the Event's namespace.
//   - count: 1-based number of this occurrence of the Event.
//   - type: the raw Event type (Normal, Warning, …); reason, action: as in
//     the Event (action is always present, possibly empty).
//   - message: the Event message (note). When the bridge cut it,
//     messageTruncated is true and messageOriginalBytes is the length of the
//     message the API held (both left out otherwise).
//   - time: when the occurrence happened; firstTime: when the Event was first
//     seen by its reporter (left out when unknown); observedTime: when the
//     bridge saw the occurrence.
//   - involvedObject: the object the Event is about (kind, name, namespace,
//     uid, apiVersion, fieldPath; empty members left out).
//   - related: a second object the Event names (same members), if any.
//   - ownerChain: from the root owner (e.g. Deployment) down to the involved
//     object itself, each with kind, name and uid. ownerChain[0] is the root
//     the event's trace belongs to. Left out for an Event about no object.
//   - reportingController, reportingInstance: the component that reported
//     the Event; node: the node it ran on (core/v1 source.host). Left out
//     when empty.
//   - trace_id (32 hex digits), span_id (16 hex digits): the trace and the
//     event span of the occurrence, as in the OTLP output. Left out when
//     zero.
type Record struct {
	Cluster              string     `json:"cluster"`
	EventUID             string     `json:"eventUid"`
	EventName            string     `json:"eventName"`
	Namespace            string     `json:"namespace"`
	Count                int32      `json:"count"`
	Type                 string     `json:"type"`
	Reason               string     `json:"reason"`
	Action               string     `json:"action"`
	Message              string     `json:"message"`
	MessageTruncated     bool       `json:"messageTruncated,omitempty"`
	MessageOriginalBytes int        `json:"messageOriginalBytes,omitempty"`
	Time                 string     `json:"time"`
	FirstTime            string     `json:"firstTime,omitempty"`
	ObservedTime         string     `json:"observedTime"`
	InvolvedObject       Object     `json:"involvedObject"`
	Related              *Object    `json:"related,omitempty"`
	OwnerChain           []ChainRef `json:"ownerChain,omitempty"`
	ReportingController  string     `json:"reportingController,omitempty"`
	ReportingInstance    string     `json:"reportingInstance,omitempty"`
	Node                 string     `json:"node,omitempty"`
	TraceID              string     `json:"trace_id,omitempty"`
	SpanID               string     `json:"span_id,omitempty"`
}

// Object is an object named by an Event.
type Object struct {
	Kind       string `json:"kind,omitempty"`
	Name       string `json:"name,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
	UID        string `json:"uid,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`
	FieldPath  string `json:"fieldPath,omitempty"`
}

// ChainRef is one object of an owner chain.
type ChainRef struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	UID  string `json:"uid,omitempty"`
}

// NewRecord builds the record of an occurrence.
func NewRecord(cluster string, o *convert.Occurrence) Record {
	r := Record{
		Cluster:             cluster,
		EventUID:            o.EventUID,
		EventName:           o.EventName,
		Namespace:           o.Namespace,
		Count:               o.Count,
		Type:                o.Type,
		Reason:              o.Reason,
		Action:              o.Action,
		Message:             o.Note,
		Time:                formatTime(o.Time),
		FirstTime:           formatTime(o.FirstTime),
		ObservedTime:        formatTime(o.Observed),
		InvolvedObject:      object(o.Regarding),
		ReportingController: o.ReportingController,
		ReportingInstance:   o.ReportingInstance,
		Node:                o.SourceHost,
	}
	if o.NoteTruncated {
		r.MessageTruncated = true
		r.MessageOriginalBytes = o.NoteOriginalBytes
	}
	if r.Time == "" { // "time" is always present
		r.Time = r.ObservedTime
	}
	if o.Related != nil && !o.Related.IsZero() {
		rel := object(*o.Related)
		r.Related = &rel
	}
	chain := o.Chain
	if len(chain) == 0 && !o.Regarding.IsZero() {
		chain = []convert.Ref{o.Regarding}
	}
	for _, ref := range slices.Backward(chain) {
		r.OwnerChain = append(r.OwnerChain, ChainRef{Kind: ref.Kind, Name: ref.Name, UID: ref.UID})
	}
	if o.TraceID != ([16]byte{}) {
		r.TraceID = hex.EncodeToString(o.TraceID[:])
	}
	if o.SpanID != ([8]byte{}) {
		r.SpanID = hex.EncodeToString(o.SpanID[:])
	}
	return r
}

// Marshal encodes the record as compact JSON, leaving <, > and & as they are.
func (r Record) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}

// RecordKey is the record key of an occurrence: the involved object's UID,
// else "namespace/kind/name", else (no object at all) the event UID.
func RecordKey(o *convert.Occurrence) string {
	ref := o.Regarding
	switch {
	case ref.UID != "":
		return ref.UID
	case ref.Kind != "" || ref.Name != "":
		ns := ref.Namespace
		if ns == "" {
			ns = o.Namespace
		}
		return ns + "/" + ref.Kind + "/" + ref.Name
	default:
		return o.EventUID
	}
}

func object(r convert.Ref) Object {
	return Object{Kind: r.Kind, Name: r.Name, Namespace: r.Namespace, UID: r.UID, APIVersion: r.APIVersion, FieldPath: r.FieldPath}
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(TimeFormat)
}
