// taskrunstatus turns what a TaskRun's pod left (each step container's exit code and termination
// message, as Tekton's entrypoint wrote it) into the TaskRun's status with tektoncd/pipeline's own
// code: pod.MakeTaskRunStatus, which parses the message (termination.ParseMessage), keeps the results
// the Task declares, reads a step's exit code under onError: continue, and sets the condition.
//
// stdin: {"task": "<path of the Task YAML>", "steps": [{"name", "exitCode", "message"}]}
// stdout: {"results": {name: value}, "steps": [{"name", "exitCode", "reason"}], "succeeded", "reason",
//
//	"messageBytes": [..]}
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/pod"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"
)

type stepIn struct {
	Name     string `json:"name"`
	ExitCode int32  `json:"exitCode"`
	Message  string `json:"message"`
}

type request struct {
	Task  string   `json:"task"`
	Steps []stepIn `json:"steps"`
}

type stepOut struct {
	Name     string `json:"name"`
	ExitCode int32  `json:"exitCode"`
	Reason   string `json:"reason"`
}

type response struct {
	Results   map[string]string `json:"results"`
	Steps     []stepOut         `json:"steps"`
	Succeeded string            `json:"succeeded"`
	Reason    string            `json:"reason"`
	Message   string            `json:"message"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "taskrunstatus:", err)
		os.Exit(1)
	}
}

func run() error {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		return err
	}
	raw, err := os.ReadFile(req.Task)
	if err != nil {
		return err
	}
	var task v1.Task
	if err := yaml.Unmarshal(raw, &task); err != nil {
		return err
	}
	tr := v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: "canary", Namespace: "default"},
		Spec:       v1.TaskRunSpec{TaskRef: &v1.TaskRef{Name: task.Name}},
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "canary-pod", Namespace: "default"},
		Status:     corev1.PodStatus{Phase: corev1.PodSucceeded},
	}
	for _, s := range req.Steps {
		name := "step-" + s.Name
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: name})
		if s.ExitCode != 0 {
			p.Status.Phase = corev1.PodFailed
		}
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: name,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: s.ExitCode, Message: s.Message, Reason: "Completed",
			}},
		})
	}
	logger := zap.NewNop().Sugar()
	status, err := pod.MakeTaskRunStatus(context.Background(), logger, tr, p, fake.NewSimpleClientset(), &task.Spec)
	if err != nil {
		return err
	}
	out := response{Results: map[string]string{}}
	for _, r := range status.Results {
		out.Results[r.Name] = r.Value.StringVal
	}
	for _, s := range status.Steps {
		o := stepOut{Name: s.Name}
		if s.Terminated != nil {
			o.ExitCode, o.Reason = s.Terminated.ExitCode, s.Terminated.Reason
		}
		out.Steps = append(out.Steps, o)
	}
	if c := status.GetCondition(apis.ConditionSucceeded); c != nil {
		out.Succeeded, out.Reason, out.Message = string(c.Status), c.Reason, c.Message
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
