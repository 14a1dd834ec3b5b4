package causality

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// Open episodes can be carried over a graceful restart: instead of closing
// them at shutdown, the daemon saves them with the checkpoint and the next
// process continues them, with the same trace and span IDs, exporting their
// object and root spans once, when they really close.

type savedRef struct {
	Kind       string `json:"k,omitempty"`
	APIVersion string `json:"a,omitempty"`
	Namespace  string `json:"ns,omitempty"`
	Name       string `json:"n,omitempty"`
	UID        string `json:"u,omitempty"`
}

func saveRef(r convert.Ref) savedRef {
	return savedRef{Kind: r.Kind, APIVersion: r.APIVersion, Namespace: r.Namespace, Name: r.Name, UID: r.UID}
}

func (s savedRef) ref() convert.Ref {
	return convert.Ref{Kind: s.Kind, APIVersion: s.APIVersion, Namespace: s.Namespace, Name: s.Name, UID: s.UID}
}

type savedAttr struct {
	K string `json:"k"`
	T string `json:"t"`
	V any    `json:"v"`
}

func saveAttrs(kvs []attribute.KeyValue) []savedAttr {
	out := make([]savedAttr, 0, len(kvs))
	for _, kv := range kvs {
		a := savedAttr{K: string(kv.Key)}
		switch kv.Value.Type() {
		case attribute.INT64:
			a.T, a.V = "i", kv.Value.AsInt64()
		case attribute.BOOL:
			a.T, a.V = "b", kv.Value.AsBool()
		case attribute.FLOAT64:
			a.T, a.V = "f", kv.Value.AsFloat64()
		default:
			a.T, a.V = "s", kv.Value.String()
		}
		out = append(out, a)
	}
	return out
}

func loadAttrs(in []savedAttr) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(in))
	for _, a := range in {
		switch a.T {
		case "i":
			f, _ := a.V.(float64)
			out = append(out, attribute.Int64(a.K, int64(f)))
		case "b":
			b, _ := a.V.(bool)
			out = append(out, attribute.Bool(a.K, b))
		case "f":
			f, _ := a.V.(float64)
			out = append(out, attribute.Float64(a.K, f))
		default:
			s, _ := a.V.(string)
			out = append(out, attribute.String(a.K, s))
		}
	}
	return out
}

type savedLink struct {
	TraceID string      `json:"t"`
	SpanID  string      `json:"s"`
	Attrs   []savedAttr `json:"a,omitempty"`
}

type savedSpan struct {
	SpanID  string      `json:"id"`
	Parent  string      `json:"p,omitempty"`
	Name    string      `json:"n"`
	Start   time.Time   `json:"st"`
	End     time.Time   `json:"en"`
	Error   bool        `json:"e,omitempty"`
	Status  string      `json:"m,omitempty"`
	Service string      `json:"sv"`
	Attrs   []savedAttr `json:"a,omitempty"`
	Links   []savedLink `json:"l,omitempty"`
	Seq     uint64      `json:"q"`
}

type savedObject struct {
	Ref      savedRef  `json:"r"`
	Key      string    `json:"k"`
	ID       string    `json:"id"`
	Owner    string    `json:"o,omitempty"`
	First    time.Time `json:"f"`
	Start    time.Time `json:"s"`
	End      time.Time `json:"e"`
	Events   int       `json:"ev,omitempty"`
	Warnings int       `json:"w,omitempty"`
	Born     bool      `json:"b,omitempty"`
}

type savedCause struct {
	Key    string    `json:"k"`
	Span   savedSpan `json:"s"`
	Kind   string    `json:"tk"`
	Name   string    `json:"tn"`
	Create bool      `json:"c,omitempty"`
	Obj    string    `json:"o"`
}

type savedOpen struct {
	Root        savedRef      `json:"root"`
	RootKey     string        `json:"rk"`
	Key         string        `json:"key"`
	Gen         int64         `json:"g,omitempty"`
	Seq         int           `json:"s,omitempty"`
	TraceID     string        `json:"t"`
	IDs         string        `json:"ids"`
	RootID      string        `json:"rid"`
	Remote      string        `json:"rp,omitempty"`
	Links       []savedLink   `json:"l,omitempty"`
	Opened      time.Time     `json:"o"`
	LastActive  time.Time     `json:"la"`
	Events      int           `json:"ev"`
	Warnings    int           `json:"w,omitempty"`
	Trigger     string        `json:"tr,omitempty"`
	ObjectsOver int           `json:"ov,omitempty"`
	Objects     []savedObject `json:"obj"`
	Causes      []savedCause  `json:"c,omitempty"`
	// DeleteAt: the root was deleted and the episode closes then. A
	// snapshot taken during the grace carries it, so that after a crash the
	// next process closes the episode as root_deleted (its root is gone
	// and no deletion will be seen again) instead of waiting out the idle
	// time.
	DeleteAt time.Time `json:"del,omitzero"`
}

func saveLinks(ls []Link) []savedLink {
	var out []savedLink
	for _, l := range ls {
		out = append(out, savedLink{TraceID: l.TraceID.String(), SpanID: l.SpanID.String(), Attrs: saveAttrs(l.Attributes)})
	}
	return out
}

func loadLinks(in []savedLink) ([]Link, error) {
	var out []Link
	for _, l := range in {
		tid, err := trace.TraceIDFromHex(l.TraceID)
		if err != nil {
			return nil, err
		}
		sid, err := trace.SpanIDFromHex(l.SpanID)
		if err != nil {
			return nil, err
		}
		out = append(out, Link{TraceID: tid, SpanID: sid, Attributes: loadAttrs(l.Attrs)})
	}
	return out, nil
}

func hexOrEmpty(id trace.SpanID) string {
	if !id.IsValid() {
		return ""
	}
	return id.String()
}

func spanIDFromHex(s string) (trace.SpanID, error) {
	if s == "" {
		return trace.SpanID{}, nil
	}
	return trace.SpanIDFromHex(s)
}

func (ep *episode) save() savedOpen {
	s := savedOpen{
		Root: saveRef(ep.root), RootKey: ep.rootKey, Key: ep.key, Gen: ep.gen, Seq: ep.seq,
		TraceID: ep.traceID.String(), IDs: ep.ids.String(), RootID: ep.rootID.String(), Remote: hexOrEmpty(ep.remoteParent),
		Links: saveLinks(ep.links), Opened: ep.opened, LastActive: ep.lastActive, Events: ep.events, Warnings: ep.warnings,
		Trigger: ep.trigger, ObjectsOver: ep.objectsOver, DeleteAt: ep.deleteAt,
	}
	for _, k := range ep.order {
		o := ep.objects[k]
		s.Objects = append(s.Objects, savedObject{Ref: saveRef(o.ref), Key: o.key, ID: o.id.String(), Owner: o.owner,
			First: o.first, Start: o.start, End: o.end, Events: o.events, Warnings: o.warnings, Born: o.born})
	}
	// By name, then in arrival order (the order causes were kept in).
	order := make([]int, len(ep.causes))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return ep.causes[order[i]].id.key() < ep.causes[order[j]].id.key() })
	for _, i := range order {
		c := ep.causes[i]
		sp := c.span
		s.Causes = append(s.Causes, savedCause{Key: c.id.key(), Kind: c.target.kind, Name: c.target.name, Create: c.target.create, Obj: c.obj,
			Span: savedSpan{SpanID: sp.SpanID.String(), Parent: hexOrEmpty(sp.Parent), Name: sp.Name, Start: sp.Start, End: sp.End,
				Error: sp.Error, Status: sp.StatusMessage, Service: sp.Service, Attrs: saveAttrs(sp.AllAttributes()), Links: saveLinks(sp.Links), Seq: sp.Seq}})
	}
	return s
}

// parseCauseKey reads a saved cause's name, kind/namespace/name: around its
// target's kind and name as the engine writes it, else split at the first
// and last slash.
func parseCauseKey(key, kind, name string) (causeID, error) {
	if rest, ok := strings.CutPrefix(key, kind+"/"); ok {
		if ns, ok := strings.CutSuffix(rest, "/"+name); ok {
			return causeID{kind, ns, name}, nil
		}
	}
	i, j := strings.IndexByte(key, '/'), strings.LastIndexByte(key, '/')
	if i < 0 || i == j {
		return causeID{}, fmt.Errorf("bad cause key %q", key)
	}
	return causeID{key[:i], key[i+1 : j], key[j+1:]}, nil
}

func loadEpisode(s savedOpen) (*episode, error) {
	bad := func(err error) (*episode, error) {
		return nil, fmt.Errorf("open episode of %q: %w", s.RootKey, err)
	}
	ep := &episode{root: s.Root.ref(), rootKey: s.RootKey, key: s.Key, gen: s.Gen, seq: s.Seq,
		opened: s.Opened, lastActive: s.LastActive, events: s.Events, warnings: s.Warnings, trigger: s.Trigger,
		objectsOver: s.ObjectsOver, deleteAt: s.DeleteAt, objects: map[string]*object{}}
	var err error
	if ep.traceID, err = trace.TraceIDFromHex(s.TraceID); err != nil {
		return bad(err)
	}
	if ep.ids, err = trace.TraceIDFromHex(s.IDs); err != nil {
		return bad(err)
	}
	if ep.rootID, err = trace.SpanIDFromHex(s.RootID); err != nil {
		return bad(err)
	}
	if ep.remoteParent, err = spanIDFromHex(s.Remote); err != nil {
		return bad(err)
	}
	if ep.links, err = loadLinks(s.Links); err != nil {
		return bad(err)
	}
	for _, so := range s.Objects {
		id, err := trace.SpanIDFromHex(so.ID)
		if err != nil {
			return bad(err)
		}
		ep.objects[so.Key] = ep.objs.new(object{ref: so.Ref.ref(), key: so.Key, idx: len(ep.order), id: id, owner: so.Owner, first: so.First,
			start: so.Start, end: so.End, events: so.Events, warnings: so.Warnings, born: so.Born})
		ep.order = append(ep.order, so.Key)
	}
	if _, ok := ep.objects[ep.rootKey]; !ok {
		return bad(fmt.Errorf("no root object"))
	}
	for _, sc := range s.Causes {
		if _, ok := ep.objects[sc.Obj]; !ok {
			return bad(fmt.Errorf("cause of unknown object %q", sc.Obj))
		}
		id, err := trace.SpanIDFromHex(sc.Span.SpanID)
		if err != nil {
			return bad(err)
		}
		parent, err := spanIDFromHex(sc.Span.Parent)
		if err != nil {
			return bad(err)
		}
		links, err := loadLinks(sc.Span.Links)
		if err != nil {
			return bad(err)
		}
		sp := Span{TraceID: ep.traceID, SpanID: id, Parent: parent, Name: sc.Span.Name, Kind: KindEvent,
			Start: sc.Span.Start, End: sc.Span.End, Error: sc.Span.Error, StatusMessage: sc.Span.Status,
			Service: sc.Span.Service, Attributes: loadAttrs(sc.Span.Attrs), Links: links, Seq: sc.Span.Seq}
		cid, err := parseCauseKey(sc.Key, sc.Kind, sc.Name)
		if err != nil {
			return bad(err)
		}
		ep.addCause(cid, cause{span: sp, target: actedOn{kind: sc.Kind, name: sc.Name, create: sc.Create}, obj: sc.Obj})
	}
	return ep, nil
}

// SnapshotOpen returns the open episodes like SaveOpen but leaves them open:
// the periodic checkpoint carries them so that even after a crash the next
// process continues them (re-read occurrences add nothing twice). Episodes
// past the budget are left out of the snapshot.
func (e *Engine) SnapshotOpen(budget int) ([]byte, error) {
	return e.snapshotOpen(budget, true)
}

// snapCache is an episode's JSON as a snapshot encoded it, with what tells
// whether it still is the episode's: every change to an open episode comes
// with an occurrence (Observe: events, lastActive, gen) or its root's
// deletion (RootDeleted: deleteAt). A checkpoint re-encoded every open
// episode every few seconds: most of them idle (waiting out
// --episode-idle), and the snapshot was half of the bridge's allocation in
// a soak, four fifths when its episodes were large.
//
// Only an idle episode's JSON is kept: one a snapshot finds unchanged since
// the one before (the first unchanged snapshot encodes it once more and
// keeps it). An episode that changes between every two snapshots, as all of
// them do in a rollout storm, keeps none: copying each of them after every
// encoding, and holding the copies, cost a storm of 100 rollouts ≈ 10 MiB of
// peak RSS (TestLoadRollouts: 54–57 MiB against 45–46) for no reuse.
type snapCache struct {
	json       []byte // nil until the episode is seen idle
	events     int
	gen        int64
	lastActive time.Time
	deleteAt   time.Time
}

// same reports whether the episode is as it was when c was recorded.
func (c *snapCache) same(ep *episode) bool {
	return c.events == ep.events && c.gen == ep.gen && c.lastActive.Equal(ep.lastActive) && c.deleteAt.Equal(ep.deleteAt)
}

// current reports whether c holds ep's JSON as it is now.
func (c *snapCache) current(ep *episode) bool { return c.json != nil && c.same(ep) }

// record notes ep's state after a snapshot encoded it as js, keeping js
// only when ep had not changed since the snapshot before.
func (c *snapCache) record(ep *episode, js []byte) {
	if c.same(ep) {
		c.json = append(c.json[:0], js...)
		return
	}
	*c = snapCache{events: ep.events, gen: ep.gen, lastActive: ep.lastActive, deleteAt: ep.deleteAt}
}

// snapshotOpen is SnapshotOpen; with cached false every episode is encoded
// afresh (tests compare the two).
func (e *Engine) snapshotOpen(budget int, cached bool) ([]byte, error) {
	// The array is joined by hand: json.Marshal of the raw episodes would
	// scan and copy all of them again (every few seconds, under the
	// pipeline's lock). Each episode is encoded straight into one buffer
	// sized from the last snapshot: in a rollout storm, growing it and
	// copying each episode's own JSON into it were two thirds of the
	// snapshot's cost.
	buf := bytes.NewBuffer(make([]byte, 0, min(e.snapshotCap, budget+1)))
	buf.WriteByte('[')
	enc := json.NewEncoder(buf)
	n := 0
	for _, ep := range e.byActivity() {
		mark := buf.Len()
		if n > 0 {
			buf.WriteByte(',')
		}
		if cached && ep.snap.current(ep) {
			buf.Write(ep.snap.json)
		} else {
			start := buf.Len()
			if err := enc.Encode(ep.save()); err != nil {
				return nil, err
			}
			buf.Truncate(buf.Len() - 1) // the newline Encode ends a value with
			if cached {
				ep.snap.record(ep, buf.Bytes()[start:])
			}
		}
		if buf.Len() > budget {
			buf.Truncate(mark)
			break
		}
		n++
	}
	buf.WriteByte(']')
	e.snapshotCap = buf.Len() + buf.Len()/4
	return buf.Bytes(), nil
}

// byActivity lists the open episodes, most recently active first.
func (e *Engine) byActivity() []*episode {
	eps := make([]*episode, 0, len(e.open))
	for _, ep := range e.open {
		eps = append(eps, ep)
	}
	sort.Slice(eps, func(i, j int) bool {
		if !eps[i].lastActive.Equal(eps[j].lastActive) {
			return eps[i].lastActive.After(eps[j].lastActive)
		}
		return eps[i].rootKey < eps[j].rootKey
	})
	return eps
}

// SaveOpen returns the open episodes, most recently active first, as long
// as they fit in budget bytes (JSON, before compression), and closes the
// rest, returning their spans for export. Saved episodes leave the engine:
// the next process restores them with RestoreOpen.
func (e *Engine) SaveOpen(budget int) ([]byte, []Span, error) {
	var saved []json.RawMessage
	size := 0
	var spans []Span
	for _, ep := range e.byActivity() {
		if !ep.deleteAt.IsZero() {
			// Its root is gone: nothing more will come to carry it for.
			spans = e.close(ep, CloseDeleted, spans)
			continue
		}
		b, err := json.Marshal(ep.save())
		if err != nil {
			return nil, nil, err
		}
		if size+len(b) > budget {
			spans = e.close(ep, CloseFlush, spans)
			continue
		}
		size += len(b)
		saved = append(saved, b)
		e.removeOpen(ep)
	}
	out, err := json.Marshal(saved)
	if err != nil {
		return nil, nil, err
	}
	return out, spans, nil
}

// RestoreOpen brings back the episodes SaveOpen saved, before any
// occurrence: they continue with the same trace and span IDs.
func (e *Engine) RestoreOpen(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return fmt.Errorf("causality: open episodes: %w", err)
	}
	for _, r := range raws {
		var s savedOpen
		if err := json.Unmarshal(r, &s); err != nil {
			return fmt.Errorf("causality: open episodes: %w", err)
		}
		ep, err := loadEpisode(s)
		if err != nil {
			return fmt.Errorf("causality: %w", err)
		}
		e.addOpen(ep)
		for i := range ep.causes {
			e.seq = max(e.seq, ep.causes[i].span.Seq)
		}
	}
	return nil
}
