package dingtalk

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// Limits of a digest message, which must stay well below DingTalk's size
// limit however many warnings it counts.
const (
	digestMaxGroups  = 10
	digestMaxObjects = 5
	digestNoteRunes  = 160
	titleMaxRunes    = 80
)

// payload is the JSON body of a robot post.
type payload struct {
	MsgType  string        `json:"msgtype"`
	Text     *textBody     `json:"text,omitempty"`
	Markdown *markdownBody `json:"markdown,omitempty"`
	At       atBody        `json:"at"`
}

type textBody struct {
	Content string `json:"content"`
}

type markdownBody struct {
	Title string `json:"title"`
	Text  string `json:"text"`
}

type atBody struct {
	AtMobiles []string `json:"atMobiles"`
	AtUserIDs []string `json:"atUserIds"`
	IsAtAll   bool     `json:"isAtAll"`
}

// renderer turns occurrences and digests into post bodies.
type renderer struct {
	cluster   string
	msgType   string
	traceURL  string
	atMobiles []string
	atUserIDs []string
	isAtAll   bool
}

// line is one "label: value" field of a message. Values are already escaped.
type line struct{ label, value string }

// esc makes untrusted text (anything from the API server) safe to embed in
// the message: see escapeMarkdown and escapeText.
func (r *renderer) esc(s string, maxRunes int) string {
	s = truncate(flatten(s), maxRunes)
	if r.msgType == MsgTypeMarkdown {
		return markdownReplacer.Replace(s)
	}
	return textReplacer.Replace(s)
}

// markdownReplacer neutralises every character DingTalk's markdown could
// interpret, replacing it with its full-width look-alike: the text stays
// readable but can form no heading, emphasis, code, link, image, HTML tag,
// entity, quote or mention. "://" is defanged so that a URL in a message is
// not auto-linked. (Backslash escapes are not used: DingTalk's clients do not
// all honour them.)
var markdownReplacer = strings.NewReplacer(
	"://", "：//",
	"\\", "＼", "`", "｀", "*", "＊", "_", "＿", "~", "～", "#", "＃",
	"[", "［", "]", "］", "<", "＜", ">", "＞", "&", "＆", "|", "｜",
	"@", "＠",
)

// textReplacer: text messages are not rendered; only mentions matter.
var textReplacer = strings.NewReplacer("@", "＠")

// flatten puts s on one line: line breaks become " ↵ ", other white space a
// single space; control, zero-width and bidirectional-override characters
// are dropped and invalid UTF-8 replaced. A message can thus never start a
// line of the layout (no heading, list, quote or fake field).
func flatten(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.Grow(len(s))
	pendingSpace, pendingBreak := false, false
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r' || r == '\u2028' || r == '\u2029' || r == '\v' || r == '\f':
			pendingBreak = true
		case unicode.IsSpace(r):
			pendingSpace = true
		case unicode.IsControl(r), invisible(r):
		default:
			if b.Len() > 0 {
				switch {
				case pendingBreak:
					b.WriteString(" ↵ ")
				case pendingSpace:
					b.WriteByte(' ')
				}
			}
			pendingSpace, pendingBreak = false, false
			b.WriteRune(r)
		}
	}
	return b.String()
}

// invisible reports zero-width and bidi control characters, which can hide
// or reorder text.
func invisible(r rune) bool {
	switch {
	case r >= 0x200B && r <= 0x200F, r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069, r == 0xFEFF, r == 0x2060:
		return true
	}
	return unicode.Is(unicode.Cf, r)
}

// truncate cuts s to maxRunes runes, ending in "…".
func truncate(s string, maxRunes int) string {
	if maxRunes <= 0 || utf8.RuneCountInString(s) <= maxRunes {
		return s
	}
	i, n := 0, 0
	for i = range s {
		if n == maxRunes-1 {
			break
		}
		n++
	}
	return strings.TrimRight(s[:i], " ") + "…"
}

// objectName is "Kind name", the way kubectl prints it.
func objectName(kind, name string) string {
	switch {
	case kind == "" && name == "":
		return "(none)"
	case kind == "":
		return name
	case name == "":
		return kind
	}
	return kind + " " + name
}

func namespaceOf(o *convert.Occurrence) string {
	if o.Regarding.Namespace != "" {
		return o.Regarding.Namespace
	}
	return o.Namespace
}

func occurrenceTime(o *convert.Occurrence) time.Time {
	if !o.Time.IsZero() {
		return o.Time
	}
	return o.Observed
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// traceLink fills the trace URL template; "" without template or trace.
func (r *renderer) traceLink(tid [16]byte, sid [8]byte) string {
	if r.traceURL == "" || tid == ([16]byte{}) {
		return ""
	}
	u := strings.NewReplacer("{trace_id}", hex.EncodeToString(tid[:]), "{span_id}", hex.EncodeToString(sid[:])).Replace(r.traceURL)
	// Characters that would end a markdown link target early.
	return strings.NewReplacer(" ", "%20", "(", "%28", ")", "%29", "<", "%3C", ">", "%3E").Replace(u)
}

// link renders a link to url labelled label (already escaped).
func (r *renderer) link(label, url string) string {
	if r.msgType == MsgTypeMarkdown {
		return "[" + label + "](" + url + ")"
	}
	return url
}

// chain is the owner chain root first: "Deployment web → ReplicaSet web-777 →
// Pod web-777-a". Chain is object first; an empty chain is the object alone.
func (r *renderer) chain(o *convert.Occurrence) string {
	refs := o.Chain
	if len(refs) == 0 {
		refs = []convert.Ref{o.Regarding}
	}
	parts := make([]string, 0, len(refs))
	for i := len(refs) - 1; i >= 0; i-- {
		parts = append(parts, r.esc(objectName(refs[i].Kind, refs[i].Name), 200))
	}
	return strings.Join(parts, " → ")
}

// mentions is the text that makes DingTalk highlight the at-mentions.
func (r *renderer) mentions() string {
	var parts []string
	for _, m := range r.atMobiles {
		parts = append(parts, "@"+m)
	}
	for _, id := range r.atUserIDs {
		parts = append(parts, "@"+id)
	}
	return strings.Join(parts, " ")
}

// compose builds the post body from a heading, a title and fields.
func (r *renderer) compose(title, heading string, lines []line, blocks []string) []byte {
	var b strings.Builder
	md := r.msgType == MsgTypeMarkdown
	if md {
		b.WriteString("### " + heading + "\n\n")
	} else {
		b.WriteString(heading + "\n")
	}
	for _, l := range lines {
		if l.value == "" {
			continue
		}
		if md {
			fmt.Fprintf(&b, "**%s:** %s\n\n", l.label, l.value)
		} else {
			fmt.Fprintf(&b, "%s: %s\n", l.label, l.value)
		}
	}
	for _, blk := range blocks {
		b.WriteString(blk)
		if md {
			b.WriteString("\n\n")
		} else {
			b.WriteString("\n")
		}
	}
	if m := r.mentions(); m != "" {
		b.WriteString(m)
	}
	text := strings.TrimRight(b.String(), "\n")
	p := payload{
		MsgType: r.msgType,
		At: atBody{
			AtMobiles: nonNil(r.atMobiles),
			AtUserIDs: nonNil(r.atUserIDs),
			IsAtAll:   r.isAtAll,
		},
	}
	if md {
		p.Markdown = &markdownBody{Title: title, Text: text}
	} else {
		p.Text = &textBody{Content: text}
	}
	body, err := json.Marshal(p)
	if err != nil { // only strings and bools: cannot happen
		panic(err)
	}
	return body
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// title is the notification preview: plain text, no markup, short.
func (r *renderer) title(s string) string {
	if r.cluster != "" {
		s = "[" + r.cluster + "] " + s
	}
	return truncate(textReplacer.Replace(flatten(s)), titleMaxRunes)
}

// occurrence renders one warning.
func (r *renderer) occurrence(o *convert.Occurrence) []byte {
	ns := namespaceOf(o)
	obj := objectName(o.Regarding.Kind, o.Regarding.Name)
	typ := o.Type
	if typ == "" {
		typ = "Event"
	}
	icon := "⚠️ "
	if !strings.EqualFold(typ, "Warning") {
		icon = ""
	}
	heading := icon + r.esc(typ, 40) + " " + r.esc(o.Reason, 100) + " on " + r.esc(obj, 200)
	titleObj := obj
	if ns != "" {
		titleObj = o.Regarding.Kind + " " + ns + "/" + o.Regarding.Name
	}
	title := r.title(o.Reason + ": " + titleObj)

	msg := r.esc(o.Note, MaxMessageRunes)
	if orig := len(o.Note); o.NoteTruncated || utf8.RuneCountInString(flatten(o.Note)) > MaxMessageRunes {
		if o.NoteTruncated && o.NoteOriginalBytes > 0 {
			orig = o.NoteOriginalBytes
		}
		msg += fmt.Sprintf(" (truncated, %d bytes in all)", orig)
	}
	reporter := r.esc(o.ReportingController, 100)
	if o.SourceHost != "" {
		if reporter == "" {
			reporter = "?"
		}
		reporter += " on " + r.esc(o.SourceHost, 100)
	}
	var chain string
	if len(o.Chain) > 1 {
		chain = r.chain(o)
	}
	var count string
	if o.Count > 0 {
		count = fmt.Sprint(o.Count)
	}
	lines := []line{
		{"Cluster", r.esc(r.cluster, 100)},
		{"Namespace", r.esc(ns, 100)},
		{"Object", r.esc(obj, 300)},
		{"Owner chain", chain},
		{"Reason", r.esc(o.Reason, 100)},
		{"Message", msg},
		{"Count", count},
		{"Time", formatTime(occurrenceTime(o))},
		{"Reported by", reporter},
	}
	if o.TraceID != ([16]byte{}) {
		id := hex.EncodeToString(o.TraceID[:])
		if u := r.traceLink(o.TraceID, o.SpanID); u != "" {
			if r.msgType == MsgTypeMarkdown {
				lines = append(lines, line{"Trace", r.link(id, u)})
			} else {
				lines = append(lines, line{"Trace", u})
			}
		} else {
			lines = append(lines, line{"Trace ID", id})
		}
	}
	return r.compose(title, heading, lines, nil)
}

// digest collects the warnings that came faster than the rate limit allows
// to post them one by one. It keeps counts, not occurrences: only the first
// occurrence (to post it alone if it stays the only one) and every ack.
type digest struct {
	since            time.Time // when the window began (sink clock)
	total            int
	first            *convert.Occurrence
	acks             []func()
	minTime, maxTime time.Time
	groups           map[groupKey]int
	objects          map[objKey]*objStat
}

type groupKey struct{ ns, reason string }

type objKey struct{ kind, ns, name string }

type objStat struct {
	key     objKey
	n       int
	seq     int // first-seen order, for stable sorting
	reasons []string
	note    string
	last    time.Time
	trace   [16]byte
	span    [8]byte
}

func newDigest(since time.Time) *digest {
	return &digest{since: since, groups: map[groupKey]int{}, objects: map[objKey]*objStat{}}
}

func (d *digest) add(o *convert.Occurrence, ack func()) {
	d.total++
	if d.first == nil {
		d.first = o
	}
	d.acks = append(d.acks, ack)
	t := occurrenceTime(o)
	if !t.IsZero() {
		if d.minTime.IsZero() || t.Before(d.minTime) {
			d.minTime = t
		}
		if t.After(d.maxTime) {
			d.maxTime = t
		}
	}
	ns := namespaceOf(o)
	d.groups[groupKey{ns, o.Reason}]++
	k := objKey{o.Regarding.Kind, ns, o.Regarding.Name}
	st := d.objects[k]
	if st == nil {
		st = &objStat{key: k, seq: len(d.objects)}
		d.objects[k] = st
	}
	st.n++
	if !slices.Contains(st.reasons, o.Reason) && len(st.reasons) < 3 {
		st.reasons = append(st.reasons, o.Reason)
	}
	if st.last.IsZero() || !t.Before(st.last) {
		st.last = t
		st.note = truncate(flatten(o.Note), digestNoteRunes)
		if o.TraceID != ([16]byte{}) {
			st.trace, st.span = o.TraceID, o.SpanID
		}
	} else if st.trace == ([16]byte{}) && o.TraceID != ([16]byte{}) {
		st.trace, st.span = o.TraceID, o.SpanID
	}
}

// span describes a duration the way a person would: "minute", "12 seconds".
func span(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d >= 50*time.Second && d <= 70*time.Second:
		return "minute"
	case d <= time.Second:
		return "second"
	case d < time.Minute:
		return fmt.Sprintf("%d seconds", int(d/time.Second))
	case d%time.Minute == 0:
		return fmt.Sprintf("%d minutes", int(d/time.Minute))
	}
	return d.String()
}

// digest renders a digest of d.total warnings collected until now.
func (r *renderer) digest(d *digest, now time.Time, rate int) []byte {
	md := r.msgType == MsgTypeMarkdown
	bullet := "- "
	n := d.total
	what := fmt.Sprintf("%d warnings in the last %s", n, span(now.Sub(d.since)))
	title := r.title(what)
	heading := "⚠️ " + what

	type group struct {
		k groupKey
		n int
	}
	groups := make([]group, 0, len(d.groups))
	for k, c := range d.groups {
		groups = append(groups, group{k, c})
	}
	slices.SortFunc(groups, func(a, b group) int {
		if a.n != b.n {
			return b.n - a.n
		}
		if c := strings.Compare(a.k.ns, b.k.ns); c != 0 {
			return c
		}
		return strings.Compare(a.k.reason, b.k.reason)
	})
	var byReason []string
	for i, g := range groups {
		if i == digestMaxGroups {
			rest := 0
			for _, g := range groups[i:] {
				rest += g.n
			}
			byReason = append(byReason, fmt.Sprintf("%s%d× in %d other reasons/namespaces", bullet, rest, len(groups)-i))
			break
		}
		where := "cluster-scoped"
		if g.k.ns != "" {
			where = "in ns " + r.esc(g.k.ns, 100)
		}
		byReason = append(byReason, fmt.Sprintf("%s%d× %s %s", bullet, g.n, r.esc(g.k.reason, 100), where))
	}

	objs := make([]*objStat, 0, len(d.objects))
	for _, st := range d.objects {
		objs = append(objs, st)
	}
	slices.SortFunc(objs, func(a, b *objStat) int {
		if a.n != b.n {
			return b.n - a.n
		}
		return a.seq - b.seq
	})
	var top []string
	for i, st := range objs {
		if i == digestMaxObjects {
			top = append(top, fmt.Sprintf("%s…and %d more objects", bullet, len(objs)-i))
			break
		}
		name := st.key.name
		if st.key.ns != "" {
			name = st.key.ns + "/" + name
		}
		s := fmt.Sprintf("%s%d× %s: %s", bullet, st.n, r.esc(objectName(st.key.kind, name), 200), r.esc(strings.Join(st.reasons, ", "), 200))
		if st.note != "" {
			s += " · " + r.esc(st.note, digestNoteRunes)
		}
		if u := r.traceLink(st.trace, st.span); u != "" {
			s += " · " + r.link("trace", u)
		} else if st.trace != ([16]byte{}) {
			s += " · trace " + hex.EncodeToString(st.trace[:])
		}
		top = append(top, s)
	}

	period := ""
	if !d.minTime.IsZero() {
		period = formatTime(d.minTime)
		if last := formatTime(d.maxTime); last != period {
			period += " – " + last
		}
	}
	lines := []line{
		{"Cluster", r.esc(r.cluster, 100)},
		{"Period", period},
		{"Why a digest", fmt.Sprintf("more warnings than this robot may post (%d messages per minute)", rate)},
	}
	var blocks []string
	if md {
		blocks = append(blocks, "**By reason:**\n\n"+strings.Join(byReason, "\n"), "**Top objects:**\n\n"+strings.Join(top, "\n"))
	} else {
		blocks = append(blocks, "By reason:\n"+strings.Join(byReason, "\n"), "Top objects:\n"+strings.Join(top, "\n"))
	}
	return r.compose(title, heading, lines, blocks)
}
