package e2e

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"net/http"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

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

// The checkpoint's writes are answered with the ConfigMap's metadata alone
// (the API server honours as=PartialObjectMetadata on an update): the
// checkpoint does not come back on every save. Saves after the first go
// without a read, and one that meets a ConfigMap changed by someone else
// reads it again and keeps their data.
func TestCheckpointSavesAnsweredWithMetadata(t *testing.T) {
	needCluster(t)
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	ns := shared.NewNamespace(t)

	var mu sync.Mutex
	putAnswers := []int64{} // bytes of each PUT's answer
	cfg := rest.CopyConfig(shared.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(r)
			if err != nil || r.Method != http.MethodPut {
				return resp, err
			}
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			resp.Body = io.NopCloser(bytes.NewReader(b))
			mu.Lock()
			putAnswers = append(putAnswers, int64(len(b)))
			mu.Unlock()
			return resp, rerr
		})
	}
	client, err := kube.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	store := &watch.ConfigMapStore{Client: client, Namespace: ns, Name: "kob-checkpoint"}
	extra := make([]byte, 64<<10)
	rand.New(rand.NewSource(3)).Read(extra) // incompressible: a 64 KiB checkpoint
	save := func(w uint64) {
		t.Helper()
		if err := store.Save(ctx, &watch.Checkpoint{Watermark: w, Extra: extra}); err != nil {
			t.Fatalf("save %d: %v", w, err)
		}
		cp, err := store.Load(ctx)
		if err != nil || cp == nil || cp.Watermark != w || !bytes.Equal(cp.Extra, extra) {
			t.Fatalf("after saving %d loaded %+v, %v", w, cp, err)
		}
	}
	save(1) // creates
	save(2) // updates
	save(3)
	cms := shared.Client.CoreV1().ConfigMaps(ns)
	cm, err := cms.Get(ctx, "kob-checkpoint", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data = map[string]string{"note": "kept"}
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	save(4) // a conflict, a read, the update
	save(5)
	if cm, err = cms.Get(ctx, "kob-checkpoint", metav1.GetOptions{}); err != nil || cm.Data["note"] != "kept" {
		t.Fatalf("the ConfigMap's other data was lost: %v, %v", cm.Data, err)
	}

	mu.Lock()
	defer mu.Unlock()
	// Updates: 2, 3, 4 (refused: a Status), 4 again, 5.
	if len(putAnswers) != 5 {
		t.Fatalf("%d updates (%v), want 5", len(putAnswers), putAnswers)
	}
	for i, n := range putAnswers {
		if n > 4096 {
			t.Errorf("update %d was answered with %d bytes: the whole ConfigMap (the checkpoint is %d), not its metadata", i+1, n, len(extra))
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
