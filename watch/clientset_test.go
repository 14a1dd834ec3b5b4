package watch

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	watchapi "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

// clientsetEvents is an EventClient on client-go's clientset (in the tests,
// the fake one).
type clientsetEvents struct{ cs kubernetes.Interface }

func eventClient(cs kubernetes.Interface) EventClient { return clientsetEvents{cs} }

func (c clientsetEvents) ServesGroupVersion(_ context.Context, gv string) error {
	_, err := c.cs.Discovery().ServerResourcesForGroupVersion(gv)
	return err
}

func (c clientsetEvents) ListEvents(ctx context.Context, api, ns string, o metav1.ListOptions) (runtime.Object, error) {
	if api == "v1" {
		return c.cs.CoreV1().Events(ns).List(ctx, o)
	}
	return c.cs.EventsV1().Events(ns).List(ctx, o)
}

func (c clientsetEvents) WatchEvents(ctx context.Context, api, ns string, o metav1.ListOptions) (watchapi.Interface, error) {
	if api == "v1" {
		return c.cs.CoreV1().Events(ns).Watch(ctx, o)
	}
	return c.cs.EventsV1().Events(ns).Watch(ctx, o)
}

// IsWatchListSemanticsUnSupported passes on what the fake clientset says
// to client-go's reflector (it does not stream lists).
func (c clientsetEvents) IsWatchListSemanticsUnSupported() bool {
	f, ok := c.cs.(*fake.Clientset)
	return ok && f.IsWatchListSemanticsUnSupported()
}
