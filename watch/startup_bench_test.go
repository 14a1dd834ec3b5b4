package watch

// BenchmarkObjectCacheStartup: the object cache's start-up on a cluster of
// 100,000 pods (10,000 Deployments × 10 replicas, 2 ReplicaSets per
// Deployment, 1,000 nodes), against an in-memory fake API server, measuring
// the Go heap's peak during the sync against its steady state after it.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metainternalversionscheme "k8s.io/apimachinery/pkg/apis/meta/internalversion/scheme"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/kube-otel-bridge/kube-otel-bridge/convert"
)

// startupMode is how the fake API server answers the reflectors' initial
// sync.
type startupMode int

const (
	// startupWatchList: a current API server (WatchList on, the default
	// since 1.32): the reflector's watch with sendInitialEvents=true streams
	// every object as an ADDED event, then the initial-events-end bookmark.
	// client-go ≥ 1.35 (WatchListClient on) tries this first.
	startupWatchList startupMode = iota
	// startupListPaged: an API server without WatchList that honours limit
	// and continue on every LIST (as when it lists from etcd): the
	// reflector's pager fetches pages of 500.
	startupListPaged
	// startupListUnpaged: an API server without WatchList whose watch cache
	// ignores limit for resourceVersion=0 (the mini cluster's kube-apiserver
	// does): the reflector's first LIST (resourceVersion=0) gets every
	// object in one response.
	startupListUnpaged
)

func (m startupMode) String() string {
	return [...]string{"watchlist", "list-paged", "list-unpaged"}[m]
}

// startupShape is the size of the fake cluster.
type startupShape struct {
	deployments, replicas, nodes, namespaces int
}

// startupCluster is the acceptance item's cluster: 100,000 pods.
var startupCluster = startupShape{deployments: 10000, replicas: 10, nodes: 1000, namespaces: 50}

func (s startupShape) objects() int {
	return s.deployments*(1+2+s.replicas) + s.nodes
}

// Sentinels in the item templates: runs of one character, patched with the
// digits of each object. Their widths are fixed, so every length prefix of
// a protobuf encoding stays valid.
const (
	sentDep   = '#' // deployment (or node) number, 5 decimal digits
	sentRep   = '%' // replica number, 2 decimal digits
	sentNS    = '~' // namespace number, 2 decimal digits
	sentUID   = '^' // the object's UID index, 12 hex digits
	sentOwner = '!' // the owner's UID index, 12 hex digits
)

type startupField struct {
	off, width int
	sent       byte
}

// startupTemplate is one encoded item (a list item or a whole watch frame)
// with the positions of its sentinels.
type startupTemplate struct {
	b      []byte
	fields []startupField
}

func newStartupTemplate(b []byte) *startupTemplate {
	t := &startupTemplate{b: b}
	widths := map[byte]int{sentDep: 5, sentRep: 2, sentNS: 2, sentUID: 12, sentOwner: 12}
	for i := 0; i < len(b); {
		w, ok := widths[b[i]]
		j := i
		for j < len(b) && b[j] == b[i] {
			j++
		}
		if ok && j-i == w {
			t.fields = append(t.fields, startupField{off: i, width: w, sent: b[i]})
		}
		i = j
	}
	return t
}

// startupVals are the numbers of one object.
type startupVals struct{ dep, rep, ns, uid, owner int }

// appendTo appends the template patched with v.
func (t *startupTemplate) appendTo(dst []byte, v startupVals) []byte {
	n := len(dst)
	dst = append(dst, t.b...)
	for _, f := range t.fields {
		p := dst[n+f.off : n+f.off+f.width]
		switch f.sent {
		case sentDep:
			putDec(p, v.dep)
		case sentRep:
			putDec(p, v.rep)
		case sentNS:
			putDec(p, v.ns)
		case sentUID:
			putHex(p, v.uid&(1<<40-1)) // the kind's code is in the template
		case sentOwner:
			putHex(p, v.owner&(1<<40-1))
		}
	}
	return dst
}

func putDec(p []byte, v int) {
	for i := len(p) - 1; i >= 0; i-- {
		p[i] = byte('0' + v%10)
		v /= 10
	}
}

func putHex(p []byte, v int) {
	const digits = "0123456789abcdef"
	for i := len(p) - 1; i >= 0; i-- {
		p[i] = digits[v&15]
		v >>= 4
	}
}

// UID index ranges of the kinds (the UID is "0000000k-1111-4000-8000-" and
// the index in 12 hex digits; k is the kind's code).
const (
	uidDeployment = 1 << 40
	uidRS         = 2 << 40
	uidPod        = 4 << 40
	uidNode       = 5 << 40
)

func startupUID(idx int) string {
	return fmt.Sprintf("%08x-1111-4000-8000-%012x", idx>>40, idx&(1<<40-1))
}

// The sentinel forms of names and UIDs.
var (
	tmplNS       = "team-~~"
	tmplDep      = "app-#####"
	tmplUID      = fmt.Sprintf("%08x-1111-4000-8000-", 0) + strings.Repeat("^", 12)
	tmplOwnerUID = fmt.Sprintf("%08x-1111-4000-8000-", 0) + strings.Repeat("!", 12)
)

// startupUIDTmpl is tmplUID with the kind's code (the code is constant per
// template, so it needs no sentinel).
func startupUIDTmpl(tmpl string, code int) types.UID {
	return types.UID(fmt.Sprintf("%08x", code) + tmpl[8:])
}

var startupCreated = metav1.NewTime(time.Date(2026, 11, 1, 9, 30, 0, 0, time.UTC))

func startupManaged(manager, apiVersion, subresource, fields string) metav1.ManagedFieldsEntry {
	return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: apiVersion,
		Time: &startupCreated, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(fields)}, Subresource: subresource}
}

func startupOwner(apiVersion, kind, name string, code int) []metav1.OwnerReference {
	t := true
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name,
		UID: startupUIDTmpl(tmplOwnerUID, code), Controller: &t, BlockOwnerDeletion: &t}}
}

// The metadata of the kinds, as a metadata-only LIST or WATCH returns it:
// labels, annotations and managed fields of a realistic size (a pod's
// metadata is ≈ 1.9 KB of JSON).
func startupDeploymentMeta() *metav1.PartialObjectMetadata {
	lastApplied := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{},"labels":{"app.kubernetes.io/name":"app-#####","app.kubernetes.io/part-of":"shop"},"name":"app-#####","namespace":"team-~~"},"spec":{"replicas":10,"selector":{"matchLabels":{"app":"app-#####"}},"template":{"metadata":{"labels":{"app":"app-#####"}},"spec":{"containers":[{"image":"registry.example/app:1.2.3","name":"app","ports":[{"containerPort":8080}],"resources":{"requests":{"cpu":"100m","memory":"128Mi"}}}]}}}}` + "\n"
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name: tmplDep, Namespace: tmplNS, UID: startupUIDTmpl(tmplUID, 1), ResourceVersion: "1000", Generation: 2,
		CreationTimestamp: startupCreated,
		Labels:            map[string]string{"app.kubernetes.io/name": tmplDep, "app.kubernetes.io/part-of": "shop"},
		Annotations: map[string]string{"deployment.kubernetes.io/revision": "2",
			"kubectl.kubernetes.io/last-applied-configuration": lastApplied},
		ManagedFields: []metav1.ManagedFieldsEntry{
			startupManaged("kubectl-client-side-apply", "apps/v1", "", `{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}},"f:labels":{".":{},"f:app.kubernetes.io/name":{},"f:app.kubernetes.io/part-of":{}}},"f:spec":{"f:progressDeadlineSeconds":{},"f:replicas":{},"f:revisionHistoryLimit":{},"f:selector":{},"f:strategy":{"f:rollingUpdate":{".":{},"f:maxSurge":{},"f:maxUnavailable":{}},"f:type":{}},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:protocol":{}}},"f:resources":{".":{},"f:requests":{".":{},"f:cpu":{},"f:memory":{}}}}}}}}}`),
			startupManaged("kube-controller-manager", "apps/v1", "status", `{"f:metadata":{"f:annotations":{"f:deployment.kubernetes.io/revision":{}}},"f:status":{"f:availableReplicas":{},"f:conditions":{".":{},"k:{\"type\":\"Available\"}":{".":{},"f:lastTransitionTime":{},"f:lastUpdateTime":{},"f:message":{},"f:reason":{},"f:status":{},"f:type":{}},"k:{\"type\":\"Progressing\"}":{".":{},"f:lastTransitionTime":{},"f:lastUpdateTime":{},"f:message":{},"f:reason":{},"f:status":{},"f:type":{}}},"f:observedGeneration":{},"f:readyReplicas":{},"f:replicas":{},"f:updatedReplicas":{}}}`),
		},
	}}
}

func startupRSName(rev int) string { return fmt.Sprintf("%s-%09x", tmplDep, 0x7bc89f5d4+rev) }

func startupRSMeta(rev int) *metav1.PartialObjectMetadata {
	hash := fmt.Sprintf("%09x", 0x7bc89f5d4+rev)
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name: startupRSName(rev), Namespace: tmplNS, UID: startupUIDTmpl(tmplUID, 2), ResourceVersion: "1000", Generation: int64(1 + rev),
		CreationTimestamp: startupCreated,
		Labels:            map[string]string{"app": tmplDep, "pod-template-hash": hash},
		Annotations: map[string]string{"deployment.kubernetes.io/desired-replicas": "10", "deployment.kubernetes.io/max-replicas": "13",
			"deployment.kubernetes.io/revision": strconv.Itoa(1 + rev)},
		OwnerReferences: startupOwner("apps/v1", "Deployment", tmplDep, 1),
		ManagedFields: []metav1.ManagedFieldsEntry{
			startupManaged("kube-controller-manager", "apps/v1", "", `{"f:metadata":{"f:annotations":{".":{},"f:deployment.kubernetes.io/desired-replicas":{},"f:deployment.kubernetes.io/max-replicas":{},"f:deployment.kubernetes.io/revision":{}},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"`+tmplOwnerUID+`\"}":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:name":{}}}}}}}`),
			startupManaged("kube-controller-manager", "apps/v1", "status", `{"f:status":{"f:availableReplicas":{},"f:fullyLabeledReplicas":{},"f:observedGeneration":{},"f:readyReplicas":{},"f:replicas":{}}}`),
		},
	}}
}

func startupPodMeta() *metav1.PartialObjectMetadata {
	rs := startupRSName(0)
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name: rs + "-x%%", GenerateName: rs + "-", Namespace: tmplNS, UID: startupUIDTmpl(tmplUID, 4), ResourceVersion: "1000",
		CreationTimestamp: startupCreated,
		Labels:            map[string]string{"app": tmplDep, "pod-template-hash": "7bc89f5d4"},
		OwnerReferences:   startupOwner("apps/v1", "ReplicaSet", rs, 2),
		ManagedFields: []metav1.ManagedFieldsEntry{
			startupManaged("kube-controller-manager", "v1", "", `{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"`+tmplOwnerUID+`\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:protocol":{}}},"f:resources":{".":{},"f:requests":{".":{},"f:cpu":{},"f:memory":{}}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}`),
			startupManaged("kubelet", "v1", "status", `{"f:status":{"f:conditions":{"k:{\"type\":\"ContainersReady\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}},"k:{\"type\":\"Initialized\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}},"k:{\"type\":\"PodReadyToStartContainers\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}},"k:{\"type\":\"Ready\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}}},"f:containerStatuses":{},"f:hostIP":{},"f:hostIPs":{},"f:phase":{},"f:podIP":{},"f:podIPs":{".":{},"k:{\"ip\":\"10.244.1.5\"}":{".":{},"f:ip":{}}},"f:startTime":{}}}`),
		},
	}}
}

func startupNodeMeta() *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name: "node-#####", UID: startupUIDTmpl(tmplUID, 5), ResourceVersion: "1000", CreationTimestamp: startupCreated,
		Labels: map[string]string{"kubernetes.io/hostname": "node-#####", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
			"node.kubernetes.io/instance-type": "m6i.2xlarge", "topology.kubernetes.io/region": "eu-west-1", "topology.kubernetes.io/zone": "eu-west-1a"},
		Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
		ManagedFields: []metav1.ManagedFieldsEntry{
			startupManaged("kubelet", "v1", "", `{"f:metadata":{"f:annotations":{".":{},"f:volumes.kubernetes.io/controller-managed-attach-detach":{}},"f:labels":{".":{},"f:kubernetes.io/arch":{},"f:kubernetes.io/hostname":{},"f:kubernetes.io/os":{},"f:node.kubernetes.io/instance-type":{},"f:topology.kubernetes.io/region":{},"f:topology.kubernetes.io/zone":{}}}}`),
		},
	}}
}

// startupEncoding is one wire form: protobuf (what client-go's metadata
// client asks for first) or JSON.
type startupEncoding struct {
	name               string
	listType, itemType string // Content-Type of a LIST and of a WATCH
}

var (
	startupProtobuf = startupEncoding{"protobuf", "application/vnd.kubernetes.protobuf", "application/vnd.kubernetes.protobuf;stream=watch"}
	startupJSON     = startupEncoding{"json", "application/json", "application/json"}
)

// startupKind is one resource of the fake API server.
type startupKind struct {
	resource string
	n        int
	// vals gives object i's numbers and its template (index into tmpls).
	vals  func(i int) (startupVals, int)
	metas []*metav1.PartialObjectMetadata
	// Per encoding: list item frames and watch frames, per template.
	items, frames map[string][]*startupTemplate
}

// startupFixture is the fake API server: an http.RoundTripper serving
// metadata-only LISTs (paged or not) and WATCHes (watch-list streams, then
// idle) for the watched kinds, generating every body lazily as it is read.
type startupFixture struct {
	mode      startupMode
	forceJSON bool
	kinds     map[string]*startupKind // by resource
	bookmarks map[string][]byte       // by encoding

	pages, watchLists, watches, refused atomic.Int64
	mu                                  sync.Mutex
	served                              map[string]bool // encodings answered
	accepts                             map[string]bool // Accept headers seen
}

func newStartupFixture(tb testing.TB, mode startupMode, forceJSON bool, shape startupShape) *startupFixture {
	tb.Helper()
	f := &startupFixture{mode: mode, forceJSON: forceJSON, kinds: map[string]*startupKind{},
		served: map[string]bool{}, accepts: map[string]bool{}, bookmarks: map[string][]byte{}}
	for _, enc := range []startupEncoding{startupProtobuf, startupJSON} {
		f.bookmarks[enc.name] = startupBookmark(tb, enc)
	}
	add := func(resource string, n int, vals func(int) (startupVals, int), metas ...*metav1.PartialObjectMetadata) {
		k := &startupKind{resource: resource, n: n, vals: vals, metas: metas,
			items: map[string][]*startupTemplate{}, frames: map[string][]*startupTemplate{}}
		for _, m := range metas {
			for _, enc := range []startupEncoding{startupProtobuf, startupJSON} {
				item, frame := startupEncode(tb, enc, m)
				k.items[enc.name] = append(k.items[enc.name], newStartupTemplate(item))
				k.frames[enc.name] = append(k.frames[enc.name], newStartupTemplate(frame))
			}
		}
		f.kinds[resource] = k
	}
	ns := shape.namespaces
	add("deployments", shape.deployments, func(i int) (startupVals, int) {
		return startupVals{dep: i, ns: i % ns, uid: uidDeployment + i}, 0
	}, startupDeploymentMeta())
	add("replicasets", 2*shape.deployments, func(i int) (startupVals, int) {
		d := i / 2
		return startupVals{dep: d, ns: d % ns, uid: uidRS + i, owner: uidDeployment + d}, i % 2
	}, startupRSMeta(0), startupRSMeta(1))
	add("pods", shape.deployments*shape.replicas, func(i int) (startupVals, int) {
		d, r := i/shape.replicas, i%shape.replicas
		return startupVals{dep: d, rep: r, ns: d % ns, uid: uidPod + i, owner: uidRS + 2*d}, 0
	}, startupPodMeta())
	add("nodes", shape.nodes, func(i int) (startupVals, int) {
		return startupVals{dep: i, uid: uidNode + i}, 0
	}, startupNodeMeta())
	for _, r := range []string{"statefulsets", "daemonsets", "jobs", "cronjobs"} {
		add(r, 0, nil)
	}
	return f
}

// startupEncode returns m's encoding as a list item (protobuf: the items
// field with its length prefix) and as an ADDED watch frame.
func startupEncode(tb testing.TB, enc startupEncoding, m *metav1.PartialObjectMetadata) (item, frame []byte) {
	tb.Helper()
	m = m.DeepCopy()
	m.TypeMeta = metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "PartialObjectMetadata"}
	if enc.name == startupJSON.name {
		item, err := json.Marshal(m)
		if err != nil {
			tb.Fatal(err)
		}
		frame := append(append([]byte(`{"type":"ADDED","object":`), item...), "}\n"...)
		return item, frame
	}
	raw, err := m.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	// The items field of PartialObjectMetadataList, as its Marshal writes
	// it (the list without items is a prefix or suffix of the list with
	// one).
	zero, err := (&metav1.PartialObjectMetadataList{}).Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	one, err := (&metav1.PartialObjectMetadataList{Items: []metav1.PartialObjectMetadata{*m}}).Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	switch {
	case bytes.HasPrefix(one, zero):
		item = one[len(zero):]
	case bytes.HasSuffix(one, zero):
		item = one[:len(one)-len(zero)]
	default:
		tb.Fatal("cannot find the items field of PartialObjectMetadataList")
	}
	if !bytes.HasSuffix(item, raw) {
		tb.Fatal("the items field does not end with the item")
	}
	return item, startupWatchFrame(tb, "ADDED", m)
}

// The API server's protobuf encoders: objects with the "k8s\x00" envelope,
// watch events raw (the stream's frames are length-prefixed).
var (
	startupSerializer    = protobuf.NewSerializer(metainternalversionscheme.Scheme, metainternalversionscheme.Scheme)
	startupRawSerializer = protobuf.NewRawSerializer(metainternalversionscheme.Scheme, metainternalversionscheme.Scheme)
)

// startupWatchFrame is a length-prefixed protobuf watch frame, encoded as the
// API server does: a WatchEvent whose object is the embedded encoding.
func startupWatchFrame(tb testing.TB, typ string, m *metav1.PartialObjectMetadata) []byte {
	tb.Helper()
	var obj bytes.Buffer
	if err := startupSerializer.Encode(m, &obj); err != nil {
		tb.Fatal(err)
	}
	var ev bytes.Buffer
	if err := startupRawSerializer.Encode(&metav1.WatchEvent{Type: typ, Object: k8sruntime.RawExtension{Raw: obj.Bytes()}}, &ev); err != nil {
		tb.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(ev.Len())), ev.Bytes()...)
}

// startupBookmark is the initial-events-end bookmark that ends a watch-list
// stream.
func startupBookmark(tb testing.TB, enc startupEncoding) []byte {
	tb.Helper()
	m := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "PartialObjectMetadata"},
		ObjectMeta: metav1.ObjectMeta{ResourceVersion: "1000", Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}}
	if enc.name == startupJSON.name {
		b, err := json.Marshal(m)
		if err != nil {
			tb.Fatal(err)
		}
		return append(append([]byte(`{"type":"BOOKMARK","object":`), b...), "}\n"...)
	}
	return startupWatchFrame(tb, "BOOKMARK", m)
}

// startupListBody is a LIST page's body: the list header, items [from, to)
// generated as they are read, and the continue token (if any).
func (f *startupFixture) startupListBody(k *startupKind, enc startupEncoding, from, to int, cont string) io.Reader {
	lm := metav1.ListMeta{ResourceVersion: "1000", Continue: cont}
	if cont != "" {
		rem := int64(k.n - to)
		lm.RemainingItemCount = &rem
	}
	items := k.items[enc.name]
	gen := func(dst []byte, i int) []byte {
		v, t := k.vals(i)
		if enc.name == startupJSON.name && i > from {
			dst = append(dst, ',')
		}
		return items[t].appendTo(dst, v)
	}
	if enc.name == startupJSON.name {
		meta, _ := json.Marshal(lm)
		prefix := fmt.Appendf(nil, `{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":%s,"items":[`, meta)
		return &startupItemsReader{prefix: prefix, next: from, end: to, gen: gen, suffix: []byte("]}")}
	}
	// protobuf: "k8s\x00" + runtime.Unknown{typeMeta: 1, raw: 2} whose raw
	// is the list: its ListMeta, then every item field. The length of raw
	// is known beforehand: the items of a template have a fixed size.
	head, err := (&metav1.PartialObjectMetadataList{ListMeta: lm}).Marshal()
	if err != nil {
		panic(err)
	}
	rawLen := len(head)
	for i := from; i < to; i++ {
		_, t := k.vals(i)
		rawLen += len(items[t].b)
	}
	tm := protoBytes(protoBytes(nil, 1, []byte("meta.k8s.io/v1")), 2, []byte("PartialObjectMetadataList"))
	prefix := protoBytes([]byte("k8s\x00"), 1, tm)
	prefix = binary.AppendUvarint(append(prefix, 2<<3|2), uint64(rawLen))
	prefix = append(prefix, head...)
	return &startupItemsReader{prefix: prefix, next: from, end: to, gen: gen}
}

// protoBytes appends a length-delimited protobuf field (field < 16).
func protoBytes(dst []byte, field int, b []byte) []byte {
	dst = binary.AppendUvarint(append(dst, byte(field<<3|2)), uint64(len(b)))
	return append(dst, b...)
}

// startupItemsReader yields prefix, then the generated items one at a time,
// then suffix, then (if block is set) blocks until closed: an idle watch.
type startupItemsReader struct {
	prefix, suffix []byte
	next, end      int
	gen            func(dst []byte, i int) []byte
	cur            []byte
	scratch        []byte
	done           bool

	block     context.Context
	closeOnce sync.Once
	closed    chan struct{}
}

func (r *startupItemsReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		switch {
		case r.prefix != nil:
			r.cur, r.prefix = r.prefix, nil
		case r.next < r.end:
			r.scratch = r.gen(r.scratch[:0], r.next)
			r.cur = r.scratch
			r.next++
		case r.suffix != nil:
			r.cur, r.suffix = r.suffix, nil
		case r.block != nil:
			select {
			case <-r.block.Done():
			case <-r.closed:
			}
			return 0, io.EOF
		default:
			return 0, io.EOF
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (r *startupItemsReader) Close() error {
	if r.closed != nil {
		r.closeOnce.Do(func() { close(r.closed) })
	}
	return nil
}

// negotiate picks the encoding of the answer as the API server does: the
// first media type of Accept it can produce.
func (f *startupFixture) negotiate(accept string) startupEncoding {
	f.mu.Lock()
	f.accepts[accept] = true
	f.mu.Unlock()
	if f.forceJSON {
		return startupJSON
	}
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "application/vnd.kubernetes.protobuf":
			return startupProtobuf
		case "application/json", "*/*":
			return startupJSON
		}
	}
	return startupJSON
}

func (f *startupFixture) RoundTrip(req *http.Request) (*http.Response, error) {
	resp := &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: req, Header: http.Header{}}
	status := func(code int, reason, msg string) (*http.Response, error) {
		resp.StatusCode = code
		resp.Header.Set("Content-Type", "application/json")
		resp.Body = io.NopCloser(strings.NewReader(fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":%q,"reason":%q,"code":%d}`, msg, reason, code)))
		return resp, nil
	}
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	k, ok := f.kinds[parts[len(parts)-1]]
	if !ok || req.Method != http.MethodGet {
		return status(http.StatusNotFound, "NotFound", "no such resource: "+req.URL.Path)
	}
	enc := f.negotiate(req.Header.Get("Accept"))
	f.mu.Lock()
	f.served[enc.name] = true
	f.mu.Unlock()
	q := req.URL.Query()
	if q.Get("watch") == "true" || q.Get("watch") == "1" {
		resp.Header.Set("Content-Type", enc.itemType)
		body := &startupItemsReader{block: req.Context(), closed: make(chan struct{})}
		if q.Get("sendInitialEvents") == "true" {
			if f.mode != startupWatchList {
				// What an API server without the WatchList feature answers.
				f.refused.Add(1)
				return status(http.StatusUnprocessableEntity, "Invalid", "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled")
			}
			f.watchLists.Add(1)
			frames := k.frames[enc.name]
			body.end = k.n
			body.gen = func(dst []byte, i int) []byte {
				v, t := k.vals(i)
				return frames[t].appendTo(dst, v)
			}
			body.suffix = f.bookmarks[enc.name]
		} else {
			f.watches.Add(1)
		}
		resp.Body = body
		return resp, nil
	}
	// A LIST.
	from, to := 0, k.n
	if c := q.Get("continue"); c != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(c, k.resource+"-"))
		if err != nil || n < 0 || n > k.n {
			return status(http.StatusGone, "Expired", "bad continue token "+c)
		}
		from = n
	}
	limit, _ := strconv.Atoi(q.Get("limit"))
	paged := f.mode == startupListPaged || q.Get("resourceVersion") != "0" // watch caches ignore limit only for RV=0
	if limit > 0 && paged {
		to = min(from+limit, k.n)
	}
	cont := ""
	if to < k.n {
		cont = fmt.Sprintf("%s-%d", k.resource, to)
	}
	f.pages.Add(1)
	resp.Header.Set("Content-Type", enc.listType)
	resp.Body = io.NopCloser(f.startupListBody(k, enc, from, to, cont))
	return resp, nil
}

// startupMem samples the Go heap (and the process RSS) until stopped.
type startupMem struct {
	stop                        chan struct{}
	done                        chan struct{}
	peakObjects, peakLive, peak uint64
	peakRSS                     int
	samples                     int
}

var startupMetrics = []string{"/memory/classes/heap/objects:bytes", "/gc/heap/live:bytes"}

func startupHeap() (objects, live uint64) {
	s := []metrics.Sample{{Name: startupMetrics[0]}, {Name: startupMetrics[1]}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

func startSampling(every time.Duration) *startupMem {
	m := &startupMem{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for i := 0; ; i++ {
			obj, live := startupHeap()
			m.peakObjects = max(m.peakObjects, obj)
			m.peakLive = max(m.peakLive, live)
			if i%5 == 0 {
				m.peakRSS = max(m.peakRSS, startupRSSKB())
			}
			m.samples++
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *startupMem) finish() {
	close(m.stop)
	<-m.done
}

// startupRSSKB is the process's VmRSS.
func startupRSSKB() int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

func startupSettle() (objects uint64) {
	runtime.GC()
	runtime.GC()
	obj, _ := startupHeap()
	return obj
}

// startupResult is one start-up's figures.
type startupResult struct {
	objects                           int
	base, peakObjects, peakLive       uint64 // bytes above base for the peaks
	steady                            uint64
	rssBefore, rssPeak, rssSteady     int // KiB
	pages, watchLists, watches, refus int64
	took                              time.Duration
	samples                           int
	encodings, accepts                string
}

// runStartup starts an ObjectCache against f and waits for the sync,
// sampling the heap every 2ms.
// The daemon's GC targets in steady state and while the caches sync.
const startupGOGC, startupSyncGOGC = 50, 10

func runStartup(tb testing.TB, f *startupFixture, shape startupShape) startupResult {
	tb.Helper()
	// The daemon's GC: GOGC=50 as the deploy manifests set it, 10 while
	// the caches sync (cmd/kube-otel-bridge: syncGCPercent).
	defer debug.SetGCPercent(debug.SetGCPercent(startupGOGC))
	var r startupResult
	r.base = startupSettle()
	debug.FreeOSMemory()
	r.rssBefore = startupRSSKB()
	mem := startSampling(2 * time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := NewObjectCache(CacheOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	// The daemon's client: metadata.NewForConfig (protobuf first) at the
	// default --kube-api-qps 20 and --kube-api-burst 40.
	md, err := metadata.NewForConfig(&rest.Config{Host: "http://kob-startup.invalid", Transport: f, QPS: 20, Burst: 40})
	if err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	debug.SetGCPercent(startupSyncGOGC)
	if err := c.Start(ctx, md); err != nil {
		tb.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Minute)
	synced := c.WaitForSync(wctx)
	wcancel()
	debug.SetGCPercent(startupGOGC)
	r.took = time.Since(start)
	mem.finish()
	if !synced {
		tb.Fatalf("the cache did not sync (err %v)", c.Err())
	}
	steady := startupSettle()
	debug.FreeOSMemory()
	r.rssSteady = startupRSSKB()
	r.objects = c.Len()
	r.peakObjects, r.peakLive, r.steady = mem.peakObjects-min(mem.peakObjects, r.base), mem.peakLive-min(mem.peakLive, r.base), steady-min(steady, r.base)
	r.rssPeak, r.samples = mem.peakRSS, mem.samples
	r.pages, r.watchLists, r.watches, r.refus = f.pages.Load(), f.watchLists.Load(), f.watches.Load(), f.refused.Load()
	f.mu.Lock()
	for e := range f.served {
		r.encodings += e + " "
	}
	for a := range f.accepts {
		r.accepts += a + " | "
	}
	f.mu.Unlock()

	if want := shape.objects(); r.objects != want {
		tb.Fatalf("the cache holds %d objects, want %d", r.objects, want)
	}
	// An owner chain resolves: the last pod → its ReplicaSet → Deployment.
	d, rep := shape.deployments-1, shape.replicas-1
	pod := uidPod + d*shape.replicas + rep
	chain, known := c.Chain([]convert.Ref{{Kind: "Pod", UID: startupUID(pod)}})
	if !known || len(chain) != 3 || chain[1].UID != startupUID(uidRS+2*d) || chain[2].UID != startupUID(uidDeployment+d) ||
		chain[2].Name != fmt.Sprintf("app-%05d", d) || chain[2].Namespace != fmt.Sprintf("team-%02d", d%shape.namespaces) {
		tb.Fatalf("chain of pod %s: %+v (known %v)", startupUID(pod), chain, known)
	}
	runtime.KeepAlive(c)
	return r
}

// fixtureOnly reads every page (or stream) the reflectors would, 8 kinds at
// once, and discards it: the fake server's own share of the heap.
func fixtureOnly(tb testing.TB, f *startupFixture) uint64 {
	tb.Helper()
	base := startupSettle()
	mem := startSampling(2 * time.Millisecond)
	var wg sync.WaitGroup
	accept := "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
	for _, k := range f.kinds {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if f.mode == startupWatchList {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://x/api/v1/"+k.resource+"?watch=true&sendInitialEvents=true", nil)
				req.Header.Set("Accept", accept)
				resp, err := f.RoundTrip(req)
				if err != nil {
					tb.Error(err)
					return
				}
				body := resp.Body.(*startupItemsReader)
				body.block = nil // end after the bookmark
				_, _ = io.Copy(io.Discard, body)
				return
			}
			cont := ""
			for {
				u := "http://x/api/v1/" + k.resource + "?limit=500&resourceVersion=0"
				if cont != "" {
					u = "http://x/api/v1/" + k.resource + "?limit=500&continue=" + cont
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
				req.Header.Set("Accept", accept)
				resp, err := f.RoundTrip(req)
				if err != nil {
					tb.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				if f.mode == startupListUnpaged {
					return
				}
				from := 0
				if cont != "" {
					from, _ = strconv.Atoi(strings.TrimPrefix(cont, k.resource+"-"))
				}
				if from+500 >= k.n {
					return
				}
				cont = fmt.Sprintf("%s-%d", k.resource, from+500)
			}
		})
	}
	wg.Wait()
	mem.finish()
	f.pages.Store(0)
	f.watchLists.Store(0)
	f.refused.Store(0)
	f.watches.Store(0)
	f.mu.Lock()
	f.served, f.accepts = map[string]bool{}, map[string]bool{}
	f.mu.Unlock()
	return mem.peakObjects - min(mem.peakObjects, base)
}

// BenchmarkObjectCacheStartup measures the object cache's start-up on a
// cluster of 100,000 pods (10,000 Deployments × 10 replicas, 2 ReplicaSets
// per Deployment, 1,000 nodes: 131,000 objects), the acceptance item "ready
// (caches synced) without a spike above 2× the steady-state RSS; the
// informers use pagination and metadata-only watches".
//
// The API server is a fake (an http.RoundTripper in rest.Config.Transport)
// that answers the daemon's own metadata client (metadata.NewForConfig, at
// the daemon's default QPS 20 / burst 40) in the form its Accept asks first:
// protobuf PartialObjectMetadataList and PartialObjectMetadata watch frames
// (the json sub-benchmark forces JSON). Bodies are generated as they are
// read from per-kind templates, so the fixture holds almost nothing.
// Sub-benchmarks are the three ways an API server could answer a
// reflector's initial sync (see startupMode): watchlist (the default with
// client-go ≥ 1.35 and a WatchList API server), list-paged (no WatchList,
// limit/continue honoured: pages of 500), list-unpaged (no WatchList, the
// watch cache ignores limit for resourceVersion=0). The cache asks for none
// of these: it lists page by page with consistent reads, which every server
// pages (kindStore.streamList), and puts each page into the cache as it
// comes, so the three show the same start-up; they stay to show it. The
// GC runs as in the daemon: GOGC 50, 10 during the sync.
//
// Reported, as bytes above the heap before the start:
//   - peak-heap-MiB: the most heap objects seen during the sync (sampled
//     every 2ms: runtime/metrics /memory/classes/heap/objects:bytes), live
//     objects and garbage not yet collected, i.e. what the heap must hold;
//   - peak-live-MiB: the most live heap a GC cycle marked during the sync
//     (/gc/heap/live:bytes);
//   - steady-heap-MiB: the heap after the sync and two GCs;
//   - peak/steady and live/steady: the ratios (the target is < 2);
//   - pages: LIST requests answered; fixture-MiB: the fake server's own
//     peak (its bodies read and discarded without the cache);
//   - rss-peak-MiB, rss-steady-MiB: VmRSS of the process above its value
//     before the start (after debug.FreeOSMemory), at its highest during the
//     sync and after it (after FreeOSMemory again). Process-wide: it counts
//     the fixture too.
//
// Each start-up takes seconds (the client's QPS 20 alone spaces the 266
// pages of list-paged over ≈ 13s); run with -benchtime=1x:
//
//	go test -run '^$' -bench ObjectCacheStartup -benchtime=1x ./watch/
func BenchmarkObjectCacheStartup(b *testing.B) {
	for _, m := range []struct {
		mode startupMode
		json bool
	}{{startupWatchList, false}, {startupListPaged, false}, {startupListUnpaged, false}, {startupListPaged, true}} {
		name := m.mode.String()
		if m.json {
			name += "-json"
		}
		b.Run(name, func(b *testing.B) {
			shape := startupCluster
			var r startupResult
			var fixture uint64
			for b.Loop() {
				f := newStartupFixture(b, m.mode, m.json, shape)
				fixture = fixtureOnly(b, f)
				r = runStartup(b, f, shape)
			}
			// The cache lists page by page whatever the server could do
			// (kindStore.streamList), never by watch-list.
			if r.pages <= int64(len(WatchedKinds)) || r.watchLists != 0 {
				b.Fatalf("%d LIST requests for %d kinds and %d watch-list streams: the cache did not list page by page", r.pages, len(WatchedKinds), r.watchLists)
			}
			const mib = 1 << 20
			b.ReportMetric(float64(r.peakObjects)/mib, "peak-heap-MiB")
			b.ReportMetric(float64(r.peakLive)/mib, "peak-live-MiB")
			b.ReportMetric(float64(r.steady)/mib, "steady-heap-MiB")
			b.ReportMetric(float64(r.peakObjects)/float64(r.steady), "peak/steady")
			b.ReportMetric(float64(r.peakLive)/float64(r.steady), "live/steady")
			b.ReportMetric(float64(r.steady)/float64(r.objects), "steady-B/obj")
			b.ReportMetric(float64(r.pages), "pages")
			b.ReportMetric(float64(fixture)/mib, "fixture-MiB")
			b.ReportMetric(float64(r.rssPeak-r.rssBefore)/1024, "rss-peak-MiB")
			b.ReportMetric(float64(r.rssSteady-r.rssBefore)/1024, "rss-steady-MiB")
			b.ReportMetric(r.took.Seconds(), "sync-s")
			b.Logf("%s: %d objects synced in %s (%d heap samples); %d LIST pages, %d watch-list streams, %d watch-list refusals, %d idle watches; answered in %s(Accept: %s)",
				name, r.objects, r.took.Round(time.Millisecond), r.samples, r.pages, r.watchLists, r.refus, r.watches, r.encodings, r.accepts)
			b.Logf("%s: heap above the start: peak %.1f MiB (live at a GC mark: %.1f MiB), steady %.1f MiB (%.0f B/object): peak/steady %.2f, live/steady %.2f; fixture alone peaks at %.1f MiB; RSS +%.1f MiB at peak, +%.1f MiB steady",
				name, float64(r.peakObjects)/mib, float64(r.peakLive)/mib, float64(r.steady)/mib, float64(r.steady)/float64(r.objects),
				float64(r.peakObjects)/float64(r.steady), float64(r.peakLive)/float64(r.steady), float64(fixture)/mib,
				float64(r.rssPeak-r.rssBefore)/1024, float64(r.rssSteady-r.rssBefore)/1024)
		})
	}
}

// TestObjectCacheStartupFixture runs the start-up against a small fake
// cluster in every mode: the fixture's encodings decode, pagination and
// watch-list streams work, and owner chains resolve.
func TestObjectCacheStartupFixture(t *testing.T) {
	// 600 pods: two pages of the pager's 500.
	shape := startupShape{deployments: 120, replicas: 5, nodes: 7, namespaces: 5}
	for _, m := range []struct {
		mode startupMode
		json bool
	}{{startupWatchList, false}, {startupWatchList, true}, {startupListPaged, false}, {startupListPaged, true}, {startupListUnpaged, false}} {
		t.Run(fmt.Sprintf("%s-json=%v", m.mode, m.json), func(t *testing.T) {
			f := newStartupFixture(t, m.mode, m.json, shape)
			r := runStartup(t, f, shape)
			// Whatever the server: pages of 500 (kindStore.streamList), one
			// per kind, two for the pods; no watch-list asked for.
			if r.watchLists != 0 || r.refus != 0 || r.pages != int64(len(WatchedKinds))+1 {
				t.Errorf("%d watch-list streams, %d refusals, %d LISTs", r.watchLists, r.refus, r.pages)
			}
			want := "protobuf "
			if m.json {
				want = "json "
			}
			if r.encodings != want {
				t.Errorf("answered in %q, want %q", r.encodings, want)
			}
		})
	}
}
