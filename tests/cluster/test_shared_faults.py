"""The data plane's faults for the relative judge: latency as a percentage of the others' (an image tag
marker), and a fault of every revision of a namespace at once (`DataPlane.set_fault`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from tests.cluster.dataplane import NO_FAULT, DataPlane, Fault, RevisionInfo, Target
from tests.cluster.images import behaviour_of
from tests.cluster.test_dataplane import _get, _metrics

NS = "shared"
IMAGES = {
    "podinfo-00001": "ghcr.io/stefanprodan/podinfo:6.0.1",
    "podinfo-00002": "ghcr.io/stefanprodan/podinfo:6.0.2-fault-latency-40pct",
}


def _lookup(namespace: str, name: str) -> RevisionInfo | None:
    if namespace != NS or name not in IMAGES:
        return None
    return RevisionInfo(
        namespace=NS, name=name, configuration="podinfo", service="podinfo", image=IMAGES[name]
    )


@pytest.fixture
def dataplane() -> Iterator[DataPlane]:
    plane = DataPlane(revision_lookup=_lookup)
    yield plane
    plane.stop()


def _sums(plane: DataPlane) -> dict[str, float]:
    out = {}
    for line in _metrics(plane).splitlines():
        if line.startswith("envoy_cluster_upstream_rq_time_sum{"):
            name = line.split('envoy_cluster_name="', 1)[1].split('"', 1)[0]
            out[name] = float(line.rsplit(" ", 1)[1])
    return out


def test_the_percent_marker_parses() -> None:
    behaviour = behaviour_of(IMAGES["podinfo-00002"])
    assert (behaviour.version, behaviour.latency_percent, behaviour.latency_ms) == ("6.0.2", 40, 0)


def test_a_shared_latency_makes_the_percent_marker_slower_by_that_percentage(dataplane: DataPlane) -> None:
    dataplane.set_fault(NS, Fault(latency_ms=100))
    dataplane.routing.set_traffic(NS, "podinfo", [Target("podinfo-00001", 50), Target("podinfo-00002", 50)])
    for _ in range(10):
        assert _get(dataplane, "podinfo.shared")[0] == 200
    sums = _sums(dataplane)
    primary, canary = sums["shared/podinfo-00001"] / 5, sums["shared/podinfo-00002"] / 5
    assert 100 <= primary < 135  # 100 ms plus the data plane's own time
    assert canary >= 140 and canary > primary * 1.2


def test_an_incident_fails_every_revision_at_the_same_exact_rate(dataplane: DataPlane) -> None:
    dataplane.set_fault(NS, Fault(error_percent=20))
    dataplane.routing.set_traffic(NS, "podinfo", [Target("podinfo-00001", 50), Target("podinfo-00002", 50)])
    codes = Counter(_get(dataplane, "podinfo.shared")[0] for _ in range(20))
    assert codes == {200: 16, 500: 4}
    text = _metrics(dataplane)
    for revision in ("podinfo-00001", "podinfo-00002"):
        assert (
            f'envoy_cluster_upstream_rq{{envoy_cluster_name="shared/{revision}",envoy_response_code="500"}} 2'
            in text
        )
    dataplane.set_fault(NS, NO_FAULT)
    assert Counter(_get(dataplane, "podinfo.shared")[0] for _ in range(10)) == {200: 10}
