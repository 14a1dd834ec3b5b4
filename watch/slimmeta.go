package watch

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// Transformer makes kindStore a cache.TransformingStore: a reflector that
// syncs by watch-list (sendInitialEvents, the default with client-go ≥ 1.35
// and an API server with WatchList) keeps every streamed object in a
// temporary store until the initial-events-end bookmark and only then calls
// Replace with its contents. It applies this transform as each object
// arrives. The transform puts the object into the slim cache right away,
// marked with the watch-list attempt (a byte of the entry's padding); the
// temporary store keeps the object's key (namespace/name) with the same
// streamedStub for every object instead of a stub of its own and the
// strings it holds (together ≈ 215 bytes per object, more than the cache's
// own 129). Replace tells the streamed objects by their mark
// (BenchmarkObjectCacheStartup).
//
// Before the initial-events-end bookmark the API server sends only the
// initial ADDED events; should a deletion come in between, the cache would
// keep that object until the next relist.
func (s *kindStore) Transformer() cache.TransformFunc {
	return func(obj any) (any, error) {
		m, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			return obj, nil
		}
		s.mu.Lock()
		attempt := s.attempt
		s.mu.Unlock()
		s.c.observeStreamed(s.k, m, attempt, true)
		return streamedStub, nil
	}
}

// streamedStub is the item a watch-list's temporary store holds for every
// object streamed (Transformer): the store keys items by the object as it
// came, before the transform.
var streamedStub = &listedStub{name: "streamed"}

// listedStub is a store item standing for objects already in the cache.
// The getters a store may call (key, resourceVersion for its metrics,
// indexers' usual inputs) answer; the embedded nil metav1.Object only
// completes the interface: its setters are never called on a store's
// items.
type listedStub struct {
	metav1.Object
	namespace, name string
	uid             types.UID
}

func (l *listedStub) GetNamespace() string { return l.namespace }
func (l *listedStub) GetName() string      { return l.name }
func (l *listedStub) GetUID() types.UID    { return l.uid }

func (l *listedStub) GetResourceVersion() string                    { return "" }
func (l *listedStub) GetGeneration() int64                          { return 0 }
func (l *listedStub) GetLabels() map[string]string                  { return nil }
func (l *listedStub) GetAnnotations() map[string]string             { return nil }
func (l *listedStub) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (l *listedStub) GetDeletionTimestamp() *metav1.Time            { return nil }
func (l *listedStub) GetCreationTimestamp() metav1.Time             { return metav1.Time{} }
func (l *listedStub) GetFinalizers() []string                       { return nil }
func (l *listedStub) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }

// GetObjectKind and DeepCopyObject make it a runtime.Object.
func (l *listedStub) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (l *listedStub) DeepCopyObject() runtime.Object {
	c := *l
	return &c
}

// slimListed drops from a listed object's metadata what the cache does not
// read (labels, other annotations, managed fields, finalizers, ...). client-go's
// list pager keeps every page until the list is complete, so without it a
// paginated start-up on a large cluster holds every object's whole metadata
// at once (BenchmarkObjectCacheStartup/list-paged). The cache reads name,
// namespace, UID, generation, deletion time, the traceparent annotations and
// the owner references; the reflector reads the resourceVersion.
func slimListed(m *metav1.ObjectMeta) {
	var ann map[string]string
	for _, key := range []string{TraceparentAnnotation, "traceparent"} {
		if v, ok := m.Annotations[key]; ok {
			if ann == nil {
				ann = map[string]string{}
			}
			ann[key] = v
		}
	}
	*m = metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Generation: m.Generation, DeletionTimestamp: m.DeletionTimestamp, Annotations: ann,
		OwnerReferences: m.OwnerReferences,
	}
}
