package causality

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// actedOn is the object a controller event says it acted on.
type actedOn struct {
	kind, name string
	// create is true for events that bring the object into being.
	create bool
}

type controllerRule struct {
	kind   string // kind of the event's regarding object ("" any)
	reason string
	// name returns the name of the object the note says was acted on.
	name   func(note string) (string, bool)
	target string // kind acted on
	create bool
}

// Built-in controller knowledge: which event of which controller names which
// object, from the messages of kube-controller-manager (v1.20 to v1.36).
// The notes are parsed by hand rather than by regular expressions, which
// allocate their submatches on every event; each parser says the expression
// it is equivalent to (\S is not one of \t\n\f\r and space, as in RE2).
var controllerRules = []controllerRule{
	{"Deployment", "ScalingReplicaSet", wordThenSpace("Scaled up replica set "), "ReplicaSet", true},    // ^Scaled up replica set (\S+) and a space
	{"Deployment", "ScalingReplicaSet", wordThenSpace("Scaled down replica set "), "ReplicaSet", false}, // ^Scaled down replica set (\S+) and a space
	{"", "SuccessfulCreate", lastWord("Created pod: "), "Pod", true},                                    // ^Created pod: (\S+)$
	{"", "SuccessfulDelete", lastWord("Deleted pod: "), "Pod", false},                                   // ^Deleted pod: (\S+)$
	// (?i)^create Pod (\S+) in StatefulSet \S+ successful$
	{"StatefulSet", "SuccessfulCreate", statefulSetPod("create Pod ", " in StatefulSet ", " successful"), "Pod", true},
	// (?i)^delete Pod (\S+) in StatefulSet \S+ successful$
	{"StatefulSet", "SuccessfulDelete", statefulSetPod("delete Pod ", " in StatefulSet ", " successful"), "Pod", false},
	// (?i)^create Claim (\S+) Pod \S+ in StatefulSet \S+ success$
	{"StatefulSet", "SuccessfulCreate", statefulSetClaim, "PersistentVolumeClaim", true},
	{"CronJob", "SuccessfulCreate", lastWord("Created job "), "Job", true},  // ^Created job (\S+)$
	{"CronJob", "SawCompletedJob", sawCompletedJob, "Job", false},           // ^Saw completed job: ([^,\s]+)
	{"CronJob", "SuccessfulDelete", lastWord("Deleted job "), "Job", false}, // ^Deleted job (\S+)$
}

// aggregatedPrefix starts the note of an Event that client-go's event
// recorder aggregated: from the tenth similar event about one object within
// ten minutes (same source, reason and type, another note), it updates one
// Event, its count and its note, instead of creating another, so in a
// ReplicaSet of ten pods or more the later "Created pod: X" come as
// "(combined from similar events): Created pod: X".
const aggregatedPrefix = "(combined from similar events): "

// parseActedOn returns what a controller event acted on, if it is one of the
// built-in controllers' events (aggregated or not).
func parseActedOn(kind, reason, note string) (actedOn, bool) {
	note = strings.TrimPrefix(note, aggregatedPrefix)
	for i := range controllerRules {
		r := &controllerRules[i]
		if r.reason != reason || (r.kind != "" && r.kind != kind) {
			continue
		}
		name, ok := r.name(note)
		if !ok {
			continue
		}
		return actedOn{kind: r.target, name: name, create: r.create}, true
	}
	return actedOn{}, false
}

// scheduledNode returns the node a Scheduled event assigned the pod to:
// ^Successfully assigned (\S+)/(\S+) to (\S+)$, the third group.
func scheduledNode(reason, note string) (string, bool) {
	if reason != "Scheduled" {
		return "", false
	}
	rest, ok := strings.CutPrefix(note, "Successfully assigned ")
	if !ok {
		return "", false
	}
	pod, rest := word(rest)
	// (\S+)/(\S+): a slash with a character on each side, anywhere in the word.
	if len(pod) < 3 || !strings.Contains(pod[1:len(pod)-1], "/") {
		return "", false
	}
	rest, ok = strings.CutPrefix(rest, " to ")
	if !ok {
		return "", false
	}
	return wholeWord(rest)
}

// isSpace is RE2's \s: the characters \S excludes.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}

// word splits s after its leading run of \S characters. Whitespace is
// ASCII only, so bytes are enough (multi-byte runes are never space).
func word(s string) (w, rest string) {
	i := 0
	for i < len(s) && !isSpace(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// wholeWord is (\S+)$: s itself when it is one non-empty word.
func wholeWord(s string) (string, bool) {
	if w, rest := word(s); w != "" && rest == "" {
		return w, true
	}
	return "", false
}

// lastWord parses ^prefix(\S+)$.
func lastWord(prefix string) func(string) (string, bool) {
	return func(note string) (string, bool) {
		rest, ok := strings.CutPrefix(note, prefix)
		if !ok {
			return "", false
		}
		return wholeWord(rest)
	}
}

// wordThenSpace parses ^prefix(\S+) (a space after the word, then anything).
func wordThenSpace(prefix string) func(string) (string, bool) {
	return func(note string) (string, bool) {
		rest, ok := strings.CutPrefix(note, prefix)
		if !ok {
			return "", false
		}
		if w, rest := word(rest); w != "" && strings.HasPrefix(rest, " ") {
			return w, true
		}
		return "", false
	}
}

// sawCompletedJob parses ^Saw completed job: ([^,\s]+).
func sawCompletedJob(note string) (string, bool) {
	rest, ok := strings.CutPrefix(note, "Saw completed job: ")
	if !ok {
		return "", false
	}
	i := 0
	for i < len(rest) && rest[i] != ',' && !isSpace(rest[i]) {
		i++
	}
	if i == 0 {
		return "", false
	}
	return rest[:i], true
}

// statefulSetPod parses (?i)^prefix(\S+)middle\S+end$ with the given literals.
func statefulSetPod(prefix, middle, end string) func(string) (string, bool) {
	return func(note string) (string, bool) {
		rest, ok := cutPrefixFold(note, prefix)
		if !ok {
			return "", false
		}
		pod, rest := word(rest)
		if rest, ok = cutPrefixFold(rest, middle); !ok || pod == "" {
			return "", false
		}
		set, rest := word(rest)
		if rest, ok = cutPrefixFold(rest, end); !ok || set == "" || rest != "" {
			return "", false
		}
		return pod, true
	}
}

// statefulSetClaim parses (?i)^create Claim (\S+) Pod \S+ in StatefulSet \S+ success$.
func statefulSetClaim(note string) (string, bool) {
	rest, ok := cutPrefixFold(note, "create Claim ")
	if !ok {
		return "", false
	}
	claim, rest := word(rest)
	if rest, ok = cutPrefixFold(rest, " Pod "); !ok || claim == "" {
		return "", false
	}
	pod, rest := word(rest)
	if rest, ok = cutPrefixFold(rest, " in StatefulSet "); !ok || pod == "" {
		return "", false
	}
	set, rest := word(rest)
	if rest, ok = cutPrefixFold(rest, " success"); !ok || set == "" || rest != "" {
		return "", false
	}
	return claim, true
}

// cutPrefixFold is strings.CutPrefix under (?i) matching: Unicode simple
// case folding, rune by rune (a folded rune, like ſ for s, may be longer
// than its ASCII counterpart, so the prefix's length cannot be used).
func cutPrefixFold(s, prefix string) (string, bool) {
	for _, p := range prefix {
		if s == "" {
			return "", false
		}
		r, size := utf8.DecodeRuneInString(s)
		if r != p && !foldEqual(r, p) {
			return "", false
		}
		s = s[size:]
	}
	return s, true
}

// foldEqual reports whether r is in the simple case-folding orbit of p.
func foldEqual(r, p rune) bool {
	for f := unicode.SimpleFold(p); f != p; f = unicode.SimpleFold(f) {
		if f == r {
			return true
		}
	}
	return false
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
