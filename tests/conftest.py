"""Shared pytest fixtures: the local control plane (one per session) and a fresh namespace per test.

Owns the fixtures ``control_plane`` (session), ``namespace`` and ``podinfo`` (function). The control plane
starts lazily, on the first test that asks for it, so ``pytest -m 'not cluster'`` starts nothing and needs
none of its binaries. When a binary is missing the fixture fails (never skips) with what to do.

One hook orders the collection: the tests marked ``long`` (minutes of CPU each) go first, one at the head
of each xdist worker's share, so none of them starts late and ends the run alone.

Must not: register hooks or options that change what runs or how it is judged, or share state between
tests other than the control plane itself.
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``long`` tests first, dealt one per worker: worksteal gives each worker a contiguous share of
    the collection (the first ``len // n``, then the next ``rest // (n - 1)``, ...) and steals only from
    a share's end, so a test at a share's head starts at once."""
    del config
    long = [item for item in items if item.get_closest_marker("long") is not None]
    if not long:
        return
    rest = [item for item in items if item.get_closest_marker("long") is None]
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    heads: list[list[pytest.Item]] = [long[k::workers] for k in range(workers)]
    ordered: list[pytest.Item] = []
    remaining = len(items)
    for k in range(workers):
        share = remaining // (workers - k)
        remaining -= share
        take = max(0, share - len(heads[k]))
        ordered += heads[k] + rest[:take]
        rest = rest[take:]
    items[:] = ordered + rest


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
