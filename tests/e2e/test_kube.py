"""step.kube and step.report.kube against the real API server: RBAC refusals, Events, Canary status."""

from __future__ import annotations

import datetime
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from step.analysis.machine import PHASE_MESSAGES, Phase
from step.clock import MonotonicClock
from step.errors import Forbidden, NotFound
from step.kube import Kube, RetryPolicy, connect
from step.ports import CanaryStatus
from step.report.kube import CanaryStatusSink, KubeEventSink
from step.router.knative import KnativeRouter
from tests.kube_clients import opened, watching

if TYPE_CHECKING:
    from tests.cluster import ControlPlane

pytestmark = pytest.mark.cluster


def _admin(plane: ControlPlane) -> Kube:
    return opened(connect(kubeconfig=str(plane.kubeconfig), context=None, retry=RetryPolicy.no_retries()))


def _as_service_account(
    plane: ControlPlane, namespace: str, tmp_path: Path, *, rules: list[dict[str, Any]]
) -> Kube:
    """A Kube that authenticates as a fresh ServiceAccount bound to a Role with exactly `rules`."""
    plane.api.create_service_account(namespace, "step")
    role = {"metadata": {"name": "step"}, "rules": rules}
    binding = {
        "metadata": {"name": "step"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "step"},
        "subjects": [{"kind": "ServiceAccount", "name": "step", "namespace": namespace}],
    }
    for plural, body in (("roles", role), ("rolebindings", binding)):
        status, answer = plane.api.request(
            "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/{plural}", body=body
        )
        assert status == 201, answer
    token = plane.api.token_for(namespace, "step")
    kubeconfig = plane.api.kubeconfig_for_token(token, tmp_path / "step.kubeconfig")
    return opened(connect(kubeconfig=str(kubeconfig), context=None, retry=RetryPolicy(attempts=3)))


@pytest.mark.usefixtures("podinfo")  # Ready at podinfo-00001
def test_a_403_names_the_verb_and_the_resource(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    plane = control_plane
    kube = _as_service_account(
        plane,
        namespace,
        tmp_path,
        rules=[{"apiGroups": ["serving.knative.dev"], "resources": ["services"], "verbs": ["get", "watch"]}],
    )
    router = KnativeRouter(
        kube, namespace=namespace, name="podinfo", clock=MonotonicClock(), converge_timeout=5
    )
    watching(router)
    assert router.observe().latest_created_revision == "podinfo-00001"  # get and watch are allowed

    with pytest.raises(Forbidden) as caught:
        router.pin_primary("podinfo-00001")
    assert str(caught.value) == (
        f'forbidden: cannot patch services.serving.knative.dev "podinfo" in namespace "{namespace}"'
        ' — the ServiceAccount needs verb "patch" on serving.knative.dev/services'
    )
    assert kube.requests.snapshot().get("patch") == 1  # never retried

    with pytest.raises(Forbidden, match=r'needs verb "get" on serving\.knative\.dev/revisions'):
        router.revision("podinfo-00001")
    with pytest.raises(Forbidden, match=r'needs verb "get" on ""/secrets \(core API group\)'):
        kube.get_secret_data(namespace=namespace, name="prom-auth")


@pytest.mark.usefixtures("podinfo")  # Ready at podinfo-00001
def test_without_watch_the_router_says_so(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    plane = control_plane
    kube = _as_service_account(
        plane,
        namespace,
        tmp_path,
        rules=[{"apiGroups": ["serving.knative.dev"], "resources": ["services"], "verbs": ["get", "patch"]}],
    )
    router = KnativeRouter(
        kube, namespace=namespace, name="podinfo", clock=MonotonicClock(), converge_timeout=5
    )
    watching(router)
    with pytest.raises(Forbidden, match=r'needs verb "watch" on serving\.knative\.dev/services'):
        router.pin_primary("podinfo-00001")


def test_events_are_recorded_on_the_knative_service(control_plane: ControlPlane, namespace: str) -> None:
    plane = control_plane
    created = plane.create_podinfo(namespace)
    kube = _admin(plane)
    sink = KubeEventSink(kube, namespace=namespace, service_name="podinfo", instance="test-runner")
    sink.emit(type="Normal", message="Initialization done! podinfo.test")
    sink.emit(
        type="Warning", message="Halt advancement no values found for knative metric request-success-rate"
    )
    assert sink.failures == 0

    status, answer = plane.api.request("GET", f"/api/v1/namespaces/{namespace}/events")
    assert status == 200
    events = sorted(answer["items"], key=lambda e: e["metadata"]["name"])
    assert [(e["type"], e["reason"], e["message"]) for e in events] == [
        ("Normal", "Synced", "Initialization done! podinfo.test"),
        ("Warning", "Synced", "Halt advancement no values found for knative metric request-success-rate"),
    ]
    for event in events:
        assert event["involvedObject"] == {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "name": "podinfo",
            "namespace": namespace,
            "uid": created["metadata"]["uid"],
        }
        assert event["source"] == {"component": "canary-step"}
        assert event["count"] == 1
    # One GET for the Service's uid, one POST per event.
    assert kube.requests.snapshot() == {"get": 1, "create": 2}
    # A uid this client has seen already (the router reads the Service first) costs no GET.
    KubeEventSink(kube, namespace=namespace, service_name="podinfo").emit(type="Normal", message="again")
    assert kube.requests.snapshot() == {"get": 1, "create": 3}


def test_event_errors_are_logged_not_raised(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kube = _as_service_account(control_plane, namespace, tmp_path, rules=[])
    sink = KubeEventSink(kube, namespace=namespace, service_name="podinfo")
    sink.emit(type="Normal", message="hello")
    assert sink.failures == 1
    assert 'needs verb "create" on ""/events (core API group)' in caplog.text


HALT = "Halt advancement no values found for knative metric request-success-rate"


def _events(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    status, answer = plane.api.request("GET", f"/api/v1/namespaces/{namespace}/events")
    assert status == 200, answer
    return sorted(answer["items"], key=lambda e: (e["firstTimestamp"], e["metadata"]["name"]))


def _described(event: dict[str, Any]) -> str:
    """An event as `kubectl describe` lists it: type, reason, `(xN over S)`, message."""
    first = datetime.datetime.fromisoformat(event["firstTimestamp"])
    last = datetime.datetime.fromisoformat(event["lastTimestamp"])
    seen = f" (x{event['count']} over {int((last - first).total_seconds())}s)" if event["count"] > 1 else ""
    return f"{event['type']} {event['reason']}{seen} {event['message']}"


class Wall:
    """Wall-clock time that a test moves (Event timestamps), starting now."""

    def __init__(self) -> None:
        self.t = float(int(time.time()))

    def __call__(self) -> float:
        return self.t


def test_an_analysis_halted_n_times_leaves_one_event_with_count_n(
    control_plane: ControlPlane, namespace: str
) -> None:
    plane = control_plane
    plane.create_podinfo(namespace)
    kube = _admin(plane)
    wall = Wall()
    sink = KubeEventSink(kube, namespace=namespace, service_name="podinfo", wall=wall)
    sink.emit(type="Normal", message="Starting canary analysis for podinfo.test")
    for _ in range(6):
        wall.t += 15  # one halt per 15 s tick
        sink.emit(type="Warning", message=HALT)
    sink.emit(type="Warning", message="Rolling back podinfo.test failed checks threshold reached 6")
    # At the same wall-clock time, as a coarse clock reads: still an Event of its own.
    sink.emit(type="Warning", message="Canary failed! Scaling down podinfo.test")
    assert sink.failures == 0

    assert [_described(e) for e in _events(plane, namespace)] == [
        "Normal Synced Starting canary analysis for podinfo.test",
        f"Warning Synced (x6 over 75s) {HALT}",
        "Warning Synced Rolling back podinfo.test failed checks threshold reached 6",
        "Warning Synced Canary failed! Scaling down podinfo.test",
    ]
    # The first halt is created, each repeat is one PATCH of count and lastTimestamp: no GET, no POST.
    assert kube.requests.snapshot() == {"get": 1, "create": 4, "patch": 5}


def test_a_repeat_of_an_expired_event_creates_it_again_with_the_count_so_far(
    control_plane: ControlPlane, namespace: str
) -> None:
    plane = control_plane
    plane.create_podinfo(namespace)
    wall = Wall()
    sink = KubeEventSink(_admin(plane), namespace=namespace, service_name="podinfo", wall=wall)
    sink.emit(type="Warning", message=HALT)
    (created,) = _events(plane, namespace)
    # What the API server's --event-ttl (1 h) does to an Event, done at once.
    status, answer = plane.api.request(
        "DELETE", f"/api/v1/namespaces/{namespace}/events/{created['metadata']['name']}"
    )
    assert status == 200, answer
    wall.t += 60
    sink.emit(type="Warning", message=HALT)
    (again,) = _events(plane, namespace)
    assert again["metadata"]["name"] == created["metadata"]["name"]
    assert again["count"] == 2 and again["firstTimestamp"] == created["firstTimestamp"]
    assert _described(again) == f"Warning Synced (x2 over 60s) {HALT}"
    assert sink.failures == 0


def test_without_patch_on_events_each_repeat_is_its_own_event(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plane = control_plane
    plane.create_podinfo(namespace)
    kube = _as_service_account(
        plane,
        namespace,
        tmp_path,
        rules=[
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
            {"apiGroups": ["serving.knative.dev"], "resources": ["services"], "verbs": ["get"]},
        ],
    )
    wall = Wall()
    sink = KubeEventSink(kube, namespace=namespace, service_name="podinfo", wall=wall)
    for _ in range(3):
        wall.t += 1
        sink.emit(type="Warning", message=HALT)
    assert [_described(e) for e in _events(plane, namespace)] == [f"Warning Synced {HALT}"] * 3
    assert 'needs verb "patch" on ""/events (core API group)' in caplog.text
    assert caplog.text.count("not counted") == 1  # warned once, not on every repeat
    assert kube.requests.snapshot() == {"get": 1, "create": 3, "patch": 1}


def _create_canary(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    body = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "provider": "knative",
            "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinfo"},
            "analysis": {"interval": "15s", "threshold": 5, "maxWeight": 50, "stepWeight": 10},
        },
    }
    status, answer = plane.api.request(
        "POST", f"/apis/flagger.app/v1beta1/namespaces/{namespace}/canaries", body=body
    )
    assert status == 201, answer
    return answer


def _canary_status(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    status, answer = plane.api.request(
        "GET", f"/apis/flagger.app/v1beta1/namespaces/{namespace}/canaries/podinfo"
    )
    assert status == 200, answer
    found: dict[str, Any] = answer.get("status") or {}
    return found


def _message(phase: str) -> str:
    return PHASE_MESSAGES[Phase(phase)]


def test_canary_status_is_written_through_the_status_subresource(
    control_plane: ControlPlane, namespace: str
) -> None:
    plane = control_plane
    _create_canary(plane, namespace)
    kube = _admin(plane)
    clock = iter([1_800_000_000.0, 1_800_000_010.0, 1_800_000_020.0, 1_800_000_030.0])
    sink = CanaryStatusSink(kube, namespace=namespace, name="podinfo", wall=lambda: next(clock))

    # The messages are the state machine's (Flagger's canary/status.go texts); the sink writes them.
    progressing = CanaryStatus(
        phase="Progressing", canary_weight=10, failed_checks=1, iterations=0, message=_message("Progressing")
    )
    sink.write(progressing)
    status = _canary_status(plane, namespace)
    assert sink.enabled is True
    assert {k: status[k] for k in ("phase", "canaryWeight", "failedChecks", "iterations")} == {
        "phase": "Progressing",
        "canaryWeight": 10,
        "failedChecks": 1,
        "iterations": 0,
    }
    assert status["lastTransitionTime"] == "2027-01-15T08:00:00Z"
    (condition,) = status["conditions"]
    assert condition == {
        "type": "Promoted",
        "status": "Unknown",
        "reason": "Progressing",
        "message": "New revision detected, progressing canary analysis.",
        "lastUpdateTime": "2027-01-15T08:00:00Z",
        "lastTransitionTime": "2027-01-15T08:00:00Z",
    }

    sink.write(progressing)  # unchanged: nothing is sent
    assert kube.requests.snapshot() == {"get": 1, "patch": 1}

    sink.write(replace(progressing, canary_weight=20))
    (condition,) = _canary_status(plane, namespace)["conditions"]
    assert condition["lastTransitionTime"] == "2027-01-15T08:00:00Z"  # Unknown -> Unknown: kept
    assert condition["lastUpdateTime"] == "2027-01-15T08:00:10Z"

    sink.write(
        CanaryStatus(
            phase="Succeeded", canary_weight=0, failed_checks=1, iterations=0, message=_message("Succeeded")
        )
    )
    status = _canary_status(plane, namespace)
    assert status["phase"] == "Succeeded" and status["canaryWeight"] == 0
    (condition,) = status["conditions"]
    assert (condition["status"], condition["reason"]) == ("True", "Succeeded")
    assert condition["message"] == "Canary analysis completed successfully, promotion finished."
    assert condition["lastTransitionTime"] == "2027-01-15T08:00:20Z"


def test_without_a_canary_resource_the_status_sink_is_a_no_op(
    control_plane: ControlPlane, namespace: str
) -> None:
    kube = _admin(control_plane)
    with pytest.raises(NotFound):
        kube.get_canary(namespace=namespace, name="podinfo")
    sink = CanaryStatusSink(kube, namespace=namespace, name="podinfo")
    for weight in (10, 20, 30):
        sink.write(CanaryStatus(phase="Progressing", canary_weight=weight, failed_checks=0, iterations=0))
    assert sink.enabled is False
    assert kube.requests.snapshot() == {"get": 2}  # the NotFound above, and the sink's one look
