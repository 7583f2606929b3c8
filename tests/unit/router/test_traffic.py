"""The pure traffic arithmetic of the Knative router: exact spec.traffic, patches and convergence."""

from __future__ import annotations

from typing import Any

import pytest

from step.ports import RevisionPhase, TrafficTarget
from step.router.traffic import (
    converged,
    desired_traffic,
    revision_state,
    routes_ready,
    to_entry,
    traffic_matches,
    traffic_patch,
    view_of,
)

USER_TAG = TrafficTarget(revision_name="podinfo-00001", percent=0, tag="blue")
FLAGGER_STYLE = (
    TrafficTarget(percent=0, latest_revision=True),
    TrafficTarget(revision_name="podinfo-00001", percent=100),
)


def _entries(targets: tuple[TrafficTarget, ...]) -> list[dict[str, Any]]:
    return [to_entry(t) for t in targets]


def test_a_split_pins_both_revisions_by_name_and_tags_them() -> None:
    got = desired_traffic(FLAGGER_STYLE, primary="podinfo-00001", canary="podinfo-00002", canary_weight=10)
    assert _entries(got) == [
        {"tag": "primary", "revisionName": "podinfo-00001", "latestRevision": False, "percent": 90},
        {"tag": "canary", "revisionName": "podinfo-00002", "latestRevision": False, "percent": 10},
    ]


def test_pinning_or_promoting_writes_one_entry_and_drops_the_canary_tag() -> None:
    current = desired_traffic((), primary="a-00001", canary="a-00002", canary_weight=50)
    assert _entries(desired_traffic(current, primary="a-00002", canary=None, canary_weight=0)) == [
        {"tag": "primary", "revisionName": "a-00002", "latestRevision": False, "percent": 100}
    ]
    assert _entries(desired_traffic(current, primary="a-00002", canary="a-00002", canary_weight=30)) == [
        {"tag": "primary", "revisionName": "a-00002", "latestRevision": False, "percent": 100}
    ]


def test_the_users_zero_percent_tagged_entries_are_kept_and_others_are_not() -> None:
    latest_tag = TrafficTarget(percent=0, latest_revision=True, tag="latest")
    current = (
        *FLAGGER_STYLE,
        USER_TAG,
        latest_tag,
        TrafficTarget(revision_name="x", percent=0),
        TrafficTarget(revision_name="y", percent=0, tag="canary"),
    )
    got = desired_traffic(current, primary="podinfo-00001", canary="podinfo-00002", canary_weight=20)
    assert got[2:] == (USER_TAG, latest_tag)
    assert sum(t.percent for t in got) == 100
    assert not any(t.latest_revision and t.percent > 0 for t in got)


def test_no_two_untagged_entries_for_one_revision() -> None:
    got = desired_traffic(FLAGGER_STYLE, primary="p", canary="c", canary_weight=0)
    assert all(t.tag for t in got)


@pytest.mark.parametrize("weight", [-1, 101])
def test_weights_outside_0_100_are_refused(weight: int) -> None:
    with pytest.raises(ValueError, match=r"0\.\.100"):
        desired_traffic((), primary="p", canary="c", canary_weight=weight)


def test_the_patch_is_conditional_on_exactly_what_we_replace() -> None:
    raw = [{"revisionName": "p", "latestRevision": False, "percent": 100}]
    ops = traffic_patch(
        current_raw=raw,
        desired=desired_traffic((), primary="p", canary="c", canary_weight=10),
        annotations={"flagger.app/primary-revision": "old", "other": "x"},
        primary_annotation="p",
    )
    assert ops[:2] == [
        {"op": "test", "path": "/metadata/annotations/flagger.app~1primary-revision", "value": "old"},
        {"op": "replace", "path": "/metadata/annotations/flagger.app~1primary-revision", "value": "p"},
    ]
    assert ops[2] == {"op": "test", "path": "/spec/traffic", "value": raw}
    assert ops[3]["op"] == "replace" and ops[3]["path"] == "/spec/traffic"
    assert [op["path"] for op in ops] == [
        "/metadata/annotations/flagger.app~1primary-revision",
        "/metadata/annotations/flagger.app~1primary-revision",
        "/spec/traffic",
        "/spec/traffic",
    ]


def test_the_annotation_is_added_when_absent() -> None:
    desired = desired_traffic((), primary="p", canary=None, canary_weight=0)
    ops = traffic_patch(current_raw=None, desired=desired, annotations={"a": "b"}, primary_annotation="p")
    assert ops[0] == {
        "op": "add",
        "path": "/metadata/annotations/flagger.app~1primary-revision",
        "value": "p",
    }
    ops = traffic_patch(current_raw=None, desired=desired, annotations=None, primary_annotation="p")
    assert ops[0] == {
        "op": "add",
        "path": "/metadata/annotations",
        "value": {"flagger.app/primary-revision": "p"},
    }


def _service(
    *, generation: int = 3, observed: int = 3, ready: str = "True", traffic: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "metadata": {"name": "podinfo", "namespace": "test", "generation": generation},
        "spec": {"template": {"spec": {"containers": [{"image": "podinfo:6.0.1"}]}}, "traffic": []},
        "status": {
            "observedGeneration": observed,
            "conditions": [{"type": "Ready", "status": ready, "reason": "R", "message": "M"}],
            "traffic": traffic,
        },
    }


ASKED = desired_traffic((), primary="p", canary="c", canary_weight=10)
SHOWN = [
    {
        "tag": "primary",
        "revisionName": "p",
        "latestRevision": False,
        "percent": 90,
        "url": "http://primary-x",
    },
    {"tag": "canary", "revisionName": "c", "latestRevision": False, "percent": 10, "url": "http://canary-x"},
]


def test_converged_needs_generation_routes_ready_and_the_same_traffic() -> None:
    assert converged(_service(traffic=SHOWN), generation=3, desired=ASKED) is not None
    assert converged(_service(observed=2, traffic=SHOWN), generation=3, desired=ASKED) is None
    assert converged(_service(ready="Unknown", traffic=SHOWN), generation=3, desired=ASKED) is None
    assert converged(_service(traffic=SHOWN[:1]), generation=3, desired=ASKED) is None
    swapped = [{**SHOWN[0], "percent": 10}, {**SHOWN[1], "percent": 90}]
    assert converged(_service(traffic=swapped), generation=3, desired=ASKED) is None


def test_routes_ready_counts_not_ready_so_a_broken_newest_revision_does_not_block_a_rollback() -> None:
    obj = _service(ready="False", traffic=SHOWN)
    obj["status"]["conditions"] = [
        {"type": "ConfigurationsReady", "status": "False", "reason": "RevisionFailed"},
        {"type": "Ready", "status": "False", "reason": "RevisionFailed"},
        {"type": "RoutesReady", "status": "True"},
    ]
    assert routes_ready(obj) is True
    assert converged(obj, generation=3, desired=ASKED) is not None
    obj["status"]["conditions"][2] = {
        "type": "RoutesReady",
        "status": "Unknown",
        "reason": "TrafficNotMigrated",
    }
    assert converged(obj, generation=3, desired=ASKED) is None


def test_a_users_latest_revision_tag_matches_whatever_revision_it_resolved_to() -> None:
    desired = (*ASKED, TrafficTarget(percent=0, latest_revision=True, tag="latest"))
    shown = [*SHOWN, {"tag": "latest", "revisionName": "c", "latestRevision": True, "percent": 0}]
    assert traffic_matches(desired, view_of(_service(traffic=shown)).status_traffic)


def test_view_of_reads_the_service() -> None:
    obj = _service(traffic=SHOWN)
    obj["metadata"]["annotations"] = {"flagger.app/primary-revision": "p"}
    obj["status"]["latestCreatedRevisionName"] = "c"
    view = view_of(obj)
    assert view.primary_revision == "p"
    assert view.latest_created_revision == "c"
    assert view.ready is True and view.ready_reason == "R"
    assert view.images == {"": "podinfo:6.0.1"}
    assert view.weight_of("c") == 10


@pytest.mark.parametrize(
    ("status", "generation", "observed", "phase"),
    [
        ("True", 1, 1, RevisionPhase.READY),
        ("True", 2, 1, RevisionPhase.PENDING),
        ("False", 1, 1, RevisionPhase.FAILED),
        ("Unknown", 1, 1, RevisionPhase.PENDING),
        (None, 1, None, RevisionPhase.PENDING),
    ],
)
def test_revision_state(
    status: str | None, generation: int, observed: int | None, phase: RevisionPhase
) -> None:
    conditions = (
        []
        if status is None
        else [{"type": "Ready", "status": status, "reason": "ExitCode1", "message": "boom"}]
    )
    obj = {
        "metadata": {"generation": generation},
        "status": {"observedGeneration": observed, "conditions": conditions},
    }
    state = revision_state("r", obj)
    assert state.phase is phase
    if phase is RevisionPhase.FAILED:
        assert (state.reason, state.message) == ("ExitCode1", "boom")


def test_a_missing_revision() -> None:
    assert revision_state("r", None).phase is RevisionPhase.MISSING
