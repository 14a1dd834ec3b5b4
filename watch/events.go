package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	watchapi "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// Handler receives each occurrence once, in the order the source saw them.
// It may block (backpressure); an error is logged and the occurrence counted
// as failed by the caller's metrics, never silently dropped.
// ev is the Event object as last seen (read-only), for recorders, valid
// during the call only: the source reuses it afterwards (ReleaseEvent). The
// occurrence (with its Chain) is the handler's until it calls the done
// callback of ctx (DoneFromContext), or for good if it never does: once
// done ran, the source may reuse the occurrence's memory for another one,
// so nothing may read it after that (copy what must outlive it).
type Handler func(ctx context.Context, ev *eventsv1.Event, o *convert.Occurrence) error

// SourceOptions configure an EventSource.
type SourceOptions struct {
	// Namespaces to watch (nil: all); ExcludeNamespaces are left out.
	Namespaces        []string
	ExcludeNamespaces []string
	// API is "events.k8s.io/v1", "v1" (core), or "" to prefer events.k8s.io/v1
	// and fall back to core/v1 where the group is not served.
	API string
	// InitialLookback: Events already in the API server when the source
	// starts are emitted only if their latest occurrence is at most this old;
	// older ones are the baseline (the checkpoint replaces this later).
	InitialLookback time.Duration
	// OwnerWait is how long an occurrence may wait for the object it is about
	// to reach the object cache (informers race each other), default 2s.
	OwnerWait time.Duration
	// QueueSize bounds the events handed from the informer to the worker.
	QueueSize int
	// Accept, if set, keeps only the Events it returns true for (sharding).
	Accept func(ev *eventsv1.Event) bool
	// Tracker, if set, follows each update until its occurrences are done
	// (the handler calls DoneFromContext(ctx)() once all outputs acked).
	Tracker *Tracker
	// Resume is the checkpoint of a previous run: Events listed at start
	// emit only the counts it does not cover (instead of InitialLookback).
	Resume  *Checkpoint
	Convert convert.Options
	Logger  *slog.Logger
	Now     func() time.Time
}

// Validate reports whether the options are usable.
func (o SourceOptions) Validate() error {
	switch o.API {
	case "", "events.k8s.io/v1", "v1":
	default:
		return fmt.Errorf("api must be events.k8s.io/v1 or v1, got %q", o.API)
	}
	if o.InitialLookback < 0 || o.OwnerWait < 0 || o.QueueSize < 0 {
		return errors.New("initial lookback, owner wait and queue size must not be negative")
	}
	for _, ns := range o.ExcludeNamespaces {
		for _, inc := range o.Namespaces {
			if ns == inc {
				return fmt.Errorf("namespace %q is both included and excluded", ns)
			}
		}
	}
	return o.Convert.Validate()
}

// EventClient lists and watches Events through either API (api is
// "events.k8s.io/v1" or "v1"); kube.Client implements it.
type EventClient interface {
	// ServesGroupVersion returns nil when the API server serves
	// groupVersion, else why not.
	ServesGroupVersion(ctx context.Context, groupVersion string) error
	ListEvents(ctx context.Context, api, namespace string, o metav1.ListOptions) (runtime.Object, error)
	WatchEvents(ctx context.Context, api, namespace string, o metav1.ListOptions) (watchapi.Interface, error)
}

// EventSource watches Events and hands each new occurrence, with its owner
// chain resolved through the object cache, to a Handler.
type EventSource struct {
	stats   sourceCounters
	include map[string]bool // namespaces picked client-side (several --namespaces)

	opts    SourceOptions
	client  EventClient
	objects *ObjectCache
	dedup   *Dedup
	handle  Handler
	start   time.Time

	queue  chan observed
	stores []*eventStore
	api    string
	// spare holds the deliveries whose done ran (see delivery).
	spare sync.Pool
}

type observed struct {
	ev      *eventsv1.Event
	at      time.Time
	initial bool
	// created: a watch's ADDED, the Event as it was created. Its count is
	// its first occurrence: there were no earlier ones of this Event to
	// miss. A count above 1 at creation is carried over from an Event of
	// the same series the API server deleted (its TTL; client-go's event
	// recorder then creates it again with the count it had, plus one), and
	// those counts went out with that Event. Backfilling them (as for an
	// Event first seen in a list, whose earlier counts may have passed
	// unseen) repeated them all, into the trace and the alert sinks, each
	// time such an Event was re-created.
	created bool
	// deleted: the Event was deleted; its dedup state is dropped in queue
	// order, after any update of it still queued.
	deleted bool
	// listed: from a list (the initial one, or a relist after the watch
	// broke), not a watch.
	listed bool
	// synced marks the end of the initial list in the queue.
	synced bool
}

// NewEventSource returns a source; Run starts it.
func NewEventSource(client EventClient, objects *ObjectCache, handle Handler, opts SourceOptions) (*EventSource, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("event source: %w", err)
	}
	if opts.OwnerWait == 0 {
		opts.OwnerWait = 2 * time.Second
	}
	if opts.QueueSize == 0 {
		opts.QueueSize = 1024
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &EventSource{
		opts: opts, client: client, objects: objects, handle: handle, dedup: NewDedup(),
		queue: make(chan observed, opts.QueueSize),
	}, nil
}

// API reports which Events API the source watches (after Start).
func (s *EventSource) API() string { return s.api }

// Start picks the API, creates the informers and starts them.
func (s *EventSource) Start(ctx context.Context) error {
	s.start = s.opts.Now()
	s.api = s.opts.API
	if s.api == "" {
		s.api = "events.k8s.io/v1"
		if err := s.client.ServesGroupVersion(ctx, "events.k8s.io/v1"); err != nil {
			s.opts.Logger.Info("events.k8s.io/v1 not served, watching core/v1 Events", "err", err)
			s.api = "v1"
		}
	}
	// One informer, so that the watch delivers updates in resourceVersion
	// order (the checkpoint's watermark relies on it): scoped to the
	// namespace when there is one, else all namespaces with the included
	// ones picked here.
	namespaces := []string{metav1.NamespaceAll}
	if len(s.opts.Namespaces) == 1 {
		namespaces = s.opts.Namespaces
	} else if len(s.opts.Namespaces) > 1 {
		s.include = map[string]bool{}
		for _, ns := range s.opts.Namespaces {
			s.include[ns] = true
		}
	}
	// Excluded namespaces are filtered by the API server, not here.
	var exclude []fields.Selector
	for _, ns := range s.opts.ExcludeNamespaces {
		exclude = append(exclude, fields.OneTermNotEqualSelector("metadata.namespace", ns))
	}
	tweak := func(o *metav1.ListOptions) {
		if len(exclude) > 0 {
			o.FieldSelector = fields.AndSelectors(exclude...).String()
		}
	}
	for _, ns := range namespaces {
		store := newEventStore(ctx, s)
		r := cache.NewReflectorWithOptions(s.listWatch(store, ns, tweak), s.expectedType(), store, cache.ReflectorOptions{
			Name: "events", TypeDescription: "Event (" + s.api + ")",
		})
		s.stores = append(s.stores, store)
		if s.opts.Tracker != nil {
			s.opts.Tracker.SetLimit(func() uint64 { return ParseRV(r.LastSyncResourceVersion()) })
		}
		go r.RunWithContext(ctx)
	}
	return nil
}

// expectedType is the type the reflector accepts. A core/v1 watch yields
// *eventsv1.Event when the client decodes Events with an EventDecoder
// (kube.Client does) and *corev1.Event otherwise (e.g. JSON), so it checks
// nothing there; toEventsV1 takes both.
func (s *EventSource) expectedType() runtime.Object {
	if s.api == "v1" {
		return nil
	}
	return &eventsv1.Event{}
}

// listWatch lists and watches Events, counting its own lists and watches:
// every one after the first is a restart (410 Gone, API server restart,
// network), whichever path inside client-go retried it.
func (s *EventSource) listWatch(store *eventStore, ns string, tweak func(*metav1.ListOptions)) cache.ListerWatcher {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, _ metav1.ListOptions) (runtime.Object, error) {
			if s.stats.lists.Add(1) > 1 {
				s.stats.watchErrors.Add(1)
			}
			return store.streamList(ctx, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				tweak(&o)
				return s.client.ListEvents(ctx, s.api, ns, o)
			})
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watchapi.Interface, error) {
			if s.stats.watches.Add(1) > 1 {
				s.stats.watchErrors.Add(1)
			}
			tweak(&o)
			return s.client.WatchEvents(ctx, s.api, ns, o)
		},
	}
	// LIST (page by page, see streamList) and watch, never watch-list: its
	// temporary store would keep every Event whole until the stream ends.
	return cache.ToListWatcherWithWatchListSemantics(lw, listOnly{})
}

// WaitForSync waits until the Event informers have listed, then queues a
// marker: when the worker reaches it, the initial list is processed.
func (s *EventSource) WaitForSync(ctx context.Context) bool {
	syncs := make([]cache.InformerSynced, 0, len(s.stores))
	for _, st := range s.stores {
		syncs = append(syncs, st.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		return false
	}
	select {
	case s.queue <- observed{synced: true}:
	case <-ctx.Done():
		return false
	}
	return true
}

// slimEvent drops managed fields before an Event waits in the queue.
func slimEvent(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

func toEventsV1(obj any) *eventsv1.Event {
	switch e := obj.(type) {
	case *eventsv1.Event:
		return e
	case *corev1.Event:
		return FromCoreEvent(e)
	}
	return nil
}

// enqueue hands the Event to the worker with how it was observed (initial,
// created; the rest of ob is filled in here).
func (s *EventSource) enqueue(ctx context.Context, obj any, ob observed) {
	ev := toEventsV1(obj)
	if ev == nil || (s.opts.Accept != nil && !s.opts.Accept(ev)) || (s.include != nil && !s.include[ev.Namespace]) {
		return
	}
	s.stats.received.Add(1)
	ob.ev, ob.at = ev, s.opts.Now()
	select {
	case s.queue <- ob:
	case <-ctx.Done():
	}
}

func (s *EventSource) enqueueDelete(ctx context.Context, obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	ev := toEventsV1(obj)
	if ev == nil {
		return
	}
	select {
	case s.queue <- observed{ev: ev, at: s.opts.Now(), deleted: true}:
	case <-ctx.Done():
	}
}

type pending struct {
	d        *delivery
	ev       *eventsv1.Event
	deadline time.Time
}

// delivery is one occurrence as the worker hands it to the handler, with
// what it needs on the way in the same allocation: room for the usual owner
// chain (Pod, ReplicaSet, Deployment), the context carrying its done
// callback and, in an update's first occurrence, the update's tracker
// state.
//
// The delivery of an update with one occurrence (nearly all of them) is
// recycled once its done callback ran (see Handler): it was 40 % of the
// bytes the hot path allocated, and memory the worker touched moments ago
// is cheaper to write than a fresh allocation. An update with several
// occurrences (a count that rose by more than one) gets a slice of them
// that the garbage collector frees, as does a delivery whose done never
// runs (an output that failed).
type delivery struct {
	occ    convert.Occurrence
	chain  [3]convert.Ref
	ctx    ackContext
	update trackedUpdate
	// Recycled deliveries only: home is the delivery as an array of one
	// (the slice occurrences returns), src the source whose spare pool it
	// goes back to, finish its done callback (bound once) and tracked
	// whether update is in use.
	home    *[1]delivery
	src     *EventSource
	finish  func()
	tracked bool
}

// single returns a delivery for an update with one occurrence, recycled
// when one is spare.
func (s *EventSource) single() *[1]delivery {
	if h, ok := s.spare.Get().(*[1]delivery); ok {
		return h
	}
	h := new([1]delivery)
	d := &h[0]
	d.home, d.src = h, s
	d.finish = d.done
	return h
}

// done is a recycled delivery's done callback: the update is done (the
// tracker reads d.update), then the delivery is spare. Nothing may touch d
// after the Put: the worker may be filling it already.
func (d *delivery) done() {
	if d.tracked {
		d.update.done()
	}
	d.src.stats.delivery.observe(d.src.opts.Now().Sub(d.occ.Observed))
	d.ctx.Context = nil
	d.src.spare.Put(d.home)
}

// multiDone is the done callback of one occurrence of an update with
// several: it times the delivery and counts the occurrence done in the
// update's tracker state (u, nil when not tracked).
func (s *EventSource) multiDone(observed time.Time, u *trackedUpdate) func() {
	return func() {
		s.stats.delivery.observe(s.opts.Now().Sub(observed))
		if u != nil {
			u.done()
		}
	}
}

// Run processes events until ctx ends: dedup, convert, resolve owners, hand
// to the handler. It returns when ctx is done.
func (s *EventSource) Run(ctx context.Context) {
	// The retry ticker runs only while occurrences are held: at idle it
	// was a third of the process's wake-ups.
	tick := time.NewTicker(retryEvery)
	tick.Stop()
	defer tick.Stop()
	ticking := false
	var held []pending
	for {
		select {
		case <-ctx.Done():
			return
		case ob := <-s.queue:
			held = s.process(ctx, ob, held)
		case <-tick.C:
			held = s.retry(ctx, held, false)
		}
		s.stats.held.Store(int64(len(held)))
		switch {
		case len(held) > 0 && !ticking:
			tick.Reset(retryEvery)
			ticking = true
		case len(held) == 0 && ticking:
			tick.Stop()
			ticking = false
		}
	}
}

// retryEvery is how often held occurrences look for their owner again.
const retryEvery = 100 * time.Millisecond

func (s *EventSource) process(ctx context.Context, ob observed, held []pending) []pending {
	if ob.synced {
		if s.opts.Tracker != nil {
			s.opts.Tracker.SetReady()
		}
		return held
	}
	uid := string(ob.ev.UID)
	if ob.deleted {
		// Forgetting keeps no key: the UID may stay the decoder's.
		s.dedup.Forget(uid)
		if s.opts.Tracker != nil {
			s.opts.Tracker.Forget(uid)
		}
		ReleaseEvent(ob.ev)
		return held
	}
	// The maps below (dedup, the tracker) keep no UID string (uidTable):
	// the decoded Event's strings, which share one allocation with its note
	// and names (EventDecoder), go with its occurrences.
	// Held occurrences whose object arrived meanwhile go first, so that a
	// later occurrence of the same Event cannot overtake them.
	if len(held) > 0 {
		held = s.retry(ctx, held, false)
	}
	rv, count := ParseRV(ob.ev.ResourceVersion), convert.EventCount(ob.ev)
	var name uint32
	if count > 1 {
		// A repeater: the checkpoint keeps its name (see Checkpoint.Names).
		name = nameKey(ob.ev.Namespace, ob.ev.Name)
	}
	switch {
	case ob.initial && s.opts.Resume != nil:
		s.dedup.Baseline(uid, s.opts.Resume.DoneCount(uid, name, rv, ob.ev.CreationTimestamp.Time, convert.FirstTime(ob.ev), count))
	case ob.initial:
		if t := convert.OccurrenceTime(ob.ev); t.Before(s.start.Add(-s.opts.InitialLookback)) {
			s.dedup.Baseline(uid, count)
		}
	case ob.created:
		s.dedup.Baseline(uid, count-1)
	case ob.listed && name != 0 && s.opts.Tracker != nil && s.dedup.Last(uid) == 0:
		// A relist: a repeater never emitted may be one the recorder
		// created again while the watch was broken, its earlier counts
		// done under its name (the Event it replaces is still in the
		// tracker, its deletion comes after the list), or its count 1
		// done long before (see SeriesSkew).
		s.dedup.Baseline(uid, s.opts.Tracker.DoneOfSeries(name, convert.FirstTime(ob.ev), count))
	}
	ds := s.occurrences(ob.ev, uid, count, ob.at)
	var update *trackedUpdate
	if t := s.opts.Tracker; t != nil {
		// The update's state lives in its first occurrence; with none, the
		// update is done at once.
		created := ob.ev.CreationTimestamp.Time
		if len(ds) == 0 {
			t.begin(nil, uid, name, rv, created, count, 0)
		} else if u := &ds[0].update; t.begin(u, uid, name, rv, created, count, len(ds)) {
			update = u
		}
	}
	if len(ds) == 1 && ds[0].home != nil {
		ds[0].tracked = update != nil
		ds[0].ctx.done = ds[0].finish
	} else {
		// Several occurrences (a count that rose by more than one): rare,
		// so each gets a done callback of its own, timed like a recycled
		// delivery's.
		for i := range ds {
			ds[i].ctx.done = s.multiDone(ds[i].occ.Observed, update)
		}
	}
	holds := false
	for i := range ds {
		d := &ds[i]
		chain, known := s.objects.Chain(d.occ.Chain)
		d.occ.Chain = chain
		if !known {
			s.stats.waited.Add(1)
			held = append(held, pending{ev: ob.ev, d: d, deadline: ob.at.Add(s.opts.OwnerWait)})
			holds = true
			continue
		}
		s.deliver(ctx, ob.ev, d)
	}
	if !holds {
		// Done with the Event itself (the occurrences keep its strings,
		// not it); a held one goes to the garbage collector instead.
		ReleaseEvent(ob.ev)
	}
	return held
}

// occurrences converts the counts of the Event not emitted before (see
// Occurrences), all in one allocation; nil when there are none or the Event
// cannot be converted (logged).
func (s *EventSource) occurrences(ev *eventsv1.Event, uid string, count int32, at time.Time) []delivery {
	from, to := newCounts(s.dedup, uid, count)
	if from > to {
		return nil
	}
	var ds []delivery
	if from == to {
		ds = s.single()[:]
	} else {
		ds = make([]delivery, to-from+1)
	}
	for i := range ds {
		d := &ds[i]
		if err := convert.FromEventInto(&d.occ, d.chain[:0], ev, from+int32(i), at, s.opts.Convert); err != nil {
			s.opts.Logger.Error("cannot convert event", "err", fmt.Errorf("event %s/%s: %w", ev.Namespace, ev.Name, err))
			if h := ds[0].home; h != nil {
				s.spare.Put(h)
			}
			return nil
		}
	}
	return ds
}

// retry resolves held occurrences again; past their deadline (or when force)
// they go out with the chain known so far.
func (s *EventSource) retry(ctx context.Context, held []pending, force bool) []pending {
	now := s.opts.Now()
	kept := held[:0]
	for _, p := range held {
		o := &p.d.occ
		chain, known := s.objects.Chain(o.Chain[:1])
		o.Chain = chain
		if known || force || now.After(p.deadline) {
			if !known {
				// Rare (past OwnerWait): which wait it was is looked up.
				if _, cached := s.objects.Get(o.Chain[0].UID); cached {
					s.stats.behind.Add(1)
					s.opts.Logger.Debug("object in cache older than the event's version, emitting with the chain as cached",
						"kind", o.Regarding.Kind, "name", o.Regarding.Name, "namespace", o.Regarding.Namespace, "resourceVersion", o.Regarding.ResourceVersion)
				} else {
					s.stats.unresolved.Add(1)
					s.opts.Logger.Debug("owner not in cache, emitting without owner chain",
						"kind", o.Regarding.Kind, "name", o.Regarding.Name, "namespace", o.Regarding.Namespace)
				}
			}
			s.deliver(ctx, p.ev, p.d)
			continue
		}
		kept = append(kept, p)
	}
	return kept
}

// deliver hands d to the handler, its context (with d's done callback)
// derived from ctx.
func (s *EventSource) deliver(ctx context.Context, ev *eventsv1.Event, d *delivery) {
	s.stats.occurrences.Add(1)
	d.ctx.Context = ctx
	o := &d.occ
	if err := s.handle(&d.ctx, ev, o); err != nil && ctx.Err() == nil {
		s.stats.failed.Add(1)
		s.opts.Logger.Error("occurrence not delivered", "event", o.EventName, "namespace", o.Namespace, "count", o.Count, "err", err)
	}
}

// FromCoreEvent converts a core/v1 Event into its events.k8s.io/v1 form, the
// same mapping the API server applies.
func FromCoreEvent(e *corev1.Event) *eventsv1.Event {
	out := &eventsv1.Event{
		ObjectMeta:               e.ObjectMeta,
		EventTime:                e.EventTime,
		ReportingController:      e.ReportingController,
		ReportingInstance:        e.ReportingInstance,
		Action:                   e.Action,
		Reason:                   e.Reason,
		Regarding:                e.InvolvedObject,
		Related:                  e.Related,
		Note:                     e.Message,
		Type:                     e.Type,
		DeprecatedSource:         e.Source,
		DeprecatedFirstTimestamp: e.FirstTimestamp,
		DeprecatedLastTimestamp:  e.LastTimestamp,
		DeprecatedCount:          e.Count,
	}
	if e.Series != nil {
		out.Series = &eventsv1.EventSeries{Count: e.Series.Count, LastObservedTime: e.Series.LastObservedTime}
	}
	return out
}

// SplitList splits a comma-separated flag value, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

type sourceCounters struct {
	received, occurrences, waited, unresolved, behind, watchErrors, failed atomic.Uint64
	lists, watches                                                         atomic.Uint64
	held                                                                   atomic.Int64
	delivery                                                               latency
}

// SourceStats are the EventSource's counters.
type SourceStats struct {
	// Received counts Event adds and updates seen by the watch.
	Received uint64
	// Occurrences counts occurrences handed to the handler.
	Occurrences uint64
	// Held is how many occurrences wait for their object right now.
	Held int
	// Waited counts occurrences that waited for their object, or for the
	// version of it their Event names (see Unresolved and Behind for those
	// that waited in vain).
	Waited uint64
	// Unresolved counts occurrences delivered without their owner chain.
	Unresolved uint64
	// Behind counts occurrences delivered after OwnerWait with their object
	// as cached, older than the resourceVersion the Event names: the
	// object's watch was that far behind the Events'.
	Behind uint64
	// WatchErrors counts the lists and watches of Events after the first
	// ones: re-watches and re-lists after a watch ended or failed (410 Gone,
	// API server restart, network, the server's watch timeout).
	WatchErrors uint64
	// Failed counts occurrences the handler returned an error for.
	Failed uint64
	// Lists counts the lists of Events (the first, and one after every
	// watch that broke for good, e.g. 410 Gone), each page by page.
	Lists uint64
	// Tracked is how many Events the bridge keeps state for: those live in
	// the API server (what memory grows with, see the README's sizing).
	Tracked int
	// Delivery is the time from the watch handing an Event update over to
	// every output acknowledging its occurrence.
	Delivery Histogram
}

// Stats returns the counters.
func (s *EventSource) Stats() SourceStats {
	return SourceStats{
		Received: s.stats.received.Load(), Occurrences: s.stats.occurrences.Load(), Held: int(s.stats.held.Load()), Waited: s.stats.waited.Load(),
		Unresolved: s.stats.unresolved.Load(), Behind: s.stats.behind.Load(), WatchErrors: s.stats.watchErrors.Load(), Failed: s.stats.failed.Load(),
		Lists: s.stats.lists.Load(), Tracked: s.dedup.Len(), Delivery: s.stats.delivery.snapshot(),
	}
}
