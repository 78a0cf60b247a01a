package readiness

import (
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// State is the answer's state on the wire.
type State string

const (
	StateWaiting State = "waiting"
	StateReady   State = "ready"
	// StateFailed is final: the object will never become ready (a failed Job).
	StateFailed State = "failed"
)

// Result is the readiness of one target at one moment.
type Result struct {
	State State
	// Reason is human-readable and stable while nothing relevant changes, so a
	// client can long-poll with seen=<reason> and be woken only by a change.
	Reason string
}

// ReasonNotFound is the reason of an absent object.
const ReasonNotFound = "not found"

// ReasonDeletedSince is the reason of an absent Job this service saw complete.
const ReasonDeletedSince = "completed (deleted since)"

// notFound is the result for an absent object.
var notFound = Result{State: StateWaiting, Reason: ReasonNotFound}

// EvaluateJob: Complete=True is ready, Failed=True is failed, else waiting.
func EvaluateJob(j *batchv1.Job) Result {
	if j == nil {
		return notFound
	}
	completions := int32(1)
	if j.Spec.Completions != nil {
		completions = *j.Spec.Completions
	}
	progress := fmt.Sprintf("%d/%d succeeded", j.Status.Succeeded, completions)
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return Result{State: StateReady, Reason: progress}
		case batchv1.JobFailed:
			reason := c.Reason
			if reason == "" {
				reason = "Failed"
			}
			if c.Message != "" {
				reason += ": " + c.Message
			}
			return Result{State: StateFailed, Reason: reason}
		}
	}
	if j.Spec.Suspend != nil && *j.Spec.Suspend {
		return Result{State: StateWaiting, Reason: "suspended, " + progress}
	}
	return Result{State: StateWaiting, Reason: progress}
}

// JobCompleted reports whether j has Complete=True (what ConfigMapCompletions remembers).
func JobCompleted(j *batchv1.Job) bool {
	return j != nil && EvaluateJob(j).State == StateReady
}

// EvaluateDeployment: ready when Available=True and the rollout of the current
// generation is complete (every replica updated and available, no old ones left).
func EvaluateDeployment(d *appsv1.Deployment) Result {
	if d == nil {
		return notFound
	}
	want := replicas(d.Spec.Replicas)
	s := d.Status
	reason := fmt.Sprintf("%d/%d available", s.AvailableReplicas, want)
	available := false
	for _, c := range d.Status.Conditions {
		switch {
		case c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue:
			available = true
		case c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason != "":
			reason += ", " + c.Reason
		}
	}
	switch {
	case s.ObservedGeneration < d.Generation:
		return Result{State: StateWaiting, Reason: reason + ", generation not observed yet"}
	case s.UpdatedReplicas != want || s.Replicas != want || s.AvailableReplicas != want:
		if s.AvailableReplicas == want {
			reason += fmt.Sprintf(", rollout in progress (%d/%d updated)", s.UpdatedReplicas, want)
		}
		return Result{State: StateWaiting, Reason: reason}
	case !available:
		return Result{State: StateWaiting, Reason: reason + ", not Available"}
	}
	return Result{State: StateReady, Reason: reason}
}

// EvaluateStatefulSet: ready when the current generation is observed, enough
// replicas are ready and they run the update revision.
func EvaluateStatefulSet(s *appsv1.StatefulSet) Result {
	if s == nil {
		return notFound
	}
	want := replicas(s.Spec.Replicas)
	st := s.Status
	reason := fmt.Sprintf("%d/%d ready", st.ReadyReplicas, want)
	switch {
	case st.ObservedGeneration < s.Generation:
		return Result{State: StateWaiting, Reason: reason + ", generation not observed yet"}
	case st.ReadyReplicas < want:
		return Result{State: StateWaiting, Reason: reason}
	case st.UpdateRevision != st.CurrentRevision && st.UpdatedReplicas < want:
		return Result{State: StateWaiting, Reason: reason + fmt.Sprintf(", rollout in progress (%d/%d updated)", st.UpdatedReplicas, want)}
	}
	return Result{State: StateReady, Reason: reason}
}

// EvaluateDaemonSet: ready when the current generation is observed and every
// scheduled Pod is ready and up to date.
func EvaluateDaemonSet(d *appsv1.DaemonSet) Result {
	if d == nil {
		return notFound
	}
	st := d.Status
	reason := fmt.Sprintf("%d/%d ready", st.NumberReady, st.DesiredNumberScheduled)
	switch {
	case st.ObservedGeneration < d.Generation:
		return Result{State: StateWaiting, Reason: reason + ", generation not observed yet"}
	case st.NumberReady < st.DesiredNumberScheduled:
		return Result{State: StateWaiting, Reason: reason}
	case st.UpdatedNumberScheduled < st.DesiredNumberScheduled:
		return Result{State: StateWaiting, Reason: reason + fmt.Sprintf(", rollout in progress (%d/%d updated)", st.UpdatedNumberScheduled, st.DesiredNumberScheduled)}
	}
	return Result{State: StateReady, Reason: reason}
}

// EvaluateEndpoints: ready when the Service exists and one of its
// EndpointSlices has a ready endpoint (serving the port, when port is set).
// port is a number or a name. A number that is one of the Service's ports
// selects that port's name (EndpointSlice ports carry the Service port names
// and the target port numbers); any other number must be a slice port number.
func EvaluateEndpoints(svc *corev1.Service, slices []*discoveryv1.EndpointSlice, port string) Result {
	if svc == nil {
		return notFound
	}
	matchName, matchNumber, byName := port, int32(0), true
	if n, err := strconv.Atoi(port); err == nil {
		byName, matchNumber = false, int32(n)
		for _, p := range svc.Spec.Ports {
			if p.Port == int32(n) {
				byName, matchName = true, p.Name
				break
			}
		}
	}
	ready := 0
	for _, sl := range slices {
		if sl == nil {
			continue
		}
		if port != "" && !slicePortMatches(sl, byName, matchName, matchNumber) {
			continue
		}
		for _, ep := range sl.Endpoints {
			// nil means unknown, which consumers must treat as ready (EndpointConditions).
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				ready++
			}
		}
	}
	forPort := ""
	if port != "" {
		forPort = " for port " + port
	}
	switch ready {
	case 0:
		return Result{State: StateWaiting, Reason: "no ready endpoint" + forPort}
	case 1:
		return Result{State: StateReady, Reason: "1 ready endpoint" + forPort}
	}
	return Result{State: StateReady, Reason: fmt.Sprintf("%d ready endpoints%s", ready, forPort)}
}

func slicePortMatches(sl *discoveryv1.EndpointSlice, byName bool, name string, number int32) bool {
	for _, p := range sl.Ports {
		if byName && p.Name != nil && *p.Name == name {
			return true
		}
		if byName && p.Name == nil && name == "" {
			return true
		}
		if !byName && p.Port != nil && *p.Port == number {
			return true
		}
	}
	return false
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}
