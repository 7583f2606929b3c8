"""Fixtures shared by the shipping tests: the Go tools from tests/pipeline_schemas (tests.ship.tools)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cluster.binaries import BinaryError
from tests.ship import tools


@pytest.fixture(scope="session")
def go_tools() -> dict[str, Path]:
    """Built by `make test` before pytest (tests.ship.tools); here found in the cache at once."""
    try:
        return tools.go_tools()
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
