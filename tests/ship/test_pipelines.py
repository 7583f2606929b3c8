"""Consistency of the pipeline packaging: tekton/, argo/, action.yml and the e2e workflow, against the
contract (step.contract.RESULT_NAMES), the `run` command's options, and each other.

No cluster is needed: these read the YAML as Tekton, Argo and GitHub would resolve their variables, and
run the launcher script (the same text in all three) with /bin/sh against a recording stand-in for
`canary-step`.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

import step
from step.analysis.state import Reason
from step.cli import cli
from step.contract import RESULT_NAMES
from step.kube.lease import POD_NAME_ENV, POD_UID_ENV
from tests.cluster.binaries import BinaryError
from tests.ship import tools
from tests.ship.conftest import env_value
from tests.ship.tools import tool_run

ROOT = Path(__file__).resolve().parents[2]
TEKTON = sorted((ROOT / "tekton").glob("*.yaml"))
ARGO = sorted((ROOT / "argo").glob("*.yaml"))
ACTION = ROOT / "action.yml"
E2E = ROOT / ".github" / "workflows" / "e2e-kind.yaml"
ALL_FILES = [*TEKTON, *ARGO, ACTION, E2E]

STEP_IMAGE = f"ghcr.io/canary-step/canary-step:{step.__version__}"
TEKTON_RESULTS_DIR = "/tekton/results"

# The options of `canary-step run`, as the brief for issue 4 lists them. Used only while step.cli.run
# does not exist; once it does, the tests read the real command instead.
DOCUMENTED_RUN_OPTIONS = {
    "canary-ref",
    "kubeconfig",
    "context",
    "namespace",
    "metrics-server",
    "image",
    "container",
    "results-dir",
    "report",
    "log-format",
    "timeout",
}

# Environment variables of the launcher that are not canary-step options.
LAUNCHER_ENV = {
    "CANARY_STEP_SPEC",
    "CANARY_STEP_SPEC_DIR",
    "CANARY_STEP_KUBECONFIG_DIR",
    "CANARY_STEP_REPORT_DIR",
}


# --- loading ------------------------------------------------------------------------------------------


def _docs(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _by_kind(paths: list[Path], kind: str) -> list[dict[str, Any]]:
    return [d for p in paths for d in _docs(p) if d.get("kind") == kind]


def _one(paths: list[Path], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _by_kind(paths, kind) if d["metadata"].get("name") == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            if isinstance(k, str):
                yield k
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def _refs(node: Any, pattern: str) -> set[tuple[str, ...]]:
    rx = re.compile(pattern)
    out: set[tuple[str, ...]] = set()
    for s in _strings(node):
        for m in rx.finditer(s):
            out.add(m.groups())
    return out


def _task() -> dict[str, Any]:
    return _one(TEKTON, "Task", "knative-canary")


def _workflow_template() -> dict[str, Any]:
    return _one(ARGO, "WorkflowTemplate", "knative-canary")


def _argo_template(wt: dict[str, Any], name: str) -> dict[str, Any]:
    found = [t for t in wt["spec"]["templates"] if t["name"] == name]
    assert len(found) == 1, f"template {name}: {len(found)} found"
    return found[0]


def _env(container: dict[str, Any]) -> dict[str, str]:
    """The variables a template sets from its params (the downward API's are in `_downward`)."""
    return {e["name"]: e.get("value", "") for e in container.get("env", []) if "valueFrom" not in e}


def _downward(container: dict[str, Any]) -> dict[str, str]:
    """Variable -> the pod field it is read from (``valueFrom.fieldRef``)."""
    return {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in container.get("env", [])
        if "fieldRef" in e.get("valueFrom", {})
    }


def _action() -> dict[str, Any]:
    (doc,) = _docs(ACTION)
    return doc


# --- the CLI's options --------------------------------------------------------------------------------


def _run_option_envvars() -> dict[str, str]:
    """CANARY_STEP_* variable -> long option of `canary-step run` (without the dashes)."""
    try:
        run: click.Command = importlib.import_module("step.cli.run").run
    except ImportError:
        return {"CANARY_STEP_" + n.upper().replace("-", "_"): n for n in DOCUMENTED_RUN_OPTIONS}
    out: dict[str, str] = {}
    for param in run.params:
        if not isinstance(param, click.Option) or param.name is None or param.name == "help":
            continue
        long_name = max(param.opts, key=len).lstrip("-")
        names = param.envvar if isinstance(param.envvar, list | tuple) else [param.envvar]
        names = [n for n in names if n] or ["CANARY_STEP_" + long_name.upper().replace("-", "_")]
        for n in names:
            out[n] = long_name
    return out


def test_every_canary_step_variable_is_a_run_option() -> None:
    options = _run_option_envvars()
    used: dict[str, str] = {}
    for name in _env(_task()["spec"]["steps"][0]):
        used[name] = "tekton"
    for name in _env(_argo_template(_workflow_template(), "knative-canary")["container"]):
        used[name] = "argo"
    for name in _action()["runs"]["env"]:
        used[name] = "action.yml"
    unknown = {n: where for n, where in used.items() if n not in LAUNCHER_ENV and n not in options}
    assert not unknown, f"not options of `canary-step run`: {unknown}"
    assert {n for n in used if n.startswith("CANARY_STEP_")} - LAUNCHER_ENV <= set(options)
    # The launcher's own variables are prefixed too, so a job's env of a common name changes nothing.
    assert all(n.startswith("CANARY_STEP_") for n in used)


def test_the_lease_holder_is_named_by_pod_in_tekton_and_argo() -> None:
    """The Lease's holderIdentity says `pod <name> uid <uid>` only if the step's env carries them."""
    want = {POD_NAME_ENV: "metadata.name", POD_UID_ENV: "metadata.uid"}
    assert _downward(_task()["spec"]["steps"][0]) == want
    assert _downward(_argo_template(_workflow_template(), "knative-canary")["container"]) == want


def test_action_inputs_mirror_the_cli() -> None:
    action = _action()
    inputs = action["inputs"]
    env = action["runs"]["env"]
    options = set(_run_option_envvars().values())
    # every option of `run` is an input, spelt as on the command line
    assert options <= set(inputs), sorted(options - set(inputs))
    for name, spec in inputs.items():
        assert spec.get("description"), f"input {name} has no description"
        assert "default" in spec, f"input {name} has no default"
        expected_var = "CANARY_STEP_" + ("SPEC" if name == "canary" else name.upper().replace("-", "_"))
        assert env.get(expected_var) == "${{ inputs." + name + " }}", (
            f"input {name} is not passed as {expected_var}"
        )
    referenced = {m[0] for m in _refs(action, r"\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}")}
    assert referenced <= set(inputs), referenced - set(inputs)
    assert set(inputs) <= referenced, f"inputs never used: {set(inputs) - referenced}"


def test_action_outputs_are_the_results() -> None:
    action = _action()
    assert list(action["outputs"]) == list(RESULT_NAMES)
    assert all(o.get("description") for o in action["outputs"].values())
    assert action["runs"]["using"] == "docker"
    assert action["runs"]["image"] == "Dockerfile"
    for key in ("name", "description"):
        assert action.get(key)


# --- Tekton -------------------------------------------------------------------------------------------


def test_tekton_task_params_are_described_defaulted_and_declared() -> None:
    spec = _task()["spec"]
    params = {p["name"]: p for p in spec["params"]}
    for required in ("canary", "namespace", "image", "metrics-server", "timeout", "log-format"):
        assert required in params, f"Task has no param {required}"
    for name, p in params.items():
        assert p.get("description"), f"param {name} has no description"
        assert "default" in p, f"param {name} has no default"
    referenced = {m[0] for m in _refs(spec, r"\$\(params\.([A-Za-z0-9_-]+)\)")}
    assert referenced <= set(params), f"undeclared params: {referenced - set(params)}"
    assert set(params) <= referenced, f"params never used: {set(params) - referenced}"
    workspaces = {w["name"] for w in spec["workspaces"]}
    assert all(w.get("optional") for w in spec["workspaces"])
    used_ws = {m[0] for m in _refs(spec, r"\$\(workspaces\.([A-Za-z0-9_-]+)\.(?:path|bound)\)")}
    assert used_ws <= workspaces


def test_tekton_task_results_are_the_contract() -> None:
    spec = _task()["spec"]
    declared = [r["name"] for r in spec["results"]]
    assert declared == list(RESULT_NAMES)
    assert all(r.get("description") for r in spec["results"])
    written = {m[0] for m in _refs(spec, r"\$\(results\.([A-Za-z0-9_-]+)\.path\)")}
    assert written <= set(RESULT_NAMES)
    # canary-step writes one file per result into --results-dir: Tekton's results directory.
    assert _env(spec["steps"][0])["CANARY_STEP_RESULTS_DIR"] == TEKTON_RESULTS_DIR


def test_tekton_task_metadata_follows_the_catalog() -> None:
    task = _task()
    assert task["apiVersion"] == "tekton.dev/v1"
    assert task["metadata"]["labels"]["app.kubernetes.io/version"] == step.__version__
    annotations = task["metadata"]["annotations"]
    for key in (
        "tekton.dev/pipelines.minVersion",
        "tekton.dev/categories",
        "tekton.dev/tags",
        "tekton.dev/displayName",
        "tekton.dev/platforms",
    ):
        assert annotations.get(key), f"missing annotation {key}"
    assert task["spec"]["description"]


def test_tekton_step_runs_non_root_and_never_interpolates_params_into_a_script() -> None:
    for doc in _by_kind(TEKTON, "Task") + [
        t["taskSpec"]
        for p in _by_kind(TEKTON, "Pipeline")
        for t in p["spec"]["tasks"] + p["spec"].get("finally", [])
        if "taskSpec" in t
    ]:
        spec = doc.get("spec", doc)
        for s in spec["steps"]:
            ctx = s["securityContext"]
            assert ctx["runAsNonRoot"] is True
            assert ctx["runAsUser"] == 65532
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]
            script = s.get("script", "")
            assert "$(params." not in script and "$(tasks." not in script, s["name"]
            assert "$(" not in script, f"step {s['name']}: Tekton variables in a script"


def test_tekton_pipeline_is_consistent() -> None:
    task = _task()
    task_params = {p["name"]: p for p in task["spec"]["params"]}
    task_results = {r["name"] for r in task["spec"]["results"]}
    task_workspaces = {w["name"] for w in task["spec"]["workspaces"]}
    (pipeline,) = _by_kind(TEKTON, "Pipeline")
    spec = pipeline["spec"]
    pipeline_params = {p["name"] for p in spec["params"]}
    pipeline_workspaces = {w["name"] for w in spec["workspaces"]}
    tasks = spec["tasks"] + spec.get("finally", [])
    by_name = {t["name"]: t for t in tasks}

    def results_of(name: str) -> set[str]:
        t = by_name[name]
        if t.get("taskRef", {}).get("name") == "knative-canary":
            return task_results
        return {r["name"] for r in t.get("taskSpec", {}).get("results", [])}

    for t in tasks:
        outer = {k: v for k, v in t.items() if k != "taskSpec"}
        used = {m[0] for m in _refs(outer, r"\$\(params\.([A-Za-z0-9_-]+)\)")}
        assert used <= pipeline_params, f"{t['name']}: undeclared pipeline params {used - pipeline_params}"
        for ref, result in _refs(outer, r"\$\(tasks\.([A-Za-z0-9_-]+)\.results\.([A-Za-z0-9_-]+)\)"):
            assert ref in by_name and ref != t["name"], f"{t['name']}: unknown task {ref}"
            assert result in results_of(ref), f"{t['name']}: {ref} has no result {result}"
        passed = {p["name"] for p in t.get("params", [])}
        if t.get("taskRef", {}).get("name") == "knative-canary":
            assert passed <= set(task_params)
            assert {w["name"] for w in t.get("workspaces", [])} <= task_workspaces
            assert {w["workspace"] for w in t.get("workspaces", [])} <= pipeline_workspaces
        else:
            inner = t["taskSpec"]
            declared = {p["name"]: p for p in inner.get("params", [])}
            assert passed == set(declared), f"{t['name']}: passes {passed}, declares {set(declared)}"
            used_inner = {m[0] for m in _refs(inner, r"\$\(params\.([A-Za-z0-9_-]+)\)")}
            assert used_inner <= set(declared), f"{t['name']}: undeclared {used_inner - set(declared)}"

    analysis = [t for t in spec["tasks"] if t.get("taskRef", {}).get("name") == "knative-canary"]
    assert len(analysis) == 1
    # Retries with fail-on "retryable" (Tekton refuses retries with onError: continue); which outcome
    # takes which branch is tests/ship/test_pipeline_outcomes.py's job.
    assert "onError" not in analysis[0]
    assert int(analysis[0]["retries"]) >= 1
    assert {p["name"]: p["value"] for p in analysis[0]["params"]}["fail-on"] == "retryable"
    branches = {}
    for t in spec["tasks"]:
        for w in t.get("when", []):
            if w["input"] == f"$(tasks.{analysis[0]['name']}.results.decision)" and w["operator"] == "in":
                branches[t["name"]] = tuple(w["values"])
    assert sorted(branches.values()) == [("failed",), ("promoted",), ("rolled-back",)], branches
    assert spec.get("finally"), "no finally task"


def test_tekton_pipelinerun_matches_the_pipeline() -> None:
    (pipeline,) = _by_kind(TEKTON, "Pipeline")
    (run,) = _by_kind(TEKTON, "PipelineRun")
    assert run["spec"]["pipelineRef"]["name"] == pipeline["metadata"]["name"]
    declared = {p["name"]: p for p in pipeline["spec"]["params"]}
    passed = {p["name"] for p in run["spec"]["params"]}
    assert passed <= set(declared)
    assert {n for n, p in declared.items() if "default" not in p} <= passed
    assert {w["name"] for w in run["spec"]["workspaces"]} == {
        w["name"] for w in pipeline["spec"]["workspaces"]
    }
    sa = run["spec"]["taskRunTemplate"]["serviceAccountName"]
    assert sa in {d["metadata"]["name"] for d in _by_kind(TEKTON, "ServiceAccount")}


# --- Argo ---------------------------------------------------------------------------------------------


def _check_argo_templates(doc: dict[str, Any], library: dict[str, dict[str, Any]]) -> None:
    spec = doc["spec"]
    wf_params = {p["name"] for p in spec.get("arguments", {}).get("parameters", [])}
    used_wf = {m[0] for m in _refs(spec, r"\{\{\s*workflow\.parameters\.([A-Za-z0-9_-]+)\s*\}\}")}
    assert used_wf <= wf_params, f"{doc['metadata']}: undeclared workflow parameters {used_wf - wf_params}"
    local = {t["name"]: t for t in spec["templates"]}

    def target(s: dict[str, Any]) -> dict[str, Any]:
        if "templateRef" in s:
            ref = s["templateRef"]
            return _argo_template(library[ref["name"]], ref["template"])
        return local[s["template"]]

    for t in spec["templates"]:
        declared = {p["name"] for p in t.get("inputs", {}).get("parameters", [])}
        used = {m[0] for m in _refs(t, r"\{\{\s*inputs\.parameters\.([A-Za-z0-9_-]+)\s*\}\}")}
        assert used <= declared, f"template {t['name']}: undeclared inputs {used - declared}"
        assert declared <= used, f"template {t['name']}: inputs never used {declared - used}"
        steps = [s for group in t.get("steps", []) for s in group]
        names = {s["name"]: s for s in steps}
        for s in steps:
            callee = target(s)
            inputs = {p["name"]: p for p in callee.get("inputs", {}).get("parameters", [])}
            passed = {p["name"] for p in s.get("arguments", {}).get("parameters", [])}
            assert passed <= set(inputs), f"step {s['name']} passes undeclared {passed - set(inputs)}"
            missing = {n for n, p in inputs.items() if "value" not in p and "default" not in p} - passed
            assert not missing, f"step {s['name']} misses required inputs {missing}"
        for ref, out in _refs(
            t, r"\{\{\s*steps\.([A-Za-z0-9_-]+)\.outputs\.parameters\.([A-Za-z0-9_-]+)\s*\}\}"
        ):
            assert ref in names, f"template {t['name']}: unknown step {ref}"
            outputs = {p["name"] for p in target(names[ref]).get("outputs", {}).get("parameters", [])}
            assert out in outputs, f"step {ref} has no output {out}"
        for (ref,) in _refs(t, r"\{\{\s*steps\.([A-Za-z0-9_-]+)\.exitCode\s*\}\}"):
            assert ref in names


def test_argo_templates_declare_what_they_reference() -> None:
    library = {d["metadata"]["name"]: d for d in _by_kind(ARGO, "WorkflowTemplate")}
    docs = _by_kind(ARGO, "WorkflowTemplate") + _by_kind(ARGO, "Workflow")
    assert len(docs) >= 2
    for doc in docs:
        _check_argo_templates(doc, library)


def test_argo_template_inputs_match_the_tekton_params() -> None:
    t = _argo_template(_workflow_template(), "knative-canary")
    argo = {p["name"] for p in t["inputs"]["parameters"]}
    tekton = {p["name"] for p in _task()["spec"]["params"]} - {"fail-on"}  # Tekton's exit step only
    assert argo == tekton
    assert all(p.get("description") and "value" in p for p in t["inputs"]["parameters"])


def test_argo_outputs_are_read_from_the_result_files() -> None:
    t = _argo_template(_workflow_template(), "knative-canary")
    results_dir = _env(t["container"])["CANARY_STEP_RESULTS_DIR"]
    outputs = t["outputs"]["parameters"]
    assert [p["name"] for p in outputs] == list(RESULT_NAMES)
    for p in outputs:
        assert p["valueFrom"]["path"] == f"{results_dir}/{p['name']}"
        assert "default" in p["valueFrom"], f"output {p['name']} has no default"
    # A pod killed before the launcher ran reads the same as one whose launcher wrote its defaults and
    # then died: `failed` / `no-results-written`, every other result empty.
    launcher = {"decision": "failed", "reason": Reason.NO_RESULTS_WRITTEN.value}
    assert {p["name"]: p["valueFrom"]["default"] for p in outputs} == {
        name: launcher.get(name, "") for name in RESULT_NAMES
    }
    # The results directory must be on the writable emptyDir, not the read-only root filesystem.
    mounts = [m["mountPath"] for m in t["container"]["volumeMounts"]]
    assert any(results_dir.startswith(m + "/") for m in mounts)
    assert t["container"]["securityContext"]["readOnlyRootFilesystem"] is True
    assert t["container"]["securityContext"]["runAsNonRoot"] is True


def _argo_retried(pipeline_eval: Path, expression: str, codes: list[int]) -> list[int]:
    """The exit codes Argo's retry expression retries, evaluated by expr with Argo's environment."""
    request = {
        "argo-retry": [
            {"expression": expression, "scope": {"lastRetry.exitCode": str(c), "lastRetry.status": "Failed"}}
            for c in codes
        ]
    }
    out = _tool_run([pipeline_eval], input=json.dumps(request))
    assert out.returncode == 0, out.stderr
    answers = json.loads(out.stdout)["argo-retry"]
    assert not [a["error"] for a in answers if a["error"]]
    return [c for c, a in zip(codes, answers, strict=True) if a["retry"]]


def test_argo_retries_exit_4_and_pod_level_failures_only(go_tools: dict[str, Path]) -> None:
    t = _argo_template(_workflow_template(), "knative-canary")
    retry = t["retryStrategy"]
    # Always: a pod deleted or evicted ends in Error, which OnFailure would never retry.
    assert retry["retryPolicy"] == "Always"
    assert "maxDuration" not in retry.get("backoff", {}), "maxDuration counts from the first attempt"
    retried = _argo_retried(go_tools["pipeline-eval"], retry["expression"], list(range(-1, 256)))
    assert retried == [-1, 4, 137, 143]
    assert int(retry["limit"]) >= 1


def test_argo_retry_evaluator_is_not_vacuous(go_tools: dict[str, Path]) -> None:
    assert _argo_retried(go_tools["pipeline-eval"], "asInt(lastRetry.exitCode) > 1", [1, 3]) == [3]
    assert _argo_retried(go_tools["pipeline-eval"], 'lastRetry.status == "Error"', [4]) == []


def test_argo_example_branches_on_exit_code_or_decision() -> None:
    (wf,) = _by_kind(ARGO, "Workflow")
    main = _argo_template(wf, wf["spec"]["entrypoint"])
    steps = [s for group in main["steps"] for s in group]
    analysis = [s for s in steps if s.get("templateRef", {}).get("name") == "knative-canary"]
    assert len(analysis) == 1
    # Failed and Error (a pod lost): the branches decide, and a failed one ends the Workflow red.
    assert analysis[0]["continueOn"] == {"failed": True, "error": True}
    whens = [s.get("when", "") for s in steps]
    name = analysis[0]["name"]
    assert f"'{{{{steps.{name}.outputs.parameters.decision}}}}' == 'promoted'" in whens
    assert f"'{{{{steps.{name}.outputs.parameters.decision}}}}' == 'rolled-back'" in whens
    # govaluate reads an unquoted rolled-back as a subtraction: every operand is quoted.
    for when in whens:
        assert not re.sub(r"'[^']*'", "", when).count("{{"), when
    assert wf["spec"]["serviceAccountName"] in {
        d["metadata"]["name"] for d in _by_kind(ARGO, "ServiceAccount")
    }


# --- RBAC ---------------------------------------------------------------------------------------------


def _rules(paths: list[Path], name: str) -> list[dict[str, Any]]:
    return _one(paths, "Role", name)["rules"]


def test_rbac_is_the_same_for_tekton_and_argo_and_bound() -> None:
    assert _rules(TEKTON, "knative-canary") == _rules(ARGO, "knative-canary")
    executor = _rules(ARGO, "knative-canary-executor")
    assert executor == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}
    ]
    for paths in (TEKTON, ARGO):
        roles = {d["metadata"]["name"] for d in _by_kind(paths, "Role")}
        sas = {d["metadata"]["name"] for d in _by_kind(paths, "ServiceAccount")}
        bound = set()
        for b in _by_kind(paths, "RoleBinding"):
            assert b["roleRef"]["kind"] == "Role" and b["roleRef"]["name"] in roles
            assert all(s["kind"] == "ServiceAccount" and s["name"] in sas for s in b["subjects"])
            bound.add(b["roleRef"]["name"])
        assert bound == roles
        assert not _by_kind(paths, "ClusterRole"), "the step needs no cluster-wide permission"
    for rule in _rules(TEKTON, "knative-canary"):
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        # Writes beyond patch: recording Events, and the Service's Lease (create it, update it to hold it).
        assert not {"delete", "deletecollection", "update", "create"} & set(rule["verbs"]) or rule[
            "resources"
        ] in (["events"], ["leases"])
        assert "delete" not in rule["verbs"]


def test_pipelines_use_the_shipped_service_account() -> None:
    wt = _workflow_template()
    assert wt["spec"]["serviceAccountName"] == "knative-canary"
    assert "knative-canary" in {d["metadata"]["name"] for d in _by_kind(TEKTON, "ServiceAccount")}


# --- images -------------------------------------------------------------------------------------------

_IMAGE_IN_TEXT = re.compile(
    r"\b((?:[a-z0-9.-]+\.[a-z]{2,}|docker\.io)/[\w./-]+(?::[\w.-]+)?(?:@sha256:[0-9a-f]{64})?)"
)


def _images() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if (
                    k == "image"
                    and isinstance(v, str)
                    and v != "Dockerfile"
                    and not v.startswith(("$(", "{{"))
                ):
                    found.append((where, v))
                walk(v, where)
        elif isinstance(node, list):
            for v in node:
                walk(v, where)

    for path in ALL_FILES:
        for doc in _docs(path):
            walk(doc, path.name)
            for s in _strings(doc):
                for m in _IMAGE_IN_TEXT.finditer(s):
                    ref = m.group(1)
                    if "podinfo:" in ref or "canary-step:" in ref:
                        found.append((path.name, ref))
    for where, name, value in _image_params():
        found.append((f"{where} {name}", value))
    return found


def _image_params() -> list[tuple[str, str, str]]:
    """(where, name, default) of every parameter that names an image: step-image, helper-image."""
    out = []
    for doc in _by_kind(TEKTON, "Task") + _by_kind(TEKTON, "Pipeline"):
        for param in doc["spec"]["params"]:
            if param["name"].endswith("-image"):
                out.append((f"tekton {doc['kind']}", param["name"], param["default"]))
    for doc in _by_kind(ARGO, "WorkflowTemplate") + _by_kind(ARGO, "Workflow"):
        params = list(doc["spec"].get("arguments", {}).get("parameters", []))
        params += [p for t in doc["spec"]["templates"] for p in t.get("inputs", {}).get("parameters", [])]
        for param in params:
            if param["name"].endswith("-image"):
                out.append((f"argo {doc['kind']}", param["name"], param["value"]))
    return out


def test_every_image_is_a_parameter() -> None:
    """Only a parameter's default names an image; each container takes it from the parameter."""
    containers = (
        [s for doc in _by_kind(TEKTON, "Task") for s in doc["spec"]["steps"]]
        + [
            s
            for p in _by_kind(TEKTON, "Pipeline")
            for t in p["spec"]["tasks"] + p["spec"].get("finally", [])
            for s in t.get("taskSpec", {}).get("steps", [])
        ]
        + [
            t["container"]
            for doc in _by_kind(ARGO, "WorkflowTemplate") + _by_kind(ARGO, "Workflow")
            for t in doc["spec"]["templates"]
            if "container" in t
        ]
    )
    assert len(containers) >= 10
    for c in containers:
        assert re.fullmatch(
            r"\$\(params\.[a-z-]+-image\)|\{\{(inputs|workflow)\.parameters\.[a-z-]+-image\}\}", c["image"]
        ), c
    names = {(where, name) for where, name, _ in _image_params()}
    assert ("tekton Task", "step-image") in names and ("argo WorkflowTemplate", "step-image") in names
    helpers = {value for _, name, value in _image_params() if name == "helper-image"}
    assert len(helpers) == 1 and "canary-step" not in next(iter(helpers)), helpers


def test_no_image_is_latest_and_every_image_is_pinned() -> None:
    images = _images()
    assert len(images) >= 10
    for where, ref in images:
        name = ref.split("@")[0]
        last = name.rsplit("/", 1)[-1]
        assert ":" in last or "@sha256:" in ref, f"{where}: {ref} has no tag or digest"
        tag = last.split(":", 1)[1] if ":" in last else ""
        assert tag != "latest" and not tag.endswith("-latest"), f"{where}: {ref}"
        assert re.fullmatch(r"v?\d+(\.\d+)+([.-][\w.]+)?", tag) or "@sha256:" in ref, (
            f"{where}: {ref} not pinned"
        )


def test_the_step_image_is_this_version() -> None:
    step_images = [ref for _, ref in _images() if "/canary-step:" in ref]
    assert step_images
    assert set(step_images) == {STEP_IMAGE}


# --- the launcher (one script, three copies) ----------------------------------------------------------


def _launchers() -> dict[str, str]:
    action = _action()
    assert action["runs"]["entrypoint"] == "/bin/sh" and action["runs"]["args"][0] == "-c"
    argo = _argo_template(_workflow_template(), "knative-canary")["container"]
    assert argo["command"] == ["/bin/sh", "-c"]
    return {
        "tekton": _task()["spec"]["steps"][0]["script"],
        "argo": argo["args"][0],
        "action": action["runs"]["args"][1],
    }


def test_the_launcher_is_the_same_everywhere() -> None:
    scripts = _launchers()
    assert scripts["tekton"] == scripts["argo"] == scripts["action"]
    assert "$(" not in scripts["tekton"] and "{{" not in scripts["tekton"] and "${{" not in scripts["tekton"]


@pytest.fixture
def stand_in(tmp_path: Path) -> tuple[Path, Path]:
    """A `canary-step` that records its arguments and environment, then exits with $STAND_IN_EXIT."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "record.json"
    exe = bindir / "canary-step"
    exe.write_text(
        "#!/usr/bin/env python3\n"
        "import json, os, sys\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('CANARY_STEP_')}\n"
        "rec = {'argv': sys.argv[1:], 'env': env}\n"
        "if len(sys.argv) > 2 and os.path.isfile(sys.argv[2]):\n"
        "    rec['file'] = open(sys.argv[2]).read()\n"
        f"open({str(record)!r}, 'w').write(json.dumps(rec))\n"
        "sys.exit(int(os.environ.get('STAND_IN_EXIT', '0')))\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return bindir, record


def _launch(
    script: str, stand_in: tuple[Path, Path], tmp_path: Path, **env: str
) -> tuple[int, dict[str, Any]]:
    bindir, record = stand_in
    full_env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(tmp_path / "tmp"), **env}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    proc = subprocess.run(
        ["/bin/sh", "-c", script], env=full_env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    data = json.loads(record.read_text()) if record.exists() else {}
    if record.exists():
        record.unlink()
    return proc.returncode, data


@pytest.mark.parametrize("platform", ["tekton", "argo", "action"])
def test_launcher_resolves_the_spec_and_keeps_the_exit_code(
    platform: str, stand_in: tuple[Path, Path], tmp_path: Path
) -> None:
    script = _launchers()[platform]

    code, rec = _launch(
        script, stand_in, tmp_path, CANARY_STEP_SPEC="canary.yaml", CANARY_STEP_SPEC_DIR="/workspace/source"
    )
    assert (code, rec["argv"]) == (0, ["run", "/workspace/source/canary.yaml"])

    code, rec = _launch(
        script, stand_in, tmp_path, CANARY_STEP_SPEC="specs/canary.yaml", CANARY_STEP_SPEC_DIR=""
    )
    assert rec["argv"] == ["run", "./specs/canary.yaml"]

    code, rec = _launch(
        script, stand_in, tmp_path, CANARY_STEP_SPEC="/etc/canary.yaml", CANARY_STEP_SPEC_DIR="/ws"
    )
    assert rec["argv"] == ["run", "/etc/canary.yaml"]

    inline = "apiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata:\n  name: podinfo\n"
    code, rec = _launch(script, stand_in, tmp_path, CANARY_STEP_SPEC=inline, CANARY_STEP_SPEC_DIR="/ws")
    assert rec["argv"] == ["run", str(tmp_path / "tmp" / "canary-step" / "canary.yaml")]
    assert rec["file"] == inline + "\n"

    code, rec = _launch(
        script, stand_in, tmp_path, CANARY_STEP_SPEC="canary.yaml", CANARY_STEP_CANARY_REF="test/podinfo"
    )
    assert rec["argv"] == ["run"]
    assert rec["env"]["CANARY_STEP_CANARY_REF"] == "test/podinfo"

    for exit_code in (2, 3, 4, 5, 143):
        code, rec = _launch(
            script, stand_in, tmp_path, CANARY_STEP_SPEC="c.yaml", STAND_IN_EXIT=str(exit_code)
        )
        assert code == exit_code
        assert rec["argv"] == ["run", "./c.yaml"]

    code, rec = _launch(script, stand_in, tmp_path, CANARY_STEP_SPEC="$(touch pwned) `touch pwned`; rm -rf x")
    assert rec["argv"] == ["run", "./$(touch pwned) `touch pwned`; rm -rf x"]
    assert not (tmp_path / "pwned").exists()


def test_launcher_uses_the_optional_kubeconfig_and_report_dirs(
    stand_in: tuple[Path, Path], tmp_path: Path
) -> None:
    script = _launchers()["tekton"]
    kube = tmp_path / "kube"
    kube.mkdir()
    _, rec = _launch(
        script,
        stand_in,
        tmp_path,
        CANARY_STEP_SPEC="c.yaml",
        CANARY_STEP_KUBECONFIG_DIR=str(kube),
        CANARY_STEP_REPORT_DIR="",
    )
    assert "CANARY_STEP_KUBECONFIG" not in rec["env"] and "CANARY_STEP_REPORT" not in rec["env"]
    (kube / "kubeconfig").write_text("apiVersion: v1\n")
    _, rec = _launch(
        script,
        stand_in,
        tmp_path,
        CANARY_STEP_SPEC="c.yaml",
        CANARY_STEP_KUBECONFIG_DIR=str(kube),
        CANARY_STEP_REPORT_DIR="/out",
    )
    assert rec["env"]["CANARY_STEP_KUBECONFIG"] == str(kube / "kubeconfig")
    assert rec["env"]["CANARY_STEP_REPORT"] == "/out/canary-step-report.json"


# --- the e2e workflow ---------------------------------------------------------------------------------


def test_e2e_workflow_runs_the_action_for_a_promotion_and_a_rollback() -> None:
    (wf,) = _docs(E2E)
    steps = wf["jobs"]["knative"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("helm/kind-action@v") for u in uses)
    action_steps = [s for s in steps if s.get("uses") == "./"]
    assert [s["id"] for s in action_steps] == ["promote", "rollback"]
    inputs = set(_action()["inputs"])
    for s in action_steps:
        assert set(s["with"]) <= inputs
    assert action_steps[1].get("continue-on-error") is True
    text = E2E.read_text()
    assert 'KNATIVE_VERSION: "1.17.0"' in text and "kourier" in text
    for output in ("decision", "primary-revision", "canary-revision"):
        assert f"steps.promote.outputs.{output}" in text and f"steps.rollback.outputs.{output}" in text
    referenced = {m[1] for m in _refs(wf, r"steps\.(promote|rollback)\.outputs\.([A-Za-z0-9_-]+)")}
    assert referenced <= set(RESULT_NAMES)


def _inline_specs() -> list[tuple[str, str]]:
    specs: list[tuple[str, str]] = []
    (wf,) = _by_kind(ARGO, "Workflow")
    for p in wf["spec"]["arguments"]["parameters"]:
        if p["name"] == "canary":
            specs.append(("argo example", p["value"]))
    (e2e,) = _docs(E2E)
    for s in e2e["jobs"]["knative"]["steps"]:
        if s.get("uses") == "./":
            text = re.sub(r"\$\{\{\s*steps\.net\.outputs\.gateway\s*\}\}", "172.17.0.1", s["with"]["canary"])
            specs.append((f"e2e {s['id']}", text))
    return specs


@pytest.mark.parametrize(("where", "text"), _inline_specs(), ids=[w for w, _ in _inline_specs()])
def test_inline_canary_specs_validate(where: str, text: str, tmp_path: Path) -> None:
    if "validate" not in cli.list_commands(None):  # type: ignore[arg-type]
        pytest.fail("canary-step has no validate command")
    spec = tmp_path / "canary.yaml"
    spec.write_text(text)
    result = CliRunner().invoke(cli, ["validate", str(spec)])
    assert result.exit_code == 0, f"{where}: {result.output}"


# --- each project's own schema ------------------------------------------------------------------------
#
# Tekton: tektoncd/pipeline's Go types, decoded strictly and validated with their Validate methods (what
# Tekton's admission webhook runs), built from tests/pipeline_schemas (Go module proxy).
# Argo: hera's models of Argo's API (PyPI), plus a round trip that reports fields the models do not know.
# GitHub: action-validator (npm), which checks action.yml and workflows against SchemaStore's schemas, and
# actionlint (Go module), which also checks the `uses: ./` step's inputs against action.yml.
# The tools are installed once under $CANARY_STEP_CACHE (tests.ship.tools, run by `make test` before pytest).

SCHEMA_TOOLS = tools.SCHEMA_TOOLS
# actionlint takes a Docker action's `runs.entrypoint` for a file in the repository; ours is /bin/sh in the
# image, which GitHub's metadata syntax allows ("Overrides the Docker ENTRYPOINT").
ACTIONLINT_IGNORE = r'file "/bin/sh" does not exist in .* "entrypoint" key in "runs" section'


_tool_run = tool_run


@pytest.fixture(scope="session")
def hera_python() -> Path:
    try:
        return tools.hera_python()
    except BinaryError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def action_validator() -> Path:
    try:
        return tools.action_validator()
    except BinaryError as error:
        pytest.fail(str(error))


def _mutated(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    text = source.read_text()
    assert old in text, old
    target = tmp_path / source.name
    target.write_text(text.replace(old, new, 1))
    return target


def test_tekton_yaml_passes_tektons_own_validation(go_tools: dict[str, Path]) -> None:
    files = [*TEKTON, ROOT / "argo" / "rbac.yaml"]
    out = _tool_run([go_tools["tekton-validate"], *files], cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    for kind in ("Task", "Pipeline", "PipelineRun", "ServiceAccount", "Role", "RoleBinding"):
        assert any(line.endswith(f"/{kind}: valid") for line in lines), f"no valid {kind}: {out.stdout}"
    assert not [line for line in lines if "skipped" in line]


def test_tekton_validation_catches_what_the_webhook_would(go_tools: dict[str, Path], tmp_path: Path) -> None:
    task = ROOT / "tekton" / "knative-canary.yaml"
    for old, new, message in (
        ("$(params.timeout)", "$(params.timeuot)", 'non-existent variable in "$(params.timeuot)"'),
        ("  workspaces:\n", "  workspacez:\n", 'unknown field "workspacez"'),
    ):
        out = _tool_run([go_tools["tekton-validate"], _mutated(tmp_path, task, old, new)])
        assert out.returncode == 1 and message in out.stdout, out.stdout
    out = _tool_run(
        [
            go_tools["tekton-validate"],
            _mutated(tmp_path, task, "      onError: continue\n", "      onError: go\n"),
        ]
    )
    assert out.returncode == 1 and 'invalid value: "go"' in out.stdout, out.stdout
    pipeline = ROOT / "tekton" / "pipeline-example.yaml"
    out = _tool_run(
        [
            go_tools["tekton-validate"],
            _mutated(tmp_path, pipeline, "      retries: 2\n", "      retries: 2\n      onError: continue\n"),
        ]
    )
    assert out.returncode == 1 and "Retries" in out.stdout, out.stdout


def test_argo_yaml_matches_argos_api(hera_python: Path, tmp_path: Path) -> None:
    checker = SCHEMA_TOOLS / "argo_check.py"
    out = _tool_run([hera_python, checker, *ARGO], cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert any(line.endswith("WorkflowTemplate: valid") for line in out.stdout.splitlines())
    assert any(line.endswith(" Workflow: valid") for line in out.stdout.splitlines())
    example = ROOT / "argo" / "workflow-example.yaml"
    out = _tool_run([hera_python, checker, _mutated(tmp_path, example, "  continueOn:\n", "  continueon:\n")])
    assert out.returncode == 1 and "continueon: unknown field" in out.stdout, out.stdout
    template = ROOT / "argo" / "workflowtemplate.yaml"
    out = _tool_run([hera_python, checker, _mutated(tmp_path, template, 'limit: "2"', "limit: [2]")])
    assert out.returncode == 1 and "retryStrategy.limit" in out.stdout, out.stdout


def test_action_and_workflow_match_githubs_schemas(action_validator: Path, tmp_path: Path) -> None:
    for path in (ACTION, E2E):
        out = _tool_run([action_validator, path], cwd=ROOT)
        assert out.returncode == 0, out.stdout + out.stderr
    bad = tmp_path / "action.yml"
    bad.write_text(ACTION.read_text().replace("using: docker", "using: dockr", 1))
    out = _tool_run([action_validator, bad])
    assert out.returncode == 1 and "/runs/using" in out.stdout + out.stderr, out.stdout + out.stderr


def test_actionlint_accepts_the_e2e_workflow_and_its_use_of_the_action(
    go_tools: dict[str, Path], tmp_path: Path
) -> None:
    lint = [go_tools["actionlint"], "-no-color", "-ignore", ACTIONLINT_IGNORE]
    out = _tool_run([*lint, E2E.relative_to(ROOT)], cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    # A misspelt input of the local action is caught: actionlint reads action.yml for `uses: ./`.
    project = tmp_path / "project"
    (project / ".github" / "workflows").mkdir(parents=True)
    (project / ".git").mkdir()
    for name in ("action.yml", "Dockerfile"):
        shutil.copy(ROOT / name, project / name)
    bad = project / ".github" / "workflows" / "e2e-kind.yaml"
    bad.write_text(
        E2E.read_text().replace("          report: .e2e/promote-report.json", "          reprt: x", 1)
    )
    out = _tool_run([*lint, bad.relative_to(project)], cwd=project)
    assert out.returncode == 1 and '"reprt" is not defined' in out.stdout, out.stdout


# --- each platform's wiring, run for real on the local control plane ----------------------------------
#
# What Tekton, Argo and the GitHub runner do before the container starts is substituting variables into
# the env and starting the script; that is emulated here, then the launcher runs the real canary-step
# against the local control plane with the shipped RBAC's token. The test then reads the results the way
# each platform does: Tekton's declared results from the results directory, Argo's outputs.parameters
# from their valueFrom paths, the action's outputs from $GITHUB_OUTPUT.

PODINFO = "ghcr.io/stefanprodan/podinfo"
_TEKTON_VAR = re.compile(r"\$\((params|workspaces)\.([A-Za-z0-9_-]+)(?:\.(path))?\)")
_ARGO_VAR = re.compile(r"\{\{\s*inputs\.parameters\.([A-Za-z0-9_-]+)\s*\}\}")
_ACTION_VAR = re.compile(r"\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}")


def _read_github_output(path: Path) -> dict[str, str]:
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


@pytest.fixture
def wired(control_plane: Any, namespace: str, tmp_path: Path) -> dict[str, Any]:
    """podinfo Ready, the shipped RBAC and the Secret it reads, a token kubeconfig, and a spec file."""
    from tests.e2e.test_rbac import RBAC_FILES, Scenario, _cluster_objects  # noqa: PLC0415 - cluster only

    scenario = Scenario(control_plane, namespace, tmp_path, RBAC_FILES["tekton"])
    spec = [d for d in _cluster_objects(control_plane, namespace, threshold=5) if d["kind"] != "Secret"]
    for doc in spec:
        doc["metadata"]["namespace"] = namespace
    return {
        "scenario": scenario,
        "spec_text": yaml.safe_dump_all(spec, sort_keys=False),
        "metrics_server": control_plane.prometheus_url,
        "image": f"{PODINFO}:6.0.1",
    }


def _launch_for_real(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    bindir = str(Path(sys.executable).parent)  # where the canary-step console script is
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CANARY_STEP_", "GITHUB_"))}
    full = {**base, "PATH": f"{bindir}{os.pathsep}{base['PATH']}", **env}
    return subprocess.run(
        ["/bin/sh", "-c", script], env=full, cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )


def _assert_promoted(
    wired: dict[str, Any], proc: subprocess.CompletedProcess[str], results: dict[str, str]
) -> None:
    scenario = wired["scenario"]
    assert proc.returncode == 0, proc.stderr
    assert results["decision"] == "promoted", proc.stderr
    assert results["primary-revision"] == results["canary-revision"] == "podinfo-00002"
    assert scenario.annotation() == "podinfo-00002"
    assert scenario.traffic() == {"podinfo-00002": 100}


@pytest.mark.cluster
def test_tekton_task_runs_as_tekton_would_start_it(wired: dict[str, Any], tmp_path: Path) -> None:
    spec = _task()["spec"]
    source, kube, report, results_dir = (tmp_path / d for d in ("source", "kube", "report", "tekton-results"))
    for d in (source, kube, report, results_dir):
        d.mkdir()
    (source / "canary.yaml").write_text(wired["spec_text"])
    (kube / "kubeconfig").write_text(wired["scenario"].kubeconfig.read_text())
    params = {p["name"]: p["default"] for p in spec["params"]}
    params.update(image=wired["image"], **{"metrics-server": wired["metrics_server"]})
    workspaces = {"source": str(source), "kubeconfig": str(kube), "report": str(report)}

    def substitute(value: str) -> str:
        def one(m: re.Match[str]) -> str:
            return params[m.group(2)] if m.group(1) == "params" else workspaces[m.group(2)]

        return _TEKTON_VAR.sub(one, value)

    env = {e["name"]: substitute(env_value(e)) for e in spec["steps"][0]["env"]}
    assert env.pop("CANARY_STEP_RESULTS_DIR") == TEKTON_RESULTS_DIR
    env["CANARY_STEP_RESULTS_DIR"] = str(results_dir)  # /tekton/results is a mount; here a directory
    proc = _launch_for_real(spec["steps"][0]["script"], {**env, "TMPDIR": str(tmp_path)}, tmp_path)

    declared = [r["name"] for r in spec["results"]]
    results = {name: (results_dir / name).read_text() for name in declared}
    _assert_promoted(wired, proc, results)
    assert sorted(p.name for p in results_dir.iterdir()) == sorted(declared)
    # Tekton puts every result of the step into one termination message.
    assert sum(len(k) + len(v) for k, v in results.items()) < 4096
    assert results["report"] == str(report / "canary-step-report.json")
    assert json.loads((report / "canary-step-report.json").read_text())


@pytest.mark.cluster
def test_argo_template_runs_as_argo_would_start_it(wired: dict[str, Any], tmp_path: Path) -> None:
    template = _argo_template(_workflow_template(), "knative-canary")
    container = template["container"]
    params = {p["name"]: p["value"] for p in template["inputs"]["parameters"]}
    # Inline YAML this time: the spec itself as the `canary` parameter.
    params.update(
        canary=wired["spec_text"], image=wired["image"], **{"metrics-server": wired["metrics_server"]}
    )
    mount = container["volumeMounts"][0]["mountPath"]  # the emptyDir on /tmp: here a directory
    pod_tmp = tmp_path / "pod-tmp"
    pod_tmp.mkdir()

    def in_pod(value: str) -> str:
        return str(pod_tmp) + value[len(mount) :] if value.startswith(mount + "/") else value

    env = {
        e["name"]: in_pod(_ARGO_VAR.sub(lambda m: params[m.group(1)], env_value(e))) for e in container["env"]
    }
    # In the pod, the ServiceAccount token is mounted; here the same token comes as a kubeconfig.
    env["CANARY_STEP_KUBECONFIG"] = str(wired["scenario"].kubeconfig)
    proc = _launch_for_real(container["args"][0], {**env, "TMPDIR": str(pod_tmp)}, tmp_path)

    outputs = {p["name"]: Path(in_pod(p["valueFrom"]["path"])) for p in template["outputs"]["parameters"]}
    missing = [name for name, path in outputs.items() if not path.exists()]
    assert not missing, f"outputs Argo would fall back to their defaults for: {missing}\n{proc.stderr}"
    _assert_promoted(wired, proc, {name: path.read_text() for name, path in outputs.items()})


@pytest.mark.cluster
def test_action_runs_as_the_github_runner_would_start_it(wired: dict[str, Any], tmp_path: Path) -> None:
    action = _action()
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "canary.yaml").write_text(wired["spec_text"])
    (workspace / "kubeconfig").write_text(wired["scenario"].kubeconfig.read_text())
    with_ = {"kubeconfig": "kubeconfig", "image": wired["image"], "metrics-server": wired["metrics_server"]}
    inputs = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()} | with_
    env = {k: _ACTION_VAR.sub(lambda m: inputs[m.group(1)], v) for k, v in action["runs"]["env"].items()}
    output, summary = tmp_path / "github_output", tmp_path / "step_summary"
    output.touch()
    env |= {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary), "TMPDIR": str(tmp_path)}
    assert action["runs"]["args"][0] == "-c"
    proc = _launch_for_real(action["runs"]["args"][1], env, workspace)

    outputs = _read_github_output(output)
    assert set(action["outputs"]) <= set(outputs), f"missing outputs: {set(action['outputs']) - set(outputs)}"
    _assert_promoted(wired, proc, outputs)
    assert (workspace / "canary-step-report.json").exists(), "the report input is relative to the workspace"
    text = summary.read_text()
    assert "promoted" in text
    assert "```mermaid" in text, "the job summary carries a chart GitHub renders"


# --- the copy-paste examples in docs/pipelines.md -----------------------------------------------------

DOCS = ROOT / "docs" / "pipelines.md"


def _doc_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)


def _doc_examples() -> list[dict[str, Any]]:
    return [yaml.safe_load(b) for b in _doc_blocks()]


def test_docs_have_an_example_for_each_platform() -> None:
    kinds = {(d.get("apiVersion"), d.get("kind")) for d in _doc_examples() if "kind" in d}
    assert ("tekton.dev/v1", "TaskRun") in kinds
    assert ("argoproj.io/v1alpha1", "Workflow") in kinds
    workflows = [d for d in _doc_examples() if "jobs" in d]
    assert len(workflows) == 1
    steps = [s for job in workflows[0]["jobs"].values() for s in job["steps"]]
    (use,) = [s for s in steps if str(s.get("uses", "")).startswith("canary-step/canary-step@")]
    assert use["uses"] == f"canary-step/canary-step@v{step.__version__}"
    assert set(use["with"]) <= set(_action()["inputs"])


def test_docs_examples_pass_each_platforms_checks(
    go_tools: dict[str, Path], hera_python: Path, tmp_path: Path
) -> None:
    task_params = {p["name"] for p in _task()["spec"]["params"]}
    argo_inputs = {
        p["name"] for p in _argo_template(_workflow_template(), "knative-canary")["inputs"]["parameters"]
    }
    for i, (text, doc) in enumerate(zip(_doc_blocks(), _doc_examples(), strict=True)):
        path = tmp_path / f"example-{i}.yaml"
        path.write_text(text)
        if doc.get("apiVersion", "").startswith("tekton.dev/"):
            out = _tool_run([go_tools["tekton-validate"], path])
            assert out.returncode == 0, out.stdout
            assert {p["name"] for p in doc["spec"]["params"]} <= task_params
            assert doc["spec"]["taskRef"]["name"] == "knative-canary"
            (inline,) = [p["value"] for p in doc["spec"]["params"] if p["name"] == "canary"]
            spec = tmp_path / f"canary-{i}.yaml"
            spec.write_text(inline)
            result = CliRunner().invoke(cli, ["validate", str(spec)])
            assert result.exit_code == 0, result.output
        elif doc.get("apiVersion", "").startswith("argoproj.io/"):
            out = _tool_run([hera_python, SCHEMA_TOOLS / "argo_check.py", path])
            assert out.returncode == 0, out.stdout
            library = {d["metadata"]["name"]: d for d in _by_kind(ARGO, "WorkflowTemplate")}
            _check_argo_templates(doc, library)
            passed = {
                p["name"]
                for t in doc["spec"]["templates"]
                for g in t.get("steps", [])
                for s in g
                for p in s.get("arguments", {}).get("parameters", [])
            }
            assert passed <= argo_inputs
        else:
            out = _tool_run([go_tools["actionlint"], "-no-color", path])
            assert out.returncode == 0, out.stdout
