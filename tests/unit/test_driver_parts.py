"""The driver's pure parts: Flagger's payload checksum and how it reads the Service."""

from __future__ import annotations

import pytest

from step.driver import facts_of
from step.ports import RevisionPhase, RevisionState, ServiceView, TrafficTarget
from step.report.outcome import service_state, traffic_of
from step.webhooks.payload import revision_checksum


@pytest.mark.parametrize(
    ("revision", "checksum"),
    # flagger-semantics.md section 2: ComputeHash("podinfo-00001") and ("podinfo-00002")
    [("podinfo-00001", "5498f4fcd6"), ("podinfo-00002", "547d5765b7")],
)
def test_checksum_is_flaggers_compute_hash(revision: str, checksum: str) -> None:
    assert revision_checksum(revision) == checksum


def view(**changes: object) -> ServiceView:
    fields: dict[str, object] = {
        "name": "podinfo",
        "namespace": "test",
        "generation": 3,
        "observed_generation": 3,
        "primary_revision": "podinfo-00001",
        "latest_created_revision": "podinfo-00002",
        "latest_ready_revision": "podinfo-00002",
        "ready": True,
        "status_traffic": (
            TrafficTarget(percent=90, revision_name="podinfo-00001", tag="primary"),
            TrafficTarget(percent=10, revision_name="podinfo-00002", tag="canary"),
        ),
    }
    fields.update(changes)
    return ServiceView(**fields)  # type: ignore[arg-type]


class Revisions:
    """Answers `revision()` as a Router would; counts the reads."""

    def __init__(self, state: RevisionState) -> None:
        self.state = state
        self.reads = 0

    def revision(self, name: str) -> RevisionState:
        self.reads += 1
        return self.state


def test_a_ready_canary_needs_no_revision_read() -> None:
    revisions = Revisions(RevisionState(name="x", phase=RevisionPhase.PENDING))
    facts = facts_of(view(), revisions)  # type: ignore[arg-type]
    assert facts.canary_phase is RevisionPhase.READY and revisions.reads == 0
    assert facts.serving_revision == "podinfo-00001"


def test_a_canary_that_is_not_ready_is_read_for_its_reason() -> None:
    revisions = Revisions(
        RevisionState(name="podinfo-00002", phase=RevisionPhase.FAILED, reason="ContainerMissing")
    )
    facts = facts_of(view(latest_ready_revision="podinfo-00001"), revisions)  # type: ignore[arg-type]
    assert (facts.canary_phase, facts.canary_reason, revisions.reads) == (
        RevisionPhase.FAILED,
        "ContainerMissing",
        1,
    )


def test_the_canary_url_is_the_canary_tags_url_for_the_latest_revision_only() -> None:
    revisions = Revisions(RevisionState(name="x", phase=RevisionPhase.READY))
    url = "http://canary-podinfo.test.svc.cluster.local"
    tagged = (
        TrafficTarget(percent=100, revision_name="podinfo-00001", tag="primary", url="http://primary-p"),
        TrafficTarget(percent=0, revision_name="podinfo-00002", tag="preview", url="http://preview-p"),
        TrafficTarget(percent=0, revision_name="podinfo-00002", tag="canary", url=url),
    )
    assert facts_of(view(status_traffic=tagged), revisions).canary_url == url  # type: ignore[arg-type]
    # the tag on an older canary (before a restart), or no tag at all: no URL
    older = (tagged[0], TrafficTarget(percent=0, revision_name="podinfo-00001", tag="canary", url=url))
    assert facts_of(view(status_traffic=older), revisions).canary_url is None  # type: ignore[arg-type]
    assert facts_of(view(status_traffic=tagged[:2]), revisions).canary_url is None  # type: ignore[arg-type]


def test_traffic_and_service_state_in_words() -> None:
    assert traffic_of(view()) == "90% on podinfo-00001, 10% on podinfo-00002"
    state = service_state(view())
    assert state["statusTraffic"][1] == {
        "revisionName": "podinfo-00002",
        "latestRevision": False,
        "tag": "canary",
        "percent": 10,
    }
