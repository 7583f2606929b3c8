"""Fixtures shared by the shipping tests: the Go tools built from tests/pipeline_schemas."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_TOOLS = ROOT / "tests" / "pipeline_schemas"

# name -> package in tests/pipeline_schemas (one Go module, so one download of tektoncd/pipeline).
GO_TOOLS = {
    "tekton-validate": ".",
    "pipeline-eval": "./eval",
    "actionlint": "github.com/rhysd/actionlint/cmd/actionlint",
}


def tool_run(cmd: list[str | Path], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False, **kw)


@pytest.fixture(scope="session")
def go_tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Built once per session; Go's build cache makes a rebuild take seconds (the first, minutes)."""
    go = shutil.which("go")
    assert go, "the Go toolchain is needed to build the Tekton validator, pipeline-eval and actionlint"
    out = tmp_path_factory.mktemp("go-tools")
    for name, target in GO_TOOLS.items():
        built = tool_run([go, "build", "-o", out / name, target], cwd=SCHEMA_TOOLS, timeout=1800)
        assert built.returncode == 0, built.stderr
    return {name: out / name for name in GO_TOOLS}
