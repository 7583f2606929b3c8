"""Fixtures shared by the shipping tests: the Go tools built from tests/pipeline_schemas."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.binaries import BinaryError, go_tool

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_TOOLS = ROOT / "tests" / "pipeline_schemas"

# name -> package in tests/pipeline_schemas (one Go module, so one download of tektoncd/pipeline).
GO_TOOLS = {
    "tekton-validate": ".",
    "pipeline-eval": "./eval",
    "actionlint": "github.com/rhysd/actionlint/cmd/actionlint",
    # Tekton's own entrypoint (the one its controller injects into every step) at the version the Task
    # targets, and its TaskRun status code (pod.MakeTaskRunStatus) to read what the entrypoint wrote.
    "tekton-entrypoint": "github.com/tektoncd/pipeline/cmd/entrypoint",
    "taskrunstatus": "./taskrunstatus",
}


def tool_run(cmd: list[str | Path], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False, **kw)


@pytest.fixture(scope="session")
def go_tools() -> dict[str, Path]:
    """Built once and cached like kube-apiserver (tests.cluster.binaries.go_tool): rebuilt only when
    tests/pipeline_schemas changes; the first build downloads the modules (minutes), later ones none."""
    try:
        return {name: go_tool(name, package, SCHEMA_TOOLS) for name, package in GO_TOOLS.items()}
    except BinaryError as error:
        pytest.fail(str(error))


# What the kubelet puts in a container's env for a downward-API `fieldRef` (the pod run here is made up).
POD_FIELDS = {
    "metadata.name": "canary-step-run-abc12-pod",
    "metadata.uid": "0f6e3c1a-4b7d-4e2f-9a51-2c8d7e6b1f30",
}


def env_value(item: dict[str, Any]) -> str:
    """One `env` entry's value as the kubelet resolves it: `value`, or the pod field it refers to."""
    if "valueFrom" in item:
        return POD_FIELDS[item["valueFrom"]["fieldRef"]["fieldPath"]]
    return str(item["value"])
