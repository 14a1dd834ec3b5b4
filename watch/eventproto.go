package watch

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// A hand-rolled decoder of the protobuf encoding of Events (the one the API
// server writes for application/vnd.kubernetes.protobuf), filling only what
// the bridge reads. client-go's generated Unmarshal allocates every string,
// the managed fields, labels, annotations and owner references of each Event
// (about 25 allocations, 30 with the envelope); EventDecoder allocates
// twice: the Event (with its Series and Related in the same allocation) and
// one byte blob that holds its strings that are not interned. More only for
// a deletionTimestamp, a note longer than eventNoteOwnLen, the bookmark's
// annotation map, and when the intern table learns a string.
//
// What is kept, with the generated code's semantics (repeated fields: last
// one wins, messages merge; Time has whole seconds, MicroTime microseconds,
// both time.Unix(...).Local(); an empty Time message is the zero time):
//
//   - ObjectMeta: name, namespace, uid, resourceVersion, creationTimestamp,
//     deletionTimestamp, and of the annotations only
//     metav1.InitialEventsAnnotationKey (the reflector needs it on the
//     watch-list bookmark, which is an Event too).
//   - Every field of the Event itself (events.k8s.io/v1), or of the core/v1
//     Event mapped as FromCoreEvent maps it.
//
// Dropped (skipped without looking inside): generateName, selfLink,
// generation, deletionGracePeriodSeconds, labels, the other annotations,
// ownerReferences, finalizers, managedFields, unknown fields.
//
// The decoder mirrors the generated code's wire-level acceptance (varints of
// up to 10 bytes with the extra bits of the last one dropped, field numbers
// truncated to int32, groups skipped by depth only), so that whatever the
// generated Unmarshal accepts, EventDecoder accepts and decodes the same. It
// is more lenient in one way: the content of the dropped length-delimited
// fields (labels and annotation entries other than the one kept, owner
// references, managed fields) is not parsed, so a malformed managed field,
// say, is not an error here. Strings are not validated as UTF-8 (neither are
// they by the generated code); convert.FromEvent repairs them.
//
// Wire types are read with protowire's names; the Consume functions of
// protowire are not used because they are stricter than the generated code
// (10th varint byte, field numbers above 2^29-1, end-group numbers).

// EventAPI says which Event API an encoded object belongs to.
type EventAPI uint8

const (
	// NotAnEvent is anything but a protobuf-encoded Event.
	NotAnEvent EventAPI = iota
	// EventsV1 is an events.k8s.io/v1 Event.
	EventsV1
	// CoreV1 is a core/v1 Event.
	CoreV1
)

// protobufPrefix starts every object the protobuf serializer writes; a
// runtime.Unknown (the envelope) follows.
const protobufPrefix = "k8s\x00"

const (
	// eventInternMax bounds the intern table; it is cleared when full.
	eventInternMax = 4096
	// eventInternLen: longer strings are not interned (they go to the blob),
	// so that the table holds at most eventInternMax*eventInternLen bytes.
	eventInternLen = 128
	// eventNoteOwnLen: a note longer than this gets its own allocation rather
	// than a place in the blob, so that the small strings that outlive the
	// Event (its UID as a map key, say) do not pin a big message.
	eventNoteOwnLen = 512
)

var (
	errProtoEOF      = io.ErrUnexpectedEOF
	errProtoOverflow = errors.New("eventproto: integer overflow")
	errProtoLength   = errors.New("eventproto: negative length")
	errProtoEndGroup = errors.New("eventproto: unexpected end of group")
)

// EventDecoder decodes protobuf-encoded Events. The zero value is ready to
// use. It is not safe for concurrent use: it owns the intern table of the
// low-cardinality strings (kinds, API versions, namespaces, types, reasons,
// actions, reporting controllers and instances, source components and
// hosts, field paths; at most eventInternMax strings of at most
// eventInternLen bytes, cleared when full). A decoded Event does not alias
// the input: the caller may reuse the input buffer right away. The strings
// that are not interned (name, uid, resourceVersion, note, the references'
// names, uids and resourceVersions) share one allocation: keeping any of
// them keeps it all.
type EventDecoder struct {
	strs map[string]string // the intern table
	// last is the string each interned field had last time: consecutive
	// Events often share them, and a comparison is cheaper than a lookup.
	last [numInternSlots]string
}

// The interned fields, for EventDecoder.last.
const (
	slotNamespace = iota
	slotController
	slotInstance
	slotAction
	slotReason
	slotType
	slotComponent
	slotHost
	slotKind
	slotRefNamespace
	slotAPIVersion
	slotFieldPath
	numInternSlots
)

// eventPool recycles the Events the decoder fills (newEvent): the watch
// worker puts each back once the update's occurrences are handed on
// (ReleaseEvent). An Event is 600 bytes of pointers to its strings, which
// live in a blob of their own (detach) that the occurrences keep; the
// struct itself was garbage right after conversion, an allocation and a
// fifth of the bytes the GC had to deal with per occurrence.
var eventPool = sync.Pool{New: func() any { return new(eventsv1.Event) }}

// ReleaseEvent hands ev back for reuse by the decoder. Only the one holder
// of ev may, when done with it: the Event, its Series and Related are
// overwritten by a later decode (the strings they point to are not).
func ReleaseEvent(ev *eventsv1.Event) {
	if ev != nil {
		eventPool.Put(ev)
	}
}

// DecodeEvent decodes an events.k8s.io/v1 Event message (the Raw bytes of
// the runtime.Unknown envelope, not the envelope).
func (d *EventDecoder) DecodeEvent(data []byte) (*eventsv1.Event, error) {
	ev, series, related := newEvent(hasFields(data, 3, 9))
	if err := d.eventsV1(data, ev, series, related); err != nil {
		return nil, err
	}
	detach(ev, data)
	return ev, nil
}

// DecodeCoreEvent decodes a core/v1 Event message into the events.k8s.io/v1
// form FromCoreEvent gives it.
func (d *EventDecoder) DecodeCoreEvent(data []byte) (*eventsv1.Event, error) {
	ev, series, related := newEvent(hasFields(data, 11, 13))
	if err := d.coreV1(data, ev, series, related); err != nil {
		return nil, err
	}
	detach(ev, data)
	return ev, nil
}

// Decode decodes a message of the given API (EventsV1 or CoreV1).
func (d *EventDecoder) Decode(api EventAPI, data []byte) (*eventsv1.Event, error) {
	switch api {
	case EventsV1:
		return d.DecodeEvent(data)
	case CoreV1:
		return d.DecodeCoreEvent(data)
	}
	return nil, errors.New("eventproto: not an Event API")
}

// EventEnvelope recognizes an object as the protobuf serializer writes it
// ("k8s\x00" and a runtime.Unknown) holding an Event of events.k8s.io/v1 or
// core/v1, and returns which, with the Event message (a sub-slice of data).
// Anything else is NotAnEvent: another kind, another encoding, an envelope
// with a content encoding or content type, or one that does not parse (the
// caller's normal decoder then reports the error).
func EventEnvelope(data []byte) (EventAPI, []byte) {
	apiVersion, kind, raw, ok := protoEnvelope(data)
	if !ok || string(kind) != "Event" {
		return NotAnEvent, nil
	}
	switch string(apiVersion) {
	case "events.k8s.io/v1":
		return EventsV1, raw
	case "v1":
		return CoreV1, raw
	}
	return NotAnEvent, nil
}

// protoEnvelope reads an object as the protobuf serializer writes it
// ("k8s\x00" and a runtime.Unknown): its apiVersion, kind and message (a
// sub-slice of data). ok is false for another encoding, an envelope with a
// content encoding or content type or without a message, or one that does
// not parse.
func protoEnvelope(data []byte) (apiVersion, kind, raw []byte, ok bool) {
	if len(data) < len(protobufPrefix) || string(data[:len(protobufPrefix)]) != protobufPrefix {
		return nil, nil, nil, false
	}
	b := data[len(protobufPrefix):]
	for i := 0; i < len(b); {
		pre := i
		num, typ, j, err := tag(b, i)
		if err != nil {
			return nil, nil, nil, false
		}
		i = j
		switch num {
		case 1, 2, 3, 4: // typeMeta, raw, contentEncoding, contentType
			s, e, err := lenField(b, i, typ, "")
			if err != nil {
				return nil, nil, nil, false
			}
			i = e
			switch num {
			case 1:
				if apiVersion, kind, err = typeMeta(b[s:e]); err != nil {
					return nil, nil, nil, false
				}
			case 2:
				raw = b[s:e]
			default:
				if e > s {
					return nil, nil, nil, false
				}
			}
		default:
			if i, err = skipField(b, pre); err != nil {
				return nil, nil, nil, false
			}
		}
	}
	return apiVersion, kind, raw, raw != nil
}

// typeMeta reads the runtime.TypeMeta of an envelope.
func typeMeta(b []byte) (apiVersion, kind []byte, err error) {
	for i := 0; i < len(b); {
		pre := i
		num, typ, j, err := tag(b, i)
		if err != nil {
			return nil, nil, err
		}
		i = j
		switch num {
		case 1, 2:
			s, e, err := lenField(b, i, typ, "typeMeta")
			if err != nil {
				return nil, nil, err
			}
			if num == 1 {
				apiVersion = b[s:e]
			} else {
				kind = b[s:e]
			}
			i = e
		default:
			if i, err = skipField(b, pre); err != nil {
				return nil, nil, err
			}
		}
	}
	return apiVersion, kind, nil
}

// hasFields reports whether the message b has fields a and c at its top
// level (both true if b does not parse: the decoding then fails anyway).
func hasFields(b []byte, a, c int32) (hasA, hasC bool) {
	for i := 0; i < len(b); {
		pre := i
		num, typ, j, err := tag(b, i)
		if err != nil {
			return true, true
		}
		if typ == protowire.BytesType {
			_, i, err = lenField(b, j, typ, "")
		} else {
			i, err = skipField(b, pre)
		}
		if err != nil {
			return true, true
		}
		hasA, hasC = hasA || num == a, hasC || num == c
	}
	return hasA, hasC
}

// newEvent returns a zero Event (reused, see eventPool) and, if asked, a
// zero Series and Related for it (the Event's pointers are not set; those
// of a reused Event are reused).
func newEvent(series, related bool) (*eventsv1.Event, *eventsv1.EventSeries, *corev1.ObjectReference) {
	ev := eventPool.Get().(*eventsv1.Event)
	s, r := ev.Series, ev.Related
	*ev = eventsv1.Event{}
	if !series {
		s = nil
	} else if s == nil {
		s = new(eventsv1.EventSeries)
	} else {
		*s = eventsv1.EventSeries{}
	}
	if !related {
		r = nil
	} else if r == nil {
		r = new(corev1.ObjectReference)
	} else {
		*r = corev1.ObjectReference{}
	}
	return ev, s, r
}

// detach copies every string of ev that points into in to one new blob.
func detach(ev *eventsv1.Event, in []byte) {
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(in)))
	hi := lo + uintptr(len(in))
	var views [26]*string
	nv, n := 0, 0
	add := func(p *string) {
		if a := uintptr(unsafe.Pointer(unsafe.StringData(*p))); len(*p) > 0 && a >= lo && a < hi {
			views[nv] = p
			nv++
			n += len(*p)
		}
	}
	add(&ev.Name)
	add(&ev.Namespace)
	add((*string)(&ev.UID))
	add(&ev.ResourceVersion)
	add(&ev.ReportingController)
	add(&ev.ReportingInstance)
	add(&ev.Action)
	add(&ev.Reason)
	add(&ev.Note)
	add(&ev.Type)
	add(&ev.DeprecatedSource.Component)
	add(&ev.DeprecatedSource.Host)
	for _, r := range [2]*corev1.ObjectReference{&ev.Regarding, ev.Related} {
		if r != nil {
			add(&r.Kind)
			add(&r.Namespace)
			add(&r.Name)
			add((*string)(&r.UID))
			add(&r.APIVersion)
			add(&r.ResourceVersion)
			add(&r.FieldPath)
		}
	}
	if n == 0 {
		return
	}
	blob := make([]byte, n)
	off := 0
	for _, p := range views[:nv] {
		l := copy(blob[off:], *p)
		*p = unsafe.String(&blob[off], l)
		off += l
	}
}

// intern returns b as a string from the intern table (adding it), or, if
// b is too long to intern, as a view into b (finish copies it).
func (d *EventDecoder) intern(slot int, b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > eventInternLen {
		return unsafe.String(&b[0], len(b))
	}
	if s := d.last[slot]; string(b) == s {
		return s
	}
	if s, ok := d.strs[string(b)]; ok {
		d.last[slot] = s
		return s
	}
	if d.strs == nil {
		d.strs = make(map[string]string, 256)
	} else if len(d.strs) >= eventInternMax {
		clear(d.strs)
	}
	s := string(b)
	d.strs[s] = s
	d.last[slot] = s
	return s
}

// view returns b[s:e] as a string pointing into b (finish copies it).
func view(b []byte, s, e int) string {
	if e <= s {
		return ""
	}
	return unsafe.String(&b[s], e-s)
}

// ---------------------------------------------------------------------------
// The messages.

// eventsV1 decodes k8s.io.api.events.v1.Event into ev (series and related:
// where to put those if present; nil: allocate).
func (d *EventDecoder) eventsV1(b []byte, ev *eventsv1.Event, series *eventsv1.EventSeries, related *corev1.ObjectReference) error {
	for i := 0; i < len(b); {
		pre := i
		num, typ, j, err := tag(b, i)
		if err != nil {
			return err
		}
		i = j
		switch num {
		case 1, 2, 3, 8, 9, 12, 13, 14: // messages
			s, e, err := lenField(b, i, typ, eventsV1Names[num])
			if err != nil {
				return err
			}
			m := b[s:e]
			switch num {
			case 1:
				err = d.objectMeta(m, ev)
			case 2:
				ev.EventTime.Time, err = microTime(m)
			case 3:
				if ev.Series == nil {
					if ev.Series = series; series == nil {
						ev.Series = new(eventsv1.EventSeries)
					}
				}
				err = d.eventSeries(m, ev.Series)
			case 8:
				err = d.objectReference(m, &ev.Regarding)
			case 9:
				if ev.Related == nil {
					if ev.Related = related; related == nil {
						ev.Related = new(corev1.ObjectReference)
					}
				}
				err = d.objectReference(m, ev.Related)
			case 12:
				err = d.eventSource(m, &ev.DeprecatedSource)
			case 13:
				ev.DeprecatedFirstTimestamp.Time, err = wholeTime(m)
			case 14:
				ev.DeprecatedLastTimestamp.Time, err = wholeTime(m)
			}
			if err != nil {
				return err
			}
			i = e
		case 4, 5, 6, 7, 10, 11: // strings
			s, e, err := lenField(b, i, typ, eventsV1Names[num])
			if err != nil {
				return err
			}
			switch num {
			case 4:
				ev.ReportingController = d.intern(slotController, b[s:e])
			case 5:
				ev.ReportingInstance = d.intern(slotInstance, b[s:e])
			case 6:
				ev.Action = d.intern(slotAction, b[s:e])
			case 7:
				ev.Reason = d.intern(slotReason, b[s:e])
			case 10:
				ev.Note = d.note(b, s, e)
			case 11:
				ev.Type = d.intern(slotType, b[s:e])
			}
			i = e
		case 15:
			v, j, err := varintField(b, i, typ, "deprecatedCount")
			if err != nil {
				return err
			}
			ev.DeprecatedCount, i = int32(v), j
		default:
			if i, err = skipField(b, pre); err != nil {
				return err
			}
		}
	}
	return nil
}

var eventsV1Names = [...]string{1: "metadata", 2: "eventTime", 3: "series", 4: "reportingController", 5: "reportingInstance",
	6: "action", 7: "reason", 8: "regarding", 9: "related", 10: "note", 11: "type", 12: "deprecatedSource",
	13: "deprecatedFirstTimestamp", 14: "deprecatedLastTimestamp"}

// coreV1 decodes k8s.io.api.core.v1.Event into ev, mapped to
// events.k8s.io/v1 as FromCoreEvent maps it (series, related: as for
// eventsV1).
func (d *EventDecoder) coreV1(b []byte, ev *eventsv1.Event, series *eventsv1.EventSeries, related *corev1.ObjectReference) error {
	for i := 0; i < len(b); {
		pre := i
		num, typ, j, err := tag(b, i)
		if err != nil {
			return err
		}
		i = j
		switch num {
		case 1, 2, 5, 6, 7, 10, 11, 13: // messages
			s, e, err := lenField(b, i, typ, coreV1Names[num])
			if err != nil {
				return err
			}
			m := b[s:e]
			switch num {
			case 1:
				err = d.objectMeta(m, ev)
			case 2:
				err = d.objectReference(m, &ev.Regarding)
			case 5:
				err = d.eventSource(m, &ev.DeprecatedSource)
			case 6:
				ev.DeprecatedFirstTimestamp.Time, err = wholeTime(m)
			case 7:
				ev.DeprecatedLastTimestamp.Time, err = wholeTime(m)
			case 10:
				ev.EventTime.Time, err = microTime(m)
			case 11:
				if ev.Series == nil {
					if ev.Series = series; series == nil {
						ev.Series = new(eventsv1.EventSeries)
					}
				}
				err = d.eventSeries(m, ev.Series)
			case 13:
				if ev.Related == nil {
					if ev.Related = related; related == nil {
						ev.Related = new(corev1.ObjectReference)
					}
				}
				err = d.objectReference(m, ev.Related)
			}
			if err != nil {
				return err
			}
			i = e
		case 3, 4, 9, 12, 14, 15: // strings
			s, e, err := lenField(b, i, typ, coreV1Names[num])
			if err != nil {
				return err
			}
			switch num {
			case 3:
				ev.Reason = d.intern(slotReason, b[s:e])
			case 4:
				ev.Note = d.note(b, s, e)
			case 9:
				ev.Type = d.intern(slotType, b[s:e])
			case 12:
				ev.Action = d.intern(slotAction, b[s:e])
			case 14:
				ev.ReportingController = d.intern(slotController, b[s:e])
			case 15:
				ev.ReportingInstance = d.intern(slotInstance, b[s:e])
			}
			i = e
		case 8:
			v, j, err := varintField(b, i, typ, "count")
			if err != nil {
				return err
			}
			ev.DeprecatedCount, i = int32(v), j
		default:
			if i, err = skipField(b, pre); err != nil {
				return err
			}
		}
	}
	return nil
}

var coreV1Names = [...]string{1: "metadata", 2: "involvedObject", 3: "reason", 4: "message", 5: "source",
	6: "firstTimestamp", 7: "lastTimestamp", 9: "type", 10: "eventTime", 11: "series", 12: "action",
	13: "related", 14: "reportingComponent", 15: "reportingInstance"}

// note returns the message: a view (copied to the blob by finish), or its
// own copy when long.
func (d *EventDecoder) note(b []byte, s, e int) string {
	if e-s > eventNoteOwnLen {
		return string(b[s:e])
	}
	return view(b, s, e)
}

// objectMeta decodes the kept fields of k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta.
func (d *EventDecoder) objectMeta(b []byte, ev *eventsv1.Event) error {
	m := &ev.ObjectMeta
	for i := 0; i < len(b); {
		pre := i
		num, typ, j, err := tag(b, i)
		if err != nil {
			return err
		}
		i = j
		switch num {
		case 1, 2, 3, 4, 5, 6, 8, 9, 11, 13, 14, 17: // length-delimited
			s, e, err := lenField(b, i, typ, "metadata")
			if err != nil {
				return err
			}
			switch num {
			case 1:
				m.Name = view(b, s, e)
			case 3:
				m.Namespace = d.intern(slotNamespace, b[s:e])
			case 5:
				m.UID = types.UID(view(b, s, e))
			case 6:
				m.ResourceVersion = view(b, s, e)
			case 8:
				if m.CreationTimestamp.Time, err = wholeTime(b[s:e]); err != nil {
					return err
				}
			case 9:
				if m.DeletionTimestamp == nil {
					m.DeletionTimestamp = new(metav1.Time)
				}
				if m.DeletionTimestamp.Time, err = wholeTime(b[s:e]); err != nil {
					return err
				}
			}
			// 2 generateName, 4 selfLink, 11 labels, 13 ownerReferences,
			// 14 finalizers, 17 managedFields: dropped.
			i = e
		case 12: // annotations: only InitialEventsAnnotationKey is kept
			if i, err = d.annotation(b, i, typ, m); err != nil {
				return err
			}
		case 7, 10: // generation, deletionGracePeriodSeconds: dropped
			if _, i, err = varintField(b, i, typ, "metadata"); err != nil {
				return err
			}
		default:
			if i, err = skipField(b, pre); err != nil {
				return err
			}
		}
	}
	return nil
}

// annotation reads one entry of the annotations map at b[i:] (after its
// tag), the way the generated code does (its key and value are bounded by
// b, not by the entry), and keeps it if it is InitialEventsAnnotationKey.
func (d *EventDecoder) annotation(b []byte, i int, typ protowire.Type, m *metav1.ObjectMeta) (int, error) {
	s, e, err := lenField(b, i, typ, "annotations")
	if err != nil {
		return 0, err
	}
	var key, value []byte
	for j := s; j < e; {
		entryPre := j
		wire, k, err := varint(b, j)
		if err != nil {
			return 0, err
		}
		j = k
		switch int32(wire >> 3) {
		case 1, 2:
			n, k, err := varint(b, j)
			if err != nil {
				return 0, err
			}
			l := int(n)
			if l < 0 || k+l < 0 {
				return 0, errProtoLength
			}
			if k+l > len(b) {
				return 0, errProtoEOF
			}
			if int32(wire>>3) == 1 {
				key = b[k : k+l]
			} else {
				value = b[k : k+l]
			}
			j = k + l
		default:
			if j, err = skipField(b, entryPre); err != nil {
				return 0, err
			}
			if j > e {
				return 0, errProtoEOF
			}
		}
	}
	if string(key) == metav1.InitialEventsAnnotationKey {
		if m.Annotations == nil {
			m.Annotations = make(map[string]string, 1)
		}
		v := "true"
		if string(value) != v {
			v = string(value)
		}
		m.Annotations[metav1.InitialEventsAnnotationKey] = v
	}
	return e, nil
}

// objectReference decodes k8s.io.api.core.v1.ObjectReference into r
// (merging, as the generated code does).
func (d *EventDecoder) objectReference(b []byte, r *corev1.ObjectReference) error {
	for i := 0; i < len(b); {
		pre := i
		num, typ, j, err := tag(b, i)
		if err != nil {
			return err
		}
		i = j
		if num < 1 || num > 7 {
			if i, err = skipField(b, pre); err != nil {
				return err
			}
			continue
		}
		s, e, err := lenField(b, i, typ, "objectReference")
		if err != nil {
			return err
		}
		switch num {
		case 1:
			r.Kind = d.intern(slotKind, b[s:e])
		case 2:
			r.Namespace = d.intern(slotRefNamespace, b[s:e])
		case 3:
			r.Name = view(b, s, e)
		case 4:
			r.UID = types.UID(view(b, s, e))
		case 5:
			r.APIVersion = d.intern(slotAPIVersion, b[s:e])
		case 6:
			r.ResourceVersion = view(b, s, e)
		case 7:
			r.FieldPath = d.intern(slotFieldPath, b[s:e])
		}
		i = e
	}
	return nil
}

// eventSource decodes k8s.io.api.core.v1.EventSource.
func (d *EventDecoder) eventSource(b []byte, src *corev1.EventSource) error {
	for i := 0; i < len(b); {
		pre := i
		num, typ, j, err := tag(b, i)
		if err != nil {
			return err
		}
		i = j
		if num != 1 && num != 2 {
			if i, err = skipField(b, pre); err != nil {
				return err
			}
			continue
		}
		s, e, err := lenField(b, i, typ, "eventSource")
		if err != nil {
			return err
		}
		if num == 1 {
			src.Component = d.intern(slotComponent, b[s:e])
		} else {
			src.Host = d.intern(slotHost, b[s:e])
		}
		i = e
	}
	return nil
}

// eventSeries decodes an EventSeries (events.k8s.io/v1 and core/v1 share
// field numbers: count 1, lastObservedTime 2; core's deprecated state 3 is
// skipped as unknown, as the generated code does).
func (d *EventDecoder) eventSeries(b []byte, s *eventsv1.EventSeries) error {
	for i := 0; i < len(b); {
		pre := i
		num, typ, j, err := tag(b, i)
		if err != nil {
			return err
		}
		i = j
		switch num {
		case 1:
			v, j, err := varintField(b, i, typ, "series.count")
			if err != nil {
				return err
			}
			s.Count, i = int32(v), j
		case 2:
			ms, me, err := lenField(b, i, typ, "series.lastObservedTime")
			if err != nil {
				return err
			}
			if s.LastObservedTime.Time, err = microTime(b[ms:me]); err != nil {
				return err
			}
			i = me
		default:
			if i, err = skipField(b, pre); err != nil {
				return err
			}
		}
	}
	return nil
}

// wholeTime decodes a metav1.Time as its Unmarshal does: an empty message
// is the zero time, else whole seconds (the nanos are ignored), Local.
func wholeTime(b []byte) (time.Time, error) {
	if len(b) == 0 {
		return time.Time{}, nil
	}
	sec, _, err := timestamp(b)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(sec, 0).Local(), nil
}

// microTime decodes a metav1.MicroTime as its Unmarshal does: an empty
// message is the zero time, else nanos truncated to microseconds, Local.
func microTime(b []byte) (time.Time, error) {
	if len(b) == 0 {
		return time.Time{}, nil
	}
	sec, nanos, err := timestamp(b)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(sec, int64(time.Duration(nanos).Truncate(time.Microsecond))).Local(), nil
}

// timestamp decodes a k8s.io.apimachinery.pkg.apis.meta.v1.Timestamp.
func timestamp(b []byte) (sec int64, nanos int32, err error) {
	for i := 0; i < len(b); {
		pre := i
		num, typ, j, err := tag(b, i)
		if err != nil {
			return 0, 0, err
		}
		i = j
		switch num {
		case 1, 2:
			v, j, err := varintField(b, i, typ, "timestamp")
			if err != nil {
				return 0, 0, err
			}
			if num == 1 {
				sec = int64(v)
			} else {
				nanos = int32(v)
			}
			i = j
		default:
			if i, err = skipField(b, pre); err != nil {
				return 0, 0, err
			}
		}
	}
	return sec, nanos, nil
}

// ---------------------------------------------------------------------------
// Wire format, as the gogo-generated code of k8s.io/api reads it.

// varint reads a varint at b[i:]: at most 10 bytes, the bits of the 10th
// byte beyond 64 dropped (as the generated code does).
func varint(b []byte, i int) (uint64, int, error) {
	if i < len(b) && b[i] < 0x80 {
		return uint64(b[i]), i + 1, nil
	}
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if shift >= 64 {
			return 0, 0, errProtoOverflow
		}
		if i >= len(b) {
			return 0, 0, errProtoEOF
		}
		c := b[i]
		i++
		v |= uint64(c&0x7F) << shift
		if c < 0x80 {
			return v, i, nil
		}
	}
}

// tag reads a field's tag at b[i:]. Like the generated code, the field
// number is the tag's upper bits truncated to int32 and must be positive; an
// end-group tag is an error.
func tag(b []byte, i int) (int32, protowire.Type, int, error) {
	wire, i, err := varint(b, i)
	if err != nil {
		return 0, 0, 0, err
	}
	num, typ := int32(wire>>3), protowire.Type(wire&7)
	if typ == protowire.EndGroupType {
		return 0, 0, 0, errors.New("eventproto: end group for non-group")
	}
	if num <= 0 {
		return 0, 0, 0, fmt.Errorf("eventproto: illegal tag %d (wire type %d)", num, wire)
	}
	return num, typ, i, nil
}

// lenField reads the length of a length-delimited field at b[i:] (after
// its tag) and returns where its content starts and ends.
func lenField(b []byte, i int, typ protowire.Type, name string) (int, int, error) {
	if typ != protowire.BytesType {
		return 0, 0, fmt.Errorf("eventproto: wrong wire type %d for field %s", typ, name)
	}
	n, i, err := varint(b, i)
	if err != nil {
		return 0, 0, err
	}
	l := int(n)
	if l < 0 {
		return 0, 0, errProtoLength
	}
	e := i + l
	if e < 0 {
		return 0, 0, errProtoLength
	}
	if e > len(b) {
		return 0, 0, errProtoEOF
	}
	return i, e, nil
}

// varintField reads a varint field's value at b[i:] (after its tag).
func varintField(b []byte, i int, typ protowire.Type, name string) (uint64, int, error) {
	if typ != protowire.VarintType {
		return 0, 0, fmt.Errorf("eventproto: wrong wire type %d for field %s", typ, name)
	}
	return varint(b, i)
}

// skipField skips the field whose tag starts at b[i:], as the generated
// skipGenerated does (groups are skipped by depth, their end tags' numbers
// not checked), and returns the index after it.
func skipField(b []byte, i int) (int, error) {
	depth := 0
	for i < len(b) {
		wire, j, err := varint(b, i)
		if err != nil {
			return 0, err
		}
		i = j
		switch protowire.Type(wire & 7) {
		case protowire.VarintType:
			if _, i, err = varint(b, i); err != nil {
				return 0, err
			}
		case protowire.Fixed64Type:
			i += 8
		case protowire.BytesType:
			n, j, err := varint(b, i)
			if err != nil {
				return 0, err
			}
			l := int(n)
			if l < 0 {
				return 0, errProtoLength
			}
			i = j + l
		case protowire.StartGroupType:
			depth++
		case protowire.EndGroupType:
			if depth == 0 {
				return 0, errProtoEndGroup
			}
			depth--
		case protowire.Fixed32Type:
			i += 4
		default:
			return 0, fmt.Errorf("eventproto: illegal wire type %d", wire&7)
		}
		if i < 0 {
			return 0, errProtoLength
		}
		if depth == 0 {
			if i > len(b) {
				return 0, errProtoEOF
			}
			return i, nil
		}
	}
	return 0, errProtoEOF
}
