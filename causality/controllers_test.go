package causality

import (
	"regexp"
	"strings"
	"testing"

	"github.com/kube-otel-bridge/kube-otel-bridge/test/racebuild"
)

// The expressions the hand-written parsers of controller notes replace: the
// parsers must agree with them on every note.
var referenceRules = []struct {
	kind, reason string
	re           *regexp.Regexp
}{
	{"Deployment", "ScalingReplicaSet", regexp.MustCompile(`^Scaled up replica set (\S+) `)},
	{"Deployment", "ScalingReplicaSet", regexp.MustCompile(`^Scaled down replica set (\S+) `)},
	{"", "SuccessfulCreate", regexp.MustCompile(`^Created pod: (\S+)$`)},
	{"", "SuccessfulDelete", regexp.MustCompile(`^Deleted pod: (\S+)$`)},
	{"StatefulSet", "SuccessfulCreate", regexp.MustCompile(`(?i)^create Pod (\S+) in StatefulSet \S+ successful$`)},
	{"StatefulSet", "SuccessfulDelete", regexp.MustCompile(`(?i)^delete Pod (\S+) in StatefulSet \S+ successful$`)},
	{"StatefulSet", "SuccessfulCreate", regexp.MustCompile(`(?i)^create Claim (\S+) Pod \S+ in StatefulSet \S+ success$`)},
	{"CronJob", "SuccessfulCreate", regexp.MustCompile(`^Created job (\S+)$`)},
	{"CronJob", "SawCompletedJob", regexp.MustCompile(`^Saw completed job: ([^,\s]+)`)},
	{"CronJob", "SuccessfulDelete", regexp.MustCompile(`^Deleted job (\S+)$`)},
}

var referenceAssigned = regexp.MustCompile(`^Successfully assigned (\S+)/(\S+) to (\S+)$`)

var controllerNotes = []string{
	"Scaled up replica set web-5d4f from 0 to 3", "Scaled up replica set web-5d4f", "Scaled up replica set  x ",
	"Scaled up replica set web\tx", "Scaled down replica set web-1 to 0", "Scaled up replica set é\xff ",
	"Created pod: web-1", "Created pod: web-1 ", "Created pod: ", "Created pod: a\nb", "Deleted pod: web-2",
	"create Pod web-0 in StatefulSet web successful", "CREATE POD web-0 IN STATEFULSET web SUCCESSFUL",
	"create Pod web-0 in StatefulSet web successful ", "create Pod web-0 in ſtatefulſet web ſucceſſful",
	"create Pod  in StatefulSet web successful", "create Pod web-0 in StatefulSet  successful",
	"delete Pod web-0 in StatefulSet web successful", "delete Pod web-0 in StatefulSet web success",
	"create Claim data-web-0 Pod web-0 in StatefulSet web success", "Create Claim data-web-0 Pod web-0 in StatefulSet web successful",
	"create Claim data-web-0 pod web-0 in statefulset web SUCCESS", "create Claim data Pod  in StatefulSet web success",
	"Created job hello-28000000", "Created job ", "Saw completed job: hello-1, status: Complete", "Saw completed job: ,x",
	"Saw completed job: a b", "Saw completed job: ", "Deleted job hello-1", "Deleted job hello-1\r",
	"Successfully assigned default/web-1 to node-1", "Successfully assigned web-1 to node-1", "Successfully assigned /a to n",
	"Successfully assigned a/ to n", "Successfully assigned a//b to n", "Successfully assigned a/b to ", "Successfully assigned a/b/c to n x",
	"Successfully assigned a/b  to n", "Successfully assigned a/b to n\n", "", "x",
	"(combined from similar events): Created pod: web-10", "(combined from similar events): Deleted pod: web-11",
	"(combined from similar events): Scaled up replica set web-5d4f from 9 to 10", "(combined from similar events):Created pod: x",
	"(combined from similar events): (combined from similar events): Created pod: x", "Created pod: (combined from similar events): x",
}

var controllerKinds = []string{"Deployment", "ReplicaSet", "StatefulSet", "CronJob", "Job"}
var controllerReasons = []string{"ScalingReplicaSet", "SuccessfulCreate", "SuccessfulDelete", "SawCompletedJob", "Scheduled"}

func referenceActedOn(kind, reason, note string) (actedOn, bool) {
	// An aggregated event's note is the latest one behind a fixed prefix.
	note = strings.TrimPrefix(note, "(combined from similar events): ")
	for i, r := range referenceRules {
		if r.reason != reason || (r.kind != "" && r.kind != kind) {
			continue
		}
		if m := r.re.FindStringSubmatch(note); m != nil {
			return actedOn{kind: controllerRules[i].target, name: m[1], create: controllerRules[i].create}, true
		}
	}
	return actedOn{}, false
}

func referenceNode(reason, note string) (string, bool) {
	if reason != "Scheduled" {
		return "", false
	}
	if m := referenceAssigned.FindStringSubmatch(note); m != nil {
		return m[3], true
	}
	return "", false
}

func checkParsers(t *testing.T, note string) {
	t.Helper()
	for _, kind := range controllerKinds {
		for _, reason := range controllerReasons {
			got, gotOK := parseActedOn(kind, reason, note)
			want, wantOK := referenceActedOn(kind, reason, note)
			if got != want || gotOK != wantOK {
				t.Errorf("parseActedOn(%q, %q, %q) = %+v, %v; the expression gives %+v, %v", kind, reason, note, got, gotOK, want, wantOK)
			}
		}
	}
	got, gotOK := scheduledNode("Scheduled", note)
	want, wantOK := referenceNode("Scheduled", note)
	if got != want || gotOK != wantOK {
		t.Errorf("scheduledNode(%q) = %q, %v; the expression gives %q, %v", note, got, gotOK, want, wantOK)
	}
}

func TestControllerParsersMatchExpressions(t *testing.T) {
	for _, note := range controllerNotes {
		checkParsers(t, note)
	}
}

func FuzzControllerParsers(f *testing.F) {
	for _, note := range controllerNotes {
		f.Add(note)
	}
	f.Fuzz(checkParsers)
}

func TestControllerParsersDoNotAllocate(t *testing.T) {
	racebuild.SkipAllocs(t)
	n := testing.AllocsPerRun(100, func() {
		parseActedOn("Deployment", "ScalingReplicaSet", "Scaled up replica set web-5d4f from 0 to 3")
		parseActedOn("StatefulSet", "SuccessfulCreate", "create Claim data-web-0 Pod web-0 in StatefulSet web success")
		scheduledNode("Scheduled", "Successfully assigned default/web-1 to node-1")
	})
	if n != 0 {
		t.Errorf("%v allocations per parse", n)
	}
}
