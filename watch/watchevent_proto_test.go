package watch

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
)

// decodeWatchEvent decodes one WatchEvent frame with s into a fresh
// WatchEvent, as client-go's rest/watch.Decoder does.
func decodeWatchEvent(s k8sruntime.Decoder, frame []byte) (*metav1.WatchEvent, bool, error) {
	var got metav1.WatchEvent
	obj, _, err := s.Decode(frame, nil, &got)
	return &got, obj == &got, err
}

// watchEventFrame is the generated encoding of a WatchEvent.
func watchEventFrame(tb testing.TB, typ string, raw []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	we := &metav1.WatchEvent{Type: typ, Object: k8sruntime.RawExtension{Raw: raw}}
	if err := protobufInfo(tb).StreamSerializer.Serializer.Encode(we, &buf); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// The fast path takes well-formed frames holding an Event (a view, no
// copy); everything else is the wrapped serializer's, with its result or
// its error.
func TestWatchEventProtoSerializer(t *testing.T) {
	base := protobufInfo(t).StreamSerializer.Serializer
	ev := kubeletEvent(t)
	evData := encodeProtobuf(t, eventsv1.SchemeGroupVersion, ev)
	coreData := encodeProtobuf(t, corev1.SchemeGroupVersion, toCoreEvent(ev))
	status := encodeProtobuf(t, metav1.SchemeGroupVersion, &metav1.Status{Status: metav1.StatusFailure, Code: 410})
	evFrame := watchEventFrame(t, "MODIFIED", evData)

	cases := []struct {
		name  string
		frame []byte
		core  bool
		fast  bool // decoded without the generated code: Raw is a view
	}{
		{"events.k8s.io/v1 Event", evFrame, false, true},
		{"bookmark", watchEventFrame(t, "BOOKMARK", evData), false, true},
		{"core/v1 Event with coreV1", watchEventFrame(t, "ADDED", coreData), true, true},
		{"core/v1 Event without coreV1", watchEventFrame(t, "ADDED", coreData), false, false},
		{"Status", watchEventFrame(t, "ERROR", status), true, false},
		{"unknown type", watchEventFrame(t, "RENAMED", evData), true, false},
		{"type repeated", append(pbStr(1, "ADDED"), evFrame...), true, false},
		{"object repeated", append(append([]byte(nil), evFrame...), pbMsg(2, pbStr(1, string(evData)))...), true, false},
		{"unknown field", append(append([]byte(nil), evFrame...), pbVarint(9, 1)...), true, false},
		{"raw extension with an unknown field", pbJoin(pbStr(1, "ADDED"), pbMsg(2, pbStr(1, string(evData)), pbVarint(2, 1))), true, false},
		{"no object", pbStr(1, "ADDED"), true, false},
		{"empty raw", pbJoin(pbStr(1, "ADDED"), pbMsg(2, pbStr(1, ""))), true, false},
		{"truncated", evFrame[:len(evFrame)-3], true, false},
		{"varint type", pbVarint(1, 3), true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, wantOK, wantErr := decodeWatchEvent(base, c.frame)
			got, gotOK, err := decodeWatchEvent(NewWatchEventProtoSerializer(base, c.core), c.frame)
			if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
				t.Fatalf("error %v, want %v", err, wantErr)
			}
			if gotOK != wantOK || got.Type != want.Type || !bytes.Equal(got.Object.Raw, want.Object.Raw) || got.Object.Object != want.Object.Object {
				t.Fatalf("decoded %q %d bytes (returned into: %v), want %q %d bytes (%v)", got.Type, len(got.Object.Raw), gotOK, want.Type, len(want.Object.Raw), wantOK)
			}
			view := len(got.Object.Raw) > 0 && aliases(c.frame, got.Object.Raw)
			if view != c.fast {
				t.Fatalf("raw is a view into the frame: %v, want %v", view, c.fast)
			}
		})
	}

	// Not a WatchEvent: the wrapped serializer's.
	into := &metav1.Status{}
	if obj, _, err := NewWatchEventProtoSerializer(base, true).Decode(status[len(protobufPrefix):], nil, into); err == nil && obj != into {
		t.Fatalf("decoding into a Status: got %T", obj)
	}
}

// aliases reports whether sub is a view into b: changing every byte of b
// changes sub.
func aliases(b, sub []byte) bool {
	before := append([]byte(nil), sub...)
	for i := range b {
		b[i] ^= 0xff
	}
	view := !bytes.Equal(before, sub)
	for i := range b {
		b[i] ^= 0xff
	}
	return view
}

// FuzzWatchEventProto: whatever the frame, the fast path decodes it as the
// generated code does or leaves it to the generated code.
func FuzzWatchEventProto(f *testing.F) {
	ev := kubeletEvent(f)
	evData := encodeProtobuf(f, eventsv1.SchemeGroupVersion, ev)
	f.Add(watchEventFrame(f, "ADDED", evData))
	f.Add(watchEventFrame(f, "BOOKMARK", encodeProtobuf(f, corev1.SchemeGroupVersion, toCoreEvent(ev))))
	f.Add(pbJoin(pbStr(1, "DELETED"), pbMsg(2, pbStr(1, string(evData))), pbTag(nil, 3, protowire.BytesType)))
	base := protobufInfo(f).StreamSerializer.Serializer
	fast := NewWatchEventProtoSerializer(base, true)
	f.Fuzz(func(t *testing.T, frame []byte) {
		got, gotOK, err := decodeWatchEvent(fast, frame)
		want, wantOK, wantErr := decodeWatchEvent(base, frame)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("error %v, want %v", err, wantErr)
		}
		if err == nil && (gotOK != wantOK || got.Type != want.Type || !bytes.Equal(got.Object.Raw, want.Object.Raw)) {
			t.Fatalf("decoded %q %x, want %q %x", got.Type, got.Object.Raw, want.Type, want.Object.Raw)
		}
	})
}
