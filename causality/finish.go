package causality

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// finishScratch is the working memory of finishing an episode, kept by the
// engine between closes so that building a tree does not allocate. Spans
// are nodes by index: the episode's objects in arrival order, then its
// causes in arrival order. Nothing in it outlives one finish: the spans
// returned are copies.
type finishScratch struct {
	nodes    []Span
	index    map[trace.SpanID]int // node of each span ID (the last registered)
	parentID []trace.SpanID       // zero: no parent (the root)
	parent   []int                // node under which node i hangs, -1 none
	kids     []int                // children of node i: kids[first[i]:first[i+1]]
	first    []int
	next     []int // where the next child of node i goes in kids
	owner    []int // object → its owner object, -1 none, -2 not in the episode
	causeOf  []int // object → the cause it hangs under, -1 none
	via      []int // object → the object of that cause, -1 none
	named    []int // objects named by causes, grouped by name
	cs       []int // the causes naming one object
	claimed  []bool
}

// maxKeptScratch bounds what the engine keeps between closes: the scratch
// of an exceptionally large episode is dropped rather than held.
const maxKeptScratch = 4096

func (f *finishScratch) reset() {
	if cap(f.nodes) > maxKeptScratch {
		*f = finishScratch{}
		return
	}
	clear(f.nodes) // the spans point to attributes and names already exported
	f.nodes = f.nodes[:0]
	clear(f.index)
}

// ints returns s resized to n, every element v.
func ints(s []int, n, v int) []int {
	s = slices.Grow(s[:0], n)[:n]
	for i := range s {
		s[i] = v
	}
	return s
}

// finish builds the episode's tree, decides the parents of object spans,
// stretches parents over their children and appends the spans to export to
// out: object and root spans, and the deferred controller event spans.
func (ep *episode) finish(e *Engine, reason string, out []Span) []Span {
	f := &e.scratch
	defer f.reset()
	ep.objectSpans(e, reason, f)
	for i := range ep.causes {
		f.nodes = append(f.nodes, ep.causes[i].span)
	}
	ep.indexNodes(f)
	ep.parents(f)
	n := len(f.nodes)
	f.parent = ints(f.parent, n, -1)
	f.first = ints(f.first, n+1, 0)
	for i := range f.nodes {
		if p, ok := f.parentOf(i); ok {
			f.parent[i] = p
			f.nodes[i].Parent = f.parentID[i]
			f.first[p+1]++
		}
	}
	for i := 0; i < n; i++ {
		f.first[i+1] += f.first[i]
	}
	f.kids = ints(f.kids, n, 0)
	f.next = append(f.next[:0], f.first[:n]...)
	for i, p := range f.parent {
		if p >= 0 {
			f.kids[f.next[p]] = i
			f.next[p]++
		}
	}
	root, ok := f.index[ep.rootID]
	if !ok {
		return out
	}
	f.stretch(root)
	out = slices.Grow(out, n)
	return f.walk(root, out)
}

// indexNodes maps span IDs to nodes. Should two nodes share an ID (the same
// occurrence deferred as the cause of two names), one node stands for it:
// the cause whose name sorts last, as when nodes were registered by name.
func (ep *episode) indexNodes(f *finishScratch) {
	if f.index == nil {
		f.index = make(map[trace.SpanID]int, len(f.nodes))
	}
	nObj := len(ep.order)
	for i := range f.nodes {
		id := f.nodes[i].SpanID
		if j, dup := f.index[id]; dup && j >= nObj && ep.causes[j-nObj].id.key() > ep.causes[i-nObj].id.key() {
			continue
		}
		f.index[id] = i
	}
}

// parentOf returns the node under which node i hangs: none for the root,
// for a node standing for nothing (a duplicate ID) or an unknown parent.
func (f *finishScratch) parentOf(i int) (int, bool) {
	id := f.parentID[i]
	if id == (trace.SpanID{}) || f.index[f.nodes[i].SpanID] != i {
		return 0, false
	}
	p, ok := f.index[id]
	return p, ok
}

// parents decides the parent span ID of every node: an object hangs under
// the cause that brought it into the episode (unless that cause regards one
// of its descendants), else under its owner, else under the root; a cause
// hangs under its regarding object.
func (ep *episode) parents(f *finishScratch) {
	nObj := len(ep.order)
	f.parentID = slices.Grow(f.parentID[:0], len(f.nodes))[:len(f.nodes)]
	clear(f.parentID)
	f.owner = ints(f.owner, nObj, -1)
	f.via = ints(f.via, nObj, -1)
	for i, k := range ep.order {
		if o := ep.objects[k]; o.owner != "" {
			f.owner[i] = -2
			if owner, ok := ep.objects[o.owner]; ok {
				f.owner[i] = owner.idx
			}
		}
	}
	ep.assignCauses(f)
	for i, k := range ep.order {
		if k == ep.rootKey {
			continue
		}
		o := ep.objects[k]
		parent := ep.rootID
		if owner, ok := ep.objects[o.owner]; ok {
			parent = owner.id
		}
		if ci := f.causeOf[i]; ci >= 0 {
			c := ep.causes[ci]
			if a := ep.objects[c.obj].idx; !f.descends(a, i) {
				parent = c.span.SpanID
				f.via[i] = a
			}
		}
		f.parentID[i] = parent
	}
	for j := range ep.causes {
		f.parentID[nObj+j] = ep.objects[ep.causes[j].obj].id
	}
}

// descends reports whether object a is k or below it in the tree as built so
// far (owners, and the causes already chosen in via), so that a cause
// regarding a descendant of k never becomes k's parent (cycle). A path
// longer than the episode has objects is a cycle already: it counts as yes.
func (f *finishScratch) descends(a, k int) bool {
	for i := 0; i <= len(f.owner) && a >= 0; i++ {
		if a == k {
			return true
		}
		if next := f.via[a]; next >= 0 {
			a = next
			continue
		}
		a = f.owner[a]
	}
	return a >= 0
}

// assignCauses picks, for every object named by controller events, the event
// that brought it into the episode: the first such event (DESIGN.md). Objects
// are keyed by UID, so when a name is reused within an episode (a StatefulSet
// pod deleted and recreated) its incarnations, old before new, take the
// naming events by what they did: the old pod its delete, the new one its
// create (see assignGroup). The picks go to f.causeOf.
func (ep *episode) assignCauses(f *finishScratch) {
	f.causeOf = ints(f.causeOf, len(ep.order), -1)
	f.named = f.named[:0]
	for i, k := range ep.order {
		if k == ep.rootKey {
			continue
		}
		if _, ok := ep.causesOf[ep.objects[k].causeID()]; ok {
			f.named = append(f.named, i)
		}
	}
	// Grouped by name; in each group the objects that existed before the
	// episode come first, then those born in it (scheduled), each in
	// order of first occurrence. Times alone do not order a reused name's
	// incarnations: kubelet and controller events carry whole seconds,
	// refined with the time the bridge read them, while the scheduler's
	// carry their microsecond, and a (fake) kubelet may stamp the old pod's
	// Killing after its successor was scheduled.
	slices.SortFunc(f.named, func(a, b int) int {
		oa, ob := ep.objects[ep.order[a]], ep.objects[ep.order[b]]
		ia, ib := oa.causeID(), ob.causeID()
		if c := cmp.Or(strings.Compare(ia.kind, ib.kind), strings.Compare(ia.ns, ib.ns), strings.Compare(ia.name, ib.name)); c != 0 {
			return c
		}
		return cmp.Or(boolCompare(oa.born, ob.born), oa.first.Compare(ob.first), strings.Compare(oa.key, ob.key))
	})
	for start := 0; start < len(f.named); {
		id := ep.objects[ep.order[f.named[start]]].causeID()
		end := start + 1
		for end < len(f.named) && ep.objects[ep.order[f.named[end]]].causeID() == id {
			end++
		}
		ep.assignGroup(f, id, f.named[start:end])
		start = end
	}
}

func (o *object) causeID() causeID { return causeID{o.ref.Kind, o.ref.Namespace, o.ref.Name} }

// boolCompare orders false before true.
func boolCompare(a, b bool) int {
	switch {
	case a == b:
		return 0
	case b:
		return -1
	}
	return 1
}

// assignGroup gives the objects sharing one name (old before new) the
// causes naming it. One object takes the first cause near its first
// occurrence (pickCause). Several are incarnations of the name: each but
// the first was created in the episode, so the last creates are theirs, in
// order; the first takes a create left over (it was created in the episode
// too), else the first delete (it existed before). Times alone cannot
// tell old from new here: the second delete of a pod still terminating, or
// a create the bridge read after the new pod was scheduled, fall within
// the second that whole-second timestamps leave open. Incarnations without
// a create of their own (its event missed) fall back to pickCause.
func (ep *episode) assignGroup(f *finishScratch, id causeID, objs []int) {
	f.cs = f.cs[:0]
	ep.causesNaming(id, func(i int) bool {
		f.cs = append(f.cs, i)
		return true
	})
	// In time order; arrival (Seq, unique) breaks ties.
	slices.SortFunc(f.cs, func(a, b int) int {
		sa, sb := &ep.causes[a].span, &ep.causes[b].span
		return cmp.Or(sa.Start.Compare(sb.Start), cmp.Compare(sa.Seq, sb.Seq))
	})
	f.claimed = slices.Grow(f.claimed[:0], len(f.cs))[:len(f.cs)]
	clear(f.claimed)
	claim := func(oi, pick int) {
		f.claimed[pick] = true
		f.causeOf[oi] = f.cs[pick]
	}
	if len(objs) > 1 {
		creates := 0
		for _, ci := range f.cs {
			if ep.causes[ci].target.create {
				creates++
			}
		}
		// The k-th create (0-based) goes to incarnation k-(creates-n):
		// the last n-1 to incarnations 1..n-1, one more to the first.
		n, k := len(objs), 0
		for i, ci := range f.cs {
			if !ep.causes[ci].target.create {
				continue
			}
			if inc := k - (creates - n); inc >= 0 {
				claim(objs[inc], i)
			}
			k++
		}
		if f.causeOf[objs[0]] < 0 {
			// Existed before the episode: its (first) delete, the first
			// cause that is not a create.
			for i, ci := range f.cs {
				if !f.claimed[i] && !ep.causes[ci].target.create {
					claim(objs[0], i)
					break
				}
			}
		}
	}
	for _, oi := range objs {
		if f.causeOf[oi] < 0 {
			claim(oi, ep.pickCause(f, ep.objects[ep.order[oi]].first))
		}
	}
}

// pickCause returns the position in f.cs of the cause of an object first
// seen at first: the first unclaimed cause up to a second after it (a
// delete only if no create came after it by then), else the first
// unclaimed one, else the first.
func (ep *episode) pickCause(f *finishScratch, first time.Time) int {
	limit := first.Add(time.Second)
	for i, ci := range f.cs {
		c := ep.causes[ci]
		if f.claimed[i] || c.span.Start.After(limit) {
			continue
		}
		if !c.target.create && ep.createdBy(f, i, first) {
			// Deleted, then created again before this object was
			// first seen: the delete was of its predecessor.
			continue
		}
		return i
	}
	for i := range f.cs {
		if !f.claimed[i] {
			return i
		}
	}
	return 0
}

// createdBy reports whether an unclaimed create cause after f.cs[i] came at
// or before t.
func (ep *episode) createdBy(f *finishScratch, i int, t time.Time) bool {
	for j := i + 1; j < len(f.cs); j++ {
		c := ep.causes[f.cs[j]]
		if !f.claimed[j] && c.target.create && !c.span.Start.After(t) {
			return true
		}
	}
	return false
}

// stretch makes every span cover its children (start = earliest, end =
// latest), bottom-up, and orders children by start time, then arrival.
func (f *finishScratch) stretch(i int) (time.Time, time.Time) {
	sp := &f.nodes[i]
	start, end := sp.Start, sp.End
	kids := f.kids[f.first[i]:f.first[i+1]]
	for _, c := range kids {
		s, e := f.stretch(c)
		if s.Before(start) {
			start = s
		}
		if e.After(end) {
			end = e
		}
	}
	sp.Start, sp.End = start, end
	slices.SortStableFunc(kids, func(a, b int) int {
		sa, sb := &f.nodes[a], &f.nodes[b]
		return cmp.Or(sa.Start.Compare(sb.Start), cmp.Compare(sa.Seq, sb.Seq))
	})
	return start, end
}

// walk appends the tree under node i to out, parents before children.
func (f *finishScratch) walk(i int, out []Span) []Span {
	out = append(out, f.nodes[i])
	for _, c := range f.kids[f.first[i]:f.first[i+1]] {
		out = f.walk(c, out)
	}
	return out
}

// objectSpans appends the object and root spans to f.nodes. Their names
// share one string and their attributes one slice, each span its capped
// piece: the spans of an episode are exported together.
func (ep *episode) objectSpans(e *Engine, reason string, f *finishScratch) {
	nameLen, nAttrs := 0, 0
	for _, k := range ep.order {
		o := ep.objects[k]
		nameLen += len(objectSpanKind(o)) + 1 + len(o.ref.Name)
		nAttrs += objectAttrCount(o, ep)
	}
	var b strings.Builder
	b.Grow(nameLen)
	for _, k := range ep.order {
		o := ep.objects[k]
		b.WriteString(objectSpanKind(o))
		b.WriteByte(' ')
		b.WriteString(o.ref.Name)
	}
	names := b.String()
	attrs := make([]attribute.KeyValue, 0, nAttrs)
	f.nodes = slices.Grow(f.nodes[:0], len(ep.order)+len(ep.causes))
	for _, k := range ep.order {
		o := ep.objects[k]
		n := len(objectSpanKind(o)) + 1 + len(o.ref.Name)
		m := len(attrs) + objectAttrCount(o, ep)
		a := objectAttributes(o, ep, reason, attrs[len(attrs):len(attrs):m])
		attrs = attrs[:m]
		sp := Span{
			TraceID: ep.traceID, SpanID: o.id, Name: names[:n], Kind: KindObject,
			Start: o.start, End: o.end, Service: e.cfg.BridgeService,
			Attributes: a,
		}
		names = names[n:]
		if k == ep.rootKey {
			sp.Kind = KindRoot
			sp.Parent = ep.remoteParent
			sp.Remote = ep.remoteParent.IsValid()
			sp.Links = ep.links
		}
		f.nodes = append(f.nodes, sp)
	}
}

// objectSpanKind is the kind in an object span's name ("Event" for none).
func objectSpanKind(o *object) string {
	if o.ref.Kind == "" {
		return "Event"
	}
	return o.ref.Kind
}
