"""KnativeRouter against the real API server and the Knative simulator (status.traffic verified).

Each test has its own namespace and Service. The router runs as the admin here; least privilege
is covered in tests/e2e/test_kube.py.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from step.clock import MonotonicClock
from step.errors import RevisionFailed
from step.kube import Kube, RetryPolicy, connect
from step.ports import RevisionPhase
from step.router.knative import KnativeRouter
from tests.kube_clients import opened, watching

if TYPE_CHECKING:
    from tests.cluster import ControlPlane

pytestmark = pytest.mark.cluster

IMAGE = "ghcr.io/stefanprodan/podinfo"


def _kube(plane: ControlPlane) -> Kube:
    return opened(
        connect(kubeconfig=str(plane.kubeconfig), context=None, retry=RetryPolicy(attempts=3, deadline=10))
    )


def _router(
    plane: ControlPlane, namespace: str, *, converge_timeout: float = 20.0, kube: Kube | None = None
) -> KnativeRouter:
    router = KnativeRouter(
        kube or _kube(plane),
        namespace=namespace,
        name="podinfo",
        clock=MonotonicClock(),
        converge_timeout=converge_timeout,
    )
    return watching(router)  # its watch is stopped when the test ends


def _spec_traffic(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    traffic: list[dict[str, Any]] = plane.get_service(namespace)["spec"]["traffic"]
    return traffic


def _status_traffic(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in entry.items() if k != "url"}
        for entry in plane.get_service(namespace)["status"]["traffic"]
    ]


def _new_revision(plane: ControlPlane, namespace: str, router: KnativeRouter, image: str) -> str:
    view = router.set_image(image=image, container=None)
    assert view.latest_created_revision is not None
    return view.latest_created_revision


def _ready(plane: ControlPlane, router: KnativeRouter, revision: str) -> None:
    from tests.cluster import wait_for  # noqa: PLC0415

    wait_for(
        lambda: router.revision(revision).phase is RevisionPhase.READY, timeout=20, what=f"{revision} Ready"
    )


@pytest.mark.usefixtures("podinfo")  # Ready at podinfo-00001
def test_pin_route_promote_pins_by_revision_name_and_waits_for_status(
    control_plane: ControlPlane, namespace: str
) -> None:
    plane = control_plane
    kube = _kube(plane)
    router = _router(plane, namespace, kube=kube)

    view = router.pin_primary("podinfo-00001")
    assert view.primary_revision == "podinfo-00001"
    assert _spec_traffic(plane, namespace) == [
        {"tag": "primary", "revisionName": "podinfo-00001", "latestRevision": False, "percent": 100}
    ]
    assert (
        plane.get_service(namespace)["metadata"]["annotations"]["flagger.app/primary-revision"]
        == "podinfo-00001"
    )

    canary = _new_revision(plane, namespace, router, f"{IMAGE}:6.0.1")
    assert canary == "podinfo-00002"
    _ready(plane, router, canary)
    # A new revision gets no traffic: the primary is pinned by name.
    assert router.observe().weight_of("podinfo-00002") == 0

    # The user's own 0 % tagged entry survives every write.
    user = {"tag": "blue", "revisionName": "podinfo-00001", "latestRevision": False, "percent": 0}
    plane.patch_service(namespace, "podinfo", {"spec": {"traffic": [*_spec_traffic(plane, namespace), user]}})

    # (A concurrent edit is the next test's subject; here the router's watch has seen it first.)
    from tests.cluster import wait_for  # noqa: PLC0415

    wait_for(lambda: any(t.tag == "blue" for t in router.observe().spec_traffic), timeout=10, what="seen")
    before = kube.requests.snapshot()
    view = router.route(primary="podinfo-00001", canary="podinfo-00002", canary_weight=10)
    after = kube.requests.snapshot()
    spent = {verb: after.get(verb, 0) - before.get(verb, 0) for verb in after}
    assert spent == {"patch": 1, "get": 0, "watch": 0}, spent  # status is awaited on the live watch

    assert _spec_traffic(plane, namespace) == [
        {"tag": "primary", "revisionName": "podinfo-00001", "latestRevision": False, "percent": 90},
        {"tag": "canary", "revisionName": "podinfo-00002", "latestRevision": False, "percent": 10},
        user,
    ]
    assert _status_traffic(plane, namespace) == _spec_traffic(plane, namespace)
    assert view.weight_of("podinfo-00002") == 10 and view.ready is True
    assert {t.tag: t.url for t in view.status_traffic if t.tag} == {
        "primary": f"http://primary-podinfo.{namespace}.svc.cluster.local",
        "canary": f"http://canary-podinfo.{namespace}.svc.cluster.local",
        "blue": f"http://blue-podinfo.{namespace}.svc.cluster.local",
    }

    view = router.route(primary="podinfo-00001", canary="podinfo-00002", canary_weight=50)
    assert view.weight_of("podinfo-00002") == 50

    view = router.promote("podinfo-00002")
    assert view.primary_revision == "podinfo-00002"
    assert _spec_traffic(plane, namespace) == [
        {"tag": "primary", "revisionName": "podinfo-00002", "latestRevision": False, "percent": 100},
        user,
    ]
    assert _status_traffic(plane, namespace) == _spec_traffic(plane, namespace)
    assert view.weight_of("podinfo-00002") == 100


@pytest.mark.usefixtures("podinfo")  # Ready at podinfo-00001
def test_a_concurrent_edit_between_read_and_write_is_retried_not_clobbered(
    control_plane: ControlPlane, namespace: str
) -> None:
    plane = control_plane
    kube = _kube(plane)
    router = _router(plane, namespace, kube=kube)
    router.pin_primary("podinfo-00001")
    canary = _new_revision(plane, namespace, router, f"{IMAGE}:6.0.1")
    _ready(plane, router, canary)
    # Someone else edits spec.traffic (and an annotation) after the router read the Service and
    # built its patch, just before the patch reaches the API server: a hook on the real call.
    user = {"tag": "debug", "revisionName": "podinfo-00001", "latestRevision": False, "percent": 0}
    real_patch = kube.patch_service
    edits: list[str] = []

    def patch_after_a_concurrent_edit(*, namespace: str, name: str, patch: Any) -> Any:
        if not edits:
            edits.append("done")
            plane.patch_service(
                namespace,
                name,
                {
                    "metadata": {"annotations": {"team": "a"}},
                    "spec": {"traffic": [*_spec_traffic(plane, namespace), user]},
                },
            )
        return real_patch(namespace=namespace, name=name, patch=patch)

    kube.patch_service = patch_after_a_concurrent_edit  # type: ignore[method-assign]
    before = kube.requests.snapshot()
    view = router.route(primary="podinfo-00001", canary=canary, canary_weight=20)
    after = kube.requests.snapshot()

    assert after["patch"] - before.get("patch", 0) == 2  # refused once (test op failed), then written
    assert after["get"] - before.get("get", 0) >= 1  # re-read after the conflict
    assert view.weight_of(canary) == 20
    assert user in _spec_traffic(plane, namespace)  # the concurrent edit was kept
    assert plane.get_service(namespace)["metadata"]["annotations"]["team"] == "a"


@pytest.mark.usefixtures("podinfo")  # Ready at podinfo-00001
def test_a_broken_canary_never_converges_and_the_primary_can_be_restored(
    control_plane: ControlPlane, namespace: str
) -> None:
    plane = control_plane
    router = _router(plane, namespace, converge_timeout=30.0)
    router.pin_primary("podinfo-00001")
    from tests.cluster import SHORT_PROGRESS_DEADLINE, pull_failure_reason, wait_for  # noqa: PLC0415

    plane.set_image(namespace, "podinfo", f"{IMAGE}:6.0.2-broken", annotations=SHORT_PROGRESS_DEADLINE)
    broken = "podinfo-00002"
    reason = pull_failure_reason(plane.backend)

    state = wait_for(
        lambda: (s := router.revision(broken)).phase is RevisionPhase.FAILED and s, timeout=20, what="broken"
    )
    assert state.reason == reason
    assert router.revision("podinfo-09999").phase is RevisionPhase.MISSING

    started = time.monotonic()
    with pytest.raises(RevisionFailed) as caught:  # Knative's RevisionMissing for a failed Revision: at once
        router.route(primary="podinfo-00001", canary=broken, canary_weight=10)
    assert time.monotonic() - started < 15, "it waited for the convergence timeout"
    message = str(caught.value)
    assert (
        f"Knative Service {namespace}/podinfo cannot route to Revision podinfo-00002: its Ready condition is"
        f" False ({reason}: " in message
    ), message
    assert caught.value.revision == "podinfo-00002"
    assert "asked [podinfo-00001=90% tag=primary, podinfo-00002=10% tag=canary]" in message
    assert "status.traffic [podinfo-00001=100% tag=primary]" in message  # Knative kept the old split
    assert "Ready False" in message and "podinfo-00002" in message.split("Ready False", 1)[1], message

    view = router.pin_primary("podinfo-00001")  # the rollback path still works
    assert view.weight_of("podinfo-00001") == 100
    assert view.ready is False  # Ready still reports the broken newest revision; RoutesReady is True
    assert _spec_traffic(plane, namespace) == [
        {"tag": "primary", "revisionName": "podinfo-00001", "latestRevision": False, "percent": 100}
    ]


@pytest.mark.usefixtures("podinfo")  # Ready at podinfo-00001
def test_wait_for_change_returns_on_the_next_change_or_at_the_timeout(
    control_plane: ControlPlane, namespace: str
) -> None:
    plane = control_plane
    kube = _kube(plane)
    router = _router(plane, namespace, kube=kube)
    router.pin_primary("podinfo-00001")
    plane.wait_ready(namespace)
    router.observe()
    plane.patch_service(namespace, "podinfo", {"metadata": {"annotations": {"poke": "1"}}})
    clock = MonotonicClock()
    start = clock.now()
    view = router.wait_for_change(timeout=10)
    assert clock.now() - start < 5
    assert view.name == "podinfo"
    assert plane.get_service(namespace)["metadata"]["annotations"]["poke"] == "1"
    requests = kube.requests.snapshot()
    start = clock.now()
    router.wait_for_change(timeout=0.5)  # nothing changes now: returns at the timeout
    assert 0.5 <= clock.now() - start < 1.5
    assert kube.requests.snapshot() == requests  # waiting on the live watch costs no request


@pytest.mark.usefixtures("podinfo")  # Ready at podinfo-00001
def test_set_image_names_the_container_or_refuses(control_plane: ControlPlane, namespace: str) -> None:
    from step.errors import ExitCode, UsageError  # noqa: PLC0415

    plane = control_plane
    router = _router(plane, namespace)
    with pytest.raises(UsageError, match='has no container named "sidecar"') as refused:
        router.set_image(image=f"{IMAGE}:6.0.1", container="sidecar")
    assert refused.value.exit_code is ExitCode.USAGE  # a mistake no retry fixes, not a spec problem
    view = router.set_image(image=f"{IMAGE}:6.0.0", container=None)  # unchanged: no new revision
    assert view.latest_created_revision == "podinfo-00001"


@pytest.mark.usefixtures("podinfo")  # Ready at podinfo-00001
def test_a_template_change_just_applied_is_seen_once_knative_has_reconciled_it(
    control_plane: ControlPlane, namespace: str
) -> None:
    """A pipeline applies a new image a moment before the run: the run's first look must wait until
    Knative has acted on that spec, or the stale status reads as "no new revision"."""
    written = control_plane.set_image(namespace, "podinfo", f"{IMAGE}:6.0.1")
    router = _router(control_plane, namespace)  # as a run started right after the apply
    view = router.observe_reconciled()
    assert view.observed_generation >= written["metadata"]["generation"]
    assert view.latest_created_revision == "podinfo-00002"


def test_reconciled_means_the_generation_observed_and_the_configuration_not_out_of_date() -> None:
    from step.router.knative import _reconciled  # noqa: PLC0415

    def service(generation: int, observed: int, reason: str = "") -> dict[str, Any]:
        conditions = (
            [{"type": "ConfigurationsReady", "status": "Unknown", "reason": reason}] if reason else []
        )
        return {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": "podinfo", "namespace": "test", "generation": generation},
            "spec": {},
            "status": {"observedGeneration": observed, "conditions": conditions},
        }

    assert _reconciled(service(3, 2)) is None
    assert _reconciled(service(3, 3, reason="OutOfDate")) is None
    assert _reconciled(service(3, 3, reason="RevisionMissing")) is not None
    assert _reconciled(service(3, 3)) is not None
