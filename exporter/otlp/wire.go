package otlp

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Protobuf wire primitives for the OTLP encoders (encode.go). Everything
// appends to a caller-owned []byte and allocates only when it grows.
//
// Strings are always written as valid UTF-8: proto3 string fields must be,
// and a receiver (Go's proto.Unmarshal, the collector) rejects the whole
// request otherwise. Invalid bytes are replaced the way strings.ToValidUTF8
// (s, "\uFFFD") does, without allocating; a valid string costs one scan
// (isASCII, then utf8.ValidString if it is not ASCII).

const (
	wireBytes   = protowire.BytesType
	wireVarint  = protowire.VarintType
	wireFixed32 = protowire.Fixed32Type
	wireFixed64 = protowire.Fixed64Type
)

// replacementChar is what a run of invalid UTF-8 bytes becomes.
const replacementChar = "\uFFFD"

// tag returns the encoded key of field num (below 16) with wire type typ.
func tag(num protowire.Number, typ protowire.Type) byte {
	return byte(num)<<3 | byte(typ)
}

// appendVarint is protowire.AppendVarint, quicker for the small numbers
// that lengths and tags mostly are.
func appendVarint(b []byte, v uint64) []byte {
	if v < 1<<7 {
		return append(b, byte(v)) // inlined
	}
	return appendVarintSlow(b, v)
}

// appendVarintSlow is not inlined so that appendVarint can be.
//
//go:noinline
func appendVarintSlow(b []byte, v uint64) []byte {
	if v < 1<<14 {
		return append(b, byte(v)|0x80, byte(v>>7))
	}
	return protowire.AppendVarint(b, v)
}

// appendTag is protowire.AppendTag, quicker for field numbers below 16.
func appendTag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	if num < 16 {
		return append(b, byte(num)<<3|byte(typ)) // inlined
	}
	return appendTagSlow(b, num, typ)
}

// appendTagSlow is not inlined so that appendTag can be.
//
//go:noinline
func appendTagSlow(b []byte, num protowire.Number, typ protowire.Type) []byte {
	return protowire.AppendTag(b, num, typ)
}

// appendVarintField appends field num as a varint unless v is zero (proto3
// implicit presence).
func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = appendTag(b, num, wireVarint)
	return appendVarint(b, v)
}

// appendFixed64Field appends field num as fixed64 unless v is zero.
func appendFixed64Field(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = appendTag(b, num, wireFixed64)
	return protowire.AppendFixed64(b, v)
}

// appendFixed32Field appends field num as fixed32 unless v is zero.
func appendFixed32Field(b []byte, num protowire.Number, v uint32) []byte {
	if v == 0 {
		return b
	}
	b = appendTag(b, num, wireFixed32)
	return protowire.AppendFixed32(b, v)
}

// appendBytesField appends field num with the raw bytes of s, also when s is
// empty (callers decide about presence).
func appendBytesField(b []byte, num protowire.Number, s []byte) []byte {
	b = appendTag(b, num, wireBytes)
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendStringField appends string field num unless s is empty (proto3
// implicit presence), as valid UTF-8.
func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(b, num, s)
}

// appendString appends string field num, also when s is empty (a oneof
// member is present whatever its value), as valid UTF-8.
func appendString(b []byte, num protowire.Number, s string) []byte {
	n, valid := validLen(s)
	return appendSized(b, num, s, n, valid)
}

// appendSized appends string field num with s, where n and valid are
// validLen(s).
func appendSized(b []byte, num protowire.Number, s string, n int, valid bool) []byte {
	b = appendTag(b, num, wireBytes)
	b = appendVarint(b, uint64(n))
	if valid {
		return append(b, s...)
	}
	return appendValidUTF8(b, s)
}

// validLen is the length of s written as valid UTF-8, and whether s is
// valid as it is.
func validLen(s string) (int, bool) {
	if isASCII(s) || utf8.ValidString(s) {
		return len(s), true
	}
	return validUTF8Len(s), false
}

// isASCII tells whether s has only ASCII bytes, 8 at a time: quicker than
// utf8.ValidString for the short ASCII strings attributes mostly are.
func isASCII(s string) bool {
	for len(s) >= 8 {
		w := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		if w&0x8080808080808080 != 0 {
			return false
		}
		s = s[8:]
	}
	var or byte
	for i := 0; i < len(s); i++ {
		or |= s[i]
	}
	return or < utf8.RuneSelf
}

// validUTF8Len is len(strings.ToValidUTF8(s, "\uFFFD")).
func validUTF8Len(s string) int {
	n := 0
	invalid := false // previous byte was invalid
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			n++
			invalid = false
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		if size == 1 {
			i++
			if !invalid {
				invalid = true
				n += len(replacementChar)
			}
			continue
		}
		invalid = false
		i += size
		n += size
	}
	return n
}

// appendValidUTF8 appends strings.ToValidUTF8(s, "\uFFFD") to b: each run of
// invalid bytes becomes one U+FFFD.
func appendValidUTF8(b []byte, s string) []byte {
	invalid := false
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			invalid = false
			b = append(b, c)
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		if size == 1 {
			i++
			if !invalid {
				invalid = true
				b = append(b, replacementChar...)
			}
			continue
		}
		invalid = false
		b = append(b, s[i:i+size]...)
		i += size
	}
	return b
}

// openField appends the key of length-delimited field num and reserves
// `reserve` bytes for its length, which closeField fills in. It returns the
// offset where the field's content starts. Reserve the number of bytes the
// length will most likely take (1 below 128 bytes, 2 below 16 KiB): a wrong
// guess costs a move of the content.
func openField(b []byte, num protowire.Number, reserve int) ([]byte, int) {
	b = appendTag(b, num, wireBytes)
	b = append(b, zeros[:reserve]...)
	return b, len(b)
}

var zeros [binaryMaxVarintLen]byte

const binaryMaxVarintLen = 10

// closeField writes the length of the field opened by openField with the
// same reserve (the content is b[start:]), moving the content when its
// length takes another number of bytes than reserved.
func closeField(b []byte, start, reserve int) []byte {
	n := len(b) - start
	size := protowire.SizeVarint(uint64(n))
	switch {
	case size > reserve:
		shift := size - reserve
		b = append(b, zeros[:shift]...)
		copy(b[start+shift:], b[start:start+n])
	case size < reserve:
		shift := reserve - size
		copy(b[start-shift:], b[start:start+n])
		b = b[:len(b)-shift]
	}
	appendVarint(b[:start-reserve], uint64(n))
	return b
}
