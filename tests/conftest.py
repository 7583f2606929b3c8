"""Shared pytest fixtures: the local control plane (one per session) and a fresh namespace per test.

Owns the fixtures ``control_plane`` (session), ``namespace`` and ``podinfo`` (function). The control plane
starts lazily, on the first test that asks for it, so ``pytest -m 'not cluster'`` starts nothing and needs
none of its binaries. When a binary is missing the fixture fails (never skips) with what to do.

Must not: register hooks or options that change non-cluster runs, or share state between tests other than
the control plane itself.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.kube_clients import close_all

if TYPE_CHECKING:
    from tests.cluster import ControlPlane


@pytest.fixture(autouse=True)
def _close_kube_clients() -> Iterator[None]:
    """Close the step's Kube clients the test opened (tests.kube_clients), whatever the outcome."""
    yield
    close_all()


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """API server + CRDs + Knative simulator + data plane + Prometheus + load tester, for the session."""
    from tests.cluster import ControlPlane  # noqa: PLC0415 - only cluster tests pay for the import
    from tests.cluster.binaries import BinaryError  # noqa: PLC0415

    try:
        # KNATIVE=real runs the session on real Knative Serving (opt-in; tests.cluster.knative_real).
        plane = ControlPlane.start(knative=os.environ.get("KNATIVE") or "sim")
    except BinaryError as error:
        pytest.fail(f"the local control plane cannot start: {error}", pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "t"


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> str:
    """A new namespace (with its default ServiceAccount) named after the test, unique per run."""
    name = f"{_slug(request.node.name, 40)}-{secrets.token_hex(3)}"
    return control_plane.create_namespace(name)


@pytest.fixture
def podinfo(control_plane: ControlPlane, namespace: str) -> dict[str, Any]:
    """The seed's podinfo Knative Service in ``namespace``, Ready with ``podinfo-00001``."""
    control_plane.create_podinfo(namespace)
    return control_plane.wait_ready(namespace, "podinfo", "podinfo-00001")
