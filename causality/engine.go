package causality

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// Config tunes the engine.
type Config struct {
	// ClusterName goes into every ID, so two clusters never share a trace.
	ClusterName string
	// EpisodeIdle closes an episode after this long without occurrences
	// (default 2m); EpisodeMax closes it at this age (default 1h).
	EpisodeIdle time.Duration
	EpisodeMax  time.Duration
	// MaxOpenEpisodes bounds memory: past it, the least recently active
	// episode is closed early (default 10000).
	MaxOpenEpisodes int
	// MaxObjectsPerEpisode bounds one episode (default 5000): further objects
	// hang under their owner without their own span bookkeeping... they are
	// attached to the root.
	MaxObjectsPerEpisode int
	// BridgeService is the service.name of object and root spans.
	BridgeService string
	// MaxServices bounds the distinct reporting components used as
	// service.name (default 64); others become "other".
	MaxServices int
	// DeleteGrace: a deleted root's episode closes this long after the
	// deletion was seen (default 2s; negative: at once). The Events watch is
	// a connection of its own, read in bursts: an Event written just before
	// the deletion may be read just after it, and still belongs to the
	// episode.
	DeleteGrace time.Duration
}

// Validate reports whether the configuration is usable.
func (c Config) Validate() error {
	var errs []error
	if c.EpisodeIdle < 0 {
		errs = append(errs, fmt.Errorf("episode idle must not be negative, got %s", c.EpisodeIdle))
	}
	if c.EpisodeMax < 0 {
		errs = append(errs, fmt.Errorf("episode max must not be negative, got %s", c.EpisodeMax))
	}
	if c.EpisodeIdle > 0 && c.EpisodeMax > 0 && c.EpisodeMax < c.EpisodeIdle {
		errs = append(errs, fmt.Errorf("episode max (%s) must not be shorter than episode idle (%s)", c.EpisodeMax, c.EpisodeIdle))
	}
	if c.MaxOpenEpisodes < 0 || c.MaxObjectsPerEpisode < 0 || c.MaxServices < 0 {
		errs = append(errs, errors.New("limits must not be negative"))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.EpisodeIdle == 0 {
		c.EpisodeIdle = 2 * time.Minute
	}
	if c.EpisodeMax == 0 {
		c.EpisodeMax = time.Hour
	}
	if c.MaxOpenEpisodes == 0 {
		c.MaxOpenEpisodes = 10000
	}
	if c.MaxObjectsPerEpisode == 0 {
		c.MaxObjectsPerEpisode = 5000
	}
	if c.BridgeService == "" {
		c.BridgeService = "kube-otel-bridge"
	}
	if c.MaxServices == 0 {
		c.MaxServices = 64
	}
	if c.DeleteGrace == 0 {
		c.DeleteGrace = DefaultDeleteGrace
	}
	return c
}

// Input is one occurrence with what the engine needs to know about its root.
type Input struct {
	Occ *convert.Occurrence
	// Now is when the bridge saw the occurrence (the virtual clock).
	Now time.Time
	// RootGeneration is the root object's metadata.generation (0 unknown).
	RootGeneration int64
	// RootTraceparent is the root's W3C traceparent annotation, if any.
	RootTraceparent string
}

// Stats count what the engine holds and did; the daemon turns them into metrics.
type Stats struct {
	OpenEpisodes     int
	EpisodesOpened   uint64
	EpisodesClosed   map[string]uint64 // by close reason
	EvictedEpisodes  uint64            // closed early by MaxOpenEpisodes
	ObjectsOverLimit uint64
	PendingCauses    int
}

// Close reasons.
const (
	CloseIdle          = "idle"
	CloseMax           = "max_duration"
	CloseDeleted       = "root_deleted"
	CloseNewGeneration = "new_generation"
	CloseNewRun        = "new_run"
	CloseLimit         = "open_episode_limit"
	CloseFlush         = "shutdown"
)

// Engine assembles occurrences into episodes and spans. It is not safe for
// concurrent use: one goroutine feeds it, as the watch worker does.
type Engine struct {
	cfg Config
	// snapshotCap sizes SnapshotOpen's buffer: the last snapshot's size
	// and a quarter.
	snapshotCap int
	open        map[string]*episode // by root key
	// named indexes the open episodes of nodes and scale targets by root
	// kind and name, for the links of node and HPA events (a scan of every
	// open episode per event before); kept in step with open by addOpen
	// and removeOpen.
	named map[rootName][]*episode
	// nextDue, when dueKnown, is no later than the earliest time an open
	// episode becomes due (idle or too old): an Advance before it has
	// nothing to close and scans nothing (replay advances per occurrence).
	// Activity can move a deadline earlier (the clock may step back), so
	// every change of one goes through noteDeadline.
	nextDue  time.Time
	dueKnown bool
	last     map[string]lastEpisode
	// forgot is the latest close time (Unix seconds) of a mark a restored
	// checkpoint left out for its size (0: none); see openEpisode.
	forgot   int64
	services map[string]struct{}
	stats    Stats
	// podNodes remembers the node of pods seen scheduled, for node links,
	// until the pod is deleted (bounded by maxPodNodes);
	// entries leave with their pod's episode.
	podNodes map[string]string
	// deletedPods are the objects deleted in the last deletedMemory (by
	// UID, in deletedQ in the order seen from deletedHead on): an Event
	// about one read after its deletion (a kubelet's Killing, in the next
	// read burst) must not map it to its node again, or every pod a
	// rollout replaces would leave an entry in podNodes for good.
	deletedPods map[string]struct{}
	deletedQ    []deletedObject
	deletedHead int
	seq         uint64
	// names caches event span names (kind.reason), bounded by
	// maxSpanNames: building them was an allocation per occurrence.
	names map[spanNameKey]string
	// spanSlab is carved into the one-span Spans of Results: one
	// allocation for many occurrences. Each piece handed out is capped and
	// never written again by the engine, so sinks own it (spans are exported
	// asynchronously); a slab is freed when its last span is.
	spanSlab []Span
	scratch  finishScratch
}

// deletedObject is one deletion in Engine.deletedQ.
type deletedObject struct {
	uid string
	at  time.Time
}

// deletedMemory is how long the engine remembers a deletion: far longer than
// Events about the object take to be read after it (the read delay, the
// owner wait, a busy machine).
const deletedMemory = 5 * time.Minute

// spanSlabLen: enough occurrences per allocation to make it rare, small
// enough that a few spans still queued for export pin little memory.
const spanSlabLen = 64 // spans, 14 KiB

func (e *Engine) nextSeq() uint64 {
	e.seq++
	return e.seq
}

// lastEpisode is what a new episode of the same root needs of the previous one.
type lastEpisode struct {
	traceID trace.TraceID
	rootID  trace.SpanID
	gen     int64
	seq     int
	closed  time.Time // virtual clock
}

// New returns an engine.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("causality: %w", err)
	}
	return &Engine{
		cfg:         cfg.withDefaults(),
		open:        map[string]*episode{},
		named:       map[rootName][]*episode{},
		last:        map[string]lastEpisode{},
		services:    map[string]struct{}{},
		podNodes:    map[string]string{},
		deletedPods: map[string]struct{}{},
		names:       map[spanNameKey]string{},
		stats:       Stats{EpisodesClosed: map[string]uint64{}},
	}, nil
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	s := e.stats
	s.OpenEpisodes = len(e.open)
	s.EpisodesClosed = make(map[string]uint64, len(e.stats.EpisodesClosed))
	for k, v := range e.stats.EpisodesClosed {
		s.EpisodesClosed[k] = v
	}
	return s
}

// Result is what Observe produced: the IDs of the occurrence's event span
// (for its log record) and the spans ready for export now.
type Result struct {
	TraceID trace.TraceID
	SpanID  trace.SpanID
	Spans   []Span
}

// rootRef returns the root of an occurrence's chain, or a synthetic root for
// an event about nothing known.
func rootRef(o *convert.Occurrence) (convert.Ref, string) {
	if n := len(o.Chain); n > 0 && !o.Chain[n-1].IsZero() {
		r := o.Chain[n-1]
		return r, objectKey(&r)
	}
	// No regarding object: the Event itself is the root.
	r := convert.Ref{Kind: "Event", Namespace: o.Namespace, Name: o.EventName, UID: o.EventUID}
	return r, objectKey(&r)
}

// objectKey identifies an object: its UID, else kind/namespace/name.
func objectKey(r *convert.Ref) string {
	if r.UID != "" {
		return r.UID
	}
	return r.Kind + "/" + r.Namespace + "/" + r.Name
}

// Observe adds one occurrence. The event span of a leaf occurrence is
// returned for immediate export; spans of episodes the occurrence closed
// (a new generation) come along too.
func (e *Engine) Observe(in Input) Result {
	o := in.Occ
	var out []Span
	root, rk := rootRef(o)
	ep := e.open[rk]
	reason := ""
	switch {
	case ep == nil:
	case in.RootGeneration > ep.gen && ep.gen > 0 && root.Kind != "CronJob":
		// A CronJob's episodes are its runs (below), not its generations:
		// an edit (suspend, a new schedule) starts nothing by itself, and
		// the run's own late events (SawCompletedJob after a suspend that
		// the object cache saw first) must stay in the run's trace.
		reason = CloseNewGeneration
	case root.Kind == "CronJob" && o.Reason == "SuccessfulCreate" && o.Regarding.UID == root.UID && ep.hasOtherRun(o):
		// Each scheduled run of a CronJob is its own episode. The run's own
		// Job and pod events may come before the CronJob's "Created job":
		// only another run's Job in the episode makes this a new run.
		reason = CloseNewRun
	}
	if reason != "" {
		// Room for the closed episode's spans and the occurrence's own.
		out = e.close(ep, reason, make([]Span, 0, ep.spanCount()+1))
		ep = nil
	}
	if ep != nil && ep.gen == 0 {
		// Opened before the root was cached: its generation, once known,
		// is the one a later rollout is compared with.
		ep.gen = in.RootGeneration
	}
	if ep == nil {
		if len(e.open) >= e.cfg.MaxOpenEpisodes {
			out = e.evictOldest(out)
		}
		ep = e.openEpisode(root, rk, in)
	}
	ep.lastActive = in.Now
	e.noteDeadline(ep)
	ep.events++
	sp, deferred := ep.add(e, in)
	switch {
	case deferred:
	case out == nil:
		out = e.oneSpan(sp)
	default:
		out = append(out, sp)
	}
	return Result{TraceID: ep.traceID, SpanID: sp.SpanID, Spans: out}
}

func (e *Engine) openEpisode(root convert.Ref, rk string, in Input) *episode {
	prev, hasPrev := e.last[rk]
	gen := in.RootGeneration
	if hasPrev && gen < prev.gen {
		// Generations never go back: an unknown (0, the root not cached)
		// or stale one is the last known, so episode keys never repeat.
		gen = prev.gen
	}
	seq := 0
	if hasPrev && prev.gen == gen {
		seq = prev.seq + 1
	}
	// The key is gen.seq, built in a stack buffer (one allocation, not
	// fmt's several).
	var buf [64]byte
	key := strconv.AppendInt(buf[:0], gen, 10)
	key = append(key, '.')
	key = strconv.AppendInt(key, int64(seq), 10)
	if !hasPrev {
		// A root without a mark (never seen, or forgotten after a day
		// without episodes) starts its sequence again: the day it opens on
		// (.d<day>) keeps its trace IDs from repeating earlier ones.
		key = append(key, ".d"...)
		key = strconv.AppendInt(key, in.Now.Unix()/86400, 10)
		if e.forgot != 0 {
			// The restored checkpoint left out marks of roots that closed
			// until then, maybe this one's, maybe today: its earlier
			// episodes all opened before that time, and any with such a
			// suffix had an earlier one, so .f<time> keeps the key new.
			key = append(key, ".f"...)
			key = strconv.AppendInt(key, e.forgot, 10)
		}
	}
	ep := newEpisode(e.cfg.ClusterName, root, rk, string(key), in.Now)
	ep.gen, ep.seq = gen, seq
	if tp, ok := parseTraceparent(in.RootTraceparent); ok {
		ep.traceID, ep.remoteParent = tp.TraceID(), tp.SpanID()
	}
	if hasPrev {
		ep.links = append(ep.links, Link{TraceID: prev.traceID, SpanID: prev.rootID})
	}
	e.addOpen(ep)
	e.stats.EpisodesOpened++
	return ep
}

// evictOldest closes the least recently active episode to stay in bounds.
func (e *Engine) evictOldest(out []Span) []Span {
	var oldest *episode
	for _, ep := range e.open {
		if oldest == nil || ep.lastActive.Before(oldest.lastActive) ||
			(ep.lastActive.Equal(oldest.lastActive) && ep.rootKey < oldest.rootKey) {
			oldest = ep
		}
	}
	if oldest == nil {
		return out
	}
	e.stats.EvictedEpisodes++
	return e.close(oldest, CloseLimit, out)
}

// Advance closes the episodes that are idle or too old at now.
func (e *Engine) Advance(now time.Time) []Span {
	e.forgetDeletions(now)
	if e.dueKnown && now.Before(e.nextDue) {
		return nil
	}
	var due []*episode
	e.dueKnown = false
	for _, ep := range e.open {
		if e.closeReason(ep, now) != "" {
			due = append(due, ep)
		} else {
			e.noteDeadline(ep)
		}
	}
	if len(due) == 0 {
		return nil
	}
	sortEpisodes(due)
	out := make([]Span, 0, spanCount(due))
	for _, ep := range due {
		out = e.close(ep, e.closeReason(ep, now), out)
	}
	return out
}

// deadline is when ep becomes due: idle, at its maximum age, or its root's
// deletion grace over. Before it, closeReason is "".
func (e *Engine) deadline(ep *episode) time.Time {
	d := ep.lastActive.Add(e.cfg.EpisodeIdle)
	if old := ep.opened.Add(e.cfg.EpisodeMax); old.Before(d) {
		d = old
	}
	if !ep.deleteAt.IsZero() && ep.deleteAt.Before(d) {
		d = ep.deleteAt
	}
	return d
}

// noteDeadline keeps nextDue no later than ep's deadline.
func (e *Engine) noteDeadline(ep *episode) {
	if d := e.deadline(ep); !e.dueKnown || d.Before(e.nextDue) {
		e.nextDue, e.dueKnown = d, true
	}
}

// DefaultDeleteGrace is Config.DeleteGrace's default: the Events watch's
// read delay (100ms) and a busy machine's scheduling, with room to spare.
const DefaultDeleteGrace = 2 * time.Second

// RootDeleted notes that a root object was deleted (seen at at). Its
// episode closes DeleteGrace later, at the Advance after that (or at once
// with a negative DeleteGrace, when the spans are returned): occurrences read
// meanwhile still join it. A later occurrence starts a new episode, linked.
func (e *Engine) RootDeleted(uid string, at time.Time) []Span {
	// A deleted pod needs its node no more (the mapping outlives episodes:
	// a long-quiet pod still links to its node's trouble).
	delete(e.podNodes, uid)
	if _, ok := e.deletedPods[uid]; !ok {
		e.deletedPods[uid] = struct{}{}
		e.deletedQ = append(e.deletedQ, deletedObject{uid, at})
	}
	ep, ok := e.open[uid]
	if !ok {
		return nil
	}
	if e.cfg.DeleteGrace < 0 {
		return e.close(ep, CloseDeleted, nil)
	}
	if ep.deleteAt.IsZero() {
		ep.deleteAt = at.Add(e.cfg.DeleteGrace)
		e.noteDeadline(ep)
	}
	return nil
}

// closeReason is why ep closes at now, or "" while it stays open.
func (e *Engine) closeReason(ep *episode, now time.Time) string {
	switch {
	case !ep.deleteAt.IsZero() && !now.Before(ep.deleteAt):
		return CloseDeleted
	case now.Sub(ep.opened) >= e.cfg.EpisodeMax:
		return CloseMax
	case now.Sub(ep.lastActive) >= e.cfg.EpisodeIdle:
		return CloseIdle
	}
	return ""
}

// Flush closes every open episode (shutdown, end of a replay).
func (e *Engine) Flush() []Span {
	all := make([]*episode, 0, len(e.open))
	for _, ep := range e.open {
		all = append(all, ep)
	}
	if len(all) == 0 {
		return nil
	}
	sortEpisodes(all)
	out := make([]Span, 0, spanCount(all))
	for _, ep := range all {
		out = e.close(ep, ep.flushReason(), out)
	}
	return out
}

// spanCount is at most how many spans closing eps returns: sized once, the
// slice of a Flush is not copied over and over as it grows.
func spanCount(eps []*episode) int {
	n := 0
	for _, ep := range eps {
		n += ep.spanCount()
	}
	return n
}

func sortEpisodes(eps []*episode) {
	sort.Slice(eps, func(i, j int) bool {
		if !eps[i].opened.Equal(eps[j].opened) {
			return eps[i].opened.Before(eps[j].opened)
		}
		return eps[i].rootKey < eps[j].rootKey
	})
}

func (e *Engine) close(ep *episode, reason string, out []Span) []Span {
	e.removeOpen(ep)
	e.last[ep.rootKey] = lastEpisode{traceID: ep.traceID, rootID: ep.rootID, gen: ep.gen, seq: ep.seq, closed: ep.lastActive}
	e.stats.EpisodesClosed[reason]++
	return ep.finish(e, reason, out)
}

// service bounds the service.name values: the first MaxServices distinct
// reporting components are kept, the rest become "other".
func (e *Engine) service(name string) string {
	if name == "" {
		return "unknown"
	}
	if _, ok := e.services[name]; ok {
		return name
	}
	if len(e.services) >= e.cfg.MaxServices {
		return "other"
	}
	e.services[strings.Clone(name)] = struct{}{}
	return name
}

// rootName is the kind and name of an episode's root (namespace aside: node
// links match any).
type rootName struct{ kind, name string }

// isLinkTarget reports whether episodes of kind are looked up by name.
func isLinkTarget(kind string) bool {
	return kind == "Node" || slices.Contains(scaleTargets, kind)
}

// addOpen makes ep the open episode of its root.
func (e *Engine) addOpen(ep *episode) {
	if old, ok := e.open[ep.rootKey]; ok {
		e.removeOpen(old)
	}
	e.open[ep.rootKey] = ep
	e.noteDeadline(ep)
	if isLinkTarget(ep.root.Kind) {
		n := rootName{ep.root.Kind, ep.root.Name}
		e.named[n] = append(e.named[n], ep)
	}
}

// removeOpen takes ep out of the open episodes.
func (e *Engine) removeOpen(ep *episode) {
	delete(e.open, ep.rootKey)
	if !isLinkTarget(ep.root.Kind) {
		return
	}
	n := rootName{ep.root.Kind, ep.root.Name}
	eps := e.named[n]
	if i := slices.Index(eps, ep); i >= 0 {
		eps = slices.Delete(eps, i, i+1)
	}
	if len(eps) == 0 {
		delete(e.named, n)
		return
	}
	e.named[n] = eps
}

// nodeEpisode returns the root span of the open (or last) episode of a node.
func (e *Engine) nodeEpisode(node string) (trace.TraceID, trace.SpanID, bool) {
	var found *episode
	for _, ep := range e.named[rootName{"Node", node}] {
		if newer(ep, found) {
			found = ep
		}
	}
	if found == nil {
		return trace.TraceID{}, trace.SpanID{}, false
	}
	return found.traceID, found.rootID, true
}

// targetEpisode finds the open episode of a scale target by kind and name.
func (e *Engine) targetEpisode(ns, name string) (trace.TraceID, trace.SpanID, bool) {
	for _, k := range scaleTargets {
		var found *episode
		for _, ep := range e.named[rootName{k, name}] {
			if ep.root.Namespace == ns && newer(ep, found) {
				found = ep
			}
		}
		if found != nil {
			return found.traceID, found.rootID, true
		}
	}
	return trace.TraceID{}, trace.SpanID{}, false
}

// newer reports whether a was opened after b (or b is nil): when two open
// episodes match a name (an object recreated under a new UID), links go to
// the newer one, the same on every run whatever the map order.
func newer(a, b *episode) bool {
	if b == nil {
		return true
	}
	if !a.opened.Equal(b.opened) {
		return a.opened.After(b.opened)
	}
	return a.rootKey > b.rootKey
}

// maxPodNodes bounds podNodes; past it the mapping starts afresh (a pod seen
// again on its node is remembered again).
const maxPodNodes = 200000

func (e *Engine) rememberPodNode(pod, node string) {
	if _, gone := e.deletedPods[pod]; gone {
		return
	}
	if _, ok := e.podNodes[pod]; !ok && len(e.podNodes) >= maxPodNodes {
		clear(e.podNodes)
	}
	e.podNodes[pod] = node
}

// forgetDeletions drops the deletions older than deletedMemory.
func (e *Engine) forgetDeletions(now time.Time) {
	for e.deletedHead < len(e.deletedQ) && now.Sub(e.deletedQ[e.deletedHead].at) > deletedMemory {
		delete(e.deletedPods, e.deletedQ[e.deletedHead].uid)
		e.deletedQ[e.deletedHead] = deletedObject{}
		e.deletedHead++
	}
	if e.deletedHead == len(e.deletedQ) {
		e.deletedQ, e.deletedHead = e.deletedQ[:0], 0
	} else if e.deletedHead > 1024 && e.deletedHead > len(e.deletedQ)/2 {
		e.deletedQ = append(e.deletedQ[:0], e.deletedQ[e.deletedHead:]...)
		e.deletedHead = 0
	}
}

// oneSpan returns a slice holding just sp, carved from spanSlab. Its
// capacity is one: a caller's append copies instead of overwriting the
// next Result's span.
func (e *Engine) oneSpan(sp Span) []Span {
	if len(e.spanSlab) == cap(e.spanSlab) {
		e.spanSlab = make([]Span, 0, spanSlabLen)
	}
	n := len(e.spanSlab)
	e.spanSlab = append(e.spanSlab, sp)
	return e.spanSlab[n : n+1 : n+1]
}

// spanNameKey is what an event span's name is made of.
type spanNameKey struct{ kind, reason string }

// maxSpanNames bounds the name cache: reasons are free text any controller
// may set. Past it the cache starts afresh.
const maxSpanNames = 4096

// spanName is kind.reason ("Event" for no kind), cached.
func (e *Engine) spanName(kind, reason string) string {
	if kind == "" {
		kind = "Event"
	}
	if name, ok := e.names[spanNameKey{kind, reason}]; ok {
		return name
	}
	if len(e.names) >= maxSpanNames {
		clear(e.names)
	}
	name := kind + "." + reason
	// The key's strings are cut from the name: no second allocation, and
	// the cache never pins the buffers the occurrence's strings point into.
	e.names[spanNameKey{name[:len(kind)], name[len(kind)+1:]}] = name
	return name
}
