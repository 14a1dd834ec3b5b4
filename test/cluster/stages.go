package cluster

import (
	"bytes"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// Annotations that select the fake kubelet's behaviour for a pod or node.
const (
	// AnnotationFailure makes a pod's fake kubelet fail: FailureImagePull,
	// FailureCrashLoop or FailureReadiness.
	AnnotationFailure = "fake.kube-otel-bridge.io/failure"
	// AnnotationRepeatInterval is the time between repeated warnings
	// (BackOff, Unhealthy) as a Go duration; default 1s. A real kubelet backs
	// off from 10s to 5m; tests want the same shape, faster.
	AnnotationRepeatInterval = "fake.kube-otel-bridge.io/repeat-interval"
	// AnnotationNodeNotReady set to "true" on a node makes its fake kubelet
	// report Ready=False; removing it makes the node Ready again.
	AnnotationNodeNotReady = "fake.kube-otel-bridge.io/not-ready"

	FailureImagePull = "image-pull"
	FailureCrashLoop = "crash-loop"
	FailureReadiness = "readiness"

	// Internal state of the fake kubelet, kept on the pod.
	annotationStep        = "fake.kube-otel-bridge.io/kubelet-step"
	annotationRepeatCount = "fake.kube-otel-bridge.io/repeat-count"
	annotationRepeatFirst = "fake.kube-otel-bridge.io/repeat-first"

	// nodeAnnotation marks the nodes kwok manages.
	nodeAnnotation      = "kwok.x-k8s.io/node"
	nodeAnnotationValue = "fake"

	// maxContainerEvents is how many containers per pod get their own
	// Pulling/Pulled/Created/Started/Killing events (more are rare in tests).
	maxContainerEvents = 4
)

// expr is one kwok stage selector expression (jq key, operator, values).
type expr struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

func annotation(key string) string { return fmt.Sprintf(`.metadata.annotations["%s"]`, key) }

func in(key string, values ...string) expr { return expr{Key: key, Operator: "In", Values: values} }
func notIn(key string, values ...string) expr {
	return expr{Key: key, Operator: "NotIn", Values: values}
}
func exists(key string) expr       { return expr{Key: key, Operator: "Exists"} }
func doesNotExist(key string) expr { return expr{Key: key, Operator: "DoesNotExist"} }

var (
	alive     = doesNotExist(".metadata.deletionTimestamp")
	noFailure = notIn(annotation(AnnotationFailure), FailureImagePull, FailureCrashLoop, FailureReadiness)
)

func atStep(step string) expr { return in(annotation(annotationStep), step) }

// stage is one kwok Stage: when a pod or node matches, wait, then run steps.
type stage struct {
	name     string
	kind     string // Pod or Node
	match    []expr
	delayMs  int64
	jitterMs int64
	// repeat: the delay comes from AnnotationRepeatInterval (default 1s).
	repeat bool
	// each, if set, is an event emitted once per container before steps;
	// the stage is expanded into one variant per container count.
	each  *event
	steps []map[string]any
}

func (s stage) doc() map[string]any {
	delay := map[string]any{
		"durationMilliseconds":       s.delayMs,
		"jitterDurationMilliseconds": s.delayMs + s.jitterMs,
	}
	if s.repeat {
		delay = map[string]any{
			"durationMilliseconds": 1000,
			"durationFrom":         map[string]any{"expressionFrom": annotation(AnnotationRepeatInterval)},
		}
	}
	return map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1",
		"kind":       "Stage",
		"metadata":   map[string]any{"name": s.name},
		"spec": map[string]any{
			"resourceRef": map[string]any{"apiGroup": "v1", "kind": s.kind},
			"selector":    map[string]any{"matchExpressions": s.match},
			"delay":       delay,
			"steps":       s.steps,
		},
	}
}

// StagesYAML returns the kwok configuration (Stage documents) that makes the
// fake kubelets behave like real ones as far as Events go.
func StagesYAML() ([]byte, error) {
	var buf bytes.Buffer
	for i, s := range expand(append(podStages(), nodeStages()...)) {
		b, err := yaml.Marshal(s.doc())
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", s.name, err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// --- steps -----------------------------------------------------------------

func patchStatus(tmpl string) map[string]any {
	return map[string]any{"patch": map[string]any{"subresource": "status", "root": "status", "template": tmpl}}
}

func setStep(step string) map[string]any {
	return map[string]any{"patch": map[string]any{
		"root": "metadata", "type": "merge",
		"template": fmt.Sprintf("annotations:\n  %q: %q\n", annotationStep, step),
	}}
}

// bumpRepeat increments the repeat counter kept on the pod and remembers the
// time of the first repeat (the Event's firstTimestamp).
func bumpRepeat(step string) map[string]any {
	return map[string]any{"patch": map[string]any{
		"root": "metadata", "type": "merge",
		"template": repeatVars + fmt.Sprintf(`annotations:
  %q: {{ $n | toString | Quote }}
  %q: {{ $first | Quote }}
  %q: %q
`, annotationRepeatCount, annotationRepeatFirst, annotationStep, step),
	}}
}

const repeatVars = `{{ $ann := .metadata.annotations | default dict }}
{{ $n := add1 (atoi (index $ann "` + annotationRepeatCount + `" | default "0")) }}
{{ $first := index $ann "` + annotationRepeatFirst + `" | default Now }}
`

// event describes a kubelet event about a pod's container.
type event struct {
	typ, reason string
	// message is a Go template expression over $c (the container spec) and
	// the pod (.), e.g. `printf "Started container %s" $c.name`.
	message string
	// repeated events keep one Event object whose count grows.
	repeated bool
}

// podEvent returns a step that creates (or, for repeats, updates) a core/v1
// Event exactly as a kubelet writes it: source kubelet on the pod's node,
// fieldPath of the container, stable name per pod, container and reason.
func podEvent(e event, containerIdx int) map[string]any {
	count, first := "1", "{{ Now | Quote }}"
	vars := ""
	if e.repeated {
		vars, count, first = repeatVars, "{{ $n }}", "{{ $first | Quote }}"
	}
	tmpl := vars + fmt.Sprintf(`{{ $cs := .spec.containers }}
{{ $c := index $cs %d }}
{{ $msg := %s }}
apiVersion: v1
kind: Event
metadata:
  name: {{ printf "%%s.%%s" .metadata.name (printf "%%s/%%s/%s/%%s" .metadata.uid $c.name $msg | sha256sum | trunc 16) | Quote }}
  namespace: {{ .metadata.namespace | Quote }}
involvedObject:
  apiVersion: v1
  kind: Pod
  name: {{ .metadata.name | Quote }}
  namespace: {{ .metadata.namespace | Quote }}
  uid: {{ .metadata.uid | Quote }}
  fieldPath: {{ printf "spec.containers{%%s}" $c.name | Quote }}
reason: %s
type: %s
message: {{ $msg | Quote }}
source:
  component: kubelet
  host: {{ .spec.nodeName | Quote }}
reportingComponent: kubelet
reportingInstance: {{ .spec.nodeName | Quote }}
firstTimestamp: %s
lastTimestamp: {{ Now | Quote }}
count: %s
`, containerIdx, e.message, e.reason, e.reason, e.typ, first, count)
	return map[string]any{"apply": map[string]any{"template": tmpl}}
}

// expand turns each stage with a per-container event into variants selected
// by the pod's container count, so that every container gets its event
// exactly once (kwok steps cannot loop): n = 1..maxContainerEvents, and one
// for more containers, where the first maxContainerEvents get events.
func expand(stages []stage) []stage {
	var out []stage
	countKey := ".spec.containers | length | tostring"
	for _, st := range stages {
		if st.each == nil {
			out = append(out, st)
			continue
		}
		var counts []string
		for n := 1; n <= maxContainerEvents; n++ {
			v := st
			v.name = fmt.Sprintf("%s-%d", st.name, n)
			v.match = append(append([]expr(nil), st.match...), in(countKey, fmt.Sprint(n)))
			v.steps = append(eventSteps(*st.each, n), st.steps...)
			out = append(out, v)
			counts = append(counts, fmt.Sprint(n))
		}
		v := st
		v.name = st.name + "-more"
		v.match = append(append([]expr(nil), st.match...), notIn(countKey, counts...))
		v.steps = append(eventSteps(*st.each, maxContainerEvents), st.steps...)
		out = append(out, v)
	}
	return out
}

func eventSteps(e event, n int) []map[string]any {
	steps := make([]map[string]any, 0, n)
	for i := range n {
		steps = append(steps, podEvent(e, i))
	}
	return steps
}

func one(steps ...map[string]any) []map[string]any { return steps }

// --- pod status templates --------------------------------------------------

// containerStatuses renders every container with the given state (a YAML
// fragment indented for the `state:` key) and readiness.
func containerStatuses(state string, ready bool, restarts string) string {
	return fmt.Sprintf(`containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: %t
  restartCount: %s
  started: %t
  state:
%s
{{ end }}
`, ready, restarts, ready, indent(state, 4))
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = pad + lines[i]
	}
	return strings.Join(lines, "\n")
}

func conditions(ready bool, reason string) string {
	status, msg := "True", "''"
	if !ready {
		status = "False"
		msg = `'containers with unready status'`
	}
	return fmt.Sprintf(`{{ $now := Now }}
conditions:
- {type: PodReadyToStartContainers, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: Ready, status: %q, reason: %q, message: %s, lastTransitionTime: {{ $now | Quote }}}
- {type: ContainersReady, status: %q, reason: %q, message: %s, lastTransitionTime: {{ $now | Quote }}}
- {type: PodScheduled, status: "True", lastTransitionTime: {{ .metadata.creationTimestamp | Quote }}}
`, status, reason, msg, status, reason, msg)
}

const waitingCreating = "waiting:\n  reason: ContainerCreating"
const runningNow = "running:\n  startedAt: {{ Now | Quote }}"

func podStages() []stage {
	image := `printf "Pulling image %q" $c.image`
	pulled := `printf "Successfully pulled image %q in 512ms (512ms including waiting). Image size: 52428800 bytes." $c.image`
	killable := []string{"started", "running", "unhealthy", "crash-backoff"}
	return []stage{
		{
			// The sandbox is up: IPs assigned, containers creating.
			name: "kubelet-sandbox", kind: "Pod", delayMs: 50, jitterMs: 200,
			match: []expr{alive, doesNotExist(".status.podIP"), doesNotExist(annotation(annotationStep))},
			steps: one(
				patchStatus(conditions(false, "ContainersNotReady")+containerStatuses(waitingCreating, false, "0")+`
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
phase: Pending
startTime: {{ Now | Quote }}
`),
				setStep("pull"),
			),
		},
		{
			name: "kubelet-pulling", kind: "Pod", delayMs: 20, jitterMs: 80,
			match: []expr{alive, atStep("pull")},
			each:  &event{typ: "Normal", reason: "Pulling", message: image},
			steps: one(setStep("pulling")),
		},
		{
			name: "kubelet-pull-failed", kind: "Pod", delayMs: 300, jitterMs: 300,
			match: []expr{alive, atStep("pulling"), in(annotation(AnnotationFailure), FailureImagePull)},
			steps: one(
				podEvent(event{typ: "Warning", reason: "Failed", message: `printf "Failed to pull image %q: rpc error: code = NotFound desc = failed to pull and unpack image %q: not found" $c.image $c.image`}, 0),
				podEvent(event{typ: "Warning", reason: "Failed", message: `"Error: ErrImagePull"`}, 0),
				patchStatus(containerStatuses("waiting:\n  reason: ErrImagePull\n  message: image not found", false, "0")),
				setStep("pull-backoff"),
			),
		},
		{
			// Repeats until the pod is deleted, the counts growing like a kubelet's.
			name: "kubelet-pull-backoff", kind: "Pod", repeat: true,
			match: []expr{alive, atStep("pull-backoff")},
			steps: one(
				podEvent(event{typ: "Normal", reason: "BackOff", message: `printf "Back-off pulling image %q" $c.image`, repeated: true}, 0),
				podEvent(event{typ: "Warning", reason: "Failed", message: `"Error: ImagePullBackOff"`, repeated: true}, 0),
				patchStatus(containerStatuses("waiting:\n  reason: ImagePullBackOff\n  message: Back-off pulling image", false, "0")),
				bumpRepeat("pull-backoff"),
			),
		},
		{
			name: "kubelet-pulled", kind: "Pod", delayMs: 300, jitterMs: 500,
			match: []expr{alive, atStep("pulling"), notIn(annotation(AnnotationFailure), FailureImagePull)},
			each:  &event{typ: "Normal", reason: "Pulled", message: pulled},
			steps: one(setStep("pulled")),
		},
		{
			name: "kubelet-created", kind: "Pod", delayMs: 50, jitterMs: 100,
			match: []expr{alive, atStep("pulled")},
			each:  &event{typ: "Normal", reason: "Created", message: `printf "Created container: %s" $c.name`},
			steps: one(setStep("created")),
		},
		{
			name: "kubelet-started", kind: "Pod", delayMs: 50, jitterMs: 100,
			match: []expr{alive, atStep("created")},
			each:  &event{typ: "Normal", reason: "Started", message: `printf "Started container %s" $c.name`},
			steps: one(setStep("started")),
		},
		{
			name: "kubelet-ready", kind: "Pod", delayMs: 50, jitterMs: 100,
			match: []expr{alive, atStep("started"), noFailure},
			steps: one(
				patchStatus(conditions(true, "")+containerStatuses(runningNow, true, "0")+"phase: Running\n"),
				setStep("running"),
			),
		},
		{
			// Pods of Jobs run to completion.
			name: "kubelet-complete", kind: "Pod", delayMs: 500, jitterMs: 500,
			match: []expr{alive, atStep("running"), in(".metadata.ownerReferences.[].kind", "Job")},
			steps: one(
				patchStatus(conditions(false, "PodCompleted")+containerStatuses("terminated:\n  exitCode: 0\n  reason: Completed\n  startedAt: {{ Now | Quote }}\n  finishedAt: {{ Now | Quote }}", false, "0")+"phase: Succeeded\n"),
				setStep("completed"),
			),
		},
		{
			name: "kubelet-unready", kind: "Pod", delayMs: 100, jitterMs: 100,
			match: []expr{alive, atStep("started"), in(annotation(AnnotationFailure), FailureReadiness)},
			steps: one(
				patchStatus(conditions(false, "ContainersNotReady")+containerStatuses(runningNow, false, "0")+"phase: Running\n"),
				setStep("unhealthy"),
			),
		},
		{
			name: "kubelet-unhealthy", kind: "Pod", repeat: true,
			match: []expr{alive, atStep("unhealthy")},
			steps: one(
				podEvent(event{typ: "Warning", reason: "Unhealthy", message: `"Readiness probe failed: HTTP probe failed with statuscode: 503"`, repeated: true}, 0),
				bumpRepeat("unhealthy"),
			),
		},
		{
			name: "kubelet-crashed", kind: "Pod", delayMs: 100, jitterMs: 100,
			match: []expr{alive, atStep("started"), in(annotation(AnnotationFailure), FailureCrashLoop)},
			steps: one(
				patchStatus(conditions(false, "ContainersNotReady")+containerStatuses("terminated:\n  exitCode: 1\n  reason: Error\n  finishedAt: {{ Now | Quote }}", false, "0")+"phase: Running\n"),
				setStep("crash-backoff"),
			),
		},
		{
			name: "kubelet-crash-backoff", kind: "Pod", repeat: true,
			match: []expr{alive, atStep("crash-backoff")},
			steps: one(
				podEvent(event{typ: "Warning", reason: "BackOff", message: `printf "Back-off restarting failed container %s in pod %s_%s(%s)" $c.name .metadata.name .metadata.namespace .metadata.uid`, repeated: true}, 0),
				patchStatus(repeatVars+containerStatuses("waiting:\n  reason: CrashLoopBackOff\n  message: back-off restarting failed container", false, "{{ $n }}")),
				bumpRepeat("crash-backoff"),
			),
		},
		{
			// Deleting a pod whose containers run: Killing per container, then gone.
			name: "kubelet-killing", kind: "Pod", delayMs: 100, jitterMs: 200,
			match: []expr{exists(".metadata.deletionTimestamp"), doesNotExist(".metadata.finalizers"), in(annotation(annotationStep), killable...)},
			each:  &event{typ: "Normal", reason: "Killing", message: `printf "Stopping container %s" $c.name`},
			steps: one(map[string]any{"delete": true}),
		},
		{
			name: "kubelet-delete", kind: "Pod", delayMs: 50, jitterMs: 100,
			match: []expr{exists(".metadata.deletionTimestamp"), doesNotExist(".metadata.finalizers"), notIn(annotation(annotationStep), killable...)},
			steps: one(map[string]any{"delete": true}),
		},
	}
}

// --- nodes -----------------------------------------------------------------

const nodeStatusCommon = `
addresses:
{{ with .status.addresses }}
{{ YAML . 1 }}
{{ else }}
- address: {{ NodeIP | Quote }}
  type: InternalIP
- address: {{ NodeName | Quote }}
  type: Hostname
{{ end }}
allocatable: {cpu: "32", memory: 128Gi, pods: "110"}
capacity: {cpu: "32", memory: 128Gi, pods: "110"}
nodeInfo:
  architecture: amd64
  containerRuntimeVersion: fake://1.0
  kernelVersion: 6.1.0
  kubeProxyVersion: ""
  kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
  operatingSystem: linux
  osImage: kwok fake node
  bootID: ""
  machineID: ""
  systemUUID: ""
phase: Running
`

func nodeConditions(ready bool) string {
	readyStatus, readyReason, readyMsg := "True", "KubeletReady", "kubelet is posting ready status"
	if !ready {
		readyStatus, readyReason, readyMsg = "False", "KubeletNotReady", "container runtime network not ready: NetworkReady=false"
	}
	return fmt.Sprintf(`{{ $now := Now }}
conditions:
- {type: MemoryPressure, status: "False", reason: KubeletHasSufficientMemory, message: "kubelet has sufficient memory available", lastHeartbeatTime: {{ $now | Quote }}, lastTransitionTime: {{ .metadata.creationTimestamp | Quote }}}
- {type: DiskPressure, status: "False", reason: KubeletHasNoDiskPressure, message: "kubelet has no disk pressure", lastHeartbeatTime: {{ $now | Quote }}, lastTransitionTime: {{ .metadata.creationTimestamp | Quote }}}
- {type: PIDPressure, status: "False", reason: KubeletHasSufficientPID, message: "kubelet has sufficient PID available", lastHeartbeatTime: {{ $now | Quote }}, lastTransitionTime: {{ .metadata.creationTimestamp | Quote }}}
- {type: Ready, status: %q, reason: %q, message: %q, lastHeartbeatTime: {{ $now | Quote }}, lastTransitionTime: {{ $now | Quote }}}
`, readyStatus, readyReason, readyMsg)
}

// nodeEvent is the kubelet's "Node X status is now: ..." event. Like a real
// kubelet it names the node by name in the UID field.
func nodeEvent(reason string) map[string]any {
	tmpl := fmt.Sprintf(`apiVersion: v1
kind: Event
metadata:
  name: {{ printf "%%s.%%s" .metadata.name (printf "%%s/%s/%%s" .metadata.uid Now | sha256sum | trunc 16) | Quote }}
  namespace: default
involvedObject:
  apiVersion: v1
  kind: Node
  name: {{ .metadata.name | Quote }}
  uid: {{ .metadata.name | Quote }}
reason: %s
type: Normal
message: {{ printf "Node %%s status is now: %s" .metadata.name | Quote }}
source:
  component: kubelet
  host: {{ .metadata.name | Quote }}
reportingComponent: kubelet
reportingInstance: {{ .metadata.name | Quote }}
firstTimestamp: {{ Now | Quote }}
lastTimestamp: {{ Now | Quote }}
count: 1
`, reason, reason, reason)
	return map[string]any{"apply": map[string]any{"template": tmpl}}
}

func nodeStages() []stage {
	readyCond := `.status.conditions.[] | select( .type == "Ready" ) | .status`
	notReadyWanted := annotation(AnnotationNodeNotReady)
	return []stage{
		{
			name: "node-ready", kind: "Node", delayMs: 0, jitterMs: 100,
			match: []expr{notIn(readyCond, "True"), notIn(notReadyWanted, "true")},
			steps: one(patchStatus(nodeConditions(true)+nodeStatusCommon), nodeEvent("NodeReady")),
		},
		{
			name: "node-not-ready", kind: "Node", delayMs: 0, jitterMs: 100,
			match: []expr{in(readyCond, "True"), in(notReadyWanted, "true")},
			steps: one(patchStatus(nodeConditions(false)+nodeStatusCommon), nodeEvent("NodeNotReady")),
		},
		{
			// Conditions' heartbeats; the Lease (kwok's --node-lease-duration-seconds)
			// is what keeps the node alive between them, as with a real kubelet.
			name: "node-heartbeat", kind: "Node", delayMs: 60000, jitterMs: 10000,
			match: []expr{in(readyCond, "True"), notIn(notReadyWanted, "true")},
			steps: one(patchStatus(nodeConditions(true) + nodeStatusCommon)),
		},
	}
}
