package watch

import (
	"sync"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// EventProtoSerializer is the protobuf runtime.Serializer of a REST client
// with Events decoded by an EventDecoder: Decode of an events.k8s.io/v1
// Event (and, with CoreV1, of a core/v1 Event, returned in its
// events.k8s.io/v1 form) in the "k8s\x00" + runtime.Unknown envelope, into
// nothing (into == nil, which is how client-go's watch decodes every watch
// event's object), goes to the EventDecoder; everything else (other kinds,
// lists, Status, decoding into an object, Encode) to the wrapped
// serializer, and so does an Event the EventDecoder rejects (its error is
// then the wrapped serializer's). It is safe for concurrent use (a mutex
// guards the decoder).
//
// The returned Event has TypeMeta events.k8s.io/v1 Event (client-go's
// WithoutVersionDecoder clears it, as for the generated decoder), and the
// returned *GroupVersionKind is shared: read-only.
type EventProtoSerializer struct {
	runtime.Serializer
	core bool

	mu  sync.Mutex
	dec EventDecoder
}

var (
	eventsV1GVK        = eventsv1.SchemeGroupVersion.WithKind("Event")
	eventsV1APIVersion = eventsv1.SchemeGroupVersion.String()
)

// NewEventProtoSerializer wraps base, the protobuf serializer. coreV1 also
// decodes core/v1 Events, as *eventsv1.Event (a reflector of core/v1 Events
// must then expect *eventsv1.Event).
func NewEventProtoSerializer(base runtime.Serializer, coreV1 bool) *EventProtoSerializer {
	return &EventProtoSerializer{Serializer: base, core: coreV1}
}

// Decode implements runtime.Decoder.
func (s *EventProtoSerializer) Decode(data []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if into == nil {
		if api, raw := EventEnvelope(data); api == EventsV1 || (api == CoreV1 && s.core) {
			s.mu.Lock()
			ev, err := s.dec.Decode(api, raw)
			s.mu.Unlock()
			if err == nil {
				ev.APIVersion, ev.Kind = eventsV1APIVersion, eventsV1GVK.Kind
				return ev, &eventsV1GVK, nil
			}
		}
	}
	return s.Serializer.Decode(data, defaults, into)
}

// WithEventProtoDecoding returns ns with the Serializer of its protobuf
// media type wrapped in an EventProtoSerializer and its stream serializer
// (which reads the watch's metav1.WatchEvent frames) in a
// WatchEventProtoSerializer: give it as
// rest.Config.NegotiatedSerializer to rest.RESTClientFor, and every watch
// and get of Events through that client decodes them with an EventDecoder.
// ns is typically a CodecFactory's WithoutConversion().
func WithEventProtoDecoding(ns runtime.NegotiatedSerializer, coreV1 bool) runtime.NegotiatedSerializer {
	return wrapProto(ns, func(base runtime.Serializer) runtime.Serializer { return NewEventProtoSerializer(base, coreV1) },
		func(raw []byte) bool {
			api, _ := EventEnvelope(raw)
			return api == EventsV1 || (api == CoreV1 && coreV1)
		})
}

// wrapProto returns ns with the Serializer of its protobuf media type
// wrapped by wrap and its stream serializer in a WatchEventProtoSerializer
// that takes the frames whose object take accepts.
func wrapProto(ns runtime.NegotiatedSerializer, wrap func(runtime.Serializer) runtime.Serializer, take func(raw []byte) bool) runtime.NegotiatedSerializer {
	infos := append([]runtime.SerializerInfo(nil), ns.SupportedMediaTypes()...)
	for i := range infos {
		if infos[i].MediaType != runtime.ContentTypeProtobuf {
			continue
		}
		if infos[i].Serializer != nil {
			infos[i].Serializer = wrap(infos[i].Serializer)
		}
		if ss := infos[i].StreamSerializer; ss != nil && ss.Serializer != nil {
			wrapped := *ss
			wrapped.Serializer = &WatchEventProtoSerializer{Serializer: ss.Serializer, take: take}
			infos[i].StreamSerializer = &wrapped
		}
	}
	return eventProtoNegotiated{NegotiatedSerializer: ns, infos: infos}
}

type eventProtoNegotiated struct {
	runtime.NegotiatedSerializer
	infos []runtime.SerializerInfo
}

func (n eventProtoNegotiated) SupportedMediaTypes() []runtime.SerializerInfo { return n.infos }
