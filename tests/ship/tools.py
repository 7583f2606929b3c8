"""The shipping tests' tools: found, or installed once into the project cache, before any test runs.

Owns: the Go tools built from ``tests/pipeline_schemas`` (Tekton's validation and entrypoint, its TaskRun
status code, the Tekton/Argo expression evaluator, actionlint), the hera virtualenv (Argo's API models,
from PyPI) and action-validator (npm). ``make test`` runs ``python -m tests.ship.tools ensure`` before
pytest, as it runs ``tests.cluster.binaries ensure`` for kube-apiserver: from a cold cache these take
minutes on 2 cores, which inside a test's set-up counted against pytest's per-test timeout (600 s) and,
with three workers waiting on one build's lock, failed every test that needed them. The fixtures call the
same functions, which return at once when the cache is warm.
Must not: fetch anything except through ``go`` (the Go module proxy), pip (PyPI) and npm, or print a
traceback for a missing tool (:class:`tests.cluster.binaries.BinaryError`).

CLI: ``python -m tests.ship.tools ensure`` installs what is missing and prints the paths.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cluster.binaries import BinaryError, _stderr, cache_dir, ensure_command, go_tool

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
HERA = "hera==7.1.0"
ACTION_VALIDATOR = "@action-validator/cli@0.6.0"


def tools_cache() -> Path:
    return cache_dir() / "pipeline-schemas"


def tool_run(cmd: list[str | Path], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a tool, its output captured as text; the exit code is the caller's to check."""
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False, **kw)


def go_tools() -> dict[str, Path]:
    """Each Go tool, built once and cached like kube-apiserver (rebuilt when tests/pipeline_schemas
    changes); the first build downloads the modules."""
    return {name: go_tool(name, package, SCHEMA_TOOLS) for name, package in GO_TOOLS.items()}


def hera_python() -> Path:
    """The python of a virtualenv with hera (Argo's API models) and PyYAML."""
    venv = tools_cache() / HERA.replace("==", "-")
    done = venv / ".installed"
    if not done.exists():
        _stderr(f"installing {HERA} into {venv}")
        shutil.rmtree(venv, ignore_errors=True)
        made = tool_run([sys.executable, "-m", "venv", venv], timeout=300)
        if made.returncode != 0:
            raise BinaryError(f"python -m venv {venv} failed:\n{made.stderr[-3000:]}")
        pip = tool_run([venv / "bin" / "python", "-m", "pip", "install", "-q", HERA, "PyYAML"], timeout=600)
        if pip.returncode != 0:
            raise BinaryError(f"pip install {HERA} failed:\n{(pip.stdout + pip.stderr)[-3000:]}")
        done.touch()
    return venv / "bin" / "python"


def action_validator() -> Path:
    """action-validator (GitHub's action and workflow schemas), installed with npm."""
    prefix = tools_cache() / ACTION_VALIDATOR.replace("/", "-").lstrip("@")
    exe = prefix / "node_modules" / ".bin" / "action-validator"
    if exe.exists():
        return exe
    npm = shutil.which("npm")
    if npm is None:
        raise BinaryError(f"npm is needed to install {ACTION_VALIDATOR} (apt-get install npm)")
    _stderr(f"installing {ACTION_VALIDATOR} into {prefix}")
    prefix.mkdir(parents=True, exist_ok=True)
    installed = tool_run(
        [npm, "install", "--prefix", prefix, "--no-audit", "--no-fund", "--no-save", ACTION_VALIDATOR],
        timeout=600,
    )
    if installed.returncode != 0:
        raise BinaryError(
            f"npm install {ACTION_VALIDATOR} failed:\n{(installed.stdout + installed.stderr)[-3000:]}"
        )
    return exe


@dataclass(frozen=True)
class Tools:
    go: dict[str, Path]
    hera_python: Path
    action_validator: Path


def ensure() -> Tools:
    return Tools(go=go_tools(), hera_python=hera_python(), action_validator=action_validator())


def main(argv: list[str] | None = None) -> int:
    return ensure_command(
        argv,
        module="tests.ship.tools",
        doc=__doc__ or "",
        ensure=ensure,
        what="the shipping tests' tools",
        lines=lambda found: [
            *(f"{name}={path}" for name, path in found.go.items()),
            f"hera-python={found.hera_python}",
            f"action-validator={found.action_validator}",
        ],
    )


if __name__ == "__main__":
    raise SystemExit(main())
