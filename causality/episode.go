package causality

import (
	"slices"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// episode is the open state of one trace.
type episode struct {
	// snap is the episode's JSON as the last checkpoint snapshot encoded
	// it (see Engine.SnapshotOpen).
	snap         snapCache
	root         convert.Ref
	rootKey      string
	key          string
	gen          int64
	seq          int
	traceID      trace.TraceID
	rootID       trace.SpanID
	remoteParent trace.SpanID
	links        []Link
	opened       time.Time // virtual clock
	lastActive   time.Time
	events       int
	warnings     int
	trigger      string // reason of the first occurrence
	// deleteAt: the root was deleted; the episode closes at this time
	// (wall clock, Config.DeleteGrace after the deletion was seen).
	deleteAt time.Time

	objects map[string]*object // by object key (UID)
	order   []string           // object keys in arrival order, for determinism
	// causes: controller events naming an object they acted on, in arrival
	// order; deferred (exported at close, stretched to cover the objects
	// they caused). causesOf indexes them by the object they name, as a
	// list threaded through causes (cause.next) rather than a slice per
	// name.
	causes   []*cause
	causesOf map[causeID]causeList
	// objs and causeVals hold the objects and causes themselves.
	objs      chunks[object]
	causeVals chunks[cause]
	// objectsOver counts objects past MaxObjectsPerEpisode (attached to root).
	objectsOver int
	// ids seeds the span IDs: the trace ID derived from cluster, root and
	// episode key, also when the trace is a traceparent's (episodes of one
	// root then share that trace and must not share span IDs).
	ids trace.TraceID
}

// object is one object taking part in the episode.
type object struct {
	ref      convert.Ref
	key      string
	idx      int // position in the episode's order
	id       trace.SpanID
	owner    string    // key of its owner in the chain ("" for the root)
	first    time.Time // earliest occurrence about it or its descendants
	start    time.Time
	end      time.Time
	events   int
	warnings int
	// born: the object came into being in this episode (a pod scheduled),
	// which tells a reused name's new incarnation from the old one.
	born bool
}

// cause is a controller event span kept until the episode closes.
type cause struct {
	span   Span
	target actedOn
	obj    string // key of the regarding object (the span's parent)
	id     causeID
	next   int // index of the next cause naming the same object, -1 none
}

// causeID is the object a cause names: kind, namespace and name.
type causeID struct{ kind, ns, name string }

// key is the name as checkpoints store it (and as causes were once filed).
func (id causeID) key() string { return id.kind + "/" + id.ns + "/" + id.name }

// causeList is the first and last of the causes naming one object.
type causeList struct{ first, last int }

// causesNaming calls f with the index of each cause naming id, in arrival
// order, until f returns false.
func (ep *episode) causesNaming(id causeID, f func(int) bool) {
	l, ok := ep.causesOf[id]
	for i := l.first; ok && i >= 0; i = ep.causes[i].next {
		if !f(i) {
			return
		}
	}
}

// addCause appends c to the causes naming id.
func (ep *episode) addCause(id causeID, c cause) {
	c.id, c.next = id, -1
	n := len(ep.causes)
	ep.causes = append(ep.causes, ep.causeVals.new(c))
	if l, ok := ep.causesOf[id]; ok {
		ep.causes[l.last].next = n
		ep.causesOf[id] = causeList{l.first, n}
		return
	}
	if ep.causesOf == nil {
		ep.causesOf = map[causeID]causeList{}
	}
	ep.causesOf[id] = causeList{n, n}
}

func newEpisode(cluster string, root convert.Ref, rk, key string, now time.Time) *episode {
	tid := traceID(cluster, rk, key)
	return &episode{
		root: root, rootKey: rk, key: key,
		traceID: tid, ids: tid, rootID: objectSpanID(tid, rk),
		opened: now, lastActive: now,
		objects: map[string]*object{},
	}
}

// spanCount is at most how many spans finish returns: one per object and
// per cause.
func (ep *episode) spanCount() int { return len(ep.order) + len(ep.causes) }

// objectFor returns (creating) the object span state for chain[i] and its
// owners up to the root.
func (ep *episode) objectFor(e *Engine, chain []convert.Ref, i int, at time.Time) *object {
	r := &chain[i]
	k := objectKey(r)
	if i == len(chain)-1 || r.IsZero() {
		k = ep.rootKey
	}
	if obj, ok := ep.objects[k]; ok {
		obj.touch(at)
		if i+1 < len(chain) && k != ep.rootKey {
			ep.objectFor(e, chain, i+1, at)
		}
		return obj
	}
	if k != ep.rootKey && len(ep.objects) >= e.cfg.MaxObjectsPerEpisode {
		ep.objectsOver++
		e.stats.ObjectsOverLimit++
		return ep.objectFor(e, chain, len(chain)-1, at)
	}
	obj := ep.objs.new(object{key: k, id: objectSpanID(ep.ids, k), first: at, start: at, end: at})
	if k == ep.rootKey {
		obj.ref = ep.root
		obj.id = ep.rootID
	} else {
		obj.ref = *r
		obj.owner = ep.rootKey
		if i+1 < len(chain) {
			owner := ep.objectFor(e, chain, i+1, at)
			obj.owner = owner.key
		}
	}
	// Owners were added first (above): the object's place is known now.
	obj.idx = len(ep.order)
	ep.objects[k] = obj
	ep.order = append(ep.order, k)
	return obj
}

func (o *object) touch(at time.Time) {
	if at.Before(o.first) {
		o.first = at
	}
	if at.Before(o.start) {
		o.start = at
	}
	if at.After(o.end) {
		o.end = at
	}
}

// add records one occurrence: its event span, and its object spans. It
// returns the event span and whether its export is deferred to the close.
func (ep *episode) add(e *Engine, in Input) (Span, bool) {
	o := in.Occ
	at := spanTime(o.Time, in.Now)
	chain := o.Chain
	if len(chain) == 0 || chain[0].IsZero() {
		chain = []convert.Ref{ep.root}
	}
	chain = acyclic(chain, ep.rootKey)
	obj := ep.objectFor(e, chain, 0, at)
	obj.events++
	if ep.trigger == "" {
		ep.trigger = o.Reason
	}
	target, isCause := parseActedOn(o.Regarding.Kind, o.Reason, o.Note)
	sp := Span{
		TraceID: ep.traceID,
		SpanID:  eventSpanID(ep.ids, o.EventUID, o.Count),
		Parent:  obj.id,
		Name:    e.spanName(o.Regarding.Kind, o.Reason),
		Kind:    KindEvent,
		Start:   at,
		End:     at,
		Seq:     e.nextSeq(),
		Service: e.service(o.ReportingController),
		Event:   o,
	}
	if o.Type == "Warning" {
		sp.Error, sp.StatusMessage = true, o.Note
		obj.warnings++
		ep.warnings++
	}
	if o.Reason == "Scheduled" && o.Regarding.Kind == "Pod" {
		obj.born = true // the scheduler assigns a pod once in its life
	}
	if node, ok := scheduledNode(o.Reason, o.Note); ok && o.Regarding.Kind == "Pod" {
		e.rememberPodNode(obj.key, node)
	} else if o.SourceHost != "" && o.Regarding.Kind == "Pod" {
		if _, known := e.podNodes[obj.key]; !known {
			e.rememberPodNode(obj.key, o.SourceHost)
		}
	}
	if isNodeLinked(o.Reason) && o.Regarding.Kind == "Pod" {
		if node, ok := e.podNodes[obj.key]; ok {
			if tid, sid, ok := e.nodeEpisode(node); ok && tid != ep.traceID {
				sp.Links = append(sp.Links, Link{TraceID: tid, SpanID: sid, Attributes: []attribute.KeyValue{
					attribute.String("k8s.node.name", node), attribute.String("link.reason", "node")}})
			}
		}
	}
	if isRescale(o.Regarding.Kind, o.Reason) {
		if tid, sid, ok := e.targetEpisode(o.Regarding.Namespace, o.Regarding.Name); ok && tid != ep.traceID {
			sp.Links = append(sp.Links, Link{TraceID: tid, SpanID: sid, Attributes: []attribute.KeyValue{attribute.String("link.reason", "scale_target")}})
		}
	}
	if isCause {
		id := causeID{target.kind, o.Regarding.Namespace, target.name}
		again := false
		ep.causesNaming(id, func(i int) bool {
			// The same occurrence again (re-read after a restart)?
			again = ep.causes[i].span.SpanID == sp.SpanID
			return !again
		})
		if !again {
			// Kept until the episode closes, long after the occurrence's
			// outputs acked it, when the source may reuse its memory
			// (watch.Handler): the span keeps a copy.
			kept := sp
			kept.Event = detachOccurrence(o)
			ep.addCause(id, cause{span: kept, target: target, obj: obj.key})
		}
		return sp, true
	}
	return sp, false
}

// detachOccurrence copies o with its owner chain, for a span kept past the
// occurrence's own life.
func detachOccurrence(o *convert.Occurrence) *convert.Occurrence {
	c := *o
	c.Chain = slices.Clone(o.Chain) // Related is an allocation of its own
	return &c
}

// hasOtherRun reports whether the episode of a CronJob holds a Job other
// than the one its controller event o says it created: another run.
func (ep *episode) hasOtherRun(o *convert.Occurrence) bool {
	target, ok := parseActedOn(o.Regarding.Kind, o.Reason, o.Note)
	if !ok || target.kind != "Job" {
		return ep.events > 0
	}
	for _, obj := range ep.objects {
		if obj.ref.Kind == "Job" && obj.ref.Name != target.name {
			return true
		}
	}
	for i := range ep.causes {
		if c := ep.causes[i]; c.target.kind == "Job" && c.target.create && c.target.name != target.name {
			return true
		}
	}
	return false
}

// acyclic cuts a chain before the first object met twice (an owner cycle
// the cache did not cut), keeping its root: a repeated object would become
// its own owner and its spans would never reach the root.
func acyclic(chain []convert.Ref, rootKey string) []convert.Ref {
	n := len(chain) - 1
	for i := 0; i < n; i++ {
		k := objectKey(&chain[i])
		dup := k == rootKey
		for j := 0; j < i && !dup; j++ {
			dup = objectKey(&chain[j]) == k
		}
		if dup {
			return append(chain[:i:i], chain[n])
		}
	}
	return chain
}

// eventAttrCount is the number of attributes eventAttributes gives o, so
// that a slice of them is sized once, exactly.
func eventAttrCount(o *convert.Occurrence) int {
	n := 4
	for _, s := range [...]string{o.Note, o.Namespace, o.Regarding.FieldPath, o.SourceHost, o.ReportingInstance} {
		if s != "" {
			n++
		}
	}
	if o.Regarding.Kind != "" {
		n += 2
	}
	return n + chainAttrCount(o.Chain)
}

// eventAttributes appends the attributes of o's event span to attrs (which
// has room for them: see eventAttrCount).
func eventAttributes(o *convert.Occurrence, attrs []attribute.KeyValue) []attribute.KeyValue {
	attrs = append(attrs,
		attribute.String("k8s.event.reason", o.Reason),
		attribute.String("k8s.event.uid", o.EventUID),
		attribute.Int("k8s.event.count", int(o.Count)),
		attribute.String("k8s.event.type", o.Type),
	)
	if o.Note != "" {
		attrs = append(attrs, attribute.String("k8s.event.note", o.Note))
	}
	if o.Namespace != "" {
		attrs = append(attrs, attribute.String("k8s.namespace.name", o.Namespace))
	}
	if o.Regarding.Kind != "" {
		attrs = append(attrs, attribute.String("k8s.object.kind", o.Regarding.Kind), attribute.String("k8s.object.name", o.Regarding.Name))
	}
	if o.Regarding.FieldPath != "" {
		attrs = append(attrs, attribute.String("k8s.object.fieldpath", o.Regarding.FieldPath))
	}
	if o.SourceHost != "" {
		attrs = append(attrs, attribute.String("k8s.node.name", o.SourceHost))
	}
	if o.ReportingInstance != "" {
		attrs = append(attrs, attribute.String("k8s.event.reporting_instance", o.ReportingInstance))
	}
	return appendChain(attrs, o.Chain)
}

// chainAttrCount is the number of attributes appendChain adds for chain.
func chainAttrCount(chain []convert.Ref) int {
	n := 0
	for i := range chain {
		if _, ok := semconvKeys[chain[i].Kind]; ok {
			n++
			if chain[i].UID != "" {
				n++
			}
		}
	}
	return n
}

// appendChain adds the stable semconv k8s.<kind>.name/uid of each object.
func appendChain(attrs []attribute.KeyValue, chain []convert.Ref) []attribute.KeyValue {
	for i := range chain {
		if k, ok := semconvKeys[chain[i].Kind]; ok {
			attrs = append(attrs, k.name.String(chain[i].Name))
			if chain[i].UID != "" {
				attrs = append(attrs, k.uid.String(chain[i].UID))
			}
		}
	}
	return attrs
}

// semconvKeys are the stable k8s.<kind>.name/uid attribute keys, built once
// (no string building per occurrence).
var semconvKeys = func() map[string]struct{ name, uid attribute.Key } {
	m := map[string]struct{ name, uid attribute.Key }{}
	for kind, key := range map[string]string{
		"Pod": "pod", "ReplicaSet": "replicaset", "Deployment": "deployment", "StatefulSet": "statefulset",
		"DaemonSet": "daemonset", "Job": "job", "CronJob": "cronjob", "Node": "node",
	} {
		m[kind] = struct{ name, uid attribute.Key }{attribute.Key("k8s." + key + ".name"), attribute.Key("k8s." + key + ".uid")}
	}
	return m
}()

// objectAttrCount is the number of attributes objectAttributes gives o.
func objectAttrCount(o *object, ep *episode) int {
	n := 4 + chainAttrCount([]convert.Ref{o.ref})
	if o.ref.UID != "" {
		n++
	}
	if o.ref.Namespace != "" {
		n++
	}
	if o.key == ep.rootKey {
		n += 5
		if ep.gen > 0 {
			n++
		}
		if ep.objectsOver > 0 {
			n++
		}
	}
	return n
}

// objectAttributes appends the attributes of o's span to attrs (which has
// room for them: see objectAttrCount).
func objectAttributes(o *object, ep *episode, reason string, attrs []attribute.KeyValue) []attribute.KeyValue {
	attrs = append(attrs,
		attribute.String("k8s.object.kind", o.ref.Kind),
		attribute.String("k8s.object.name", o.ref.Name),
	)
	if o.ref.UID != "" {
		attrs = append(attrs, attribute.String("k8s.object.uid", o.ref.UID))
	}
	if o.ref.Namespace != "" {
		attrs = append(attrs, attribute.String("k8s.namespace.name", o.ref.Namespace))
	}
	attrs = appendChain(attrs, []convert.Ref{o.ref})
	attrs = append(attrs,
		attribute.Int("k8s.events", o.events),
		attribute.Int("k8s.warnings", o.warnings),
	)
	if o.key == ep.rootKey {
		attrs = append(attrs,
			attribute.String("k8s.episode.key", ep.key),
			attribute.String("k8s.episode.trigger", ep.trigger),
			attribute.String("k8s.episode.close_reason", reason),
			attribute.Int("k8s.episode.events", ep.events),
			attribute.Int("k8s.episode.warnings", ep.warnings),
		)
		if ep.gen > 0 {
			attrs = append(attrs, attribute.String("k8s.object.generation", strconv.FormatInt(ep.gen, 10)))
		}
		if ep.objectsOver > 0 {
			attrs = append(attrs, attribute.Int("k8s.episode.objects_over_limit", ep.objectsOver))
		}
	}
	return attrs
}

// spanTime is when an occurrence's span starts. Most reporters stamp events in
// whole seconds (core/v1 lastTimestamp); the true time lies in that second and
// not after the bridge saw it, so the observation refines it and spans of one
// pod keep their real order. Times with sub-second precision are kept as is.
func spanTime(t, observed time.Time) time.Time {
	if t.IsZero() {
		return observed
	}
	if t.Nanosecond() != 0 || observed.Before(t) {
		return t
	}
	if d := observed.Sub(t); d < time.Second {
		return observed
	}
	return t.Add(999 * time.Millisecond)
}

// flushReason is why ep closes at a flush: its root's deletion when that was
// seen, else the flush itself.
func (ep *episode) flushReason() string {
	if !ep.deleteAt.IsZero() {
		return CloseDeleted
	}
	return CloseFlush
}
