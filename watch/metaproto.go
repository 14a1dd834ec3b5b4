package watch

import (
	"errors"
	"slices"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// A hand-rolled decoder of the protobuf encoding of PartialObjectMetadata,
// what the object cache's metadata-only watches receive: in a rollout storm
// the updates of pods, ReplicaSets and Deployments outnumber the Events,
// and the generated Unmarshal allocates every string, label, annotation and
// managed field of each (a pod's managed fields alone are ≈1.5 KB), then
// the object cache keeps a few of them. decodePartialObjectMetadata keeps
// what the cache and client-go's reflector read, with the strings in one
// allocation:
//
//   - name, namespace, uid, resourceVersion, generation, deletionTimestamp;
//   - the owner references' apiVersion, kind, name, uid and controller;
//   - of the annotations, the traceparent ones (TraceparentAnnotation,
//     "traceparent") and metav1.InitialEventsAnnotationKey.
//
// Everything else is skipped without looking inside: like EventDecoder, it
// is more lenient than the generated code there (a malformed label or
// managed field is no error). What it keeps it reads as the generated code
// does (wire-level acceptance of eventproto.go), and it accepts only what it
// fully understands (each kept field once, the wire types the generated code
// writes, nothing unknown around the ObjectMeta); anything else is an
// error, and the serializer then decodes the object with the generated
// code, exactly as without it.

// errMetaProto makes the caller fall back to the generated code.
var errMetaProto = errors.New("metaproto: not a plain PartialObjectMetadata")

// metaKept are the ObjectMeta fields decodePartialObjectMetadata keeps.
const (
	metaName              = 1
	metaNamespace         = 3
	metaUID               = 5
	metaResourceVersion   = 6
	metaGeneration        = 7
	metaDeletionTimestamp = 9
	metaAnnotations       = 12
	metaOwnerReferences   = 13
)

// metaSpan is a kept string: where it is in the input, and which field of
// the object (or of its owner reference k) it is.
type metaSpan struct {
	s, e  int
	field int32 // an ObjectMeta field number, or ownerBase + an OwnerReference field number
	k     int
}

// ownerBase offsets the OwnerReference field numbers in metaSpan.field.
const ownerBase = 100

// metaDecoder holds the scratch of one decode (reused).
type metaDecoder struct {
	spans  []metaSpan
	owners []metav1.OwnerReference
	ann    [][2]int // key and value of the kept annotations, in turn
}

var metaDecoders = sync.Pool{New: func() any { return new(metaDecoder) }}

// decodePartialObjectMetadata decodes a PartialObjectMetadata message (the
// envelope's raw bytes).
func decodePartialObjectMetadata(b []byte) (*metav1.PartialObjectMetadata, error) {
	d := metaDecoders.Get().(*metaDecoder)
	defer metaDecoders.Put(d)
	d.spans, d.owners, d.ann = d.spans[:0], d.owners[:0], d.ann[:0]

	m := &metav1.PartialObjectMetadata{}
	seenMeta := false
	for i := 0; i < len(b); {
		num, typ, j, err := tag(b, i)
		if err != nil {
			return nil, err
		}
		if num != 1 || seenMeta {
			return nil, errMetaProto
		}
		s, e, err := lenField(b, j, typ, "metadata")
		if err != nil {
			return nil, err
		}
		if err := d.objectMeta(b, s, e, &m.ObjectMeta); err != nil {
			return nil, err
		}
		seenMeta = true
		i = e
	}
	d.finish(b, m)
	return m, nil
}

// objectMeta reads the ObjectMeta in b[s:e] into om, noting the strings to
// copy in d.spans.
func (d *metaDecoder) objectMeta(b []byte, s, e int, om *metav1.ObjectMeta) error {
	var seen metaSeen
	for i := s; i < e; {
		pre := i
		num, typ, j, err := tag(b[:e], i)
		if err != nil {
			return err
		}
		i = j
		switch num {
		case metaName, metaNamespace, metaUID, metaResourceVersion:
			if err := seen.once(num); err != nil {
				return err
			}
			fs, fe, err := lenField(b[:e], i, typ, "objectMeta")
			if err != nil {
				return err
			}
			d.spans = append(d.spans, metaSpan{s: fs, e: fe, field: num})
			i = fe
		case metaGeneration:
			if err := seen.once(num); err != nil {
				return err
			}
			v, j, err := varintField(b[:e], i, typ, "generation")
			if err != nil {
				return err
			}
			om.Generation = int64(v)
			i = j
		case metaDeletionTimestamp:
			if err := seen.once(num); err != nil {
				return err
			}
			fs, fe, err := lenField(b[:e], i, typ, "deletionTimestamp")
			if err != nil {
				return err
			}
			t, err := wholeTime(b[fs:fe])
			if err != nil {
				return err
			}
			dt := metav1.NewTime(t)
			om.DeletionTimestamp = &dt
			i = fe
		case metaAnnotations, metaOwnerReferences: // repeated: one entry each
			fs, fe, err := lenField(b[:e], i, typ, "objectMeta")
			if err != nil {
				return err
			}
			if num == metaAnnotations {
				err = d.annotation(b, fs, fe)
			} else {
				err = d.ownerReference(b, fs, fe)
			}
			if err != nil {
				return err
			}
			i = fe
		default:
			if i, err = skipField(b[:e], pre); err != nil {
				return err
			}
		}
	}
	return nil
}

// metaSeen are the kept fields of a message seen so far (all numbered
// below 32).
type metaSeen uint32

// once notes field num, an error (fall back to the generated code) the
// second time: the generated code's last-one-wins is not reproduced here.
func (f *metaSeen) once(num int32) error {
	if *f&(1<<num) != 0 {
		return errMetaProto
	}
	*f |= 1 << num
	return nil
}

// keptAnnotation tells whether an annotation key is one the cache or the
// reflector reads.
func keptAnnotation(k []byte) bool {
	switch string(k) {
	case TraceparentAnnotation, "traceparent", metav1.InitialEventsAnnotationKey:
		return true
	}
	return false
}

// annotation reads one map entry (key 1, value 2) in b[s:e], noting it when
// kept.
func (d *metaDecoder) annotation(b []byte, s, e int) error {
	var ks, ke, vs, ve int
	var seen [3]bool
	for i := s; i < e; {
		num, typ, j, err := tag(b[:e], i)
		if err != nil {
			return err
		}
		if (num != 1 && num != 2) || seen[num] {
			return errMetaProto
		}
		seen[num] = true
		fs, fe, err := lenField(b[:e], j, typ, "annotation")
		if err != nil {
			return err
		}
		if num == 1 {
			ks, ke = fs, fe
		} else {
			vs, ve = fs, fe
		}
		i = fe
	}
	if keptAnnotation(b[ks:ke]) {
		d.ann = append(d.ann, [2]int{ks, ke}, [2]int{vs, ve})
	}
	return nil
}

// ownerReference reads an OwnerReference in b[s:e].
func (d *metaDecoder) ownerReference(b []byte, s, e int) error {
	d.owners = append(d.owners, metav1.OwnerReference{})
	k := len(d.owners) - 1
	var seen metaSeen
	for i := s; i < e; {
		pre := i
		num, typ, j, err := tag(b[:e], i)
		if err != nil {
			return err
		}
		i = j
		switch num {
		case 1, 3, 4, 5: // kind, name, uid, apiVersion
			if err := seen.once(num); err != nil {
				return err
			}
			fs, fe, err := lenField(b[:e], i, typ, "ownerReference")
			if err != nil {
				return err
			}
			d.spans = append(d.spans, metaSpan{s: fs, e: fe, field: ownerBase + num, k: k})
			i = fe
		case 6: // controller
			if err := seen.once(num); err != nil {
				return err
			}
			v, j, err := varintField(b[:e], i, typ, "controller")
			if err != nil {
				return err
			}
			if v != 0 {
				d.owners[k].Controller = &controllerTrue
			} else {
				d.owners[k].Controller = &controllerFalse
			}
			i = j
		default:
			if i, err = skipField(b[:e], pre); err != nil {
				return err
			}
		}
	}
	return nil
}

// The owner references' Controller points to one of these: read-only.
var controllerTrue, controllerFalse = true, false

// finish copies the kept strings into one allocation and points the
// object's fields into it.
func (d *metaDecoder) finish(b []byte, m *metav1.PartialObjectMetadata) {
	n := 0
	for _, sp := range d.spans {
		n += sp.e - sp.s
	}
	for _, a := range d.ann {
		n += a[1] - a[0]
	}
	var sb strings.Builder
	sb.Grow(n)
	for _, sp := range d.spans {
		sb.Write(b[sp.s:sp.e])
	}
	for _, a := range d.ann {
		sb.Write(b[a[0]:a[1]])
	}
	all := sb.String()
	next := func(l int) string {
		s := all[:l]
		all = all[l:]
		return s
	}
	if len(d.owners) > 0 {
		m.OwnerReferences = slices.Clone(d.owners)
	}
	om := &m.ObjectMeta
	for _, sp := range d.spans {
		v := next(sp.e - sp.s)
		switch sp.field {
		case metaName:
			om.Name = v
		case metaNamespace:
			om.Namespace = v
		case metaUID:
			om.UID = types.UID(v)
		case metaResourceVersion:
			om.ResourceVersion = v
		case ownerBase + 1:
			m.OwnerReferences[sp.k].Kind = v
		case ownerBase + 3:
			m.OwnerReferences[sp.k].Name = v
		case ownerBase + 4:
			m.OwnerReferences[sp.k].UID = types.UID(v)
		case ownerBase + 5:
			m.OwnerReferences[sp.k].APIVersion = v
		}
	}
	if len(d.ann) > 0 {
		om.Annotations = make(map[string]string, len(d.ann)/2)
		for i := 0; i < len(d.ann); i += 2 {
			k := next(d.ann[i][1] - d.ann[i][0])
			om.Annotations[k] = next(d.ann[i+1][1] - d.ann[i+1][0])
		}
	}
}

// MetadataProtoSerializer is the protobuf runtime.Serializer of a metadata
// client with PartialObjectMetadata decoded by decodePartialObjectMetadata:
// Decode of one in the "k8s\x00" + runtime.Unknown envelope, into nothing
// (how client-go's watch decodes every watch event's object), goes to it;
// everything else (lists, Status, other kinds, decoding into an object,
// Encode), and an object it does not take, to the wrapped serializer.
type MetadataProtoSerializer struct {
	runtime.Serializer
}

// metaProtoGVK is what decodePartialObjectMetadata decodes.
var (
	metaProtoGVK        = metav1.SchemeGroupVersion.WithKind("PartialObjectMetadata")
	metaProtoAPIVersion = metav1.SchemeGroupVersion.String()
)

// Decode implements runtime.Decoder.
func (s MetadataProtoSerializer) Decode(data []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if into == nil {
		if raw, ok := metadataEnvelope(data); ok {
			if m, err := decodePartialObjectMetadata(raw); err == nil {
				m.APIVersion, m.Kind = metaProtoAPIVersion, metaProtoGVK.Kind
				return m, &metaProtoGVK, nil
			}
		}
	}
	return s.Serializer.Decode(data, defaults, into)
}

// metadataEnvelope returns the message of a protobuf-encoded
// PartialObjectMetadata of meta.k8s.io/v1; ok is false for anything else.
func metadataEnvelope(data []byte) ([]byte, bool) {
	apiVersion, kind, raw, ok := protoEnvelope(data)
	return raw, ok && string(kind) == metaProtoGVK.Kind && string(apiVersion) == metaProtoAPIVersion
}

// WithMetadataProtoDecoding returns ns with the Serializer of its protobuf
// media type wrapped in a MetadataProtoSerializer and its stream serializer
// in a WatchEventProtoSerializer that takes frames holding
// PartialObjectMetadata: give it as rest.Config.NegotiatedSerializer to a
// REST client of metadata-only watches.
func WithMetadataProtoDecoding(ns runtime.NegotiatedSerializer) runtime.NegotiatedSerializer {
	return wrapProto(ns, func(base runtime.Serializer) runtime.Serializer { return MetadataProtoSerializer{base} },
		func(raw []byte) bool { _, ok := metadataEnvelope(raw); return ok })
}
