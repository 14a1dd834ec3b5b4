package e2e

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-otel-bridge/kube-otel-bridge/kube"
	"github.com/kube-otel-bridge/kube-otel-bridge/watch"
)

// The checkpoint's size limit is the API server's: a ConfigMap of exactly
// watch.MaxCheckpointBytes is stored and one byte more is refused, so the
// store's own check (which saves the upload and lets the bridge save less)
// refuses nothing the API server would take. A checkpoint over it is
// refused by the store, and the one saved before stays.
func TestCheckpointSizeLimitIsTheAPIServers(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	ns := shared.NewNamespace(t)
	cms := shared.Client.CoreV1().ConfigMaps(ns)
	for _, c := range []struct {
		size int
		ok   bool
	}{{watch.MaxCheckpointBytes, true}, {watch.MaxCheckpointBytes + 1, false}} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "size-probe"},
			BinaryData: map[string][]byte{"checkpoint": bytes.Repeat([]byte{1}, c.size)}}
		_, err := cms.Create(ctx, cm, metav1.CreateOptions{})
		switch {
		case c.ok && err != nil:
			t.Fatalf("the API server refused %d bytes: %v", c.size, err)
		case !c.ok && !apierrors.IsInvalid(err):
			t.Fatalf("the API server took %d bytes (err %v): the limit is not %d", c.size, err, watch.MaxCheckpointBytes)
		}
		if err == nil {
			if err := cms.Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}

	client, err := kube.New(shared.Config)
	if err != nil {
		t.Fatal(err)
	}
	store := &watch.ConfigMapStore{Client: client, Namespace: ns, Name: "kob-checkpoint"}
	small := make([]byte, 4096)
	rand.New(rand.NewSource(1)).Read(small)
	if err := store.Save(ctx, &watch.Checkpoint{Watermark: 7, Extra: small}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, watch.MaxCheckpointBytes)
	rand.New(rand.NewSource(2)).Read(big) // incompressible: larger once encoded
	if err := store.Save(ctx, &watch.Checkpoint{Watermark: 8, Extra: big}); !errors.Is(err, watch.ErrCheckpointTooLarge) {
		t.Fatalf("saving a checkpoint over the limit: %v, want ErrCheckpointTooLarge", err)
	}
	cp, err := store.Load(ctx)
	if err != nil || cp == nil || cp.Watermark != 7 || !bytes.Equal(cp.Extra, small) {
		t.Fatalf("after the refused save loaded %+v, %v; want the checkpoint saved before", cp, err)
	}
}
