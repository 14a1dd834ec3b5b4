package convert

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/yaml"
)

// Test-only annotations understood by loadEvent. They let the YAML inputs
// express what YAML cannot (invalid UTF-8, huge strings) and the owner chain
// the watch package would resolve.
const (
	annChain           = "testdata.convert/chain"             // JSON array of Ref-like objects appended to Chain
	annNoteRepeatBytes = "testdata.convert/note-repeat-bytes" // repeat note up to N bytes (cut on a rune boundary)
	annNoteBase64      = "testdata.convert/note-base64"       // raw bytes of note
	annReasonBase64    = "testdata.convert/reason-base64"     // raw bytes of reason
)

// goldenObserved is the bridge's observation time used by the golden tests.
var goldenObserved = time.Date(2026, 3, 1, 16, 0, 0, 250_000_000, time.UTC)

type chainRef struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
}

// loadEvent reads a YAML Event and applies the test-only annotations, which
// it then removes. It returns the extra owner chain to append.
func loadEvent(path string) (*eventsv1.Event, []Ref, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var ev eventsv1.Event
	if err := yaml.UnmarshalStrict(data, &ev); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	var chain []Ref
	for k, v := range ev.Annotations {
		switch k {
		case annChain:
			var refs []chainRef
			if err := json.Unmarshal([]byte(v), &refs); err != nil {
				return nil, nil, fmt.Errorf("%s: %s: %w", path, k, err)
			}
			for _, r := range refs {
				chain = append(chain, Ref{Kind: r.Kind, APIVersion: r.APIVersion, Namespace: r.Namespace, Name: r.Name, UID: r.UID})
			}
		case annNoteRepeatBytes:
			n, err := strconv.Atoi(v)
			if err != nil || ev.Note == "" {
				return nil, nil, fmt.Errorf("%s: %s: bad value %q or empty note", path, k, v)
			}
			s := strings.Repeat(ev.Note, n/len(ev.Note)+1)[:n]
			for !utf8.ValidString(s) { // cut on a rune boundary
				s = s[:len(s)-1]
			}
			ev.Note = s
		case annNoteBase64, annReasonBase64:
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %s: %w", path, k, err)
			}
			if k == annNoteBase64 {
				ev.Note = string(b)
			} else {
				ev.Reason = string(b)
			}
		default:
			if strings.HasPrefix(k, "testdata.convert/") {
				return nil, nil, fmt.Errorf("%s: unknown test annotation %q", path, k)
			}
		}
	}
	for k := range ev.Annotations {
		if strings.HasPrefix(k, "testdata.convert/") {
			delete(ev.Annotations, k)
		}
	}
	if len(ev.Annotations) == 0 {
		ev.Annotations = nil
	}
	return &ev, chain, nil
}

// renderedRecord is the stable, human-readable form of a log.Record used by
// the golden files.
type renderedRecord struct {
	Timestamp    string `json:"timestamp"`
	Observed     string `json:"observed"`
	Severity     int    `json:"severity"`
	SeverityName string `json:"severity_name"`
	SeverityText string `json:"severity_text"`
	EventName    string `json:"event_name"`
	// Body is the whole body when short; long bodies are summarized.
	Body       *string        `json:"body,omitempty"`
	BodyBytes  int            `json:"body_bytes,omitempty"`
	BodySHA256 string         `json:"body_sha256,omitempty"`
	BodyHead   string         `json:"body_head,omitempty"`
	BodyTail   string         `json:"body_tail,omitempty"`
	Attributes map[string]any `json:"attributes"`
}

const maxInlineBody = 1024

func renderTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// renderRecord renders r as indented JSON with sorted attributes. It fails on
// duplicate attribute keys and on value types the converter never produces,
// which a map-based rendering would otherwise hide.
func renderRecord(r *log.Record) ([]byte, error) {
	out := renderedRecord{
		Timestamp:    renderTime(r.Timestamp()),
		Observed:     renderTime(r.ObservedTimestamp()),
		Severity:     int(r.Severity()),
		SeverityName: r.Severity().String(),
		SeverityText: r.SeverityText(),
		EventName:    r.EventName(),
		Attributes:   map[string]any{},
	}
	body := r.Body()
	if body.Type() != attribute.STRING {
		return nil, fmt.Errorf("body has type %s, want STRING", body.Type())
	}
	if s := body.AsString(); len(s) <= maxInlineBody {
		out.Body = &s
	} else {
		sum := sha256.Sum256([]byte(s))
		out.BodyBytes = len(s)
		out.BodySHA256 = hex.EncodeToString(sum[:])
		out.BodyHead = runePrefix(s, 64)
		out.BodyTail = runeSuffix(s, 64)
	}
	var err error
	r.WalkAttributes(func(kv attribute.KeyValue) bool {
		k := string(kv.Key)
		if _, dup := out.Attributes[k]; dup {
			err = fmt.Errorf("duplicate attribute %q", k)
			return false
		}
		switch kv.Value.Type() {
		case attribute.STRING:
			out.Attributes[k] = kv.Value.AsString()
		case attribute.INT64:
			out.Attributes[k] = kv.Value.AsInt64()
		case attribute.BOOL:
			out.Attributes[k] = kv.Value.AsBool()
		default:
			err = fmt.Errorf("attribute %q has unexpected type %s", k, kv.Value.Type())
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func runePrefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func runeSuffix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := len(s) - n
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return s[i:]
}
