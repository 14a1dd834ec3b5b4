package watch

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	metainternalversionscheme "k8s.io/apimachinery/pkg/apis/meta/internalversion/scheme"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/racebuild"
)

// metaProtoSerializers are the metadata client's protobuf serializer
// (client-go's generated code) and the same wrapped by
// MetadataProtoSerializer.
func metaProtoSerializers(t testing.TB) (base, ours runtime.Serializer, enc runtime.Encoder) {
	t.Helper()
	codecs := metainternalversionscheme.Codecs
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	if !ok {
		t.Fatal("no protobuf serializer")
	}
	return info.Serializer, MetadataProtoSerializer{info.Serializer}, codecs.EncoderForVersion(info.Serializer, metav1.SchemeGroupVersion)
}

// metaSamples are objects as the API server sends them to metadata-only
// watches: a pod with its managed fields, labels and annotations, a
// terminating one, a ReplicaSet, a cluster-scoped Node, odd owner references.
func metaSamples() []*metav1.PartialObjectMetadata {
	yes, no := true, false
	created := metav1.NewTime(time.Date(2026, 12, 6, 10, 18, 16, 0, time.UTC))
	deleted := metav1.NewTime(time.Date(2026, 12, 6, 10, 19, 1, 0, time.UTC))
	grace := int64(30)
	fields := &metav1.FieldsV1{Raw: bytes.Repeat([]byte(`{"f:metadata":{"f:labels":{}}}`), 20)}
	pod := metav1.ObjectMeta{
		Name: "app-00-6f86d49c8d-526tg", GenerateName: "app-00-6f86d49c8d-", Namespace: "testsoak-75dvb",
		UID: "dda24860-2251-4738-b037-89ab9d5b4f8e", ResourceVersion: "117407", Generation: 1, CreationTimestamp: created,
		Labels:      map[string]string{"app": "app-00", "pod-template-hash": "6f86d49c8d"},
		Annotations: map[string]string{"fake.kube-otel-bridge.io/kubelet-step": "running", "soak/rev": "180"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "app-00-6f86d49c8d",
			UID: "3e0033c4-fd91-43c8-aa7e-cd40a376e3ca", Controller: &yes, BlockOwnerDeletion: &yes}},
		ManagedFields: []metav1.ManagedFieldsEntry{
			{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &created, FieldsType: "FieldsV1", FieldsV1: fields},
			{Manager: "kwok", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &created, FieldsType: "FieldsV1", FieldsV1: fields, Subresource: "status"},
		},
		Finalizers: []string{"example.com/keep"},
	}
	terminating := *pod.DeepCopy()
	terminating.DeletionTimestamp, terminating.DeletionGracePeriodSeconds, terminating.Generation = &deleted, &grace, 2
	traced := *pod.DeepCopy()
	traced.Annotations = map[string]string{TraceparentAnnotation: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "traceparent": "x", "other": "y"}
	rs := metav1.ObjectMeta{Name: "app-00-6f86d49c8d", Namespace: "ns", UID: "3e0033c4-fd91-43c8-aa7e-cd40a376e3ca", ResourceVersion: "5", Generation: 3,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "app-00", UID: "u-dep", Controller: &yes}}}
	node := metav1.ObjectMeta{Name: "node-1", UID: "u-node", ResourceVersion: "9", Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}
	owners := metav1.ObjectMeta{Name: "x", Namespace: "ns", UID: "u-x", ResourceVersion: "1", OwnerReferences: []metav1.OwnerReference{
		{Kind: "A", Name: "a", UID: "u-a", Controller: &no}, {APIVersion: "v1", Kind: "B", Name: "b", UID: "u-b"}, {}}}
	var out []*metav1.PartialObjectMetadata
	for _, om := range []metav1.ObjectMeta{pod, terminating, traced, rs, node, owners, {}, {Name: "é\xff", UID: "not-a-uuid"}} {
		out = append(out, &metav1.PartialObjectMetadata{ObjectMeta: om})
	}
	return out
}

// metaKeptOf is what the decoder keeps of m, as the generated code decoded
// it: the rest zeroed.
func metaKeptOf(m *metav1.PartialObjectMetadata) *metav1.PartialObjectMetadata {
	om := m.ObjectMeta
	out := &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{Name: om.Name, Namespace: om.Namespace, UID: om.UID,
		ResourceVersion: om.ResourceVersion, Generation: om.Generation, DeletionTimestamp: om.DeletionTimestamp}}
	for _, r := range om.OwnerReferences {
		out.OwnerReferences = append(out.OwnerReferences, metav1.OwnerReference{APIVersion: r.APIVersion, Kind: r.Kind, Name: r.Name, UID: r.UID, Controller: r.Controller})
	}
	for k, v := range om.Annotations {
		if keptAnnotation([]byte(k)) {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	return out
}

// checkMetaDecode decodes data with both and compares: where ours decodes
// (it may hand over to the generated code, which is then what the caller
// gets), it must be what the generated code gives, less what it drops.
func checkMetaDecode(t *testing.T, base, ours runtime.Serializer, data []byte) {
	t.Helper()
	want, _, wantErr := base.Decode(data, nil, nil)
	got, _, gotErr := ours.Decode(data, nil, nil)
	switch {
	case wantErr != nil && gotErr == nil && isOurs(data):
		// Lenient by design: the fields it drops (labels, managed fields,
		// …) are skipped without parsing their content.
		return
	case (gotErr != nil) != (wantErr != nil):
		t.Fatalf("%x: error %v, the generated code's %v", data, gotErr, wantErr)
	}
	wm, ok := want.(*metav1.PartialObjectMetadata)
	if wantErr != nil || !ok {
		return
	}
	gm := got.(*metav1.PartialObjectMetadata)
	if !reflect.DeepEqual(metaKeptOf(gm), metaKeptOf(wm)) {
		t.Fatalf("%x:\n got %#v\nwant %#v", data, metaKeptOf(gm), metaKeptOf(wm))
	}
	if isOurs(data) && !reflect.DeepEqual(gm, metaKeptOf(wm)) {
		t.Fatalf("%x: kept more than it should:\n got %#v\nwant %#v", data, gm, metaKeptOf(wm))
	}
}

// isOurs tells whether the hand-rolled decoder takes data.
func isOurs(data []byte) bool {
	r, ok := metadataEnvelope(data)
	if !ok {
		return false
	}
	_, err := decodePartialObjectMetadata(r)
	return err == nil
}

func TestMetadataProtoMatchesGenerated(t *testing.T) {
	base, ours, enc := metaProtoSerializers(t)
	for i, m := range metaSamples() {
		var buf bytes.Buffer
		if err := enc.Encode(m, &buf); err != nil {
			t.Fatal(err)
		}
		if !isOurs(buf.Bytes()) {
			t.Errorf("sample %d (%s): not decoded by the hand-rolled decoder", i, m.Name)
		}
		checkMetaDecode(t, base, ours, buf.Bytes())
	}
	// Not ours: a list, another kind, not protobuf.
	var buf bytes.Buffer
	if err := enc.Encode(&metav1.PartialObjectMetadataList{Items: []metav1.PartialObjectMetadata{*metaSamples()[0]}}, &buf); err != nil {
		t.Fatal(err)
	}
	if isOurs(buf.Bytes()) {
		t.Error("a list taken")
	}
	checkMetaDecode(t, base, ours, buf.Bytes())
	if isOurs([]byte(`{"kind":"PartialObjectMetadata"}`)) {
		t.Error("JSON taken")
	}
}

// A repeated kept field is handed to the generated code, which decodes it
// its way (last one wins).
func TestMetadataProtoRepeatedFieldFallsBack(t *testing.T) {
	base, ours, _ := metaProtoSerializers(t)
	var meta []byte
	for _, name := range []string{"a", "b"} {
		meta = protowire.AppendTag(meta, 1, protowire.BytesType)
		meta = protowire.AppendString(meta, name)
	}
	msg := protowire.AppendTag(nil, 1, protowire.BytesType)
	msg = protowire.AppendBytes(msg, meta)
	data := metaEnvelopeOf(msg)
	if isOurs(data) {
		t.Fatal("a repeated name was decoded by hand")
	}
	got, _, err := ours.Decode(data, nil, nil)
	want, _, werr := base.Decode(data, nil, nil)
	if err != nil || werr != nil {
		t.Fatalf("%v, %v", err, werr)
	}
	if got.(*metav1.PartialObjectMetadata).Name != "b" || want.(*metav1.PartialObjectMetadata).Name != "b" {
		t.Errorf("names %q, %q, want the last one", got.(*metav1.PartialObjectMetadata).Name, want.(*metav1.PartialObjectMetadata).Name)
	}
}

// metaEnvelopeOf wraps a PartialObjectMetadata message as the protobuf
// serializer does.
func metaEnvelopeOf(msg []byte) []byte {
	var tm []byte
	tm = protowire.AppendTag(tm, 1, protowire.BytesType)
	tm = protowire.AppendString(tm, "meta.k8s.io/v1")
	tm = protowire.AppendTag(tm, 2, protowire.BytesType)
	tm = protowire.AppendString(tm, "PartialObjectMetadata")
	out := []byte(protobufPrefix)
	out = protowire.AppendTag(out, 1, protowire.BytesType)
	out = protowire.AppendBytes(out, tm)
	out = protowire.AppendTag(out, 2, protowire.BytesType)
	return protowire.AppendBytes(out, msg)
}

// The hand-rolled decoder allocates the object, one string for what it
// keeps, and the owner references (with the annotations map when one is
// kept), where the generated code allocates every field.
func TestMetadataProtoAllocations(t *testing.T) {
	racebuild.SkipAllocs(t)
	base, ours, enc := metaProtoSerializers(t)
	var buf bytes.Buffer
	if err := enc.Encode(metaSamples()[0], &buf); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	n := testing.AllocsPerRun(100, func() { _, _, _ = ours.Decode(data, nil, nil) })
	g := testing.AllocsPerRun(100, func() { _, _, _ = base.Decode(data, nil, nil) })
	if n > 3 {
		t.Errorf("%v allocations per pod (the generated code: %v), want at most 3", n, g)
	}
	t.Logf("allocations per pod: %v (the generated code: %v)", n, g)
}

func FuzzMetadataProto(f *testing.F) {
	base, ours, enc := metaProtoSerializers(f)
	for _, m := range metaSamples() {
		var buf bytes.Buffer
		if err := enc.Encode(m, &buf); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkMetaDecode(t, base, ours, data)
	})
}

func BenchmarkMetadataProtoDecode(b *testing.B) {
	base, ours, enc := metaProtoSerializers(b)
	var buf bytes.Buffer
	if err := enc.Encode(metaSamples()[0], &buf); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	for name, s := range map[string]runtime.Serializer{"generated": base, "bridge": ours} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, _, err := s.Decode(data, nil, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
