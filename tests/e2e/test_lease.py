"""step.kube.lease on the real API server: acquire, contention, expiry takeover, fencing, release, 403."""

from __future__ import annotations

import datetime
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from step.clock import MonotonicClock
from step.errors import Forbidden
from step.kube import Kube, RetryPolicy, connect
from step.kube.lease import (
    RECORD_ANNOTATION,
    Lease,
    LeaseHeld,
    LeaseLost,
    LeaseState,
    holder_identity,
    lease_name,
)
from step.kube.mapping import Target, TransientAPIError
from tests.kube_clients import opened

if TYPE_CHECKING:
    from tests.cluster import ControlPlane

pytestmark = pytest.mark.cluster

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"


def _admin(plane: ControlPlane) -> Kube:
    return opened(connect(kubeconfig=str(plane.kubeconfig), context=None, retry=RetryPolicy.no_retries()))


def _lease(kube: Kube, namespace: str, identity: str, *, duration: int = 15) -> Lease:
    return Lease(
        kube,
        namespace=namespace,
        service="podinfo",
        identity=identity,
        duration_seconds=duration,
        clock=MonotonicClock(),
        poll_interval=0.1,
    )


def _read(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    status, body = plane.api.request("GET", LEASES.format(ns=namespace) + "/" + lease_name("podinfo"))
    assert status == 200, body
    return body


def _micro(seconds_from_now: float) -> str:
    when = datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(seconds=seconds_from_now)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _plant(
    plane: ControlPlane, namespace: str, *, holder: str, renewed: float, duration: int, record: str
) -> None:
    """A Lease left by another run, renewed `renewed` seconds from now (negative: in the past)."""
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": lease_name("podinfo"), "annotations": {RECORD_ANNOTATION: record}},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "acquireTime": _micro(renewed - 30),
            "renewTime": _micro(renewed),
            "leaseTransitions": 2,
        },
    }
    status, answer = plane.api.request("POST", LEASES.format(ns=namespace), body=body)
    assert status == 201, answer


def test_the_lease_name_cannot_clash_between_services() -> None:
    assert lease_name("podinfo") == "canary-step.podinfo"
    # A Lease name is a DNS subdomain (up to 253 characters): the longest Service name (63) fits.
    assert len(lease_name("p" * 63)) == 75


def test_holder_identity_names_the_pod_or_the_process() -> None:
    pod = holder_identity({"POD_NAME": "release-x7-pod", "POD_UID": "0f3c"})
    assert pod.startswith("pod release-x7-pod uid 0f3c run ")
    local = holder_identity({}, host="runner-1", pid=4242)
    assert local.startswith("host runner-1 pid 4242 run ")
    assert holder_identity({}, host="h", pid=1) != holder_identity({}, host="h", pid=1)  # one per run


def test_acquire_renew_with_the_record_and_release(control_plane: ControlPlane, namespace: str) -> None:
    kube = _admin(control_plane)
    lease = _lease(kube, namespace, "run-a")

    acquired = lease.acquire(wait=0)
    assert acquired.previous is None and not acquired.took_over and acquired.interrupted_record is None
    obj = _read(control_plane, namespace)
    assert obj["spec"]["holderIdentity"] == "run-a"
    assert obj["spec"]["leaseDurationSeconds"] == 15
    assert obj["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "canary-step"}
    assert obj["metadata"]["annotations"]["canary-step/service"] == "podinfo"

    before = kube.requests.total
    state = lease.renew('{"weight": 20}')
    assert kube.requests.total - before == 1  # the renewal and the record are one write
    obj = _read(control_plane, namespace)
    assert obj["metadata"]["annotations"][RECORD_ANNOTATION] == '{"weight": 20}'
    assert obj["spec"]["renewTime"] >= obj["spec"]["acquireTime"]
    assert state.record == '{"weight": 20}' and state.holder == "run-a"
    assert 14 < lease.remaining() <= 15

    before = kube.requests.total
    lease.ensure(margin=5)  # fresh: no request
    assert kube.requests.total == before

    lease.release()
    assert not lease.held
    obj = _read(control_plane, namespace)
    assert "holderIdentity" not in obj["spec"]
    assert RECORD_ANNOTATION not in (obj["metadata"].get("annotations") or {})

    again = _lease(kube, namespace, "run-b").acquire(wait=0)  # a released Lease is free at once
    assert again.previous is not None and again.previous.holder is None and not again.took_over


def test_a_second_run_waits_says_who_holds_it_and_gives_up(
    control_plane: ControlPlane, namespace: str
) -> None:
    kube = _admin(control_plane)
    first = _lease(kube, namespace, "run-a")
    first.acquire(wait=0)
    first.renew("record of run-a")
    held = _read(control_plane, namespace)

    told: list[LeaseState] = []
    second = _lease(kube, namespace, "run-b")
    with pytest.raises(LeaseHeld) as caught:
        second.acquire(wait=0.5, on_wait=told.append)
    assert [s.holder for s in told] == ["run-a"]
    message = str(caught.value)
    assert f"Lease {namespace}/canary-step.podinfo held by run-a since " in message
    assert "expires in " in message and "gave up after waiting 0." in message
    assert caught.value.waited >= 0.5
    assert not second.held
    assert _read(control_plane, namespace) == held  # nothing touched


def test_a_waiting_run_gets_the_lease_once_it_is_released(
    control_plane: ControlPlane, namespace: str
) -> None:
    kube = _admin(control_plane)
    first = _lease(kube, namespace, "run-a")
    first.acquire(wait=0)
    waiting = threading.Event()

    def on_wait(state: LeaseState) -> None:
        waiting.set()

    result: dict[str, Any] = {}

    def second_run() -> None:
        result["acquired"] = _lease(_admin(control_plane), namespace, "run-b").acquire(
            wait=20, on_wait=on_wait
        )

    thread = threading.Thread(target=second_run)
    thread.start()
    assert waiting.wait(10), "the second run never started waiting"
    first.release()
    thread.join(20)
    acquired = result["acquired"]
    assert acquired.waited > 0 and not acquired.took_over
    assert _read(control_plane, namespace)["spec"]["holderIdentity"] == "run-b"


def test_concurrent_acquirers_exactly_one_wins(control_plane: ControlPlane, namespace: str) -> None:
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(3)

    def contender(identity: str) -> None:
        lease = _lease(_admin(control_plane), namespace, identity)
        start.wait()
        try:
            lease.acquire(wait=0.3)
        except LeaseHeld:
            outcome = "held"
        else:
            outcome = "won"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=contender, args=(f"run-{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(outcomes) == ["held", "held", "won"]


def test_an_expired_lease_is_taken_over_with_its_record(control_plane: ControlPlane, namespace: str) -> None:
    _plant(
        control_plane, namespace, holder="pod killed run 1", renewed=-120, duration=15, record="tick 3 at 20"
    )
    kube = _admin(control_plane)
    lease = _lease(kube, namespace, "run-b")
    acquired = lease.acquire(wait=0)
    assert acquired.took_over
    assert acquired.previous is not None and acquired.previous.holder == "pod killed run 1"
    assert acquired.interrupted_record == "tick 3 at 20"
    obj = _read(control_plane, namespace)
    assert obj["spec"]["holderIdentity"] == "run-b"
    assert obj["spec"]["leaseTransitions"] == 3
    assert obj["metadata"]["annotations"][RECORD_ANNOTATION] == "tick 3 at 20"  # kept until we write ours


def test_a_lease_renewed_in_the_future_expires_after_a_whole_duration_unchanged(
    control_plane: ControlPlane, namespace: str
) -> None:
    """The holder's clock ran ahead of ours: we judge it by how long we saw it unchanged."""
    _plant(control_plane, namespace, holder="skewed", renewed=3600, duration=1, record="r")
    clock = MonotonicClock()
    lease = _lease(_admin(control_plane), namespace, "run-b")
    started = clock.now()
    acquired = lease.acquire(wait=10)
    assert acquired.took_over and 1.0 <= clock.now() - started < 5


def test_a_run_whose_lease_was_taken_over_is_fenced(control_plane: ControlPlane, namespace: str) -> None:
    kube = _admin(control_plane)
    paused = _lease(kube, namespace, "run-a", duration=1)
    paused.acquire(wait=0)
    paused.renew("run-a at 20")
    # run-a stops renewing (paused past its lease duration); run-b finds it expired and takes over.
    taker = _lease(_admin(control_plane), namespace, "run-b")
    acquired = taker.acquire(wait=10)
    assert acquired.took_over and acquired.interrupted_record == "run-a at 20"
    taker.renew("run-b at 10")

    with pytest.raises(LeaseLost) as caught:
        paused.renew("run-a at 30")  # the resourceVersion it carries is stale: 409
    assert "taken over: it is held by run-b now" in str(caught.value)
    assert caught.value.state is not None and caught.value.state.holder == "run-b"
    assert not paused.held
    with pytest.raises(LeaseLost):
        paused.ensure(margin=5)
    paused.release()  # nothing to release: run-b keeps it
    obj = _read(control_plane, namespace)
    assert obj["spec"]["holderIdentity"] == "run-b"
    assert obj["metadata"]["annotations"][RECORD_ANNOTATION] == "run-b at 10"


def test_a_deleted_lease_is_lost(control_plane: ControlPlane, namespace: str) -> None:
    lease = _lease(_admin(control_plane), namespace, "run-a")
    lease.acquire(wait=0)
    status, _ = control_plane.api.request("DELETE", LEASES.format(ns=namespace) + "/" + lease_name("podinfo"))
    assert status == 200
    with pytest.raises(LeaseLost, match="was deleted while this run held it"):
        lease.renew("r")


def test_a_403_names_the_lease_verb(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    plane = control_plane
    plane.api.create_service_account(namespace, "step")
    role = {
        "metadata": {"name": "step"},
        "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"]}],
    }
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
    kubeconfig = plane.api.kubeconfig_for_token(plane.api.token_for(namespace, "step"), tmp_path / "k")
    kube = opened(connect(kubeconfig=str(kubeconfig), context=None, retry=RetryPolicy(attempts=3)))
    with pytest.raises(Forbidden) as caught:
        _lease(kube, namespace, "run-a").acquire(wait=0)
    assert str(caught.value) == (
        f'forbidden: cannot create leases.coordination.k8s.io in namespace "{namespace}"'
        ' — the ServiceAccount needs verb "create" on coordination.k8s.io/leases'
    )
    assert kube.requests.snapshot() == {"get": 1, "create": 1}  # a 403 is never retried


def test_a_renewal_retried_after_its_answer_was_lost_is_not_a_lost_lease(
    control_plane: ControlPlane, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The update reached the API server but its answer did not come back (a reset connection): the retry
    gets 409, since the resourceVersion it carries is ours from before. Reading the Lease shows our own
    renewal, so the run goes on holding it."""
    kube = opened(
        connect(
            kubeconfig=str(control_plane.kubeconfig),
            context=None,
            retry=RetryPolicy(attempts=3, backoff_base=0.0, backoff_cap=0.0, jitter=0.0),
        )
    )
    lease = _lease(kube, namespace, "run-a")
    lease.acquire(wait=0)
    real = Kube._attempt
    lost: list[str] = []

    def answer_lost_once(self: Kube, target: Target, **kwargs: Any) -> Any:
        response = real(self, target, **kwargs)
        if target.verb == "update" and not lost:
            lost.append(target.verb)
            assert response.data  # the API server answered; the answer is dropped
            response.release_conn()
            raise TransientAPIError("connection reset", status=None, target=target, retry_after=None)
        return response

    monkeypatch.setattr(Kube, "_attempt", answer_lost_once)
    before = kube.requests.snapshot()
    state = lease.renew("after a lost answer")
    after = kube.requests.snapshot()
    assert lost == ["update"] and lease.held
    assert state.holder == "run-a" and state.record == "after a lost answer"
    assert after["update"] - before.get("update", 0) == 2  # the lost one and its retry (409)
    assert after["get"] - before["get"] == 1  # reading the Lease to see whose update it was
    lease.renew("the next tick")  # the resourceVersion it carries now is the current one
    assert _read(control_plane, namespace)["metadata"]["annotations"][RECORD_ANNOTATION] == "the next tick"
