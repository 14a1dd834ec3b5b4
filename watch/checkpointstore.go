package watch

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// checkpointKey is the ConfigMap binaryData key holding the checkpoint;
// namesKey holds its repeaters' names (Checkpoint.EncodeNames), apart so
// that an earlier release, which keeps other keys as they are, still reads
// the checkpoint after a rollback.
const (
	checkpointKey = "checkpoint"
	namesKey      = "names"
)

// MaxCheckpointBytes is the most a ConfigMap holds: the API server refuses
// one whose values add up to more (core validation, MaxSecretSize).
const MaxCheckpointBytes = 1 << 20

// ErrCheckpointTooLarge is returned by Save for a checkpoint that cannot fit
// the ConfigMap; nothing was written. The caller saves less (the engine's
// part) or keeps fewer entries.
var ErrCheckpointTooLarge = errors.New("checkpoint too large for a ConfigMap")

// ConfigMapStore keeps the checkpoint in a ConfigMap of the bridge's own
// namespace (binaryData, compressed; a ConfigMap holds at most 1 MiB, which
// Tracker's entry limit respects).
type ConfigMapStore struct {
	Client    ConfigMapClient
	Namespace string
	Name      string

	mu sync.Mutex
	// zw compresses the engine's part of every save: made once, as a new
	// one's 1.2 MB of tables (mostly unused at its level, but allocated and
	// cleared) cost a save more than its work (≈ 2 % of the bridge's CPU
	// under load, in page faults and clearing).
	zw *gzip.Writer
	// size is the last checkpoint's size, encoded (its names included).
	size int
	// NamesErr is why Load dropped the names saved with the checkpoint, if
	// it did (for the caller's log).
	NamesErr error
	// last is the ConfigMap as the last save left it (its checkpoint data
	// dropped): the next save updates it without reading it first. A
	// conflict (someone else wrote it meanwhile) reads it again.
	last *corev1.ConfigMap
}

// ConfigMapClient reads and writes ConfigMaps; kube.Client implements it.
type ConfigMapClient interface {
	GetConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
	CreateConfigMap(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error)
	// UpdateConfigMapMeta writes cm and returns only the metadata saved
	// (the checkpoint need not come back).
	UpdateConfigMapMeta(ctx context.Context, cm *corev1.ConfigMap) (*metav1.PartialObjectMetadata, error)
}

// Load returns the saved checkpoint, or nil when there is none yet.
func (s *ConfigMapStore) Load(ctx context.Context) (*Checkpoint, error) {
	cm, err := s.Client.GetConfigMap(ctx, s.Namespace, s.Name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load checkpoint %s/%s: %w", s.Namespace, s.Name, err)
	}
	data, ok := cm.BinaryData[checkpointKey]
	if !ok {
		return nil, nil
	}
	cp, err := DecodeCheckpoint(data)
	if err != nil {
		return nil, fmt.Errorf("load checkpoint %s/%s: %w", s.Namespace, s.Name, err)
	}
	// Names that do not go with it (left by this release before a rollback
	// to one without them) are dropped: they only spare re-created Events
	// their earlier counts.
	s.NamesErr = cp.DecodeNames(data, cm.BinaryData[namesKey])
	return cp, nil
}

// Save writes the checkpoint (create or update).
func (s *ConfigMapStore) Save(ctx context.Context, cp *Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.zw == nil {
		s.zw, _ = gzip.NewWriterLevel(nil, gzip.BestSpeed)
	}
	entries := cp.sortedEntries() // sorted once for both
	data, err := cp.encode(s.zw, entries)
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	names := cp.encodeNames(data, entries)
	s.size = len(data) + len(names)
	if s.size > MaxCheckpointBytes {
		// Checked here: the API server would refuse it after the upload.
		return fmt.Errorf("save checkpoint %s/%s: %w: %d bytes (%d Events tracked, %d names, %d bytes of episode state), at most %d",
			s.Namespace, s.Name, ErrCheckpointTooLarge, s.size, len(cp.Done), len(cp.Names), len(cp.Extra), MaxCheckpointBytes)
	}
	put := func(cm *corev1.ConfigMap) {
		cm.BinaryData[checkpointKey] = data
		if names != nil {
			cm.BinaryData[namesKey] = names
		} else {
			delete(cm.BinaryData, namesKey)
		}
	}
	if cm := s.last; cm != nil {
		s.last = nil
		put(cm)
		err := s.update(ctx, cm)
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("save checkpoint %s/%s: %w", s.Namespace, s.Name, err)
		}
		// Changed or deleted by someone else: read it again.
	}
	cm, err := s.Client.GetConfigMap(ctx, s.Namespace, s.Name)
	if apierrors.IsNotFound(err) {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace,
				Labels: map[string]string{"app.kubernetes.io/name": "kube-otel-bridge", "app.kubernetes.io/component": "checkpoint"}},
			BinaryData: map[string][]byte{checkpointKey: data},
		}
		put(cm)
		saved, err := s.Client.CreateConfigMap(ctx, cm)
		if err != nil {
			return fmt.Errorf("save checkpoint %s/%s: %w", s.Namespace, s.Name, err)
		}
		s.keep(saved)
		return nil
	}
	if err != nil {
		return fmt.Errorf("save checkpoint %s/%s: %w", s.Namespace, s.Name, err)
	}
	if cm.BinaryData == nil {
		cm.BinaryData = map[string][]byte{}
	}
	put(cm)
	if err := s.update(ctx, cm); err != nil {
		return fmt.Errorf("save checkpoint %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// update writes cm and keeps it, with the metadata the API server answered,
// for the next save. (A PUT replaces the whole ConfigMap, so what was sent
// is what is stored, but for the metadata.)
func (s *ConfigMapStore) update(ctx context.Context, cm *corev1.ConfigMap) error {
	meta, err := s.Client.UpdateConfigMapMeta(ctx, cm)
	if err != nil {
		return err
	}
	cm.ObjectMeta = meta.ObjectMeta
	s.keep(cm)
	return nil
}

// Size is the size of the checkpoint the last Save encoded (saved or not).
func (s *ConfigMapStore) Size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// keep remembers the ConfigMap a save returned, without its checkpoint
// (up to 1 MiB, rewritten by the next save anyway).
func (s *ConfigMapStore) keep(cm *corev1.ConfigMap) {
	if cm == nil || cm.ResourceVersion == "" {
		return
	}
	if cm.BinaryData == nil {
		cm.BinaryData = map[string][]byte{}
	}
	cm.BinaryData[checkpointKey] = nil
	delete(cm.BinaryData, namesKey)
	s.last = cm
}
