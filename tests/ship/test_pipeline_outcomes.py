"""Every outcome of canary-step, walked through each platform's example with the platform's own code.

For each outcome (exit 0 promoted / initialised / already promoted, 2, 3, 4, 4 locked, 5, 143, canary-step
killed, the pod lost) the shared launcher runs with a stand-in `canary-step` that writes the results with
step.report.results (the real writer) and exits, or is killed, as the outcome says. Then:

- **Tekton**: the Task's `exit` step turns the exit code into the TaskRun's (its script, run with
  /bin/sh), and `pipeline-eval` (tests/pipeline_schemas/eval) plays tekton/pipeline-example.yaml with
  tektoncd/pipeline's reconciler code: retries, result references, `when`, finally, the PipelineRun's
  condition.
- **Argo**: `pipeline-eval` evaluates the template's retry expression (expr, as Argo does) and every `when`
  of argo/workflow-example.yaml (substituted and evaluated as Argo's steps controller does, with govaluate);
  the steps that run execute their container's command with /bin/sh. What a step group's phase is (a
  failed step without continueOn fails it) is the one rule written here.
- **GitHub Actions**: the docs' workflow; a step that exits non-zero fails the job, later outputs of the
  same name win, and each `if:` is evaluated by a small evaluator of the expression subset used (GitHub's
  evaluator is not available here).

Each platform must end red exactly when the release did not happen (anything but exit 0), and route each
case to the step that says what to do. docs/pipelines.md holds one table per platform, generated here:
`.venv/bin/python -m tests.ship.test_pipeline_outcomes --write` rewrites them; the test fails if they differ.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from step.analysis.state import Reason
from step.contract import RESULT_NAMES, TERMINATION_MESSAGE_BUDGET, Decision
from step.report.results import fit, termination_message_size

ROOT = Path(__file__).resolve().parents[2]
TASK = ROOT / "tekton" / "knative-canary.yaml"
PIPELINE = ROOT / "tekton" / "pipeline-example.yaml"
TEMPLATE = ROOT / "argo" / "workflowtemplate.yaml"
WORKFLOW = ROOT / "argo" / "workflow-example.yaml"
ACTION = ROOT / "action.yml"
DOCS = ROOT / "docs" / "pipelines.md"

# What the launcher writes before canary-step starts.
DEFAULT_DECISION, DEFAULT_REASON = Decision.FAILED.value, Reason.NO_RESULTS_WRITTEN.value
KILLED = "SIGKILL"


@dataclass(frozen=True)
class Outcome:
    label: str  # the first column of the tables
    exit: int | str | None  # an exit code, KILLED (canary-step killed by SIGKILL), None (the pod lost)
    decision: str | None = None  # what canary-step writes; None: nothing (it never got that far)
    reason: str = ""

    @property
    def results(self) -> dict[str, str] | None:
        if self.decision is None:
            return None
        revision = {"promoted": "podinfo-00002"}.get(self.decision, "podinfo-00001")
        return {
            "decision": self.decision,
            "reason": self.reason,
            "canary-revision": "podinfo-00002",
            "primary-revision": revision,
            "canary-weight": "50" if self.decision == "promoted" else "20",
            "failed-checks": "2" if self.decision == "rolled-back" else "0",
            "iterations": "6",
            "report": "/tmp/canary-step/canary-step-report.json",
        }


OUTCOMES = [
    Outcome("0 promoted", 0, Decision.PROMOTED, Reason.ANALYSIS_PASSED),
    Outcome("0 initialized", 0, Decision.INITIALIZED, Reason.INITIALIZED),
    Outcome("0 skipped, already-promoted", 0, Decision.SKIPPED, Reason.ALREADY_PROMOTED),
    Outcome("2 invalid spec", 2, Decision.FAILED, Reason.INVALID_SPEC),
    Outcome("2 usage error (only the launcher's defaults)", 2),
    Outcome("3 rolled back", 3, Decision.ROLLED_BACK, Reason.FAILED_CHECKS),
    Outcome("4 infrastructure", 4, Decision.FAILED, Reason.INFRASTRUCTURE),
    Outcome("4 locked", 4, Decision.FAILED, Reason.LOCKED),
    Outcome("5 rollback failed", 5, Decision.FAILED, Reason.ROLLBACK_FAILED),
    Outcome("143 SIGTERM (eviction, timeout)", 143, Decision.FAILED, Reason.INTERRUPTED_SIGTERM),
    Outcome("killed (OOM, SIGKILL)", KILLED),
    Outcome("pod lost (deleted, node gone)", None),
]


# --- running the launcher with a stand-in canary-step ----------------------------------------------------


def _launcher() -> str:
    (action,) = yaml.safe_load_all(ACTION.read_text())
    return str(action["runs"]["args"][1])


def _stand_in(bindir: Path) -> None:
    exe = bindir / "canary-step"
    exe.write_text(
        f"#!{sys.executable}\n"
        "import json, os, signal, sys\n"
        "from step.report.results import write_github_output, write_results_dir\n"
        "plan = json.loads(os.environ['STAND_IN'])\n"
        "if plan['results'] is not None:\n"
        "    if os.environ.get('CANARY_STEP_RESULTS_DIR'):\n"
        "        write_results_dir(os.environ['CANARY_STEP_RESULTS_DIR'], plan['results'])\n"
        "    if os.environ.get('GITHUB_OUTPUT'):\n"
        "        write_github_output(os.environ['GITHUB_OUTPUT'], plan['results'])\n"
        "if plan['exit'] == 'SIGKILL':\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "sys.exit(plan['exit'])\n"
    )
    exe.chmod(0o755)


@dataclass
class Launched:
    exit_code: int | None  # as the platform records it: 128+n for a signal (kubelet), None if lost
    tekton_exit_code: int | None  # Tekton's entrypoint records -1 for a process killed by a signal
    results: dict[str, str] | None  # the results directory after the run, None if the pod was lost
    github_output: dict[str, str]


def launch(outcome: Outcome, tmp_path: Path) -> Launched:
    if outcome.exit is None:
        return Launched(None, None, None, {})
    bindir, results_dir, out = tmp_path / "bin", tmp_path / "results", tmp_path / "github_output"
    bindir.mkdir()
    _stand_in(bindir)
    out.touch()
    plan = {"exit": outcome.exit, "results": outcome.results}
    env = {
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "TMPDIR": str(tmp_path),
        "STAND_IN": json.dumps(plan),
        "CANARY_STEP_SPEC": "canary.yaml",
        "CANARY_STEP_RESULTS_DIR": str(results_dir),
        "GITHUB_OUTPUT": str(out),
    }
    proc = subprocess.run(
        ["/bin/sh", "-c", _launcher()], env=env, capture_output=True, text=True, check=False
    )
    code = proc.returncode
    killed = code < 0  # the launcher execs canary-step, so the signal kills the step's process itself
    results = {p.name: p.read_text() for p in results_dir.iterdir()} if results_dir.is_dir() else None
    return Launched(
        exit_code=128 - code if killed else code,
        tekton_exit_code=-1 if killed else code,
        results=results,
        github_output=_read_github_output(out),
    )


def _read_github_output(path: Path) -> dict[str, str]:
    """As the runner reads $GITHUB_OUTPUT: name=value or name<<DELIMITER lines; a later value wins."""
    values: dict[str, str] = {}
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
            continue
        name, _, value = line.partition("=")
        values[name] = value
        i += 1
    return values


def _eval(tool: Path, request: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [str(tool)], input=json.dumps(request), capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


def _sh(script: str, env: dict[str, str]) -> tuple[int, str]:
    proc = subprocess.run(
        ["/bin/sh", "-c", script],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode, (proc.stdout + proc.stderr).strip()


@dataclass(frozen=True)
class Row:
    outcome: str
    attempts: int
    ran: tuple[str, ...]  # the steps/tasks after the analysis that ran, with their result
    red: bool
    status: str  # the run's end state, as the platform names it

    def cells(self) -> list[str]:
        return [
            self.outcome,
            str(self.attempts),
            ", ".join(self.ran) or "—",
            f"**{self.status}**" if self.red else self.status,
        ]


# --- Tekton ------------------------------------------------------------------------------------------------


def tekton_row(outcome: Outcome, tmp_path: Path, tool: Path) -> Row:
    launched = launch(outcome, tmp_path)
    pipeline = yaml.safe_load(PIPELINE.read_text())
    (analysis,) = [
        t for t in pipeline["spec"]["tasks"] if t.get("taskRef", {}).get("name") == "knative-canary"
    ]
    task = yaml.safe_load(TASK.read_text())
    exit_step = task["spec"]["steps"][1]
    fail_on = {p["name"]: p["value"] for p in analysis["params"]}.get("fail-on", "any")
    if launched.tekton_exit_code is None:
        succeeded, results = False, None  # the pod is gone: no step finished, no termination message
    else:
        code_file = tmp_path / "exitCode"
        code_file.write_text(str(launched.tekton_exit_code))
        code, _ = _sh(
            exit_step["script"],
            {"CANARY_STEP_EXIT_CODE_FILE": str(code_file), "CANARY_STEP_FAIL_ON": fail_on},
        )
        succeeded, results = code == 0, launched.results
    answer = _eval(
        tool,
        {
            "tekton": {
                "pipeline": str(PIPELINE),
                "task": str(TASK),
                "params": {"image": "ghcr.io/stefanprodan/podinfo:6.0.1"},
                "analysis": {"task": analysis["name"], "succeeded": succeeded, "results": results},
            }
        },
    )["tekton"]
    tasks = answer["tasks"]
    order = [t["name"] for t in pipeline["spec"]["tasks"] + pipeline["spec"].get("finally", [])]
    ran = tuple(
        f"{name} ({'fails' if tasks[name]['state'] == 'failed' else 'ok'})"
        for name in order
        if name != analysis["name"] and tasks[name]["state"] in {"succeeded", "failed"}
    )
    skipped_report = [n for n, t in tasks.items() if t["finally"] and t["state"] != "succeeded"]
    if skipped_report:
        ran += tuple(f"{n} skipped (no results)" for n in skipped_report)
    condition = answer["pipelinerun"]
    red = condition["status"] != "True"
    status = "Failed" if red else "Succeeded"
    if condition["reason"] not in {"Failed", "Completed", "Succeeded"}:
        status += f" ({condition['reason']})"
    analysis_state = "TaskRun fails" if tasks[analysis["name"]]["state"] == "failed" else ""
    if analysis_state:
        ran = (analysis_state, *ran)
    return Row(outcome.label, tasks[analysis["name"]]["attempts"], ran, red, status)


# --- Argo --------------------------------------------------------------------------------------------------


_ARGO_TAG = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


def _substitute(value: str, values: dict[str, str]) -> str:
    return _ARGO_TAG.sub(lambda m: values[m.group(1)], value)


def argo_row(outcome: Outcome, tmp_path: Path, tool: Path) -> Row:
    launched = launch(outcome, tmp_path)
    template = next(t for t in yaml.safe_load(TEMPLATE.read_text())["spec"]["templates"])
    workflow = yaml.safe_load(WORKFLOW.read_text())
    retry = template["retryStrategy"]
    if launched.exit_code is None:
        status, exit_code, outputs = "Error", None, None
    else:
        status = "Succeeded" if launched.exit_code == 0 else "Failed"
        exit_code = str(launched.exit_code)
        results = launched.results or {}
        outputs = {
            p["name"]: results.get(Path(p["valueFrom"]["path"]).name, p["valueFrom"]["default"])
            for p in template["outputs"]["parameters"]
        }
    attempts = 1
    if status != "Succeeded" and retry.get("retryPolicy") == "Always":
        scope = {"lastRetry.exitCode": exit_code or "-1", "lastRetry.status": status, "retries": "0"}
        (verdict,) = _eval(tool, {"argo-retry": [{"expression": retry["expression"], "scope": scope}]})[
            "argo-retry"
        ]
        assert not verdict["error"], verdict
        if verdict["retry"]:
            attempts += int(retry["limit"])
    scope = {"steps.analyse.status": status}
    if exit_code is not None:
        scope["steps.analyse.exitCode"] = exit_code
    for name, value in (outputs or {}).items():
        scope[f"steps.analyse.outputs.parameters.{name}"] = value
    wf_params = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    scope |= {f"workflow.parameters.{k}": v for k, v in wf_params.items()}
    main = next(t for t in workflow["spec"]["templates"] if t["name"] == workflow["spec"]["entrypoint"])
    (analyse,), group = main["steps"][0], main["steps"][1]
    continue_on = analyse.get("continueOn", {})
    if status != "Succeeded" and not continue_on.get({"Failed": "failed", "Error": "error"}[status]):
        return Row(outcome.label, attempts, (), True, f"{status} (the analyse step)")
    whens = _eval(tool, {"argo-when": [{"when": s.get("when", ""), "scope": scope} for s in group]})[
        "argo-when"
    ]
    ran: list[str] = []
    red, phase = False, "Succeeded"
    templates = {t["name"]: t for t in workflow["spec"]["templates"]}
    for step, when in zip(group, whens, strict=True):
        if when["error"]:
            ran.append(f"{step['name']} (when errors)")
            red, phase = True, "Error"
            continue
        if not when["execute"]:
            continue
        args = {p["name"]: str(p["value"]) for p in step.get("arguments", {}).get("parameters", [])}
        unresolved = [tag for v in args.values() for tag in _ARGO_TAG.findall(v) if tag.strip() not in scope]
        if unresolved:
            # Argo cannot pass a parameter it cannot resolve: the step errors (the Workflow ends red).
            ran.append(f"{step['name']} (errors: no outputs)")
            red, phase = True, "Error" if phase != "Failed" else phase
            continue
        local = {
            f"inputs.parameters.{k}": _ARGO_TAG.sub(lambda m: scope[m.group(1)], v) for k, v in args.items()
        }
        container = templates[step["template"]]["container"]
        env = {e["name"]: _substitute(e.get("value", ""), local) for e in container.get("env", [])}
        assert container["command"] == ["/bin/sh", "-c"]
        code, _ = _sh(container["args"][0], env)
        ran.append(f"{step['name']} ({'fails' if code else 'ok'})")
        if code:
            red, phase = True, "Failed"
    return Row(outcome.label, attempts, tuple(ran), red, phase)


# --- GitHub Actions ---------------------------------------------------------------------------------------


def _github_job() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    (workflow,) = [d for d in map(yaml.safe_load, blocks) if isinstance(d, dict) and "jobs" in d]
    (job,) = workflow["jobs"].values()
    job_: dict[str, Any] = job
    return job_


_GH_TOKEN = re.compile(r"\s*(\|\||&&|==|!=|!|\(|\)|'[^']*'|[A-Za-z_][\w.-]*\(\)|[A-Za-z_][\w.-]*)")


def github_if(expression: str, *, failed: bool, outputs: dict[str, dict[str, str]]) -> bool:
    """GitHub's `if:` for the subset the example uses; a bare `if` has an implied success()."""
    tokens = []
    pos = 0
    text = expression.strip().removeprefix("${{").removesuffix("}}").strip()
    while pos < len(text):
        m = _GH_TOKEN.match(text, pos)
        assert m, f"unsupported in {expression!r} at {text[pos:]!r}"
        tokens.append(m.group(1))
        pos = m.end()
    if not any(t in {"failure()", "success()", "always()", "cancelled()"} for t in tokens):
        tokens = ["success()", "&&", "(", *tokens, ")"]

    def value(tok: str) -> Any:
        if tok.startswith("'"):
            return tok[1:-1]
        functions = {"failure()": failed, "success()": not failed, "always()": True, "cancelled()": False}
        if tok in functions:
            return functions[tok]
        parts = tok.split(".")
        assert parts[0] == "steps" and parts[2] == "outputs", tok
        return outputs.get(parts[1], {}).get(parts[3], "")

    py = []
    for tok in tokens:
        py.append(
            {"||": " or ", "&&": " and ", "!": " not ", "==": " == ", "!=": " != "}.get(tok)
            or (tok if tok in "()" else repr(value(tok)))
        )
    return bool(eval("".join(py), {"__builtins__": {}}, {}))


def github_row(outcome: Outcome, tmp_path: Path) -> Row:
    launched = launch(outcome, tmp_path)
    job = _github_job()
    (canary_step,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("canary-step/")]
    failed = launched.exit_code != 0
    outputs = {canary_step["id"]: launched.github_output}
    ran: list[str] = []
    after = job["steps"][job["steps"].index(canary_step) + 1 :]
    for step in after:
        if not github_if(str(step.get("if", "")), failed=failed, outputs=outputs):
            continue
        env = {
            k: re.sub(
                r"\$\{\{\s*steps\.([\w-]+)\.outputs\.([\w-]+)\s*\}\}",
                lambda m: outputs.get(m.group(1), {}).get(m.group(2), ""),
                str(v),
            )
            for k, v in step.get("env", {}).items()
        }
        code, _ = _sh(step["run"], env)
        ran.append(f"{step['name']} ({'fails' if code else 'ok'})")
        failed = failed or code != 0
    if launched.exit_code is None:
        status = "failure (runner lost the step)"
    else:
        status = "failure" if failed else "success"
    return Row(outcome.label, 1, tuple(ran), failed, status)


# --- the tables -------------------------------------------------------------------------------------------

HEADERS = {
    "tekton": ["outcome", "TaskRun attempts", "then (tasks that run)", "PipelineRun"],
    "argo": ["outcome", "attempts", "then (steps that run)", "Workflow"],
    "github": ["outcome", "attempts", "then (steps that run)", "job"],
}


def table(platform: str, rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADERS[platform]) + " |", "|" + " --- |" * len(HEADERS[platform])]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def _marker(platform: str) -> tuple[str, str]:
    return f"<!-- outcomes:{platform} -->", f"<!-- /outcomes:{platform} -->"


def docs_table(platform: str) -> str:
    start, end = _marker(platform)
    text = DOCS.read_text()
    assert start in text and end in text, f"docs/pipelines.md has no {start} ... {end}"
    return text[text.index(start) + len(start) : text.index(end)].strip("\n")


def rows_for(platform: str, tmp_path: Path, tool: Path | None) -> list[Row]:
    rows = []
    for i, outcome in enumerate(OUTCOMES):
        where = tmp_path / f"{platform}-{i}"
        where.mkdir()
        if platform == "tekton":
            assert tool is not None
            rows.append(tekton_row(outcome, where, tool))
        elif platform == "argo":
            assert tool is not None
            rows.append(argo_row(outcome, where, tool))
        else:
            rows.append(github_row(outcome, where))
    return rows


def _check(platform: str, rows: list[Row]) -> None:
    for outcome, row in zip(OUTCOMES, rows, strict=True):
        # Red exactly when the release did not happen: everything but exit 0.
        assert row.red == (outcome.exit != 0), row
    expected = table(platform, rows)
    assert docs_table(platform) == expected, (
        f"docs/pipelines.md's {platform} table is out of date; run "
        f"`.venv/bin/python -m tests.ship.test_pipeline_outcomes --write`. Expected:\n{expected}"
    )


def test_the_launcher_writes_default_results_first(tmp_path: Path) -> None:
    launched = launch(Outcome("usage error", 2), tmp_path)
    assert launched.exit_code == 2
    assert launched.results == {
        **dict.fromkeys(RESULT_NAMES, ""),
        "decision": DEFAULT_DECISION,
        "reason": DEFAULT_REASON,
    }
    assert launched.github_output == {"decision": DEFAULT_DECISION, "reason": DEFAULT_REASON}
    # canary-step's own results replace the defaults, in the files and in $GITHUB_OUTPUT (a later line wins).
    outcome = OUTCOMES[0]
    (tmp_path / "again").mkdir()
    launched = launch(outcome, tmp_path / "again")
    assert launched.results == outcome.results
    assert launched.github_output == outcome.results


def test_a_killed_canary_step_leaves_the_default_results(tmp_path: Path) -> None:
    launched = launch(Outcome("killed", KILLED), tmp_path)
    assert (launched.exit_code, launched.tekton_exit_code) == (128 + signal.SIGKILL, -1)
    assert launched.results is not None and launched.results["decision"] == DEFAULT_DECISION


def test_tekton_outcomes(go_tools: dict[str, Path], tmp_path: Path) -> None:
    rows = rows_for("tekton", tmp_path, go_tools["pipeline-eval"])
    by = {r.outcome: r for r in rows}
    assert by["3 rolled back"].attempts == 1 and by["5 rollback failed"].attempts == 1
    assert by["2 invalid spec"].attempts == 1
    assert by["4 infrastructure"].attempts == 3 and by["killed (OOM, SIGKILL)"].attempts == 3
    assert by["pod lost (deleted, node gone)"].attempts == 3
    assert "rolled-back (fails)" in by["3 rolled back"].ran
    assert "needs-a-person (fails)" in by["5 rollback failed"].ran
    assert "promoted (ok)" in by["0 promoted"].ran
    _check("tekton", rows)


def test_argo_outcomes(go_tools: dict[str, Path], tmp_path: Path) -> None:
    rows = rows_for("argo", tmp_path, go_tools["pipeline-eval"])
    by = {r.outcome: r for r in rows}
    for label in ("0 promoted", "2 invalid spec", "3 rolled back", "5 rollback failed"):
        assert by[label].attempts == 1, by[label]
    for label in ("4 infrastructure", "4 locked", "143 SIGTERM (eviction, timeout)", "killed (OOM, SIGKILL)"):
        assert by[label].attempts == 3, by[label]
    assert "rolled-back (fails)" in by["3 rolled back"].ran
    assert "needs-a-person (fails)" in by["5 rollback failed"].ran
    assert all("when errors" not in step for r in rows for step in r.ran)
    _check("argo", rows)


def test_github_outcomes(tmp_path: Path) -> None:
    rows = rows_for("github", tmp_path, None)
    _check("github", rows)


def test_the_evaluators_are_not_vacuous(go_tools: dict[str, Path]) -> None:
    """The unquoted `when` of issue 17 errors in Argo's evaluator; a quoted one does not."""
    scope = {"steps.analyse.outputs.parameters.decision": "rolled-back"}
    bare, quoted = _eval(
        go_tools["pipeline-eval"],
        {
            "argo-when": [
                {"when": "{{steps.analyse.outputs.parameters.decision}} == promoted", "scope": scope},
                {"when": "'{{steps.analyse.outputs.parameters.decision}}' == 'promoted'", "scope": scope},
            ]
        },
    )["argo-when"]
    assert "cannot be used with the modifier '-'" in bare["error"]
    assert quoted == {"execute": False, "error": ""}
    assert github_if(
        "failure() && steps.c.outputs.decision == 'rolled-back'",
        failed=True,
        outputs={"c": {"decision": "rolled-back"}},
    )
    assert not github_if(
        "steps.c.outputs.decision == 'promoted'", failed=True, outputs={"c": {"decision": "promoted"}}
    )


def test_results_fit_tektons_termination_message_as_its_entrypoint_writes_it(
    go_tools: dict[str, Path],
) -> None:
    """The worst cases, fitted by canary-step, written by Tekton's termination.WriteMessage plus the
    entrypoint's own longest entries, fit in 4096 bytes; and our size is Go's, byte for byte."""
    long = 5000
    cases = [
        {name: "x" * long for name in RESULT_NAMES},
        {name: "<&>" * long for name in RESULT_NAMES},  # each escaped to 6 bytes by Go
        {name: 'é\u2028"\\\n' * long for name in RESULT_NAMES},
        {**{name: "" for name in RESULT_NAMES}, "reason": "&" * long},
    ]
    fitted = [fit(values, budget=TERMINATION_MESSAGE_BUDGET) for values in cases]
    answers = _eval(go_tools["pipeline-eval"], {"termination": [*cases, *fitted]})["termination"]
    for values, answer in zip(cases, answers[: len(cases)], strict=True):
        assert "error" in answer and "above max allowed size 4096" in answer["error"], answer
        assert termination_message_size(values) > 4096
    for values, answer in zip(fitted, answers[len(cases) :], strict=True):
        assert "error" not in answer, answer
        # Sorted by name, as pipeline-eval writes them; the size does not depend on the order.
        assert answer["results_bytes"] == termination_message_size(dict(sorted(values.items())))
        assert answer["results_bytes"] <= TERMINATION_MESSAGE_BUDGET
        assert answer["message_bytes"] <= 4096


def _write_docs(tool: Path) -> None:
    import tempfile  # noqa: PLC0415 - only for --write

    text = DOCS.read_text()
    for platform in ("tekton", "argo", "github"):
        with tempfile.TemporaryDirectory() as tmp:
            rows = rows_for(platform, Path(tmp), tool if platform != "github" else None)
        start, end = _marker(platform)
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = f"{before}{start}\n{table(platform, rows)}\n{end}{after}"
    DOCS.write_text(text)


if __name__ == "__main__":
    from tests.ship.tools import go_tools

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.ship.test_pipeline_outcomes --write")
    _write_docs(go_tools()["pipeline-eval"])
