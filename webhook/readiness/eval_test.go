package readiness

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func jobWith(completions *int32, succeeded int32, conds ...batchv1.JobCondition) *batchv1.Job {
	return &batchv1.Job{
		Spec:   batchv1.JobSpec{Completions: completions},
		Status: batchv1.JobStatus{Succeeded: succeeded, Conditions: conds},
	}
}

func TestEvaluateJob(t *testing.T) {
	complete := batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}
	failed := batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue,
		Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"}
	suspended := jobWith(nil, 0)
	suspended.Spec.Suspend = ptr.To(true)
	for _, tc := range []struct {
		name string
		job  *batchv1.Job
		want Result
	}{
		{"absent", nil, Result{StateWaiting, "not found"}},
		{"new", jobWith(nil, 0), Result{StateWaiting, "0/1 succeeded"}},
		{"partial", jobWith(ptr.To[int32](3), 2), Result{StateWaiting, "2/3 succeeded"}},
		{"complete", jobWith(nil, 1, complete), Result{StateReady, "1/1 succeeded"}},
		{"complete false is not complete", jobWith(nil, 1, batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionFalse}), Result{StateWaiting, "1/1 succeeded"}},
		{"failed", jobWith(nil, 0, failed), Result{StateFailed, "BackoffLimitExceeded: Job has reached the specified backoff limit"}},
		{"failed without reason", jobWith(nil, 0, batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}), Result{StateFailed, "Failed"}},
		{"failure target only waits", jobWith(nil, 0, batchv1.JobCondition{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue}), Result{StateWaiting, "0/1 succeeded"}},
		{"suspended", suspended, Result{StateWaiting, "suspended, 0/1 succeeded"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := EvaluateJob(tc.job); got != tc.want {
				t.Errorf("EvaluateJob = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func deploy(gen, observed int64, spec *int32, replicas, updated, available int32, conds ...appsv1.DeploymentCondition) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Generation: gen},
		Spec:       appsv1.DeploymentSpec{Replicas: spec},
		Status: appsv1.DeploymentStatus{ObservedGeneration: observed, Replicas: replicas,
			UpdatedReplicas: updated, AvailableReplicas: available, Conditions: conds},
	}
}

func TestEvaluateDeployment(t *testing.T) {
	avail := appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}
	unavail := appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse}
	stuck := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded"}
	three := ptr.To[int32](3)
	for _, tc := range []struct {
		name string
		d    *appsv1.Deployment
		want Result
	}{
		{"absent", nil, Result{StateWaiting, "not found"}},
		{"ready", deploy(2, 2, three, 3, 3, 3, avail), Result{StateReady, "3/3 available"}},
		{"default one replica", deploy(1, 1, nil, 1, 1, 1, avail), Result{StateReady, "1/1 available"}},
		{"scaled to zero", deploy(1, 1, ptr.To[int32](0), 0, 0, 0, avail), Result{StateReady, "0/0 available"}},
		{"partial", deploy(1, 1, three, 3, 3, 1, unavail), Result{StateWaiting, "1/3 available"}},
		{"generation not observed", deploy(2, 1, three, 3, 3, 3, avail), Result{StateWaiting, "3/3 available, generation not observed yet"}},
		{"rollout: old replica left", deploy(2, 2, three, 4, 3, 3, avail), Result{StateWaiting, "3/3 available, rollout in progress (3/3 updated)"}},
		{"rollout: not all updated", deploy(2, 2, three, 3, 1, 3, avail), Result{StateWaiting, "3/3 available, rollout in progress (1/3 updated)"}},
		{"all up but Available=False", deploy(1, 1, three, 3, 3, 3, unavail), Result{StateWaiting, "3/3 available, not Available"}},
		{"no conditions", deploy(1, 1, three, 3, 3, 3), Result{StateWaiting, "3/3 available, not Available"}},
		{"progress deadline exceeded", deploy(1, 1, three, 3, 3, 0, unavail, stuck), Result{StateWaiting, "0/3 available, ProgressDeadlineExceeded"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := EvaluateDeployment(tc.d); got != tc.want {
				t.Errorf("EvaluateDeployment = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func sts(gen, observed int64, spec *int32, ready, updated int32, cur, upd string) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Generation: gen},
		Spec:       appsv1.StatefulSetSpec{Replicas: spec},
		Status: appsv1.StatefulSetStatus{ObservedGeneration: observed, ReadyReplicas: ready,
			UpdatedReplicas: updated, CurrentRevision: cur, UpdateRevision: upd},
	}
}

func TestEvaluateStatefulSet(t *testing.T) {
	three := ptr.To[int32](3)
	for _, tc := range []struct {
		name string
		s    *appsv1.StatefulSet
		want Result
	}{
		{"absent", nil, Result{StateWaiting, "not found"}},
		{"ready", sts(1, 1, three, 3, 3, "r1", "r1"), Result{StateReady, "3/3 ready"}},
		{"not observed", sts(2, 1, three, 3, 3, "r1", "r1"), Result{StateWaiting, "3/3 ready, generation not observed yet"}},
		{"partial", sts(1, 1, three, 2, 3, "r1", "r1"), Result{StateWaiting, "2/3 ready"}},
		{"rolling", sts(2, 2, three, 3, 1, "r1", "r2"), Result{StateWaiting, "3/3 ready, rollout in progress (1/3 updated)"}},
		{"rolled, revisions not swapped yet", sts(2, 2, three, 3, 3, "r1", "r2"), Result{StateReady, "3/3 ready"}},
		{"default one replica", sts(1, 1, nil, 1, 1, "r1", "r1"), Result{StateReady, "1/1 ready"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := EvaluateStatefulSet(tc.s); got != tc.want {
				t.Errorf("EvaluateStatefulSet = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func ds(gen, observed int64, desired, ready, updated int32) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Generation: gen},
		Status: appsv1.DaemonSetStatus{ObservedGeneration: observed, DesiredNumberScheduled: desired,
			NumberReady: ready, UpdatedNumberScheduled: updated},
	}
}

func TestEvaluateDaemonSet(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    *appsv1.DaemonSet
		want Result
	}{
		{"absent", nil, Result{StateWaiting, "not found"}},
		{"ready", ds(1, 1, 3, 3, 3), Result{StateReady, "3/3 ready"}},
		{"no nodes", ds(1, 1, 0, 0, 0), Result{StateReady, "0/0 ready"}},
		{"never observed", ds(1, 0, 0, 0, 0), Result{StateWaiting, "0/0 ready, generation not observed yet"}},
		{"partial", ds(1, 1, 3, 2, 3), Result{StateWaiting, "2/3 ready"}},
		{"rolling", ds(2, 2, 3, 3, 2), Result{StateWaiting, "3/3 ready, rollout in progress (2/3 updated)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := EvaluateDaemonSet(tc.d); got != tc.want {
				t.Errorf("EvaluateDaemonSet = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func slice(ports []discoveryv1.EndpointPort, ready ...*bool) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{Ports: ports}
	for _, r := range ready {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: r}})
	}
	return s
}

func TestEvaluateEndpoints(t *testing.T) {
	svc := &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
		{Name: "http", Port: 80}, {Name: "db", Port: 5432, Protocol: corev1.ProtocolTCP}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
	}}}
	headless := &corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone}}
	httpPort := []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}}
	dbPort := []discoveryv1.EndpointPort{{Name: ptr.To("db"), Port: ptr.To[int32](5432)}}
	dnsPort := []discoveryv1.EndpointPort{{Name: ptr.To("dns"), Port: ptr.To[int32](53), Protocol: ptr.To(corev1.ProtocolUDP)}}
	yes, no := ptr.To(true), ptr.To(false)
	for _, tc := range []struct {
		name   string
		svc    *corev1.Service
		slices []*discoveryv1.EndpointSlice
		port   string
		want   Result
	}{
		{"no service", nil, []*discoveryv1.EndpointSlice{slice(httpPort, yes)}, "", Result{StateWaiting, "not found"}},
		{"no slices", svc, nil, "", Result{StateWaiting, "no ready endpoint"}},
		{"unready", svc, []*discoveryv1.EndpointSlice{slice(httpPort, no, no)}, "", Result{StateWaiting, "no ready endpoint"}},
		{"one ready", svc, []*discoveryv1.EndpointSlice{slice(httpPort, no, yes)}, "", Result{StateReady, "1 ready endpoint"}},
		{"nil ready counts as ready", svc, []*discoveryv1.EndpointSlice{slice(httpPort, nil)}, "", Result{StateReady, "1 ready endpoint"}},
		{"across slices", svc, []*discoveryv1.EndpointSlice{slice(httpPort, yes), slice(dbPort, yes)}, "", Result{StateReady, "2 ready endpoints"}},
		{"service port number maps to its name", svc, []*discoveryv1.EndpointSlice{slice(httpPort, yes)}, "80", Result{StateReady, "1 ready endpoint for port 80"}},
		{"target port number", svc, []*discoveryv1.EndpointSlice{slice(httpPort, yes)}, "8080", Result{StateReady, "1 ready endpoint for port 8080"}},
		{"port by name", svc, []*discoveryv1.EndpointSlice{slice(httpPort, yes), slice(dbPort, no)}, "db", Result{StateWaiting, "no ready endpoint for port db"}},
		{"other port ready only", svc, []*discoveryv1.EndpointSlice{slice(httpPort, yes), slice(dbPort, no)}, "5432", Result{StateWaiting, "no ready endpoint for port 5432"}},
		{"udp port", svc, []*discoveryv1.EndpointSlice{slice(dnsPort, yes)}, "53", Result{StateReady, "1 ready endpoint for port 53"}},
		{"unknown port", svc, []*discoveryv1.EndpointSlice{slice(httpPort, yes)}, "9999", Result{StateWaiting, "no ready endpoint for port 9999"}},
		{"headless without ports", headless, []*discoveryv1.EndpointSlice{slice(nil, yes)}, "", Result{StateReady, "1 ready endpoint"}},
		{"headless without ports, port asked", headless, []*discoveryv1.EndpointSlice{slice(nil, yes)}, "5432", Result{StateWaiting, "no ready endpoint for port 5432"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := EvaluateEndpoints(tc.svc, tc.slices, tc.port); got != tc.want {
				t.Errorf("EvaluateEndpoints = %+v, want %+v", got, tc.want)
			}
		})
	}
}
