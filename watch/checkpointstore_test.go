package watch

import (
	"context"
	"errors"
	"math/rand"
	"strconv"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// fakeConfigMaps is an API server's ConfigMaps for one namespace:
// resourceVersions, conflicts on a stale one, NotFound.
type fakeConfigMaps struct {
	mu                  sync.Mutex
	rv                  int
	cms                 map[string]*corev1.ConfigMap
	gets, puts, creates int
}

var cmResource = schema.GroupResource{Resource: "configmaps"}

func (f *fakeConfigMaps) GetConfigMap(_ context.Context, _, name string) (*corev1.ConfigMap, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	cm, ok := f.cms[name]
	if !ok {
		return nil, apierrors.NewNotFound(cmResource, name)
	}
	return cm.DeepCopy(), nil
}

func (f *fakeConfigMaps) CreateConfigMap(_ context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates++
	if _, ok := f.cms[cm.Name]; ok {
		return nil, apierrors.NewAlreadyExists(cmResource, cm.Name)
	}
	return f.storeLocked(cm), nil
}

func (f *fakeConfigMaps) UpdateConfigMapMeta(ctx context.Context, cm *corev1.ConfigMap) (*metav1.PartialObjectMetadata, error) {
	saved, err := f.UpdateConfigMap(ctx, cm)
	if err != nil {
		return nil, err
	}
	return &metav1.PartialObjectMetadata{ObjectMeta: saved.ObjectMeta}, nil
}

func (f *fakeConfigMaps) UpdateConfigMap(_ context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.puts++
	cur, ok := f.cms[cm.Name]
	if !ok {
		return nil, apierrors.NewNotFound(cmResource, cm.Name)
	}
	if cm.ResourceVersion != cur.ResourceVersion {
		return nil, apierrors.NewConflict(cmResource, cm.Name, nil)
	}
	return f.storeLocked(cm), nil
}

func (f *fakeConfigMaps) storeLocked(cm *corev1.ConfigMap) *corev1.ConfigMap {
	f.rv++
	c := cm.DeepCopy()
	c.ResourceVersion = strconv.Itoa(f.rv)
	if f.cms == nil {
		f.cms = map[string]*corev1.ConfigMap{}
	}
	f.cms[c.Name] = c
	return c.DeepCopy()
}

// A save after the first writes without reading the ConfigMap again; one
// changed or deleted by someone else meanwhile is read again (or made
// again), and every save leaves the latest checkpoint and the ConfigMap's
// other data in place.
func TestConfigMapStoreSaves(t *testing.T) {
	ctx := context.Background()
	f := &fakeConfigMaps{}
	s := &ConfigMapStore{Client: f, Namespace: "ns", Name: "cp"}
	save := func(w uint64) {
		t.Helper()
		if err := s.Save(ctx, &Checkpoint{Watermark: w, Done: map[string]int32{"uid": int32(w)}}); err != nil {
			t.Fatal(err)
		}
		cp, err := s.Load(ctx)
		if err != nil || cp == nil || cp.Watermark != w || cp.Done["uid"] != int32(w) {
			t.Fatalf("after saving %d loaded %+v, %v", w, cp, err)
		}
	}
	save(1) // creates
	gets := f.gets
	save(2)
	save(3)
	if got := f.gets - gets; got != 2 { // the two Loads only
		t.Errorf("%d reads for two saves and two loads, want 2", got)
	}

	// Someone else writes it (a data key of theirs too): a conflict, then
	// a read and the write.
	other := f.cms["cp"].DeepCopy()
	other.Data = map[string]string{"note": "kept"}
	if _, err := f.UpdateConfigMap(ctx, other); err != nil {
		t.Fatal(err)
	}
	save(4)
	if f.cms["cp"].Data["note"] != "kept" {
		t.Error("the ConfigMap's other data was lost")
	}

	// Deleted meanwhile: made again.
	delete(f.cms, "cp")
	creates := f.creates
	save(5)
	if f.creates != creates+1 {
		t.Errorf("%d creates after the deletion, want 1", f.creates-creates)
	}
	if s.last == nil || s.last.BinaryData[checkpointKey] != nil {
		t.Error("the store should keep the last ConfigMap, without its checkpoint data")
	}
}

// A checkpoint over a ConfigMap's 1 MiB is refused before any request, with
// ErrCheckpointTooLarge (the caller saves less), and the saved one stays.
func TestConfigMapStoreRefusesTooLarge(t *testing.T) {
	ctx := context.Background()
	f := &fakeConfigMaps{}
	s := &ConfigMapStore{Client: f, Namespace: "ns", Name: "cp"}
	if err := s.Save(ctx, &Checkpoint{Watermark: 1}); err != nil {
		t.Fatal(err)
	}
	extra := make([]byte, MaxCheckpointBytes+1)
	rand.New(rand.NewSource(1)).Read(extra) // incompressible
	rv := f.rv
	err := s.Save(ctx, &Checkpoint{Watermark: 2, Extra: extra})
	if !errors.Is(err, ErrCheckpointTooLarge) {
		t.Fatalf("saving %d bytes of Extra: %v, want ErrCheckpointTooLarge", len(extra), err)
	}
	if f.rv != rv {
		t.Error("a checkpoint too large was sent to the API server")
	}
	if cp, err := s.Load(ctx); err != nil || cp.Watermark != 1 {
		t.Fatalf("after the refused save loaded %+v, %v; want the first checkpoint", cp, err)
	}
	// The store still updates the ConfigMap it kept.
	if err := s.Save(ctx, &Checkpoint{Watermark: 3, Extra: extra[:1000]}); err != nil {
		t.Fatal(err)
	}
}

// Names are saved under their own key and come back with the checkpoint;
// a save without names removes the key; after a rollback an earlier
// release rewrites only the checkpoint (keeping other keys), and the names
// left are then dropped, with the reason, instead of being read with a
// checkpoint they do not belong to.
func TestConfigMapStoreNames(t *testing.T) {
	ctx := context.Background()
	f := &fakeConfigMaps{}
	s := &ConfigMapStore{Client: f, Namespace: "ns", Name: "cp"}
	named := &Checkpoint{Watermark: 3, Done: map[string]int32{"0a0b0c0d-0000-4000-8000-000000000001": 4}, Names: map[string]uint32{"0a0b0c0d-0000-4000-8000-000000000001": 77}}
	for range 2 { // a create, then an update
		if err := s.Save(ctx, named); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.cms["cp"].BinaryData[namesKey]) == 0 {
		t.Fatalf("no %q key: %v", namesKey, f.cms["cp"].BinaryData)
	}
	if s.Size() != len(f.cms["cp"].BinaryData[checkpointKey])+len(f.cms["cp"].BinaryData[namesKey]) {
		t.Errorf("Size %d: not the checkpoint and its names", s.Size())
	}
	got, err := (&ConfigMapStore{Client: f, Namespace: "ns", Name: "cp"}).Load(ctx)
	if err != nil || got.Names["0a0b0c0d-0000-4000-8000-000000000001"] != 77 {
		t.Fatalf("loaded %+v, %v: want the name back", got, err)
	}

	// An earlier release saves (no names, the key left as it was).
	old := f.cms["cp"].DeepCopy()
	older := &Checkpoint{Watermark: 9, Done: map[string]int32{"0a0b0c0d-0000-4000-8000-000000000001": 6}}
	data, err := older.Encode()
	if err != nil {
		t.Fatal(err)
	}
	old.BinaryData[checkpointKey] = data
	if _, err := f.UpdateConfigMap(ctx, old); err != nil {
		t.Fatal(err)
	}
	ls := &ConfigMapStore{Client: f, Namespace: "ns", Name: "cp"}
	got, err = ls.Load(ctx)
	if err != nil || got.Watermark != 9 || len(got.Names) != 0 || ls.NamesErr == nil {
		t.Fatalf("after a rollback's save: %+v, %v, names error %v; want its checkpoint, no names and why", got, err, ls.NamesErr)
	}

	// Without names, the key goes.
	if err := ls.Save(ctx, older); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.cms["cp"].BinaryData[namesKey]; ok {
		t.Errorf("a save without names left the %q key", namesKey)
	}
}
