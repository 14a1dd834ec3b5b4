package watch

import (
	"google.golang.org/protobuf/encoding/protowire"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	apiwatch "k8s.io/apimachinery/pkg/watch"
)

// WatchEventProtoSerializer is the stream serializer of the protobuf media
// type (the one that reads each frame of a watch into a metav1.WatchEvent)
// with the frames that hold an Event read without the generated code.
//
// Why: client-go's watch decodes every frame twice. The generated
// WatchEvent.Unmarshal allocates its type string and copies the whole
// embedded object into RawExtension.Raw (≈0.6 KB per Event), and the raw
// serializer around it looks the WatchEvent up in the scheme and sets its
// kind (two more allocations); only then is the object decoded, by the
// EventProtoSerializer, which copies what it keeps anyway. Here a
// well-formed frame holding an Event (the kind the bridge watches at the
// event rate) costs nothing: the type is one of the watch.EventType
// constants and Raw is a view into the frame.
//
// The view is safe because of how client-go uses it: rest/watch.Decoder
// decodes got.Object.Raw right away, before the stream decoder reads the
// next frame into the same buffer, and the EventProtoSerializer it goes to
// (or the wrapped serializer, if EventDecoder rejects it) does not keep the
// input. Anything else — a frame of another kind, an object that is not an
// Event (the Status of an ERROR event), an unknown event type, repeated or
// unknown fields, anything that does not parse — goes to the wrapped
// serializer, which decodes it (and reports errors) exactly as before.
//
// The same goes for the frames of metadata-only watches
// (WithMetadataProtoDecoding), whose objects go to a
// MetadataProtoSerializer.
type WatchEventProtoSerializer struct {
	runtime.Serializer
	// take says whether a frame's object is one to view rather than copy.
	take func(raw []byte) bool
}

// NewWatchEventProtoSerializer wraps base, the protobuf stream serializer.
// coreV1 also takes frames holding core/v1 Events (set it as for
// NewEventProtoSerializer).
func NewWatchEventProtoSerializer(base runtime.Serializer, coreV1 bool) *WatchEventProtoSerializer {
	return &WatchEventProtoSerializer{Serializer: base, take: func(raw []byte) bool {
		api, _ := EventEnvelope(raw)
		return api == EventsV1 || (api == CoreV1 && coreV1)
	}}
}

var watchEventGVK = metav1.SchemeGroupVersion.WithKind("WatchEvent")

// Decode implements runtime.Decoder.
func (s *WatchEventProtoSerializer) Decode(data []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if we, ok := into.(*metav1.WatchEvent); ok && we != nil {
		if typ, raw, ok := parseWatchEvent(data); ok {
			if s.take(raw) {
				*we = metav1.WatchEvent{Type: typ, Object: runtime.RawExtension{Raw: raw}}
				return we, &watchEventGVK, nil
			}
		}
	}
	return s.Serializer.Decode(data, defaults, into)
}

// parseWatchEvent reads a metav1.WatchEvent message that has its type (one
// of the five watch event types) and its object (a RawExtension holding a
// non-empty raw) once each and no other field; ok is false for anything
// else, which the generated code is left to decode.
func parseWatchEvent(b []byte) (typ string, raw []byte, ok bool) {
	var sawType, sawObject bool
	for len(b) > 0 {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 || wt != protowire.BytesType {
			return "", nil, false
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return "", nil, false
		}
		b = b[n:]
		switch {
		case num == 1 && !sawType:
			if typ = watchEventType(v); typ == "" {
				return "", nil, false
			}
			sawType = true
		case num == 2 && !sawObject:
			if raw, ok = parseRawExtension(v); !ok {
				return "", nil, false
			}
			sawObject = true
		default:
			return "", nil, false
		}
	}
	return typ, raw, sawType && sawObject
}

// parseRawExtension reads a runtime.RawExtension message holding its raw
// field once, non-empty, and nothing else.
func parseRawExtension(b []byte) ([]byte, bool) {
	num, wt, n := protowire.ConsumeTag(b)
	if n < 0 || num != 1 || wt != protowire.BytesType {
		return nil, false
	}
	raw, m := protowire.ConsumeBytes(b[n:])
	if m < 0 || n+m != len(b) || len(raw) == 0 {
		return nil, false
	}
	return raw, true
}

// watchEventType returns b as the watch.EventType constant it spells, or ""
// (no allocation either way).
func watchEventType(b []byte) string {
	for _, t := range [...]apiwatch.EventType{apiwatch.Added, apiwatch.Modified, apiwatch.Deleted, apiwatch.Bookmark, apiwatch.Error} {
		if string(b) == string(t) {
			return string(t)
		}
	}
	return ""
}
