package causality

import (
	"crypto/sha256"
	"encoding/binary"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// IDs are derived, not random: the same cluster, root, episode and object or
// occurrence always give the same trace and span IDs. So an event span can be
// exported before its parent, a restarted bridge continues the same trace,
// and a replay reproduces every ID.

// digest is the SHA-256 of parts, each followed by a zero byte. The parts
// are joined in a stack buffer (one hash call, no allocation for the usual
// sizes) rather than written to a hash.Hash, which escapes to the heap.
func digest(parts ...string) [32]byte {
	var stack [256]byte
	buf := stack[:0]
	for _, p := range parts {
		buf = append(buf, p...)
		buf = append(buf, 0)
	}
	return sha256.Sum256(buf)
}

func traceID(cluster, rootKey, episodeKey string) trace.TraceID {
	d := digest("trace", cluster, rootKey, episodeKey)
	var id trace.TraceID
	copy(id[:], d[:16])
	if !id.IsValid() {
		id[15] = 1
	}
	return id
}

func spanID(d [32]byte) trace.SpanID {
	var id trace.SpanID
	copy(id[:], d[:8])
	if !id.IsValid() {
		id[7] = 1
	}
	return id
}

func objectSpanID(tid trace.TraceID, objectKey string) trace.SpanID {
	return spanID(digest("object", string(tid[:]), objectKey))
}

func eventSpanID(tid trace.TraceID, eventUID string, count int32) trace.SpanID {
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], uint32(count))
	return spanID(digest("event", string(tid[:]), eventUID, string(c[:])))
}

// parseTraceparent reads a W3C traceparent ("00-<32 hex>-<16 hex>-<2 hex>").
func parseTraceparent(s string) (trace.SpanContext, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		// Most roots have none: no need to split nothing into a slice.
		return trace.SpanContext{}, false
	}
	parts := strings.Split(s, "-")
	if len(parts) < 4 || len(parts[0]) != 2 || parts[0] == "ff" {
		return trace.SpanContext{}, false
	}
	tid, err := trace.TraceIDFromHex(parts[1])
	if err != nil {
		return trace.SpanContext{}, false
	}
	sid, err := trace.SpanIDFromHex(parts[2])
	if err != nil {
		return trace.SpanContext{}, false
	}
	if len(parts[3]) != 2 {
		return trace.SpanContext{}, false
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true}), true
}
