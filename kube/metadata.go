package kube

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	metainternalversionscheme "k8s.io/apimachinery/pkg/apis/meta/internalversion/scheme"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	kobwatch "github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

// metadataClient is client-go's metadata client as far as the object cache
// uses it (List and Watch of PartialObjectMetadata, the same requests),
// with the watched objects decoded by the bridge's own decoder
// (kobwatch.WithMetadataProtoDecoding): client-go's metadata client fixes
// its codecs, so it cannot be given another. Lists, and anything the
// decoder does not take, are decoded by client-go's codecs as before.
type metadataClient struct {
	rc *rest.RESTClient
}

// The parameters of metadata requests, encoded as client-go's metadata
// client encodes them.
var (
	metadataParamsV1   = schema.GroupVersion{Version: "v1"}
	metadataParamCodec = func() runtime.ParameterCodec {
		s := runtime.NewScheme()
		metav1.AddToGroupVersion(s, metadataParamsV1)
		return runtime.NewParameterCodec(s)
	}()
)

// The Accept headers of client-go's metadata client.
const (
	acceptMetadata     = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
	acceptMetadataList = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
)

// newMetadataClient is metadata.NewForConfigAndClient with the bridge's
// decoder.
func newMetadataClient(cfg *rest.Config, h *http.Client) (*metadataClient, error) {
	config := metadata.ConfigFor(cfg)
	config.NegotiatedSerializer = kobwatch.WithMetadataProtoDecoding(metainternalversionscheme.Codecs.WithoutConversion())
	config.GroupVersion = &schema.GroupVersion{}
	config.APIPath = "/this-value-should-never-be-sent"
	rc, err := rest.RESTClientForConfigAndClient(config, h)
	if err != nil {
		return nil, err
	}
	return &metadataClient{rc: rc}, nil
}

func (c *metadataClient) Resource(gvr schema.GroupVersionResource) metadata.Getter {
	return &metadataResource{c: c, gvr: gvr}
}

// metadataResource is one resource, in a namespace or all.
type metadataResource struct {
	c   *metadataClient
	gvr schema.GroupVersionResource
	ns  string
}

func (r *metadataResource) Namespace(ns string) metadata.ResourceInterface {
	out := *r
	out.ns = ns
	return &out
}

// path is the resource's URL path, as client-go's metadata client makes it.
func (r *metadataResource) path() []string {
	p := []string{"/apis", r.gvr.Group, r.gvr.Version}
	if r.gvr.Group == "" {
		p = []string{"/api", r.gvr.Version}
	}
	if r.ns != "" {
		p = append(p, "namespaces", r.ns)
	}
	return append(p, r.gvr.Resource)
}

func (r *metadataResource) List(ctx context.Context, opts metav1.ListOptions) (*metav1.PartialObjectMetadataList, error) {
	obj, err := r.c.rc.Get().AbsPath(r.path()...).SetHeader("Accept", acceptMetadataList).
		SpecificallyVersionedParams(&opts, metadataParamCodec, metadataParamsV1).Do(ctx).Get()
	if err != nil {
		return nil, err
	}
	l, ok := obj.(*metav1.PartialObjectMetadataList)
	if !ok {
		return nil, fmt.Errorf("kube: metadata list of %s: got %T, want a PartialObjectMetadataList", r.gvr, obj)
	}
	return l, nil
}

func (r *metadataResource) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	var timeout time.Duration
	if opts.TimeoutSeconds != nil {
		timeout = time.Duration(*opts.TimeoutSeconds) * time.Second
	}
	opts.Watch = true
	return r.c.rc.Get().AbsPath(r.path()...).SetHeader("Accept", acceptMetadata).
		SpecificallyVersionedParams(&opts, metadataParamCodec, metadataParamsV1).Timeout(timeout).Watch(ctx)
}

// errMetadataReadOnly: the object cache only lists and watches.
var errMetadataReadOnly = errors.New("kube: the metadata client only lists and watches")

func (r *metadataResource) Get(context.Context, string, metav1.GetOptions, ...string) (*metav1.PartialObjectMetadata, error) {
	return nil, errMetadataReadOnly
}

func (r *metadataResource) Delete(context.Context, string, metav1.DeleteOptions, ...string) error {
	return errMetadataReadOnly
}

func (r *metadataResource) DeleteCollection(context.Context, metav1.DeleteOptions, metav1.ListOptions) error {
	return errMetadataReadOnly
}

func (r *metadataResource) Patch(context.Context, string, types.PatchType, []byte, metav1.PatchOptions, ...string) (*metav1.PartialObjectMetadata, error) {
	return nil, errMetadataReadOnly
}
