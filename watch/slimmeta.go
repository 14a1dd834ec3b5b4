package watch

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// Transformer makes kindStore a cache.TransformingStore: a reflector that
// syncs by watch-list (sendInitialEvents, the default with client-go ≥ 1.35
// and an API server with WatchList) keeps every streamed object in a
// temporary store until the initial-events-end bookmark and only then calls
// Replace. It applies this transform as each object arrives, so that store
// holds slim objects instead of whole decoded metadata (labels, annotations,
// managed fields): at 100,000 pods, hundreds of MiB at the start-up's peak
// (BenchmarkObjectCacheStartup).
func (s *kindStore) Transformer() cache.TransformFunc { return slimMetadata }

// slimMetadata keeps of a PartialObjectMetadata what the object cache reads
// (observe, Replace) and what the reflector's stores key on: name,
// namespace, UID, generation, the traceparent annotations and the owner
// references' identity. Other objects pass unchanged.
func slimMetadata(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	out := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion, Generation: m.Generation,
		DeletionTimestamp: m.DeletionTimestamp,
	}}
	for _, key := range []string{TraceparentAnnotation, "traceparent"} {
		if v, ok := m.Annotations[key]; ok {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[key] = v
		}
	}
	if len(m.OwnerReferences) > 0 {
		out.OwnerReferences = make([]metav1.OwnerReference, len(m.OwnerReferences))
		for i, r := range m.OwnerReferences {
			out.OwnerReferences[i] = metav1.OwnerReference{APIVersion: r.APIVersion, Kind: r.Kind, Name: r.Name, UID: r.UID}
			if r.Controller != nil && *r.Controller {
				out.OwnerReferences[i].Controller = &slimController
			}
		}
	}
	return out, nil
}

// slimController is the shared value of slimmed controller references.
var slimController = true
