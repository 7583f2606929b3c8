"""Shared pytest fixtures: the local control planes (one per backend and session), a namespace per test.

Owns the fixtures ``control_plane``, ``knative_backend``, ``namespace`` and ``podinfo`` (function), and the
session's planes behind them. A plane starts lazily, on the first test that asks for it, so
``pytest -m 'not cluster'`` starts nothing and needs none of its binaries. When a binary is missing the
fixture fails (never skips) with what to do.

Which Knative a test runs on: the ``knative`` marker names its backends (``sim``, our simulator, is the
default; ``real`` is Knative Serving 1.17's own controller and webhook, tests.cluster.knative_real). A test
marked with both runs once on each (``[sim]`` / ``[real]``: the differential tests). ``KNATIVE=real`` or
``KNATIVE=sim`` in the environment puts every test on that one backend (``make test-real``; a machine
without root for network namespaces).

The hooks order and group the collection for xdist's ``loadgroup``: the tests on real Knative go into
``REAL_PLANES`` groups, each run by one worker on one real plane (a real plane costs 10-25 s and 430 MB; one
per worker would start three), a module whose tests share a module-scoped fixture is one group (its set-up
paid once), and the tests marked ``long`` (minutes of CPU each) come first among the rest,
so none of them starts late and ends the run alone.

Must not: register hooks or options that change what runs or how it is judged, or share state between
tests other than the control planes themselves.
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


BACKENDS = ("sim", "real")
# How many workers run the real-Knative tests, each on its own real plane (docs/harness.md, "In make test").
REAL_PLANES = 2


def _backends(node: Any) -> tuple[str, ...]:
    """The backends a test runs on: ``KNATIVE`` if set, else its ``knative`` marker's, else the simulator."""
    forced = os.environ.get("KNATIVE")
    if forced:
        if forced not in BACKENDS:
            raise pytest.UsageError(f"KNATIVE={forced!r}: expected one of {', '.join(BACKENDS)}")
        return (forced,)
    marker = node.get_closest_marker("knative")
    wanted = tuple(marker.args) if marker is not None else ("sim",)
    unknown = [name for name in wanted if name not in BACKENDS]
    if unknown or not wanted:
        raise pytest.UsageError(f"{node.nodeid}: knative marker {wanted!r}: expected some of {BACKENDS}")
    return wanted


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked for both backends runs once on each."""
    if "knative_backend" not in metafunc.fixturenames:
        return
    backends = _backends(metafunc.definition)
    if len(backends) > 1:
        metafunc.parametrize("knative_backend", backends)


def _backend_of(item: pytest.Item) -> str | None:
    if "knative_backend" not in getattr(item, "fixturenames", ()):
        return None
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "knative_backend" in callspec.params:
        return str(callspec.params["knative_backend"])
    return _backends(item)[0]


def _module_scoped(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(d.scope in ("module", "class") for defs in info.name2fixturedefs.values() for d in defs)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The real-Knative tests in ``REAL_PLANES`` groups of about equal size, first (without xdist they run
    back to back on one real plane); a module with a module-scoped fixture as one group; the ``long`` tests
    first among the rest. ``loadgroup`` with ``--no-loadscope-reorder`` deals the units in this order, one
    at a time to whichever worker is nearly idle."""
    del config
    real = [item for item in items if _backend_of(item) == "real"]
    for index, item in enumerate(real):
        item.add_marker(pytest.mark.xdist_group(f"knative-real-{index * REAL_PLANES // len(real) + 1}"))
    others = [item for item in items if _backend_of(item) != "real"]
    for item in others:
        if _module_scoped(item):  # one worker pays for the module's fixture (a wheel install: about 70 s)
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
    long = [item for item in others if item.get_closest_marker("long") is not None]
    rest = [item for item in others if item.get_closest_marker("long") is None]
    items[:] = real + long + rest


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Refuse to run when xdist's ``loadgroup`` did not take the groups (it marks them in the node ids):
    the real-Knative tests would be spread over every worker, each starting a real plane."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [i.nodeid for i in session.items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if lost:
        raise pytest.UsageError(
            f"pytest-xdist's loadgroup did not group {len(lost)} tests (first: {lost[0]}); pytest "
            f"{pytest.__version__} with this pytest-xdist loses the groups (pytest-xdist issue 1386): "
            "install the versions pyproject.toml pins (`make setup`)"
        )


@pytest.fixture(autouse=True)
def _close_kube_clients() -> Iterator[None]:
    """Close the step's Kube clients the test opened (tests.kube_clients), whatever the outcome."""
    yield
    close_all()


class Planes:
    """The session's control planes, one per backend, each started on first use.

    The real plane is stopped as soon as the test after one on it runs elsewhere (or none comes): its nine
    processes hold about 430 MB more than the simulator's plane and keep polling (about 5 % of a core
    idle), and its tests run back to back (one xdist group per worker; without xdist, first). A later test
    on that backend would start a new one.
    """

    def __init__(self) -> None:
        self._planes: dict[str, ControlPlane] = {}

    def get(self, backend: str) -> ControlPlane:
        if backend not in self._planes:
            from tests.cluster import ControlPlane  # noqa: PLC0415 - only cluster tests pay for the import
            from tests.cluster.binaries import BinaryError  # noqa: PLC0415
            from tests.cluster.netns import NetnsError  # noqa: PLC0415

            try:
                self._planes[backend] = ControlPlane.start(knative=backend)
            except (BinaryError, NetnsError) as error:
                pytest.fail(
                    f"the local control plane ({backend} Knative) cannot start: {error}", pytrace=False
                )
        return self._planes[backend]

    def stop(self, backend: str) -> None:
        plane = self._planes.pop(backend, None)
        if plane is not None:
            plane.stop()

    def stop_all(self) -> None:
        for backend in list(self._planes):
            self.stop(backend)


_PLANES = pytest.StashKey[Planes]()


@pytest.fixture(scope="session")
def _planes(request: pytest.FixtureRequest) -> Iterator[Planes]:
    planes = Planes()
    request.config.stash[_PLANES] = planes
    try:
        yield planes
    finally:
        planes.stop_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After the last of a run of tests on real Knative, stop its plane (see Planes). The simulator's plane
    costs little idle and its tests are dealt one at a time between others: it stays up."""
    yield
    planes = item.config.stash.get(_PLANES, None)
    if (
        planes is not None
        and _backend_of(item) == "real"
        and (nextitem is None or _backend_of(nextitem) != "real")
    ):
        planes.stop("real")


@pytest.fixture
def knative_backend(request: pytest.FixtureRequest) -> str:
    """``sim`` or ``real``: the backend this test runs on (parametrized for a test marked with both)."""
    return _backends(request.node)[0]


@pytest.fixture
def control_plane(knative_backend: str, _planes: Planes) -> ControlPlane:
    """The session's plane of this test's backend: API server + CRDs + Knative (the simulator, or Knative
    Serving's own controller, webhook and autoscaler-hpa with kube-controller-manager, kube-scheduler and
    kwok: tests.cluster.knative_real) + data plane + Prometheus + load tester."""
    return _planes.get(knative_backend)


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "t"


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new namespace (with its default ServiceAccount) named after the test, unique per run. Afterwards
    its load ends and the data plane forgets it (ControlPlane.forget_namespace)."""
    name = f"{_slug(request.node.name, 40)}-{secrets.token_hex(3)}"
    yield control_plane.create_namespace(name)
    control_plane.forget_namespace(name)


@pytest.fixture
def podinfo(control_plane: ControlPlane, namespace: str) -> dict[str, Any]:
    """The seed's podinfo Knative Service in ``namespace``, Ready with ``podinfo-00001``."""
    control_plane.create_podinfo(namespace)
    return control_plane.wait_ready(namespace, "podinfo", "podinfo-00001")
