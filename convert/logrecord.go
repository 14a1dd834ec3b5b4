package convert

import (
	"strings"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
)

// EventName is the OpenTelemetry event name of every log record.
const EventName = "k8s.event"

// DefaultServiceName is the service.name resource attribute when none is
// configured.
const DefaultServiceName = "kube-otel-bridge"

// Log record attribute keys. The k8s.event.*, k8s.object.*, k8s.namespace.name
// and k8s.node.name keys are those of the OpenTelemetry Collector's
// k8seventsreceiver, so existing dashboards keep working.
const (
	attrEventReason              = "k8s.event.reason"
	attrEventAction              = "k8s.event.action"
	attrEventName                = "k8s.event.name"
	attrEventUID                 = "k8s.event.uid"
	attrEventCount               = "k8s.event.count"
	attrEventStartTime           = "k8s.event.start_time"
	attrEventReportingController = "k8s.event.reporting_controller"
	attrEventReportingInstance   = "k8s.event.reporting_instance"
	attrEventMessageTruncated    = "k8s.event.message_truncated"
	attrEventMessageOrigBytes    = "k8s.event.message_original_bytes"
	attrEventTimeFromObserved    = "k8s.event.time_from_observed"
	attrNamespaceName            = "k8s.namespace.name"
	attrObjectKind               = "k8s.object.kind"
	attrObjectName               = "k8s.object.name"
	attrObjectUID                = "k8s.object.uid"
	attrObjectAPIVersion         = "k8s.object.api_version"
	attrObjectResourceVersion    = "k8s.object.resource_version"
	attrObjectFieldPath          = "k8s.object.fieldpath"
	attrNodeName                 = "k8s.node.name"
)

// semconvKind describes a built-in kind that has stable semantic-convention
// attributes k8s.<kind>.name and k8s.<kind>.uid.
type semconvKind struct {
	kind    string
	groups  [2]string // accepted API groups ("" = core); empty APIVersion is accepted too
	nameKey string
	uidKey  string
}

var semconvKinds = [...]semconvKind{
	{"Pod", [2]string{"", ""}, "k8s.pod.name", "k8s.pod.uid"},
	{"ReplicaSet", [2]string{"apps", "extensions"}, "k8s.replicaset.name", "k8s.replicaset.uid"},
	{"Deployment", [2]string{"apps", "extensions"}, "k8s.deployment.name", "k8s.deployment.uid"},
	{"StatefulSet", [2]string{"apps", "apps"}, "k8s.statefulset.name", "k8s.statefulset.uid"},
	{"DaemonSet", [2]string{"apps", "extensions"}, "k8s.daemonset.name", "k8s.daemonset.uid"},
	{"Job", [2]string{"batch", "batch"}, "k8s.job.name", "k8s.job.uid"},
	{"CronJob", [2]string{"batch", "batch"}, "k8s.cronjob.name", "k8s.cronjob.uid"},
	{"Node", [2]string{"", ""}, "k8s.node.name", "k8s.node.uid"},
}

const nodeKindIndex = len(semconvKinds) - 1

// lookupSemconvKind returns the index in semconvKinds of the reference's
// kind, or -1. A kind from another API group (e.g. a CRD named "Job") does
// not match; a reference without APIVersion is taken to be the built-in.
func lookupSemconvKind(r *Ref) int {
	for i := range semconvKinds {
		k := &semconvKinds[i]
		if r.Kind != k.kind {
			continue
		}
		if r.APIVersion == "" {
			return i
		}
		group := ""
		if slash := strings.IndexByte(r.APIVersion, '/'); slash >= 0 {
			group = r.APIVersion[:slash]
		}
		if group == k.groups[0] || group == k.groups[1] {
			return i
		}
		return -1
	}
	return -1
}

// maxAttrs bounds the attributes of one record: 19 fixed ones plus name and
// uid for each of the 8 semconv kinds.
const maxAttrs = 19 + 2*len(semconvKinds)

// LogAttrs holds the attributes of one occurrence's log record (see
// LogRecord), without allocating: OTLP encoders keep one and refill it per
// record (Of). The zero value is ready to use.
type LogAttrs struct {
	kv [maxAttrs]attribute.KeyValue
	n  int
	// start is the formatted k8s.event.start_time when Of writes it in
	// place.
	start [len(time.RFC3339Nano) + 8]byte
}

// Of returns the attributes LogRecord gives o's record, in the same order.
// Their strings are o's and, for k8s.event.start_time, a's own: they are
// valid until a is used again, and the slice is a's.
func (a *LogAttrs) Of(o *Occurrence) []attribute.KeyValue {
	start := ""
	if !o.FirstTime.IsZero() {
		t := o.FirstTime.UTC().AppendFormat(a.start[:0], time.RFC3339Nano)
		start = unsafe.String(unsafe.SliceData(t), len(t))
	}
	return a.fill(o, start)
}

// semconv adds k8s.<kind>.name and k8s.<kind>.uid for ref if its kind is a
// built-in one not seen before.
func (a *LogAttrs) semconv(ref *Ref, seen *uint16) {
	k := lookupSemconvKind(ref)
	if k < 0 || *seen&(1<<k) != 0 || (ref.Name == "" && ref.UID == "") {
		return
	}
	*seen |= 1 << k
	a.str(semconvKinds[k].nameKey, ref.Name)
	a.str(semconvKinds[k].uidKey, ref.UID)
}

// str adds key: value, skipping an empty value.
func (a *LogAttrs) str(key, value string) {
	if value == "" {
		return
	}
	a.kv[a.n] = attribute.String(key, value)
	a.n++
}

// fill sets a to o's attributes, start being o.FirstTime formatted (""
// when zero).
func (a *LogAttrs) fill(o *Occurrence, start string) []attribute.KeyValue {
	a.n = 0
	a.str(attrEventReason, o.Reason)
	a.str(attrEventAction, o.Action)
	a.str(attrEventName, o.EventName)
	a.str(attrEventUID, o.EventUID)
	if o.Count > 0 {
		a.kv[a.n] = attribute.Int64(attrEventCount, int64(o.Count))
		a.n++
	}
	a.str(attrEventStartTime, start)
	a.str(attrEventReportingController, o.ReportingController)
	a.str(attrEventReportingInstance, o.ReportingInstance)
	if o.NoteTruncated {
		a.kv[a.n] = attribute.Bool(attrEventMessageTruncated, true)
		a.kv[a.n+1] = attribute.Int64(attrEventMessageOrigBytes, int64(o.NoteOriginalBytes))
		a.n += 2
	}
	if o.TimeFromObserved {
		a.kv[a.n] = attribute.Bool(attrEventTimeFromObserved, true)
		a.n++
	}

	reg := &o.Regarding
	ns := reg.Namespace
	if ns == "" && reg.IsZero() {
		// No regarding object: the Event's own namespace is the best guess.
		// (For cluster-scoped objects such as Nodes the Event lives in
		// "default", which must not be reported as the object's namespace.)
		ns = o.Namespace
	}
	a.str(attrNamespaceName, ns)
	a.str(attrObjectKind, reg.Kind)
	a.str(attrObjectName, reg.Name)
	a.str(attrObjectUID, reg.UID)
	a.str(attrObjectAPIVersion, reg.APIVersion)
	a.str(attrObjectResourceVersion, reg.ResourceVersion)
	a.str(attrObjectFieldPath, reg.FieldPath)

	// Stable semconv attributes of the owner chain. The first object of each
	// kind wins (the closest to Regarding).
	var seen uint16
	if len(o.Chain) == 0 {
		a.semconv(reg, &seen)
	}
	for i := range o.Chain {
		a.semconv(&o.Chain[i], &seen)
	}
	// k8s.node.name: the Node in the chain if there is one (it was emitted
	// above together with its uid), else the reporter's host like the
	// collector does.
	if seen&(1<<nodeKindIndex) == 0 {
		a.str(attrNodeName, o.SourceHost)
	}
	return a.kv[:a.n]
}

// LogRecord renders the occurrence as an OpenTelemetry log record (API
// record, to be emitted through a Logger; trace correlation comes from the
// context passed to Emit).
//
// Body is the message; severity is INFO for Normal and WARN for Warning
// (INFO for anything else), SeverityText the raw type; Timestamp is the
// occurrence time and ObservedTimestamp when the bridge saw it. Attributes
// follow the collector's k8seventsreceiver plus the stable k8s.<kind>.name /
// k8s.<kind>.uid of every built-in kind in the owner chain. Attributes with
// an empty value are omitted.
//
// OTLP encoders that write records straight to the wire take the same
// fields from the occurrence: LogSeverity, LogAttrs.
func LogRecord(o *Occurrence) log.Record {
	var r log.Record
	if o == nil {
		return r
	}
	r.SetEventName(EventName)
	r.SetTimestamp(o.Time)
	r.SetObservedTimestamp(o.Observed)
	r.SetSeverity(LogSeverity(o.Type))
	r.SetSeverityText(o.Type)
	r.SetBody(attribute.StringValue(o.Note))
	start := ""
	if !o.FirstTime.IsZero() {
		start = formatTime(o.FirstTime)
	}
	var a LogAttrs
	r.AddAttributes(a.fill(o, start)...)
	return r
}

// LogSeverity is the severity of an Event type's records: WARN for
// Warning, INFO for Normal and anything else (the raw type stays in
// SeverityText).
func LogSeverity(typ string) log.Severity {
	if strings.EqualFold(typ, "Warning") {
		return log.SeverityWarn
	}
	return log.SeverityInfo
}

// formatTime renders t as an RFC 3339 string in UTC, with fractional seconds
// only when t has them.
func formatTime(t time.Time) string {
	var buf [40]byte
	return string(t.UTC().AppendFormat(buf[:0], time.RFC3339Nano))
}

// Resource returns the bridge's resource attributes: service.name (default
// "kube-otel-bridge"), k8s.cluster.name and k8s.cluster.uid; empty values are
// omitted.
func Resource(serviceName, clusterName, clusterUID string) []attribute.KeyValue {
	serviceName = validUTF8(serviceName)
	if serviceName == "" {
		serviceName = DefaultServiceName
	}
	attrs := make([]attribute.KeyValue, 1, 3)
	attrs[0] = attribute.String("service.name", serviceName)
	if clusterName = validUTF8(clusterName); clusterName != "" {
		attrs = append(attrs, attribute.String("k8s.cluster.name", clusterName))
	}
	if clusterUID = validUTF8(clusterUID); clusterUID != "" {
		attrs = append(attrs, attribute.String("k8s.cluster.uid", clusterUID))
	}
	return attrs
}
