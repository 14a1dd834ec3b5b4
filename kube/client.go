// Package kube is the bridge's Kubernetes API client. It speaks only to the
// resources the bridge uses: Events (events.k8s.io/v1 and core/v1),
// ConfigMaps (the checkpoint), Namespaces (the cluster UID), Leases (leader
// election) and the metadata of the objects Events are about.
//
// client-go's typed clientset (k8s.io/client-go/kubernetes) would do the
// same, but it links every built-in API group into the binary and registers
// all of them in its scheme when the process starts: with it the release
// binary was 56 MB instead of 31, and 14 MiB more of it stayed resident.
// Here a small
// runtime.Scheme knows the few kinds above, and requests prefer protobuf like
// the typed clients do for built-in kinds.
package kube

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	kobwatch "github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

// Client talks to one cluster. Its methods are safe for concurrent use.
type Client struct {
	// Config is the configuration the clients were made from.
	Config *rest.Config
	// Metadata reads objects as metadata only (the object cache).
	Metadata metadata.Interface
	// MetadataStreams is Metadata over connections of its own: HTTP/1.1,
	// one connection per watch, read at once (not coalesced like the
	// Events'). Nil when the rest.Config brings its own Transport. See
	// MetadataFor.
	MetadataStreams metadata.Interface

	core, coreEvents, events, coordination *rest.RESTClient
	params                                 runtime.ParameterCodec
}

// Options are the client's tunables.
type Options struct {
	// EventsReadDelay, when positive, gives the Events API clients their
	// own connection whose reads are coalesced: after a read that emptied
	// the socket, the next waits until EventsReadDelay has passed (see
	// coalescingConn). It bounds the wake-ups per second the Events watch
	// causes, for at most that much more delivery lag. It has no effect
	// when the rest.Config brings its own Transport (there is no dial to
	// wrap).
	EventsReadDelay time.Duration
}

// Validate reports options that cannot work.
func (o Options) Validate() error {
	if o.EventsReadDelay < 0 || o.EventsReadDelay > time.Second {
		return fmt.Errorf("events read delay %s: want 0 (off) to 1s", o.EventsReadDelay)
	}
	return nil
}

// MaxStreamedWatches is how many object watches MetadataFor gives
// connections of their own: the object cache's kinds in all namespaces (8),
// or in two.
const MaxStreamedWatches = 16

// MetadataFor returns the metadata client for an object cache that runs
// watches watches. Up to MaxStreamedWatches it is MetadataStreams (when
// set): in a rollout storm the pods', ReplicaSets' and Deployments' updates
// outnumber the Events, and over HTTP/2 every 4 KB read makes the client
// write two WINDOW_UPDATE frames (TLS records), thousands of writes a
// second; over HTTP/1.1 TCP's own window does that work. Beyond that,
// Metadata: the watches share one HTTP/2 connection instead of each
// holding a TLS connection and two goroutines.
func (c *Client) MetadataFor(watches int) metadata.Interface {
	if c.MetadataStreams != nil && watches <= MaxStreamedWatches {
		return c.MetadataStreams
	}
	return c.Metadata
}

// New returns a client for cfg with the default Options.
func New(cfg *rest.Config) (*Client, error) { return NewWithOptions(cfg, Options{}) }

// NewWithOptions returns a client for cfg. The REST clients share one HTTP
// client (one connection to the API server; with o.EventsReadDelay, the
// Events clients have a second one) and, like client-go's clientset, one
// rate limiter (cfg.QPS and cfg.Burst); the metadata client has its own
// limiter, as with metadata.NewForConfig.
func NewWithOptions(cfg *rest.Config, o Options) (*Client, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	scheme, err := newScheme()
	if err != nil {
		return nil, err
	}
	base := rest.CopyConfig(cfg)
	if base.UserAgent == "" {
		base.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	httpClient, err := rest.HTTPClientFor(base)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	md, err := newMetadataClient(base, httpClient)
	if err != nil {
		return nil, fmt.Errorf("kubernetes metadata client: %w", err)
	}
	typed := rest.CopyConfig(base)
	if typed.RateLimiter == nil && typed.QPS > 0 {
		if typed.Burst <= 0 {
			return nil, fmt.Errorf("kubernetes client: burst must be positive when QPS is set, got %d", typed.Burst)
		}
		typed.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(typed.QPS, typed.Burst)
	}
	eventsHTTP := httpClient
	if o.EventsReadDelay > 0 && base.Transport == nil {
		ec := rest.CopyConfig(base)
		ec.Dial = coalescingDial(base.Dial, o.EventsReadDelay)
		// HTTP/1.1: a watch over HTTP/2 has the client send two
		// WINDOW_UPDATE frames (two TLS records, a write each) per 4 KB
		// read, a hundred writes a second at a thousand Events a second;
		// over HTTP/1.1 the stream is a chunked body and TCP's own window
		// does that work. The connection carries nothing else to multiplex.
		ec.TLSClientConfig.NextProtos = []string{"http/1.1"}
		if eventsHTTP, err = rest.HTTPClientFor(ec); err != nil {
			return nil, fmt.Errorf("kubernetes client for Events: %w", err)
		}
	}
	codecs := serializer.NewCodecFactory(scheme).WithoutConversion()
	c := &Client{Config: base, Metadata: md, params: runtime.NewParameterCodec(scheme)}
	if base.Transport == nil {
		// The object watches' own connections: HTTP/1.1 like the Events',
		// but read at once. Their updates must reach the cache before the
		// Events written after them: a ScalingReplicaSet read before its
		// Deployment's new generation goes to the previous rollout's trace
		// (TestTraceTrees/Scale failed with coalesced object reads).
		sc := rest.CopyConfig(base)
		if sc.Dial == nil {
			sc.Dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAliveConfig: eventsKeepAlive}).DialContext
		}
		sc.TLSClientConfig.NextProtos = []string{"http/1.1"}
		streamsHTTP, err := rest.HTTPClientFor(sc)
		if err != nil {
			return nil, fmt.Errorf("kubernetes client for object watches: %w", err)
		}
		if c.MetadataStreams, err = newMetadataClient(base, streamsHTTP); err != nil {
			return nil, fmt.Errorf("kubernetes metadata client: %w", err)
		}
	}
	for _, r := range []struct {
		client  **rest.RESTClient
		gv      schema.GroupVersion
		apiPath string
		http    *http.Client
	}{
		{&c.core, corev1.SchemeGroupVersion, "/api", httpClient},
		{&c.coreEvents, corev1.SchemeGroupVersion, "/api", eventsHTTP},
		{&c.events, eventsv1.SchemeGroupVersion, "/apis", eventsHTTP},
		{&c.coordination, coordinationv1.SchemeGroupVersion, "/apis", httpClient},
	} {
		rc := rest.CopyConfig(typed)
		gv := r.gv
		// Events (watched at the event rate) are decoded by the bridge's
		// own protobuf decoder: only the fields it uses, 2 allocations
		// instead of ~25. Everything else goes through the scheme's codecs.
		rc.GroupVersion, rc.APIPath, rc.NegotiatedSerializer = &gv, r.apiPath, kobwatch.WithEventProtoDecoding(codecs, gv == corev1.SchemeGroupVersion)
		*r.client, err = rest.RESTClientForConfigAndClient(rc, r.http)
		if err != nil {
			return nil, fmt.Errorf("kubernetes client for %s: %w", gv, err)
		}
	}
	return c, nil
}

// newScheme knows the kinds the bridge reads and writes, and the options and
// watch events of their group versions.
func newScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	s.AddKnownTypes(corev1.SchemeGroupVersion, &corev1.Event{}, &corev1.EventList{}, &corev1.ConfigMap{}, &corev1.Namespace{})
	s.AddKnownTypes(eventsv1.SchemeGroupVersion, &eventsv1.Event{}, &eventsv1.EventList{})
	s.AddKnownTypes(coordinationv1.SchemeGroupVersion, &coordinationv1.Lease{})
	// The answer of UpdateConfigMapMeta.
	s.AddKnownTypes(metav1.SchemeGroupVersion, &metav1.PartialObjectMetadata{})
	for _, gv := range []schema.GroupVersion{corev1.SchemeGroupVersion, eventsv1.SchemeGroupVersion, coordinationv1.SchemeGroupVersion} {
		metav1.AddToGroupVersion(s, gv)
	}
	for _, gv := range []schema.GroupVersion{corev1.SchemeGroupVersion, eventsv1.SchemeGroupVersion, coordinationv1.SchemeGroupVersion} {
		if err := s.SetVersionPriority(gv); err != nil {
			return nil, fmt.Errorf("kubernetes client scheme: %w", err)
		}
	}
	return s, nil
}

// The Events APIs, as SourceOptions.API names them.
const (
	EventsV1 = "events.k8s.io/v1"
	CoreV1   = "v1"
)

// ServesGroupVersion returns nil when the API server serves groupVersion
// ("events.k8s.io/v1", or "v1" for the core group), else why not.
func (c *Client) ServesGroupVersion(ctx context.Context, groupVersion string) error {
	path := "/apis/" + groupVersion
	if groupVersion == CoreV1 {
		path = "/api/v1"
	}
	if err := c.core.Get().AbsPath(path).Do(ctx).Error(); err != nil {
		return fmt.Errorf("discover %s: %w", groupVersion, err)
	}
	return nil
}

// eventsClient is the REST client and list type of an Events API.
func (c *Client) eventsClient(api string) (*rest.RESTClient, runtime.Object, error) {
	switch api {
	case CoreV1:
		return c.coreEvents, &corev1.EventList{}, nil
	case EventsV1:
		return c.events, &eventsv1.EventList{}, nil
	}
	return nil, nil, fmt.Errorf("unknown Events API %q (want %s or %s)", api, EventsV1, CoreV1)
}

// ListEvents lists the Events of namespace ("": all) through api (EventsV1
// or CoreV1): an *eventsv1.EventList or a *corev1.EventList.
func (c *Client) ListEvents(ctx context.Context, api, namespace string, o metav1.ListOptions) (runtime.Object, error) {
	rc, list, err := c.eventsClient(api)
	if err != nil {
		return nil, err
	}
	err = rc.Get().UseProtobufAsDefault().
		NamespaceIfScoped(namespace, namespace != "").
		Resource("events").
		VersionedParams(&o, c.params).
		Timeout(timeoutOf(o)).
		Do(ctx).Into(list)
	if err != nil {
		return nil, err
	}
	return list, nil
}

// WatchEvents watches the Events of namespace ("": all) through api.
func (c *Client) WatchEvents(ctx context.Context, api, namespace string, o metav1.ListOptions) (watch.Interface, error) {
	rc, _, err := c.eventsClient(api)
	if err != nil {
		return nil, err
	}
	o.Watch = true
	return rc.Get().UseProtobufAsDefault().
		NamespaceIfScoped(namespace, namespace != "").
		Resource("events").
		VersionedParams(&o, c.params).
		Timeout(timeoutOf(o)).
		Watch(ctx)
}

// timeoutOf is the request timeout a list or watch asks for (as the typed
// clients set it).
func timeoutOf(o metav1.ListOptions) time.Duration {
	if o.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*o.TimeoutSeconds) * time.Second
}

// GetNamespace reads a Namespace.
func (c *Client) GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	return get(ctx, c, c.core, "", "namespaces", name, &corev1.Namespace{})
}

// GetConfigMap reads a ConfigMap.
func (c *Client) GetConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	return get(ctx, c, c.core, namespace, "configmaps", name, &corev1.ConfigMap{})
}

// CreateConfigMap creates cm in its namespace.
func (c *Client) CreateConfigMap(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	return write(ctx, c, c.core.Post(), cm.Namespace, "configmaps", "", cm, &corev1.ConfigMap{})
}

// UpdateConfigMapMeta replaces cm (optimistic concurrency: its
// resourceVersion) and returns the metadata of the ConfigMap as saved. The
// API server answers with the metadata alone (as=PartialObjectMetadata, as
// for the object cache's watches): the checkpoint, written every few
// seconds, is up to 1 MiB that would otherwise come back, be read and be
// decoded on every save. An API server that cannot answer so refuses the
// request (406) before writing anything.
func (c *Client) UpdateConfigMapMeta(ctx context.Context, cm *corev1.ConfigMap) (*metav1.PartialObjectMetadata, error) {
	accept := acceptMetadataOnly
	if c.Config.ContentType == runtime.ContentTypeJSON {
		accept = acceptMetadataOnlyJSON
	}
	into := &metav1.PartialObjectMetadata{}
	err := c.core.Put().UseProtobufAsDefault().SetHeader("Accept", accept).
		Namespace(cm.Namespace).
		Resource("configmaps").
		Name(cm.Name).
		VersionedParams(&metav1.UpdateOptions{}, c.params).
		Body(cm).
		Do(ctx).Into(into)
	if err != nil {
		return nil, err
	}
	return into, nil
}

// The Accept headers of UpdateConfigMapMeta: the object's metadata only,
// without the fallback to the whole object the metadata watches have.
const (
	acceptMetadataOnly     = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1," + acceptMetadataOnlyJSON
	acceptMetadataOnlyJSON = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
)

// GetLease reads a Lease.
func (c *Client) GetLease(ctx context.Context, namespace, name string) (*coordinationv1.Lease, error) {
	return get(ctx, c, c.coordination, namespace, "leases", name, &coordinationv1.Lease{})
}

// CreateLease creates l in its namespace.
func (c *Client) CreateLease(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	return write(ctx, c, c.coordination.Post(), l.Namespace, "leases", "", l, &coordinationv1.Lease{})
}

// UpdateLease replaces l (optimistic concurrency: its resourceVersion).
func (c *Client) UpdateLease(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	return write(ctx, c, c.coordination.Put(), l.Namespace, "leases", l.Name, l, &coordinationv1.Lease{})
}

func get[T runtime.Object](ctx context.Context, c *Client, rc *rest.RESTClient, namespace, resource, name string, into T) (T, error) {
	err := rc.Get().UseProtobufAsDefault().
		NamespaceIfScoped(namespace, namespace != "").
		Resource(resource).
		Name(name).
		VersionedParams(&metav1.GetOptions{}, c.params).
		Do(ctx).Into(into)
	if err != nil {
		var zero T
		return zero, err
	}
	return into, nil
}

// write sends obj with a POST (name "") or PUT request and decodes the
// answer into into.
func write[T runtime.Object](ctx context.Context, c *Client, req *rest.Request, namespace, resource, name string, obj, into T) (T, error) {
	var opts runtime.Object = &metav1.CreateOptions{}
	if name != "" {
		opts = &metav1.UpdateOptions{}
		req = req.Name(name)
	}
	err := req.UseProtobufAsDefault().
		NamespaceIfScoped(namespace, namespace != "").
		Resource(resource).
		VersionedParams(opts, c.params).
		Body(obj).
		Do(ctx).Into(into)
	if err != nil {
		var zero T
		return zero, err
	}
	return into, nil
}
