package causality

import (
	"regexp"
	"strings"
)

// actedOn is the object a controller event says it acted on.
type actedOn struct {
	kind, name string
	// create is true for events that bring the object into being.
	create bool
}

type controllerRule struct {
	kind    string // kind of the event's regarding object ("" any)
	reason  string
	re      *regexp.Regexp
	target  string // kind acted on
	nameIdx int    // submatch holding the name
	create  bool
}

// Built-in controller knowledge: which event of which controller names which
// object, from the messages of kube-controller-manager (v1.20 to v1.36).
var controllerRules = []controllerRule{
	{"Deployment", "ScalingReplicaSet", regexp.MustCompile(`^Scaled up replica set (\S+) `), "ReplicaSet", 1, true},
	{"Deployment", "ScalingReplicaSet", regexp.MustCompile(`^Scaled down replica set (\S+) `), "ReplicaSet", 1, false},
	{"", "SuccessfulCreate", regexp.MustCompile(`^Created pod: (\S+)$`), "Pod", 1, true},
	{"", "SuccessfulDelete", regexp.MustCompile(`^Deleted pod: (\S+)$`), "Pod", 1, false},
	{"StatefulSet", "SuccessfulCreate", regexp.MustCompile(`(?i)^create Pod (\S+) in StatefulSet \S+ successful$`), "Pod", 1, true},
	{"StatefulSet", "SuccessfulDelete", regexp.MustCompile(`(?i)^delete Pod (\S+) in StatefulSet \S+ successful$`), "Pod", 1, false},
	{"StatefulSet", "SuccessfulCreate", regexp.MustCompile(`(?i)^create Claim (\S+) Pod \S+ in StatefulSet \S+ success$`), "PersistentVolumeClaim", 1, true},
	{"CronJob", "SuccessfulCreate", regexp.MustCompile(`^Created job (\S+)$`), "Job", 1, true},
	{"CronJob", "SawCompletedJob", regexp.MustCompile(`^Saw completed job: ([^,\s]+)`), "Job", 1, false},
	{"CronJob", "SuccessfulDelete", regexp.MustCompile(`^Deleted job (\S+)$`), "Job", 1, false},
}

// parseActedOn returns what a controller event acted on, if it is one of the
// built-in controllers' events.
func parseActedOn(kind, reason, note string) (actedOn, bool) {
	for i := range controllerRules {
		r := &controllerRules[i]
		if r.reason != reason || (r.kind != "" && r.kind != kind) {
			continue
		}
		m := r.re.FindStringSubmatch(note)
		if m == nil {
			continue
		}
		return actedOn{kind: r.target, name: m[r.nameIdx], create: r.create}, true
	}
	return actedOn{}, false
}

var assignedRe = regexp.MustCompile(`^Successfully assigned (\S+)/(\S+) to (\S+)$`)

// scheduledNode returns the node a Scheduled event assigned the pod to.
func scheduledNode(reason, note string) (string, bool) {
	if reason != "Scheduled" {
		return "", false
	}
	m := assignedRe.FindStringSubmatch(note)
	if m == nil {
		return "", false
	}
	return m[3], true
}

// nodeLinkedReasons are pod events caused by their node's trouble; their
// event spans link to the node's episode.
var nodeLinkedReasons = map[string]bool{
	"NodeNotReady":         true, // node-controller marks the pods of a lost node not ready
	"TaintManagerEviction": true, // and evicts them after their toleration
	"Evicted":              true, // kubelet eviction under node pressure
	"NodeShutdown":         true, // graceful node shutdown
}

func isNodeLinked(reason string) bool { return nodeLinkedReasons[reason] }

// scaleTargets are the kinds an HPA's SuccessfulRescale acts on; the HPA
// usually shares the target's name (its scaleTargetRef is not in metadata).
var scaleTargets = []string{"Deployment", "StatefulSet", "ReplicaSet"}

func isRescale(kind, reason string) bool {
	return kind == "HorizontalPodAutoscaler" && strings.HasPrefix(reason, "SuccessfulRescale")
}
