// Command pipeline-eval answers "what does the platform do with this outcome?" with each platform's own
// code, for tests/ship/test_pipeline_outcomes.py. It reads one JSON request on stdin and writes one JSON
// answer on stdout.
//
//	{"argo-when": [{"when": "...", "scope": {"steps.analyse.status": "Failed", ...}}, ...]}
//	    Argo's steps controller: the `when` is substituted as Argo substitutes a step (the step marshalled
//	    to JSON, each {{tag}} replaced by its JSON-escaped value, unresolved tags left as they are), then
//	    evaluated by shouldExecute (govaluate at the commit every Argo 3.x pins, with variables turned
//	    into strings). Answers {"execute": bool, "error": "..."} each.
//	{"argo-retry": [{"expression": "...", "scope": {"lastRetry.exitCode": "4", ...}}, ...]}
//	    Argo's retryStrategy.expression: expr-lang/expr with Argo's environment (the dotted scope
//	    expanded to maps, asInt = builtin.Int). Answers {"retry": bool, "error": "..."} each.
//	{"tekton": {"pipeline": FILE, "task": FILE, "params": {...}, "analysis": {"task": NAME, "succeeded": bool,
//	            "results": {...} or null}}}
//	    tektoncd/pipeline's PipelineRun reconciler logic (pkg/reconciler/pipelinerun/resources): the DAG,
//	    result references resolved and applied, `when` expressions, skipping, retries (TaskRun.IsRetriable),
//	    finally tasks, and the PipelineRun's condition. The analysis task's TaskRun ends as the request
//	    says (every attempt alike); every other task's steps run with /bin/sh, after Tekton's own
//	    parameter substitution, and the task fails if a step exits non-zero.
//	{"termination": [{"decision": "...", ...}, ...]}
//	    Tekton's entrypoint: the results written to the termination message with termination.WriteMessage,
//	    then the StartedAt and ExitCode entries appended, as entrypointer.go does. Answers the bytes the
//	    results alone take and the whole message, or the error.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Knetic/govaluate"
	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/builtin"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/reconciler/pipeline/dag"
	"github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	taskresources "github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	"github.com/tektoncd/pipeline/pkg/result"
	"github.com/tektoncd/pipeline/pkg/termination"
	"github.com/valyala/fasttemplate"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
	"sigs.k8s.io/yaml"
)

type request struct {
	ArgoWhen    []argoWhen          `json:"argo-when"`
	ArgoRetry   []argoRetry         `json:"argo-retry"`
	Tekton      *tektonRequest      `json:"tekton"`
	Termination []map[string]string `json:"termination"`
}

type argoWhen struct {
	When  string            `json:"when"`
	Scope map[string]string `json:"scope"`
}

type argoRetry struct {
	Expression string            `json:"expression"`
	Scope      map[string]string `json:"scope"`
}

type tektonRequest struct {
	Pipeline string            `json:"pipeline"`
	Task     string            `json:"task"`
	Params   map[string]string `json:"params"` // the PipelineRun's params
	Analysis struct {
		Task      string            `json:"task"`
		Succeeded bool              `json:"succeeded"`
		Results   map[string]string `json:"results"`
	} `json:"analysis"`
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fail(err)
	}
	answer := map[string]any{}
	if req.ArgoWhen != nil {
		var out []map[string]any
		for _, w := range req.ArgoWhen {
			execute, err := argoShouldExecute(w.When, w.Scope)
			out = append(out, map[string]any{"execute": execute, "error": errText(err)})
		}
		answer["argo-when"] = out
	}
	if req.ArgoRetry != nil {
		var out []map[string]any
		for _, r := range req.ArgoRetry {
			retry, err := argoRetryExpression(r.Expression, r.Scope)
			out = append(out, map[string]any{"retry": retry, "error": errText(err)})
		}
		answer["argo-retry"] = out
	}
	if req.Tekton != nil {
		out, err := tektonRun(req.Tekton)
		if err != nil {
			fail(err)
		}
		answer["tekton"] = out
	}
	if req.Termination != nil {
		var out []map[string]any
		for _, results := range req.Termination {
			out = append(out, terminationMessage(results))
		}
		answer["termination"] = out
	}
	if err := json.NewEncoder(os.Stdout).Encode(answer); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "pipeline-eval:", err)
	os.Exit(1)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// --- Argo ---------------------------------------------------------------------------------------------

// argoSubstitute is util/template's simpleReplace applied to a step marshalled to JSON, as
// resolveReferences in workflow/controller/steps.go does (allowUnresolved = true).
func argoSubstitute(when string, scope map[string]string) (string, error) {
	step, err := json.Marshal(map[string]string{"when": when})
	if err != nil {
		return "", err
	}
	tmpl, err := fasttemplate.NewTemplate(string(step), "{{", "}}")
	if err != nil {
		return "", err
	}
	replaced, err := tmpl.ExecuteFuncStringWithErr(func(w io.Writer, tag string) (int, error) {
		value, ok := scope[strings.TrimSpace(tag)]
		if !ok {
			return w.Write([]byte("{{" + tag + "}}"))
		}
		quoted := strconv.Quote(value)
		return w.Write([]byte(quoted[1 : len(quoted)-1]))
	})
	if err != nil {
		return "", err
	}
	var out map[string]string
	if err := json.Unmarshal([]byte(replaced), &out); err != nil {
		return "", err
	}
	return out["when"], nil
}

// argoShouldExecute is shouldExecute from argo-workflows' workflow/controller/steps.go (Apache-2.0),
// after the substitution above.
func argoShouldExecute(when string, scope map[string]string) (bool, error) {
	when, err := argoSubstitute(when, scope)
	if err != nil {
		return false, err
	}
	if when == "" {
		return true, nil
	}
	expression, err := govaluate.NewEvaluableExpression(when)
	if err != nil {
		if strings.Contains(err.Error(), "Invalid token") {
			return false, fmt.Errorf("Invalid 'when' expression '%s': %v (hint: try wrapping the affected expression in quotes (\"))", when, err)
		}
		return false, fmt.Errorf("Invalid 'when' expression '%s': %v", when, err)
	}
	// Argo turns govaluate variables into strings, so `foo != bar` needs no quotes.
	tokens := expression.Tokens()
	for i, tok := range tokens {
		if tok.Kind == govaluate.VARIABLE {
			tok.Kind = govaluate.STRING
			tokens[i] = tok
		}
	}
	expression, err = govaluate.NewEvaluableExpressionFromTokens(tokens)
	if err != nil {
		return false, fmt.Errorf("Failed to parse 'when' expression '%s': %v", when, err)
	}
	result, err := expression.Evaluate(nil)
	if err != nil {
		return false, fmt.Errorf("Failed to evaluate 'when' expresion '%s': %v", when, err)
	}
	boolRes, ok := result.(bool)
	if !ok {
		return false, fmt.Errorf("Expected boolean evaluation for '%s'. Got %v", when, result)
	}
	return boolRes, nil
}

// argoRetryExpression evaluates a retryStrategy.expression the way Argo's util/expr/argoexpr.EvalBool
// does, with util/expr/env.GetFuncMap's environment.
func argoRetryExpression(expression string, scope map[string]string) (bool, error) {
	env := map[string]any{}
	for key, value := range scope {
		node := env
		parts := strings.Split(key, ".")
		for _, part := range parts[:len(parts)-1] {
			child, ok := node[part].(map[string]any)
			if !ok {
				child = map[string]any{}
				node[part] = child
			}
			node = child
		}
		node[parts[len(parts)-1]] = value
	}
	env["asInt"] = builtin.Int
	env["asFloat"] = builtin.Float
	result, err := expr.Eval(expression, env)
	if err != nil {
		return false, err
	}
	b, ok := result.(bool)
	if !ok {
		return false, fmt.Errorf("unable to cast expression result '%v' to bool", result)
	}
	return b, nil
}

// --- Tekton -------------------------------------------------------------------------------------------

type taskOutcome struct {
	State    string            `json:"state"` // succeeded, failed, skipped, not-run
	Reason   string            `json:"reason,omitempty"`
	Attempts int               `json:"attempts,omitempty"`
	Params   map[string]string `json:"params,omitempty"`
	Output   string            `json:"output,omitempty"`
	Finally  bool              `json:"finally"`
}

func readYAML(path string, into any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return yaml.UnmarshalStrict(data, into)
}

func taskRun(name string, pt *v1.PipelineTask, succeeded bool, reason string, results map[string]string) *v1.TaskRun {
	status := corev1.ConditionTrue
	if !succeeded {
		status = corev1.ConditionFalse
	}
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1.TaskRunSpec{Retries: pt.Retries, Params: pt.Params},
	}
	tr.Status.Status = duckv1.Status{Conditions: duckv1.Conditions{{
		Type: apis.ConditionSucceeded, Status: status, Reason: reason,
	}}}
	names := make([]string, 0, len(results))
	for k := range results {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		tr.Status.Results = append(tr.Status.Results, v1.TaskRunResult{
			Name: k, Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(results[k]),
		})
	}
	return tr
}

// runEmbedded runs the steps of a task (after Tekton's parameter substitution) with /bin/sh.
func runEmbedded(rpt *resources.ResolvedPipelineTask, name string) (bool, string, map[string]string) {
	tr := taskRun(name, rpt.PipelineTask, true, "", nil)
	spec := taskresources.ApplyParameters(rpt.ResolvedTask.TaskSpec.DeepCopy(), tr, rpt.ResolvedTask.TaskSpec.Params...)
	params := map[string]string{}
	for _, p := range rpt.PipelineTask.Params {
		params[p.Name] = p.Value.StringVal
	}
	var out bytes.Buffer
	for _, step := range spec.Steps {
		cmd := exec.Command("/bin/sh", "-c", step.Script)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		for _, e := range step.Env {
			cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
		}
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return false, strings.TrimSpace(out.String()), params
		}
	}
	return true, strings.TrimSpace(out.String()), params
}

func tektonRun(req *tektonRequest) (map[string]any, error) {
	var pipeline v1.Pipeline
	if err := readYAML(req.Pipeline, &pipeline); err != nil {
		return nil, fmt.Errorf("%s: %w", req.Pipeline, err)
	}
	var task v1.Task
	if err := readYAML(req.Task, &task); err != nil {
		return nil, fmt.Errorf("%s: %w", req.Task, err)
	}
	pr := &v1.PipelineRun{ObjectMeta: metav1.ObjectMeta{Name: "run"}}
	for name, value := range req.Params {
		pr.Spec.Params = append(pr.Spec.Params, v1.Param{Name: name, Value: *v1.NewStructuredValues(value)})
	}
	spec := *resources.ApplyParameters(context.Background(), pipeline.Spec.DeepCopy(), pr)
	spec = *resources.ApplyContexts(&spec, pipeline.Name, pr)
	d, err := dag.Build(v1.PipelineTaskList(spec.Tasks), v1.PipelineTaskList(spec.Tasks).Deps())
	if err != nil {
		return nil, err
	}
	dfinally, err := dag.Build(v1.PipelineTaskList(spec.Finally), map[string][]string{})
	if err != nil {
		return nil, err
	}
	var state resources.PipelineRunState
	isFinally := map[string]bool{}
	for i, tasks := range [][]v1.PipelineTask{spec.Tasks, spec.Finally} {
		for j := range tasks {
			pt := tasks[j].DeepCopy()
			var ts *v1.TaskSpec
			switch {
			case pt.TaskRef != nil && pt.TaskRef.Name == task.Name:
				ts = task.Spec.DeepCopy()
			case pt.TaskSpec != nil:
				ts = pt.TaskSpec.TaskSpec.DeepCopy()
			default:
				return nil, fmt.Errorf("task %s: neither the Task %s nor an embedded taskSpec", pt.Name, task.Name)
			}
			state = append(state, &resources.ResolvedPipelineTask{
				TaskRunNames: []string{"run-" + pt.Name},
				PipelineTask: pt,
				ResolvedTask: &taskresources.ResolvedTask{TaskName: pt.Name, TaskSpec: ts},
			})
			isFinally[pt.Name] = i == 1
		}
	}
	facts := &resources.PipelineRunFacts{
		State:           state,
		TasksGraph:      d,
		FinalTasksGraph: dfinally,
		TimeoutsState:   resources.PipelineRunTimeoutsState{Clock: clock.RealClock{}},
		SkipCache:       map[string]resources.TaskSkipStatus{},
	}
	outcomes := map[string]*taskOutcome{}
	for _, rpt := range state {
		outcomes[rpt.PipelineTask.Name] = &taskOutcome{State: "not-run", Finally: isFinally[rpt.PipelineTask.Name]}
	}
	pristine := make([]*v1.PipelineTask, len(state))
	for i, rpt := range state {
		pristine[i] = rpt.PipelineTask.DeepCopy()
	}
	attempted := map[string]bool{}
	for round := 0; round < 20; round++ {
		// Each reconcile resolves every PipelineTask afresh from the spec, applying the results known so
		// far and ignoring the missing ones (ResolvePipelineTask).
		for i, rpt := range state {
			rpt.PipelineTask = pristine[i].DeepCopy()
			refs, _, _ := resources.ResolveResultRefs(state, resources.PipelineRunState{rpt})
			resources.ApplyTaskResults(resources.PipelineRunState{rpt}, refs)
		}
		facts.ResetSkippedCache()
		next, err := facts.DAGExecutionQueue()
		if err != nil {
			return nil, err
		}
		for _, rpt := range next {
			if err := resources.CheckMissingResultReferences(facts.State, rpt); err != nil {
				outcomes[rpt.PipelineTask.Name].Reason = "InvalidTaskResultReference: " + err.Error()
				next = nil
				facts.ValidationFailedTask = append(facts.ValidationFailedTask, rpt)
			}
		}
		finals := facts.GetFinalTasks()
		if len(finals) != 0 {
			resources.ApplyPipelineTaskStateContext(finals, facts.GetPipelineTaskStatus())
			for _, rpt := range finals {
				refs, _, err := resources.ResolveResultRef(facts.State, rpt)
				if err != nil {
					outcomes[rpt.PipelineTask.Name].Reason = "not executed: " + err.Error()
					continue
				}
				resources.ApplyTaskResults(resources.PipelineRunState{rpt}, refs)
				next = append(next, rpt)
			}
		}
		// One reconcile decides what to start, then the TaskRuns run (in parallel on a cluster).
		var start []*resources.ResolvedPipelineTask
		for _, rpt := range next {
			name := rpt.PipelineTask.Name
			if attempted[name] || outcomes[name].State != "not-run" {
				continue // decided in an earlier reconcile: the first reason is the one kept
			}
			if s := rpt.Skip(facts); s.IsSkipped {
				outcomes[name].State, outcomes[name].Reason = "skipped", string(s.SkippingReason)
				continue
			}
			if s := rpt.IsFinallySkipped(facts); s.IsSkipped {
				outcomes[name].State, outcomes[name].Reason = "skipped", string(s.SkippingReason)
				continue
			}
			start = append(start, rpt)
		}
		// What this reconcile skips, before the TaskRuns it starts change the state (GetSkippedTasks).
		for _, rpt := range state {
			o := outcomes[rpt.PipelineTask.Name]
			if o.State == "not-run" && !isFinally[rpt.PipelineTask.Name] && !contains(start, rpt) {
				if s := rpt.Skip(facts); s.IsSkipped {
					o.State, o.Reason = "skipped", string(s.SkippingReason)
				}
			}
		}
		progressed := len(start) > 0
		for _, rpt := range start {
			name := rpt.PipelineTask.Name
			attempted[name] = true
			o := outcomes[name]
			var tr *v1.TaskRun
			if name == req.Analysis.Task {
				reason := "Succeeded"
				if !req.Analysis.Succeeded {
					reason = "Failed"
				}
				tr = taskRun("run-"+name, rpt.PipelineTask, req.Analysis.Succeeded, reason, req.Analysis.Results)
				o.Attempts = 1
				// The TaskRun reconciler retries a failed TaskRun while IsRetriable (every attempt alike here).
				for tr.IsFailure() && !tr.IsCancelled() && tr.IsRetriable() {
					tr.Status.RetriesStatus = append(tr.Status.RetriesStatus, *tr.Status.DeepCopy())
					o.Attempts++
				}
				o.Params = map[string]string{}
				for _, p := range rpt.PipelineTask.Params {
					o.Params[p.Name] = p.Value.StringVal
				}
			} else {
				ok, output, params := runEmbedded(rpt, "run-"+name)
				reason := "Succeeded"
				if !ok {
					reason = "Failed"
				}
				tr = taskRun("run-"+name, rpt.PipelineTask, ok, reason, nil)
				o.Attempts, o.Output, o.Params = 1, output, params
			}
			rpt.TaskRuns = []*v1.TaskRun{tr}
			if tr.IsSuccessful() {
				o.State = "succeeded"
			} else {
				o.State = "failed"
			}
		}
		if !progressed {
			break
		}
		facts.ResetSkippedCache()
	}
	// Tasks that never ran: ask Tekton why, once the run is over.
	for _, rpt := range state {
		o := outcomes[rpt.PipelineTask.Name]
		if o.State != "not-run" {
			continue
		}
		s := rpt.Skip(facts)
		if isFinally[rpt.PipelineTask.Name] {
			s = rpt.IsFinallySkipped(facts)
		}
		if s.IsSkipped {
			o.State = "skipped"
			if o.Reason == "" {
				o.Reason = string(s.SkippingReason)
			}
		}
	}
	pr.Status.StartTime = &metav1.Time{Time: time.Now()}
	cond := facts.GetPipelineConditionStatus(context.Background(), pr, zap.NewNop().Sugar(), clock.RealClock{})
	return map[string]any{
		"tasks":       outcomes,
		"pipelinerun": map[string]string{"status": string(cond.Status), "reason": cond.Reason, "message": cond.Message},
	}, nil
}

// --- Tekton's termination message ---------------------------------------------------------------------

func terminationMessage(results map[string]string) map[string]any {
	dir, err := os.MkdirTemp("", "termination")
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "message")
	names := make([]string, 0, len(results))
	for k := range results {
		names = append(names, k)
	}
	sort.Strings(names)
	var entries []result.RunResult
	for _, k := range names {
		entries = append(entries, result.RunResult{Key: k, Value: results[k], ResultType: result.TaskRunResultType})
	}
	answer := map[string]any{}
	// readResultsFromDisk: the results first...
	if err := termination.WriteMessage(path, entries); err != nil {
		answer["error"] = err.Error()
		return answer
	}
	data, _ := os.ReadFile(path)
	answer["results_bytes"] = len(data)
	// ...then the deferred write of the entrypoint's own entries (a step with onError: continue that
	// exited non-zero, the longest case: StartedAt with a zone offset, ExitCode, and a Reason).
	own := []result.RunResult{
		{Key: "StartedAt", Value: time.Date(2026, 12, 31, 23, 59, 59, 999e6, time.FixedZone("", -12*3600)).Format("2006-01-02T15:04:05.000Z07:00"), ResultType: result.InternalTektonResultType},
		{Key: "ExitCode", Value: "143", ResultType: result.InternalTektonResultType},
		{Key: "Reason", Value: "TimeoutExceeded", ResultType: result.InternalTektonResultType},
	}
	if err := termination.WriteMessage(path, own); err != nil {
		answer["error"] = err.Error()
		return answer
	}
	data, _ = os.ReadFile(path)
	answer["message_bytes"] = len(data)
	return answer
}

func contains(list []*resources.ResolvedPipelineTask, rpt *resources.ResolvedPipelineTask) bool {
	for _, r := range list {
		if r == rpt {
			return true
		}
	}
	return false
}
